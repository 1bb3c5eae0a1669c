//! `tether demo`, `tether server` and `tether client` as processes.
#![cfg(unix)]

mod common;

use common::{sigterm, GUARD};

use std::process::Stdio;
use std::time::Instant;

use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

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

#[tokio::test]
async fn demo_exits_zero_quickly_and_resumes_the_same_id() {
    let started = Instant::now();
    let output = tokio::time::timeout(
        GUARD,
        Command::new(env!("CARGO_BIN_EXE_tether"))
            .arg("demo")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("demo ran longer than 15 s")
    .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(started.elapsed() < GUARD);
    assert!(text.contains("same id: yes"), "{text}");
    assert!(text.contains("client events    connected 1"), "{text}");
    // REST both ways: one call each, many at once, a streamed body each way, and calls
    // that still work after the cut (one of them made while the client reconnected).
    let id = line_after(&text, "  connection id    ");
    let id = id.split(' ').next().unwrap();
    for expected in [
        "  server -> client GET /status   200 {\"device\":\"demo-sensor\",\"uptime_ms\":"
            .to_owned(),
        format!("  client -> server GET /time     200 {{\"connection\":\"{id}\",\"unix_ms\":"),
        "  server -> client POST /echo    1000 at once: all 200, every body back".to_owned(),
        "  client -> server POST /upload  1000 at once: all 200, every count right".to_owned(),
        "  server -> client POST /echo    16 MiB streamed there and back, checked".to_owned(),
        "  client -> server POST /upload  16 MiB streamed, count and sum right".to_owned(),
        "  client -> server GET /time     made while reconnecting: 200 after ".to_owned(),
        "  server -> client GET /status   after the resume, same Peer: 200 ".to_owned(),
        "  rest requests    1000 at once each way: server->client ".to_owned(),
        "  rest streams     16 MiB each: echo ".to_owned(),
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(&expected)),
            "no line starting with {expected:?} in\n{text}"
        );
    }
    // The order tells the story: REST before the cut, the waiting call after the resume.
    let at = |s: &str| text.find(s).unwrap_or_else(|| panic!("{s:?} missing"));
    assert!(at("\nrest  ") < at("\ntransport cut"));
    assert!(at("resumed ") < at("made while reconnecting"));
    assert!(at("made while reconnecting") < at("\nclose"));
}

#[tokio::test]
async fn demo_with_fewer_requests_and_a_smaller_body_says_so() {
    let output = tokio::time::timeout(
        GUARD,
        Command::new(env!("CARGO_BIN_EXE_tether"))
            .args(["demo", "--rtts", "1", "--requests", "7", "--body-mib", "1"])
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("demo ran longer than 15 s")
    .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("POST /echo    7 at once: all 200"), "{text}");
    assert!(text.contains("POST /upload  1 MiB streamed"), "{text}");
    assert!(
        text.contains("rest requests    7 at once each way"),
        "{text}"
    );
    assert!(text.contains("heartbeat rtt    n=1 "), "{text}");
    // Out of range: a usage error, before anything runs.
    let output = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["demo", "--requests", "1001"])
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
}

/// The rest of the line that starts with `prefix`.
fn line_after<'a>(text: &'a str, prefix: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?} in\n{text}"))
}

#[tokio::test]
async fn server_and_client_print_their_events() {
    let mut server = common::tether(
        &[
            "server",
            "--listen",
            "127.0.0.1:0",
            "--heartbeat-interval",
            "200ms",
            "--heartbeat-timeout",
            "1s",
            "--allowed-origin",
            "https://app.example",
        ],
        Stdio::inherit(),
    );
    let mut slines = stdout(&mut server);
    let listening = line_with(&mut slines, "listening ").await;
    let url = listening.trim_start_matches("listening ").to_owned();
    assert!(url.starts_with("ws://127.0.0.1:"), "{url}");
    // --allowed-origin: a browser from elsewhere is refused before the upgrade.
    let addr = url
        .trim_start_matches("ws://")
        .trim_end_matches('/')
        .to_owned();
    assert_eq!(upgrade_status(&addr, "https://evil.example").await, 403);
    assert_eq!(upgrade_status(&addr, "https://app.example").await, 101);

    let mut client = common::tether(
        &["client", &url, "--metadata", r#"{"user":"ada"}"#],
        Stdio::inherit(),
    );
    let mut clines = stdout(&mut client);
    let connected = line_with(&mut clines, "connected ").await;
    let id = connected.trim_start_matches("connected ").to_owned();
    let received = line_with(&mut slines, "received ").await;
    assert!(
        received.starts_with(&format!("received {id} {{\"user\":\"ada\"}}")),
        "{received}"
    );

    sigterm(&client);
    let closed = line_with(&mut clines, "closed ").await;
    assert!(closed.starts_with(&format!("closed {id} 1000")), "{closed}");
    let status = tokio::time::timeout(GUARD, client.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    let closed = line_with(&mut slines, "closed ").await;
    assert!(closed.starts_with(&format!("closed {id} 1000")), "{closed}");

    sigterm(&server);
    let status = tokio::time::timeout(GUARD, server.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn client_with_invalid_metadata_is_a_usage_error() {
    let output = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["client", "ws://127.0.0.1:1/", "--metadata", "{not json"])
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("not JSON"));
}

/// Sends a WebSocket upgrade request offering `tether.v1` with `origin` and returns the
/// response's status code.
async fn upgrade_status(addr: &str, origin: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Protocol: tether.v1\r\nOrigin: {origin}\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut head = vec![0; 12];
    tokio::time::timeout(GUARD, tcp.read_exact(&mut head))
        .await
        .unwrap()
        .unwrap();
    let line = String::from_utf8_lossy(&head);
    line.trim_start_matches("HTTP/1.1 ")
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("status line {line:?}"))
}

#[tokio::test]
async fn server_and_client_speak_wss_with_the_tls_flags() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = std::env::temp_dir().join(format!("tether-cli-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    let (cert_arg, key_arg) = (cert_path.to_str().unwrap(), key_path.to_str().unwrap());

    let mut server = common::tether(
        &[
            "server",
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            cert_arg,
            "--tls-key",
            key_arg,
        ],
        Stdio::inherit(),
    );
    let mut slines = stdout(&mut server);
    let listening = line_with(&mut slines, "listening ").await;
    let url = listening.trim_start_matches("listening ").to_owned();
    assert!(url.starts_with("wss://127.0.0.1:"), "{url}");
    // The certificate names localhost.
    let url = url.replace("127.0.0.1", "localhost");

    let mut client = common::tether(&["client", &url, "--tls-ca", cert_arg], Stdio::inherit());
    let mut clines = stdout(&mut client);
    let connected = line_with(&mut clines, "connected ").await;
    let id = connected.trim_start_matches("connected ").to_owned();
    let received = line_with(&mut slines, "received ").await;
    assert!(
        received.starts_with(&format!("received {id}")),
        "{received}"
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
    let _ = std::fs::remove_dir_all(&dir);
}
