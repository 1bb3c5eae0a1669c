//! Load run: resident memory per idle connection, over real loopback sockets.
//!
//! ```text
//! idle_connections [--json] tcp|tether|clients|serve [N]
//! idle_connections [--json] N
//! ```
//!
//! One measurement per process:
//!
//! - `tcp N` opens N plain TCP connection pairs (both ends in this process): the floor any
//!   transport pays.
//! - `tether N` opens N Tether connections (server and client side both in this process,
//!   handshake done, heartbeat running) through `tether-tokio`.
//! - `clients N` opens only the client side of N Tether connections to the server at
//!   `IDLE_URL` (another process, e.g. `tether server` or `idle_connections serve`).
//! - `serve` binds a Tether server on `127.0.0.1:0`, prints its URL on one line and holds
//!   it until its standard input closes (nothing else).
//!
//! Each of the first three prints the growth of its resident set (`VmRSS`), measured 2 s
//! after the last connection came up, divided by N. Run them as separate processes so that
//! one's freed memory does not hide the other's; compare them as a ratio.
//!
//! **The summary, `idle_connections N`** (`--json`: one JSON object on stdout, the human
//! text on stderr) runs each measurement in a child process of its own (this same binary):
//!
//! - `server_kib_per_conn`, the server side alone: a `serve` child holds the server; a
//!   `clients N` child connects N clients to it. The server child's resident set is read
//!   from `/proc/<pid>/status` once it is listening and before any client connects, and
//!   again after the clients child reports (all N up, then its 2 s of idling, connections
//!   still open: it holds them until the summary closes its standard input). The growth
//!   divided by N is what one accepted connection costs a server process, heartbeat
//!   running, with no client-side memory in the same process to confuse it.
//! - `client_kib_per_conn`: the clients child's own growth divided by N, in the same run.
//! - `kib_per_pair`: the sum of the two, what one connection costs both ends together.
//! - `one_process_kib_per_pair` and `tcp_kib_per_pair`: `tether` and `tcp` children (both
//!   ends in one process, the method of the earlier runs in benches/RESULTS.md, and its
//!   floor). A process holding both ends needs two descriptors per connection, so these two
//!   run with N capped by the open-files limit (`one_process_connections` says how many).
//!
//! Results and the commands that produced them: benches/RESULTS.md.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tether_tokio::client::{Client, ClientConfig, ClientEvent};
use tether_tokio::server::{Server, ServerConfig};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

/// The environment variable that makes a measurement hold its connections, after printing
/// its result, until its standard input closes (set by the summary for its children).
const HOLD: &str = "IDLE_HOLD_STDIN";

/// Resident set size of a process, in KiB (Linux `/proc/<pid>/status`; `self` for this one).
fn rss_kib(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("procfs");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS line")
}

/// The soft limit on open files of this process (`/proc/self/limits`).
fn open_files_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}
async fn tcp(n: usize) -> (Vec<TcpStream>, Vec<TcpStream>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accept = tokio::spawn(async move {
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(listener.accept().await.expect("accept").0);
        }
        v
    });
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        clients.push(TcpStream::connect(addr).await.expect("connect"));
    }
    (clients, accept.await.expect("acceptor"))
}

async fn tether(n: usize) -> (Server, Vec<Client>) {
    let (server, _events) = Server::bind(ServerConfig::new("127.0.0.1:0".parse().expect("addr")))
        .await
        .expect("bind");
    let url = format!("ws://{}/", server.local_addr());
    (server, clients(&url, n).await)
}

/// `n` clients of the server at `url` (which may be another process).
async fn clients(url: &str, n: usize) -> Vec<Client> {
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        let mut config = ClientConfig::new("{}");
        if let Some(cap) = std::env::var("IDLE_EVENT_CAPACITY")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            config.event_capacity = cap;
        }
        let (client, mut events) = Client::connect(url, config).expect("connect");
        loop {
            match tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
                Ok(Some(ClientEvent::Connected { .. })) => break,
                Ok(Some(_)) => continue,
                other => panic!("no connection: {other:?}"),
            }
        }
        clients.push(client);
    }
    clients
}

