//! `tether demo`: server and client on loopback in one process; handshake, heartbeat,
//! REST calls both ways (one each, many at once, a large streamed body each way), a real
//! TCP cut and a resume with requests still working, then a clean close and a summary.

use std::fmt::Debug;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::relay::Relay;
use tether_proto::backoff::{BackoffConfig, Jitter};
use tether_proto::connection::Config;
use tether_proto::CloseCode;
use tether_tokio::client::{Client, ClientConfig, ClientEvent};
use tether_tokio::server::{Server, ServerConfig, ServerEvent};
use tether_tokio::EventStream;

use super::common::block_on;
use super::demo_rest as rest;
use super::lifecycle::{client_line, round_ms, server_line};

/// Arguments of `tether demo` (documented on the subcommand).
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Heartbeat round trips to show before cutting the transport.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=50))]
    rtts: u32,
    /// Concurrent requests in each direction (all started at once; at most 1000, within
    /// the default queue of 1024 waiting requests).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1000))]
    requests: u32,
    /// Size of the body streamed each way, in MiB.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    body_mib: u32,
}

/// Each step must finish within this (a failure guard; the whole demo takes about 2 s).
const STEP: Duration = Duration::from_secs(5);
const METADATA: &str = r#"{"device":"demo-sensor","firmware":"1.4.2"}"#;
/// The device name the client's `GET /status` reports.
const DEVICE: &str = "demo-sensor";

