//! Load run: resident memory per idle connection, over real loopback sockets.
//!
//! `idle_connections tcp N` opens N plain TCP connection pairs (both ends in this
//! process): the floor any transport pays. `idle_connections tether N` opens N Tether
//! connections (server and client side both in this process, handshake done, heartbeat
//! running) through `tether-tokio`. Each prints the growth of its resident set divided by
//! N. Run the two as separate processes so that one's freed memory does not hide the
//! other's; compare them as a ratio.

use std::time::{Duration, Instant};

use tether_tokio::client::{Client, ClientConfig, ClientEvent};
use tether_tokio::server::{Server, ServerConfig};
use tokio::net::{TcpListener, TcpStream};

/// Resident set size of this process, in KiB (Linux `/proc/self/status`).
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("procfs");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS line")
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

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let kind = args.next().unwrap_or_else(|| "tether".into());
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2000);
    let before = rss_kib();
    let start = Instant::now();
    let keep: Box<dyn std::any::Any> = match kind.as_str() {
        "tcp" => Box::new(tcp(n).await),
        "tether" => Box::new(tether(n).await),
        // Only the client side here; the server is another process (e.g. `tether server`).
        "clients" => Box::new(clients(&std::env::var("IDLE_URL").expect("IDLE_URL"), n).await),
        other => panic!("usage: idle_connections tcp|tether|clients [N], not {other}"),
    };
    let took = start.elapsed();
    // Let the connections settle (heartbeats, buffers) before measuring.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let grown = rss_kib().saturating_sub(before);
    println!(
        "{kind}: {n} connections in {took:.2?}; resident set grew {grown} KiB = {:.1} KiB per connection",
        grown as f64 / n as f64
    );
    if std::env::var_os("IDLE_SMAPS").is_some() {
        print_top_mappings();
    }
    drop(keep);
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