/// Binds a server, prints its URL and holds it until standard input closes.
async fn serve() {
    let (server, _events) = Server::bind(ServerConfig::new("127.0.0.1:0".parse().expect("addr")))
        .await
        .expect("bind");
    println!("ws://{}/", server.local_addr());
    std::io::stdout().flush().expect("stdout");
    wait_for_stdin_close().await;
    drop(server);
}

async fn wait_for_stdin_close() {
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 64];
    while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
}

/// One measurement in this process: `tcp`, `tether` or `clients`.
async fn measure(kind: &str, n: usize, json: bool) {
    let before = rss_kib("self");
    let start = Instant::now();
    let keep: Box<dyn std::any::Any> = match kind {
        "tcp" => Box::new(tcp(n).await),
        "tether" => Box::new(tether(n).await),
        // Only the client side here; the server is another process (e.g. `tether server`).
        "clients" => Box::new(clients(&std::env::var("IDLE_URL").expect("IDLE_URL"), n).await),
        other => panic!("{USAGE}; not {other}"),
    };
    let took = start.elapsed();
    // Let the connections settle (heartbeats, buffers) before measuring.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let grown = rss_kib("self").saturating_sub(before);
    let per = grown as f64 / n as f64;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "mode": kind,
                "connections": n,
                "setup_s": took.as_secs_f64(),
                "rss_growth_kib": grown,
                "kib_per_conn": per,
            })
        );
    } else {
        println!(
            "{kind}: {n} connections in {took:.2?}; resident set grew {grown} KiB = {per:.1} KiB per connection"
        );
    }
    std::io::stdout().flush().expect("stdout");
    if std::env::var_os("IDLE_SMAPS").is_some() {
        print_top_mappings();
    }
    if std::env::var_os(HOLD).is_some() {
        wait_for_stdin_close().await;
    }
    drop(keep);
}

const USAGE: &str =
    "usage: idle_connections [--json] tcp|tether|clients|serve [N], or idle_connections [--json] N";

fn main() {
    let mut json = false;
    let mut rest = vec![];
    for a in std::env::args().skip(1) {
        if a == "--json" {
            json = true;
        } else {
            rest.push(a);
        }
    }
    let first = rest.first().cloned().unwrap_or_else(|| "tether".into());
    if let Ok(n) = first.parse::<usize>() {
        return summary(n.max(1), json);
    }
    let n: usize = rest.get(1).and_then(|a| a.parse().ok()).unwrap_or(2000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    match first.as_str() {
        "serve" => runtime.block_on(serve()),
        kind => runtime.block_on(measure(kind, n, json)),
    }
}

/// Starts a measurement child (`--json KIND N`) and reads its result; the child holds its
/// connections until the returned guard is dropped.
fn spawn_measure(kind: &str, n: usize, url: Option<&str>) -> (ChildGuard, serde_json::Value) {
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = Command::new(exe);
    cmd.args(["--json", kind, &n.to_string()])
        .env(HOLD, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    if let Some(url) = url {
        cmd.env("IDLE_URL", url);
    }
    let mut child = ChildGuard(cmd.spawn().expect("spawn a measurement"));
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read the result");
    let value = serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("{kind} {n}: not a result ({e}): {line:?}"));
    (child, value)
}

/// A child process that is ended (its standard input closed, then waited for) when dropped.
struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        drop(self.0.stdin.take());
        let _ = self.0.wait();
    }
}

fn per_conn(v: &serde_json::Value) -> f64 {
    v["kib_per_conn"].as_f64().expect("kib_per_conn")
}

