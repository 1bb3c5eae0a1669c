//! `tether server --metrics ADDR` and `tether client --metrics ADDR` as processes.
#![cfg(unix)]

mod common;

use common::{sigterm, GUARD};

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};

async fn line_with(lines: &mut Lines<BufReader<ChildStdout>>, prefix: &str) -> String {
    tokio::time::timeout(GUARD, async {
        loop {
            match lines.next_line().await.unwrap() {
                Some(line) if line.starts_with(prefix) => return line,
                Some(_) => {}
                None => panic!("output ended before a line starting with {prefix:?}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no line starting with {prefix:?}"))
}

fn stdout(child: &mut Child) -> Lines<BufReader<ChildStdout>> {
    BufReader::new(child.stdout.take().unwrap()).lines()
}

/// The body of `GET /metrics` at the URL a `metrics on http://ADDR/metrics` line names.
async fn scrape(line: &str) -> String {
    let addr = line
        .trim_start_matches("metrics on http://")
        .trim_end_matches("/metrics");
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut raw = String::new();
    tokio::time::timeout(GUARD, tcp.read_to_string(&mut raw))
        .await
        .unwrap()
        .unwrap();
    assert!(raw.starts_with("HTTP/1.1 200 OK"), "{raw}");
    raw
}

#[tokio::test]
async fn server_and_client_serve_metrics_with_the_metrics_flag() {
    let mut server = common::tether(
        &[
            "server",
            "--listen",
            "127.0.0.1:0",
            "--metrics",
            "127.0.0.1:0",
            "--recv-budget",
            "8MiB",
        ],
        Stdio::inherit(),
    );
    let mut slines = stdout(&mut server);
    let listening = line_with(&mut slines, "listening ").await;
    let url = listening.trim_start_matches("listening ").to_owned();
    let server_metrics = line_with(&mut slines, "metrics on http://127.0.0.1:").await;
    assert!(scrape(&server_metrics)
        .await
        .contains("tether_connections 0\n"));

    let mut client = common::tether(
        &[
            "client",
            &url,
            "--metrics",
            "127.0.0.1:0",
            "--send-budget",
            "1MiB",
        ],
        Stdio::inherit(),
    );
    let mut clines = stdout(&mut client);
    let client_metrics = line_with(&mut clines, "metrics on http://127.0.0.1:").await;
    line_with(&mut clines, "connected ").await;
    line_with(&mut slines, "received ").await;
    let text = scrape(&server_metrics).await;
    assert!(text.contains("tether_connections 1\n"), "{text}");
    assert!(
        text.contains(r#"tether_handshakes_total{outcome="accepted"} 1"#),
        "{text}"
    );
    // The budgets each process was given: the one set on its command line, the default
    // for the other.
    assert!(
        text.contains("tether_budget_limit_bytes{budget=\"receive\"} 8388608\n")
            && text.contains("tether_budget_limit_bytes{budget=\"send\"} 67108864\n"),
        "{text}"
    );
    let text = scrape(&client_metrics).await;
    assert!(text.contains("tether_connections 1\n"), "{text}");
    assert!(
        text.contains("tether_budget_limit_bytes{budget=\"send\"} 1048576\n")
            && text.contains("tether_budget_limit_bytes{budget=\"receive\"} 268435456\n"),
        "{text}"
    );

    sigterm(&client);
    assert!(tokio::time::timeout(GUARD, client.wait())
        .await
        .unwrap()
        .unwrap()
        .success());
    sigterm(&server);
    assert!(tokio::time::timeout(GUARD, server.wait())
        .await
        .unwrap()
        .unwrap()
        .success());
}
