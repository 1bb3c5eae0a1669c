//! Metrics over real sockets (issue 9, item 10): a server with metrics, a client doing a few
//! requests each way, and `/metrics` scraped over HTTP.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use http::{Request, StatusCode};
use tether_proto::connection::Config;
use tether_tokio::client::{Client, ClientConfig, ClientEvent};
use tether_tokio::metrics::{Metrics, MetricsServer};
use tether_tokio::rest::{Body, Timeout};
use tether_tokio::server::{Server, ServerConfig, ServerEvent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const GUARD: Duration = Duration::from_secs(30);

/// `GET path` over a plain socket: the status line, the content type and `# TYPE` lines,
/// and the samples (`name{labels}` → value).
async fn scrape(addr: std::net::SocketAddr, path: &str) -> (String, String, HashMap<String, f64>) {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut raw = String::new();
    tokio::time::timeout(GUARD, tcp.read_to_string(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.lines().next().unwrap().to_owned();
    let content_type = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type: ")
                .map(str::to_owned)
        })
        .unwrap_or_default();
    let types: Vec<&str> = body.lines().filter(|l| l.starts_with("# TYPE ")).collect();
    let samples = body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect();
    (
        status,
        format!("{content_type}\n{}", types.join("\n")),
        samples,
    )
}

/// Scrapes until `done` says the samples are there (bounded by [`GUARD`]).
async fn scrape_until(
    addr: std::net::SocketAddr,
    done: impl Fn(&HashMap<String, f64>) -> bool,
) -> HashMap<String, f64> {
    tokio::time::timeout(GUARD, async {
        loop {
            let (_, _, samples) = scrape(addr, "/metrics").await;
            if done(&samples) {
                return samples;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the samples never showed")
}

fn value(samples: &HashMap<String, f64>, key: &str) -> f64 {
    *samples
        .get(key)
        .unwrap_or_else(|| panic!("no sample {key} in {samples:#?}"))
}

#[tokio::test]
async fn a_scrape_shows_connections_handshakes_requests_and_bytes() {
    let mut server_config = ServerConfig::new("127.0.0.1:0".parse().unwrap());
    // A short heartbeat, so that round trips are measured while the test runs.
    server_config.connection = Arc::new(
        Config::builder()
            .heartbeat(Duration::from_millis(50), Duration::from_secs(5))
            .build()
            .unwrap(),
    );
    let (server, mut server_events) = Server::bind(server_config).await.unwrap();
    server.serve(
        Router::new()
            .route("/hi", get(|| async { "hi" }))
            .route("/never", get(std::future::pending::<&'static str>)),
    );
    let exporter = MetricsServer::bind("127.0.0.1:0".parse().unwrap(), server.metrics())
        .await
        .unwrap();

    let client_metrics = Metrics::new();
    let mut config = ClientConfig::new("null");
    config.metrics = Some(client_metrics.clone());
    let url = format!("ws://{}/", server.local_addr());
    let (client, mut events) = Client::connect(&url, config).unwrap();
    client.serve(Router::new().route("/ping", get(|| async { "pong" })));
    let id = loop {
        match tokio::time::timeout(GUARD, events.recv()).await.unwrap() {
            Some(ClientEvent::Connected { id, .. }) => break id,
            Some(_) => continue,
            None => panic!("client ended"),
        }
    };
    loop {
        match tokio::time::timeout(GUARD, server_events.recv())
            .await
            .unwrap()
        {
            Some(ServerEvent::Received { .. }) => break,
            Some(_) => continue,
            None => panic!("server events ended"),
        }
    }

    // Three requests the server serves, one it answers 404, one it calls on the client.
    for _ in 0..3 {
        let response = client
            .peer()
            .request(Request::get("/hi").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    let response = client
        .peer()
        .request(Request::get("/nope").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let response = server
        .peer(&id)
        .unwrap()
        .request(Request::get("/ping").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let (status, types, samples) = scrape(exporter.local_addr(), "/metrics").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(types.starts_with("application/openmetrics-text"), "{types}");
    for family in [
        "tether_connections gauge",
        "tether_detached_sessions gauge",
        "tether_handshakes counter",
        "tether_streams_open gauge",
        "tether_requests counter",
        "tether_bytes counter",
        "tether_buffered_bytes gauge",
        "tether_limit_hits counter",
        "tether_stream_timeouts counter",
        "tether_heartbeat_rtt_seconds histogram",
        "tether_budget_used_bytes gauge",
        "tether_budget_limit_bytes gauge",
    ] {
        assert!(
            types.contains(&format!("# TYPE {family}")),
            "{family}\n{types}"
        );
    }
    assert_eq!(value(&samples, "tether_connections"), 1.0);
    assert_eq!(value(&samples, "tether_detached_sessions"), 0.0);
    // The server's budgets: the defaults, 64 MiB to send and 256 MiB of window growth.
    assert_eq!(
        value(&samples, r#"tether_budget_limit_bytes{budget="send"}"#),
        (64u64 << 20) as f64
    );
    assert_eq!(
        value(&samples, r#"tether_budget_limit_bytes{budget="receive"}"#),
        (256u64 << 20) as f64
    );
    assert_eq!(
        value(&samples, r#"tether_handshakes_total{outcome="accepted"}"#),
        1.0
    );
    assert_eq!(
        value(
            &samples,
            r#"tether_requests_total{direction="served",class="2xx"}"#
        ),
        3.0
    );
    assert_eq!(
        value(
            &samples,
            r#"tether_requests_total{direction="served",class="4xx"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &samples,
            r#"tether_requests_total{direction="called",class="2xx"}"#
        ),
        1.0
    );
    assert!(value(&samples, r#"tether_bytes_total{direction="sent"}"#) > 0.0);
    assert!(value(&samples, r#"tether_bytes_total{direction="received"}"#) > 0.0);

    // The client's own registry saw its side.
    let text = client_metrics.encode();
    assert!(text.contains("tether_connections 1\n"), "{text}");
    assert!(
        text.contains(r#"tether_requests_total{direction="called",class="2xx"} 3"#),
        "{text}"
    );

    // A request whose deadline passes: counted on both sides.
    let mut request = Request::get("/never").body(Body::empty()).unwrap();
    request
        .extensions_mut()
        .insert(Timeout(Duration::from_millis(100)));
    assert!(client.peer().request(request).await.is_err());
    let timeouts = "tether_stream_timeouts_total";
    scrape_until(exporter.local_addr(), |s| s.get(timeouts) == Some(&1.0)).await;
    assert!(client_metrics
        .encode()
        .contains("tether_stream_timeouts_total 1\n"));

    // Heartbeat round trips fill the histogram of the side that probes: on a connection
    // with nothing else to say, the client (spec/protocol.md §8.2).
    let client_exporter =
        MetricsServer::bind("127.0.0.1:0".parse().unwrap(), client_metrics.clone())
            .await
            .unwrap();
    let count = "tether_heartbeat_rtt_seconds_count";
    scrape_until(client_exporter.local_addr(), |s| {
        s.get(count).is_some_and(|&n| n > 0.0)
    })
    .await;

    // Other paths are 404.
    let (status, _, _) = scrape(exporter.local_addr(), "/").await;
    assert_eq!(status, "HTTP/1.1 404 Not Found");

    // The client leaves: the connection is gone from the gauge, its close counted.
    client.close().await;
    loop {
        match tokio::time::timeout(GUARD, server_events.recv())
            .await
            .unwrap()
        {
            Some(ServerEvent::Closed { .. }) => break,
            Some(_) => continue,
            None => panic!("server events ended"),
        }
    }
    let (_, _, samples) = scrape(exporter.local_addr(), "/metrics").await;
    assert_eq!(value(&samples, "tether_connections"), 0.0);
    assert_eq!(
        value(
            &samples,
            r#"tether_closes_total{code="1000",initiator="peer"}"#
        ),
        1.0
    );
    assert_eq!(value(&samples, "tether_streams_open"), 0.0);
    assert_eq!(
        value(&samples, r#"tether_limit_hits_total{limit="stream_churn"}"#),
        0.0
    );
    server.shutdown(GUARD).await.unwrap();
}