/// The summary: each measurement in a child process (see the module docs).
fn summary(n: usize, json: bool) {
    let limit = open_files_limit().unwrap_or(1024);
    // Both ends in one process: two descriptors per connection, plus some for the runtime.
    let n_one = n.min(limit.saturating_sub(200) / 2).max(1);
    let say = |s: String| {
        if json {
            eprintln!("{s}")
        } else {
            println!("{s}")
        }
    };
    say(format!(
        "idle_connections: {n} connections (open-files limit {limit}; both ends in one process: {n_one})"
    ));

    let (child, tcp) = spawn_measure("tcp", n_one, None);
    drop(child);
    say(format!(
        "  tcp pairs, one process: {:.1} KiB per pair",
        per_conn(&tcp)
    ));
    let (child, one) = spawn_measure("tether", n_one, None);
    drop(child);
    say(format!(
        "  tether pairs, one process: {:.1} KiB per pair",
        per_conn(&one)
    ));

    // The server alone, and the clients alone, in two processes.
    let exe = std::env::current_exe().expect("current_exe");
    let mut server = ChildGuard(
        Command::new(exe)
            .arg("serve")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn the server"),
    );
    let pid = server.0.id().to_string();
    let mut url = String::new();
    BufReader::new(server.0.stdout.take().expect("stdout"))
        .read_line(&mut url)
        .expect("the server's URL");
    let url = url.trim().to_owned();
    let server_before = rss_kib(&pid);
    let (clients, clients_result) = spawn_measure("clients", n, Some(&url));
    // Read while the clients still hold their connections open.
    let server_after = rss_kib(&pid);
    drop(clients);
    drop(server);
    let server_per = server_after.saturating_sub(server_before) as f64 / n as f64;
    let client_per = per_conn(&clients_result);
    say(format!(
        "  tether, two processes: server {server_per:.1} KiB per connection (resident {server_before} -> {server_after} KiB), client {client_per:.1} KiB per connection; {:.1} KiB per pair",
        server_per + client_per
    ));
    if json {
        println!(
            "{}",
            serde_json::json!({
                "kib_per_pair": server_per + client_per,
                "server_kib_per_conn": server_per,
                "client_kib_per_conn": client_per,
                "connections": n,
                "server_rss_before_kib": server_before,
                "server_rss_after_kib": server_after,
                "one_process_kib_per_pair": per_conn(&one),
                "tcp_kib_per_pair": per_conn(&tcp),
                "one_process_connections": n_one,
            })
        );
    }
}

/// The mappings holding the most resident memory (diagnostics, with IDLE_SMAPS=1).
fn print_top_mappings() {
    let smaps = std::fs::read_to_string("/proc/self/smaps").expect("procfs");
    let mut maps: Vec<(u64, String)> = vec![];
    let mut name = String::new();
    for line in smaps.lines() {
        if let Some(rss) = line.strip_prefix("Rss:") {
            let kib = rss
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .unwrap_or(0);
            maps.push((kib, name.clone()));
        } else if is_mapping_header(line) {
            name = line.to_owned();
        }
    }
    maps.sort_by_key(|m| std::cmp::Reverse(m.0));
    let threads = std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(0);
    println!("threads: {threads}");
    let anon: u64 = maps
        .iter()
        .filter(|(_, n)| n.split_whitespace().count() < 6)
        .map(|m| m.0)
        .sum();
    println!(
        "anonymous mappings: {anon} KiB in {} mappings",
        maps.iter()
            .filter(|(_, n)| n.split_whitespace().count() < 6)
            .count()
    );
    for (kib, name) in maps.iter().take(6) {
        println!("{kib:>8} KiB  {name}");
    }
}

/// A mapping's first line in smaps starts with its address range, `start-end`.
fn is_mapping_header(line: &str) -> bool {
    line.split_whitespace()
        .next()
        .and_then(|range| range.split_once('-'))
        .is_some_and(|(a, b)| {
            !a.is_empty() && a.chars().chain(b.chars()).all(|c| c.is_ascii_hexdigit())
        })
}