pub(crate) fn run(args: Args) -> ExitCode {
    block_on(async move {
        match demo(args).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("\ndemo failed: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// The events one side produced, for the summary.
struct Seen<T> {
    stream: EventStream<T>,
    log: Vec<T>,
}

impl<T: Clone + Debug> Seen<T> {
    async fn until(&mut self, what: &str, mut pick: impl FnMut(&T) -> bool) -> Result<T, String> {
        let wait = async {
            while let Some(event) = self.stream.recv().await {
                self.log.push(event.clone());
                if pick(&event) {
                    return Some(event);
                }
            }
            None
        };
        match tokio::time::timeout(STEP, wait).await {
            Ok(Some(event)) => Ok(event),
            Ok(None) => Err(format!("event stream ended while waiting for {what}")),
            Err(_) => Err(format!("no {what} within {STEP:?}")),
        }
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

async fn demo(args: Args) -> Result<(), String> {
    let Args {
        rtts,
        requests,
        body_mib,
    } = args;
    let started = Instant::now();
    let interval = Duration::from_millis(200);
    let timeout = Duration::from_secs(1);
    let connection = Arc::new(
        Config::builder()
            .heartbeat(interval, timeout)
            .handshake_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| e.to_string())?,
    );

    println!("tether demo: a server and a client on loopback, in one process\n");
    let mut config = ServerConfig::new(([127, 0, 0, 1], 0).into());
    config.connection = connection.clone();
    let resume_window = config.resume_window;
    let (server, sev) = Server::bind(config)
        .await
        .map_err(|e| format!("bind: {e}"))?;
    server.serve(rest::server_api());
    let mut sev = Seen {
        stream: sev,
        log: Vec::new(),
    };
    println!(
        "  server   ws://{}/  (heartbeat every {}, dead after {})",
        server.local_addr(),
        humantime::format_duration(interval),
        humantime::format_duration(timeout)
    );
    let relay = Relay::start(server.local_addr())
        .await
        .map_err(|e| format!("relay: {e}"))?;
    println!(
        "  relay    {} -> server  (a TCP relay the demo will cut)",
        relay.local_addr()
    );
    let url = format!("ws://{}/demo", relay.local_addr());
    println!("  client   {url}  metadata {METADATA}");

    let mut cconfig = ClientConfig::new(METADATA);
    cconfig.connection = connection;
    cconfig.backoff = BackoffConfig {
        initial: Duration::from_millis(100),
        jitter: Jitter::Proportional(0.5),
        ..BackoffConfig::default()
    };
    let (client, cev) = Client::connect(&url, cconfig).map_err(|e| e.to_string())?;
    // Served from the first request on (set before the handshake can complete).
    client.serve(rest::client_api(DEVICE));
    let mut cev = Seen {
        stream: cev,
        log: Vec::new(),
    };

    // 1. Handshake.
    let ClientEvent::Connected { id, handshake } = cev
        .until("Connected", |e| matches!(e, ClientEvent::Connected { .. }))
        .await?
    else {
        unreachable!()
    };
    let received = sev
        .until("Received", |e| matches!(e, ServerEvent::Received { .. }))
        .await?;
    println!("\nhandshake  HELLO -> WELCOME -> ACK");
    println!("  connection id    {id}");
    println!(
        "  version          {}",
        handshake.version.map_or("?".into(), |v| v.to_string())
    );
    if let Some((i, t)) = handshake.heartbeat {
        println!(
            "  heartbeat        every {}, dead after {} (both sides)",
            humantime::format_duration(i),
            humantime::format_duration(t)
        );
    }
    println!(
        "  resume window    {}",
        humantime::format_duration(handshake.resume_window)
    );
    let s = handshake.server_settings;
    println!(
        "  server limits    frame payload {} B, head {} B, {} headers",
        opt(s.max_frame_payload),
        opt(s.max_head_size),
        opt(s.max_header_count)
    );
    println!("  server event     {}", server_line(&received));
    println!(
        "  registry         {} connection(s), metadata of {id}: {}",
        server.connection_count(),
        server
            .metadata(&id)
            .map(|m| String::from_utf8_lossy(&m).into_owned())
            .unwrap_or_default()
    );

    // 2. Heartbeat.
    println!(
        "\nheartbeat  (WebSocket ping/pong every {})",
        humantime::format_duration(interval)
    );
    let mut samples = Vec::new();
    while samples.len() < rtts as usize {
        if let ClientEvent::Rtt { rtt, smoothed } = cev
            .until("a heartbeat RTT", |e| matches!(e, ClientEvent::Rtt { .. }))
            .await?
        {
            samples.push(rtt);
            println!(
                "  rtt #{:<2}  {:>9}   smoothed {}",
                samples.len(),
                ms(rtt),
                smoothed.map_or("-".into(), ms)
            );
        }
    }

    // 3. REST both ways over the one connection.
    let device = server
        .peer(&id)
        .ok_or_else(|| format!("server.peer({id}): not connected"))?;
    let upstream = client.peer();
    println!("\nrest  (HTTP both ways over the one connection; each request is a stream)");
    println!("  client serves    GET /status, POST /echo (streams the request body back)");
    println!("  server serves    GET /time, POST /upload (counts and sums the bytes)");
    let t = Instant::now();
    let status = rest::status(&device, DEVICE).await?;
    println!(
        "  server -> client GET /status   200 {status}  ({})",
        ms(t.elapsed())
    );
    let t = Instant::now();
    let time = rest::time(&upstream, id).await?;
    println!(
        "  client -> server GET /time     200 {time}  ({})",
        ms(t.elapsed())
    );
    let calls = requests as usize;
    let down = rest::echoes(&device, calls).await?;
    measured(
        "server -> client",
        "POST /echo",
        &format!("{calls} at once: all 200, every body back"),
        down,
        format!("{:.0} req/s", per_sec(calls as f64, down)),
    );
    let up = rest::uploads(&upstream, calls).await?;
    measured(
        "client -> server",
        "POST /upload",
        &format!("{calls} at once: all 200, every count right"),
        up,
        format!("{:.0} req/s", per_sec(calls as f64, up)),
    );
    let len = u64::from(body_mib) << 20;
    let echo = rest::stream_echo(&device, len).await?;
    measured(
        "server -> client",
        "POST /echo",
        &format!("{body_mib} MiB streamed there and back, checked"),
        echo,
        format!("{:.1} MiB/s each way", per_sec(f64::from(body_mib), echo)),
    );
    let upload = rest::stream_upload(&upstream, len).await?;
    measured(
        "client -> server",
        "POST /upload",
        &format!("{body_mib} MiB streamed, count and sum right"),
        upload,
        format!("{:.1} MiB/s", per_sec(f64::from(body_mib), upload)),
    );

    // 4. Cut the transport.
    println!("\ntransport cut  (the relay closes both TCP sockets)");
    let cut = Instant::now();
    relay.cut();
    let failure = cev
        .until("client Failure", |e| {
            matches!(e, ClientEvent::Failure { .. })
        })
        .await?;
    println!("  client   {}", client_line(&failure).unwrap_or_default());
    let reconnecting = cev
        .until("Reconnecting", |e| {
            matches!(e, ClientEvent::Reconnecting { .. })
        })
        .await?;
    println!(
        "  client   {}",
        client_line(&reconnecting).unwrap_or_default()
    );
    // A request made now waits for the connection (RestConfig::connect_wait) and goes
    // out once the client is back.
    let waiting = {
        let upstream = upstream.clone();
        tokio::spawn(async move {
            let t = Instant::now();
            rest::time(&upstream, id)
                .await
                .map(|time| (time, t.elapsed()))
        })
    };
    let back = cev
        .until("Resumed", |e| {
            matches!(
                e,
                ClientEvent::Resumed { .. } | ClientEvent::Connected { .. }
            )
        })
        .await?;
    let ClientEvent::Resumed { id: resumed_id, .. } = back else {
        return Err(format!("expected a resume, got {back:?}"));
    };
    println!(
        "  client   {}  (same id: {}, back after {})",
        client_line(&back).unwrap_or_default(),
        if resumed_id == id { "yes" } else { "NO" },
        ms(cut.elapsed())
    );
    let sresumed = sev
        .until("server Resumed", |e| {
            matches!(
                e,
                ServerEvent::Resumed { .. } | ServerEvent::Received { .. }
            )
        })
        .await?;
    for event in sev
        .log
        .iter()
        .skip_while(|e| !matches!(e, ServerEvent::Received { .. }))
        .skip(1)
    {
        println!("  server   {}", server_line(event));
    }
    if !matches!(sresumed, ServerEvent::Resumed { id: r, .. } if r == id) {
        return Err(format!("server did not resume {id}: {sresumed:?}"));
    }
    if resumed_id != id {
        return Err("the client resumed under another id".into());
    }
    let (time, waited) = waiting
        .await
        .map_err(|e| format!("the waiting request's task failed: {e}"))??;
    println!(
        "  client -> server GET /time     made while reconnecting: 200 after {}  {time}",
        ms(waited)
    );
    let t = Instant::now();
    let status = rest::status(&device, DEVICE).await?;
    println!(
        "  server -> client GET /status   after the resume, same Peer: 200 {status}  ({})",
        ms(t.elapsed())
    );

    // 5. Close.
    println!("\nclose");
    client.close_with(CloseCode::NORMAL, "demo finished").await;
    let closed = cev
        .until("client Closed", |e| matches!(e, ClientEvent::Closed { .. }))
        .await?;
    println!("  client   {}", client_line(&closed).unwrap_or_default());
    let sclosed = sev
        .until("server Closed", |e| matches!(e, ServerEvent::Closed { .. }))
        .await?;
    println!("  server   {}", server_line(&sclosed));
    server
        .shutdown(STEP)
        .await
        .map_err(|e| format!("shutdown: {e}"))?;

    // 6. Summary.
    samples.sort();
    let total: Duration = samples.iter().sum();
    let n = samples.len().max(1) as u32;
    println!("\nsummary");
    println!(
        "  connection id    {id} (kept across the cut; resume window {})",
        humantime::format_duration(resume_window)
    );
    println!(
        "  heartbeat rtt    n={} min {} median {} max {} mean {}",
        samples.len(),
        ms(samples[0]),
        ms(samples[samples.len() / 2]),
        ms(samples[samples.len() - 1]),
        ms(total / n)
    );
    println!(
        "  rest requests    {calls} at once each way: server->client {:.0} req/s, client->server {:.0} req/s",
        per_sec(calls as f64, down),
        per_sec(calls as f64, up)
    );
    println!(
        "  rest streams     {body_mib} MiB each: echo {:.1} MiB/s each way, upload {:.1} MiB/s",
        per_sec(f64::from(body_mib), echo),
        per_sec(f64::from(body_mib), upload)
    );
    println!(
        "  client events    {}",
        count(&cev.log, |e| client_line(e)
            .map_or("rtt".into(), |l| first_word(&l)))
    );
    println!(
        "  server events    {}",
        count(&sev.log, |e| first_word(&server_line(e)))
    );
    println!(
        "  took             {}",
        humantime::format_duration(round_ms(started.elapsed()))
    );
    Ok(())
}

/// One measured REST line: `  server -> client POST /echo    <what>   <time>  <rate>`.
fn measured(direction: &str, route: &str, what: &str, took: Duration, rate: String) {
    println!(
        "  {direction} {route:<13} {what:<44} {:>10}  {rate}",
        ms(took)
    );
}

fn per_sec(amount: f64, took: Duration) -> f64 {
    amount / took.as_secs_f64().max(1e-9)
}

fn opt(v: Option<u32>) -> String {
    v.map_or("-".into(), |v| v.to_string())
}

fn first_word(line: &str) -> String {
    line.split(' ').next().unwrap_or("").to_owned()
}

/// "connected 1, rtt 5, …" in first-seen order.
fn count<T>(log: &[T], name: impl Fn(&T) -> String) -> String {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for e in log {
        let n = name(e);
        match counts.iter_mut().find(|(k, _)| *k == n) {
            Some((_, c)) => *c += 1,
            None => counts.push((n, 1)),
        }
    }
    counts
        .iter()
        .map(|(k, c)| format!("{k} {c}"))
        .collect::<Vec<_>>()
        .join(", ")
}
