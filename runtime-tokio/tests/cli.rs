//! The `tether` subcommands as processes: demo-server exits 0 on SIGTERM after closing clients
//! with 1001; demo-client prints, and reconnects when the server restarts.
#![cfg(unix)]

mod common;

use common::{sigterm, GUARD};

use std::process::Stdio;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tether_tokio::compat::demo_server::{DemoServer, DemoServerConfig};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{ChildStderr, ChildStdout};
use tokio_tungstenite::tungstenite::Message;

async fn line_with<R: tokio::io::AsyncBufRead + Unpin>(
    lines: &mut Lines<R>,
    needle: &str,
) -> String {
    tokio::time::timeout(GUARD, async {
        loop {
            let line = lines.next_line().await.unwrap().expect("output ended");
            if line.contains(needle) {
                return line;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no line containing {needle:?}"))
}

#[tokio::test]
async fn demo_server_sigterm_closes_clients_with_1001_and_exits_0() {
    let mut child = common::tether(&["demo-server", "--listen", "127.0.0.1:0"], Stdio::piped());
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = line_with(&mut out, "listening on").await;
    let url = line.rsplit(' ').next().unwrap().to_owned();
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    ws.send(Message::text(r#"{"type":"echo_request","echo":"cli"}"#))
        .await
        .unwrap();
    let answer = tokio::time::timeout(GUARD, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(answer.to_text().unwrap().contains("cli"));
    sigterm(&child);
    let close = tokio::time::timeout(GUARD, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let Message::Close(Some(frame)) = close else {
        panic!("{close:?}")
    };
    assert_eq!(
        (u16::from(frame.code), frame.reason.as_str()),
        (1001, "server shutdown")
    );
    while let Ok(Some(Ok(_))) = tokio::time::timeout(GUARD, ws.next()).await {}
    let status = tokio::time::timeout(GUARD, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn demo_client_prints_and_reconnects_after_server_restart() {
    let config = DemoServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        heartbeat_interval: Duration::from_millis(100),
        ..DemoServerConfig::default()
    };
    let server = DemoServer::start(config.clone()).await.unwrap();
    let addr = server.local_addr();
    let url = format!("ws://{addr}/");
    let mut child = common::tether(
        &[
            "demo-client",
            &url,
            "--echo",
            "hi",
            "--max-reconnect-delay",
            "200ms",
        ],
        Stdio::piped(),
    );
    let mut out: Lines<BufReader<ChildStdout>> =
        BufReader::new(child.stdout.take().unwrap()).lines();
    let mut err: Lines<BufReader<ChildStderr>> =
        BufReader::new(child.stderr.take().unwrap()).lines();
    line_with(&mut err, "connected").await;
    line_with(&mut out, r#""reqId":"sub-1","status":"OK""#).await;
    line_with(
        &mut out,
        r#""reqId":"echo-1","status":"OK","data":{"echo":"hi"}"#,
    )
    .await;
    line_with(&mut out, r#""type":"heartbeat""#).await;

    server.shutdown(GUARD).await.unwrap();
    line_with(&mut err, "closed by Server: 1001 server shutdown").await;
    let server = DemoServer::start(DemoServerConfig {
        listen: addr,
        ..config
    })
    .await
    .unwrap();
    line_with(&mut err, "reconnected").await;
    line_with(&mut out, r#""reqId":"echo-2","status":"OK""#).await;
    line_with(&mut out, r#""type":"heartbeat""#).await;

    sigterm(&child);
    let status = tokio::time::timeout(GUARD, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
    server.shutdown(GUARD).await.unwrap();
}
