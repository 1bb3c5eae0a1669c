//! Prometheus metrics of a Tether endpoint, in the OpenMetrics text format that Prometheus
//! scrapes.
//!
//! A [`Metrics`] is a cheap, cloneable handle on one registry. Give it to a server
//! ([`ServerConfig::metrics`](crate::server::ServerConfig::metrics)) or a client
//! ([`ClientConfig::metrics`](crate::client::ClientConfig::metrics)), and serve it with
//! [`MetricsServer`] (what `tether server --metrics ADDR` does) or encode it yourself with
//! [`Metrics::encode`]. The runtime fills it from the connection machine's events and
//! getters; the machine itself knows nothing of metrics.
//!
//! Families with labels show from their first sample, except those whose label values are
//! fixed (handshakes, bytes, limit hits), which start at zero.
//!
//! | family | type | labels |
//! |---|---|---|
//! | `tether_connections` | gauge | established connections now |
//! | `tether_detached_sessions` | gauge | server: sessions waiting to be resumed |
//! | `tether_handshakes_total` | counter | `outcome`: accepted, resumed, rejected, failed |
//! | `tether_streams_open` | gauge | streams open now, both directions |
//! | `tether_requests_total` | counter | `direction`: served (a peer's request we answered), called (our request the peer answered); `class`: 1xx … 5xx |
//! | `tether_resets_total` | counter | `direction`: sent, received; `code`: the RESET code's name (deadlines apart) |
//! | `tether_stream_timeouts_total` | counter | streams whose deadline passed (spec/protocol.md §10.6) |
//! | `tether_closes_total` | counter | `code`: close code (`none` for a transport lost without one); `initiator`: local, peer |
//! | `tether_bytes_total` | counter | `direction`: sent, received (WebSocket payload bytes) |
//! | `tether_buffered_bytes` | gauge | body bytes queued toward peers |
//! | `tether_budget_used_bytes` | gauge | `budget`: send (body bytes queued toward peers, [`SendBudget`]), receive (receive-window growth granted to peers, [`RecvBudget`], spec/protocol.md §10.3.1): what is taken of the process-wide budgets of the servers and clients that record here |
//! | `tether_budget_limit_bytes` | gauge | `budget`: send, receive: the limits of those budgets (their sum, when several distinct budgets record here) |
//! | `tether_limit_hits_total` | counter | `limit`: stream_churn, probe_rate (connections this side closed with 4007) |
//! | `tether_heartbeat_rtt_seconds` | histogram | round trips of this side's heartbeat probes (a server's idle connections give none: their clients probe, spec/protocol.md §8.2) |
//!
//! ```
//! use tether_tokio::metrics::Metrics;
//!
//! let metrics = Metrics::new();
//! let text = metrics.encode();
//! assert!(text.contains("# TYPE tether_connections gauge"));
//! assert!(text.ends_with("# EOF\n"));
//! ```

use std::convert::Infallible;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tether_proto::connection::{Config, Connection, ConnectionError, Event, Initiator};
use tether_proto::streams::{Outcome, RecvBudget, SendBudget, StreamEvent};
use tether_proto::{CloseCode, ResetCode};
use tokio::net::TcpListener;

/// Which way a completed request went, for `tether_requests_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RequestDirection {
    /// A peer's request, answered here.
    Served,
    /// A request of this side, answered by the peer.
    Called,
}

/// The content type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    direction: &'static str,
    class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResetLabels {
    direction: &'static str,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CloseLabels {
    code: String,
    initiator: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabel {
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabel {
    limit: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BudgetLabel {
    budget: &'static str,
}

type Refresher = Box<dyn Fn(&Metrics) + Send + Sync>;

struct Inner {
    registry: Registry,
    connections: Gauge,
    detached: Gauge,
    handshakes: Family<OutcomeLabel, Counter>,
    streams_open: Gauge,
    requests: Family<RequestLabels, Counter>,
    /// The counters of `requests`, by direction and status class, each taken from the
    /// family at its first use (so that the family shows from its first sample, as the
    /// module docs say) and counted without the family's lock and hashing after that.
    request_counters: [[OnceLock<Counter>; 5]; 2],
    resets: Family<ResetLabels, Counter>,
    closes: Family<CloseLabels, Counter>,
    bytes: Family<DirectionLabel, Counter>,
    buffered: Gauge,
    limit_hits: Family<LimitLabel, Counter>,
    timeouts: Counter,
    rtt: Histogram,
    budget_used: Family<BudgetLabel, Gauge>,
    budget_limit: Family<BudgetLabel, Gauge>,
    /// The connection configs whose budgets are reported, as long as someone holds them.
    budgets: Mutex<Vec<Weak<Config>>>,
    /// Run before every encoding, to read values kept elsewhere (the session store).
    refreshers: Mutex<Vec<Refresher>>,
}

/// A registry of Tether metrics (see the [module docs](self)). Clones share it.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field("connections", &self.0.connections.get())
            .finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every family registered (and at zero).
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("tether");
        let connections = Gauge::default();
        registry.register(
            "connections",
            "Established connections",
            connections.clone(),
        );
        let detached = Gauge::default();
        registry.register(
            "detached_sessions",
            "Sessions waiting to be resumed (server)",
            detached.clone(),
        );
        let handshakes = Family::<OutcomeLabel, Counter>::default();
        registry.register("handshakes", "Handshakes by outcome", handshakes.clone());
        let streams_open = Gauge::default();
        registry.register(
            "streams_open",
            "Streams open, both directions",
            streams_open.clone(),
        );
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests completed with a final response head, by direction (served: a peer's request answered here; called: a request of this side answered by the peer) and status class",
            requests.clone(),
        );
        let resets = Family::<ResetLabels, Counter>::default();
        registry.register(
            "resets",
            "Stream RESETs sent and received, by code",
            resets.clone(),
        );
        let closes = Family::<CloseLabels, Counter>::default();
        registry.register(
            "closes",
            "Connection ends by close code and initiator",
            closes.clone(),
        );
        let bytes = Family::<DirectionLabel, Counter>::default();
        registry.register(
            "bytes",
            "WebSocket payload bytes sent and received",
            bytes.clone(),
        );
        let buffered = Gauge::default();
        registry.register(
            "buffered_bytes",
            "Body bytes queued for sending toward peers",
            buffered.clone(),
        );
        let limit_hits = Family::<LimitLabel, Counter>::default();
        registry.register(
            "limit_hits",
            "Connections this side closed with 4007 ENHANCE_YOUR_CALM, by limit",
            limit_hits.clone(),
        );
        let timeouts = Counter::default();
        registry.register(
            "stream_timeouts",
            "Streams whose deadline passed (whichever end's copy of it fired first)",
            timeouts.clone(),
        );
        let rtt = Histogram::new(exponential_buckets(0.000_5, 2.0, 16));
        registry.register(
            "heartbeat_rtt_seconds",
            "Round-trip times of heartbeat probes",
            rtt.clone(),
        );
        let budget_used = Family::<BudgetLabel, Gauge>::default();
        registry.register(
            "budget_used_bytes",
            "Bytes taken of the process-wide budgets: send (body bytes queued toward peers), receive (receive-window growth granted to peers)",
            budget_used.clone(),
        );
        let budget_limit = Family::<BudgetLabel, Gauge>::default();
        registry.register(
            "budget_limit_bytes",
            "Limits of the process-wide send and receive budgets",
            budget_limit.clone(),
        );
        // A family shows once one of its label sets is used: the fixed sets start at zero
        // (resets, closes and requests show from their first sample).
        for direction in ["sent", "received"] {
            bytes.get_or_create(&DirectionLabel { direction }).get();
        }
        for outcome in ["accepted", "resumed", "rejected", "failed"] {
            handshakes.get_or_create(&OutcomeLabel { outcome }).get();
        }
        for limit in ["stream_churn", "probe_rate"] {
            limit_hits.get_or_create(&LimitLabel { limit }).get();
        }
        for budget in ["send", "receive"] {
            budget_used.get_or_create(&BudgetLabel { budget }).get();
            budget_limit.get_or_create(&BudgetLabel { budget }).get();
        }
        Metrics(Arc::new(Inner {
            registry,
            connections,
            detached,
            handshakes,
            streams_open,
            requests,
            request_counters: Default::default(),
            resets,
            closes,
            bytes,
            buffered,
            limit_hits,
            timeouts,
            rtt,
            budget_used,
            budget_limit,
            budgets: Mutex::new(Vec::new()),
            refreshers: Mutex::new(Vec::new()),
        }))
    }

    /// The registry in the OpenMetrics text format (content type [`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        self.refresh_budgets();
        {
            let refreshers = self.0.refreshers.lock().unwrap_or_else(|e| e.into_inner());
            for refresh in refreshers.iter() {
                refresh(self);
            }
        }
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.0.registry);
        out
    }

    /// Established connections now.
    pub fn connections(&self) -> i64 {
        self.0.connections.get()
    }

    pub(crate) fn on_scrape(&self, refresh: impl Fn(&Metrics) + Send + Sync + 'static) {
        self.0
            .refreshers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Box::new(refresh));
    }

    /// Reports the send and receive budgets of `config` (spec/protocol.md §10.8, §10.3.1)
    /// for as long as anyone holds it. A server or client calls it with its connection
    /// config; a config already reported, or dropped since, is not kept twice.
    pub(crate) fn report_budgets(&self, config: &Arc<Config>) {
        let mut configs = self.0.budgets.lock().unwrap_or_else(|e| e.into_inner());
        configs.retain(|c| c.strong_count() > 0);
        if !configs
            .iter()
            .any(|c| std::ptr::eq(c.as_ptr(), Arc::as_ptr(config)))
        {
            configs.push(Arc::downgrade(config));
        }
    }

    /// Moves the budget gauges to the budgets' counts now. Configs that share a budget
    /// (clones of one [`SendBudget`] or [`RecvBudget`]) count it once.
    fn refresh_budgets(&self) {
        let configs = self.0.budgets.lock().unwrap_or_else(|e| e.into_inner());
        let mut send: Vec<SendBudget> = Vec::new();
        let mut receive: Vec<RecvBudget> = Vec::new();
        for config in configs.iter().filter_map(Weak::upgrade) {
            let streams = config.streams();
            if !send.iter().any(|b| b.is_shared_with(&streams.send_budget)) {
                send.push(streams.send_budget.clone());
            }
            if !receive
                .iter()
                .any(|b| b.is_shared_with(&streams.recv_budget))
            {
                receive.push(streams.recv_budget.clone());
            }
        }
        let set = |family: &Family<BudgetLabel, Gauge>, budget, n: usize| {
            let n = i64::try_from(n).unwrap_or(i64::MAX);
            family.get_or_create(&BudgetLabel { budget }).set(n);
        };
        let sum = |counts: &mut dyn Iterator<Item = usize>| counts.fold(0, usize::saturating_add);
        set(
            &self.0.budget_used,
            "send",
            sum(&mut send.iter().map(SendBudget::used)),
        );
        set(
            &self.0.budget_limit,
            "send",
            sum(&mut send.iter().map(SendBudget::limit)),
        );
        set(
            &self.0.budget_used,
            "receive",
            sum(&mut receive.iter().map(RecvBudget::used)),
        );
        set(
            &self.0.budget_limit,
            "receive",
            sum(&mut receive.iter().map(RecvBudget::limit)),
        );
    }

    pub(crate) fn set_detached_sessions(&self, n: usize) {
        self.0.detached.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// A request answered (`served`) or an answer received (`called`) with `status`.
    pub(crate) fn request(&self, direction: RequestDirection, status: http::StatusCode) {
        const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        let (row, label) = match direction {
            RequestDirection::Served => (0, "served"),
            RequestDirection::Called => (1, "called"),
        };
        self.0.request_counters[row][class]
            .get_or_init(|| {
                let labels = RequestLabels {
                    direction: label,
                    class: CLASSES[class],
                };
                self.0.requests.get_or_create(&labels).clone()
            })
            .inc();
    }

    fn reset(&self, direction: &'static str, code: ResetCode) {
        let code = code
            .name()
            .map_or_else(|| code.value().to_string(), str::to_owned);
        self.0
            .resets
            .get_or_create(&ResetLabels { direction, code })
            .inc();
    }

    fn close(&self, code: Option<CloseCode>, initiator: Initiator) {
        let code = code.map_or_else(|| "none".to_owned(), |c| c.value().to_string());
        let initiator = match initiator {
            Initiator::Local => "local",
            _ => "peer",
        };
        self.0
            .closes
            .get_or_create(&CloseLabels { code, initiator })
            .inc();
    }

    fn handshake(&self, outcome: &'static str) {
        self.0
            .handshakes
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }
}

/// What one connection has added to the gauges and counters so far; the run loop feeds it
/// every event and, after every step, the machine. Dropping it takes the connection's share
/// out of the gauges.
#[derive(Debug, Default)]
pub(crate) struct Meter {
    metrics: Option<Metrics>,
    /// The byte counters, looked up once (they are bumped after every write step).
    counters: Option<(Counter, Counter)>,
    established: bool,
    streams: i64,
    buffered: i64,
    sent: u64,
    received: u64,
}

impl Meter {
    pub(crate) fn new(metrics: Option<Metrics>) -> Self {
        let counters = metrics.as_ref().map(|m| {
            let counter = |direction| m.0.bytes.get_or_create_owned(&DirectionLabel { direction });
            (counter("sent"), counter("received"))
        });
        Meter {
            metrics,
            counters,
            ..Meter::default()
        }
    }

    /// Counts what `event` says (call before handling it).
    pub(crate) fn on_event(&mut self, event: &Event) {
        let Some(m) = &self.metrics else { return };
        match event {
            Event::Received { .. } | Event::Resumed { .. } | Event::Established { .. } => {
                let resumed = matches!(
                    event,
                    Event::Resumed { .. } | Event::Established { resumed: true, .. }
                );
                m.handshake(if resumed { "resumed" } else { "accepted" });
                if !self.established {
                    m.0.connections.inc();
                    self.established = true;
                }
            }
            Event::Closed {
                code, initiator, ..
            } => {
                m.close(Some(*code), *initiator);
                self.ended(*code == CloseCode::REJECTED);
            }
            Event::Failure { error } => {
                m.close(error.close_code(), error.initiator());
                let limit = match error {
                    ConnectionError::ProbeFlood { .. } => Some("probe_rate"),
                    ConnectionError::StreamLayer(e)
                        if e.close_code() == CloseCode::ENHANCE_YOUR_CALM =>
                    {
                        Some("stream_churn")
                    }
                    _ => None,
                };
                if let Some(limit) = limit {
                    m.0.limit_hits.get_or_create(&LimitLabel { limit }).inc();
                }
                self.ended(false);
            }
            Event::PongReceived { rtt: Some(rtt), .. } => m.0.rtt.observe(rtt.as_secs_f64()),
            Event::Stream(StreamEvent::Response { head, .. }) if head.status.as_u16() >= 200 => {
                m.request(RequestDirection::Called, head.status);
            }
            Event::Stream(StreamEvent::Closed { outcome, .. }) => match outcome {
                Outcome::Reset { code, initiator } => {
                    let direction = match initiator {
                        Initiator::Local => "sent",
                        _ => "received",
                    };
                    m.reset(direction, *code);
                }
                Outcome::TimedOut => {
                    m.0.timeouts.inc();
                }
                _ => {}
            },
            _ => {}
        }
    }

    fn ended(&mut self, rejected: bool) {
        let Some(m) = &self.metrics else { return };
        if self.established {
            m.0.connections.dec();
            self.established = false;
        } else {
            m.handshake(if rejected { "rejected" } else { "failed" });
        }
    }

    /// Moves the gauges and byte counters to the machine's current values.
    pub(crate) fn update(&mut self, conn: &mut Connection) {
        let Some(m) = &self.metrics else { return };
        let (sent, received) = (conn.bytes_sent(), conn.bytes_received());
        if let Some((sent_total, received_total)) = &self.counters {
            sent_total.inc_by(sent.saturating_sub(self.sent));
            received_total.inc_by(received.saturating_sub(self.received));
        }
        self.sent = sent;
        self.received = received;
        let (streams, buffered) = conn.streams().map_or((0, 0), |s| {
            (
                i64::try_from(s.open_streams()).unwrap_or(i64::MAX),
                i64::try_from(s.buffered_bytes()).unwrap_or(i64::MAX),
            )
        });
        if streams != self.streams {
            m.0.streams_open.inc_by(streams - self.streams);
            self.streams = streams;
        }
        if buffered != self.buffered {
            m.0.buffered.inc_by(buffered - self.buffered);
            self.buffered = buffered;
        }
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        let Some(m) = &self.metrics else { return };
        m.0.streams_open.dec_by(self.streams);
        m.0.buffered.dec_by(self.buffered);
        if self.established {
            m.0.connections.dec();
        }
    }
}

/// An HTTP endpoint serving a [`Metrics`] at `GET /metrics` (404 elsewhere). Stops when
/// dropped.
#[derive(Debug)]
pub struct MetricsServer {
    local_addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl MetricsServer {
    /// Binds `addr` and serves `metrics`.
    pub async fn bind(addr: SocketAddr, metrics: Metrics) -> io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        Self::from_listener(listener, metrics)
    }

    /// Serves `metrics` on an already bound listener.
    pub fn from_listener(listener: TcpListener, metrics: Metrics) -> io::Result<Self> {
        let local_addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            loop {
                let (stream, _) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // EMFILE and the like: back off instead of spinning.
                        tracing::debug!("metrics accept: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let metrics = metrics.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let metrics = metrics.clone();
                        async move { Ok::<_, Infallible>(respond(&metrics, &req)) }
                    });
                    let served = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                    if let Err(e) = served {
                        tracing::debug!("metrics connection: {e}");
                    }
                });
            }
        });
        Ok(MetricsServer { local_addr, task })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn respond<B>(metrics: &Metrics, req: &http::Request<B>) -> http::Response<Full<Bytes>> {
    let (status, content_type, body) = if req.uri().path() != "/metrics" {
        (
            http::StatusCode::NOT_FOUND,
            "text/plain",
            "not found\n".to_owned(),
        )
    } else if req.method() != http::Method::GET && req.method() != http::Method::HEAD {
        (
            http::StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".to_owned(),
        )
    } else {
        (http::StatusCode::OK, CONTENT_TYPE, metrics.encode())
    };
    let mut response = http::Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_described_and_requests_are_classed() {
        let m = Metrics::new();
        m.request(RequestDirection::Served, http::StatusCode::OK);
        m.request(RequestDirection::Called, http::StatusCode::BAD_GATEWAY);
        m.request(RequestDirection::Called, http::StatusCode::BAD_GATEWAY);
        m.reset("sent", ResetCode::CANCEL);
        m.close(Some(CloseCode::ENHANCE_YOUR_CALM), Initiator::Local);
        let text = m.encode();
        for family in [
            "tether_connections",
            "tether_detached_sessions",
            "tether_handshakes",
            "tether_streams_open",
            "tether_requests",
            "tether_resets",
            "tether_closes",
            "tether_bytes",
            "tether_buffered_bytes",
            "tether_limit_hits",
            "tether_heartbeat_rtt_seconds",
            "tether_budget_used_bytes",
            "tether_budget_limit_bytes",
        ] {
            assert!(
                text.contains(&format!("# TYPE {family} ")),
                "{family}:\n{text}"
            );
        }
        assert!(text.contains(r#"tether_requests_total{direction="served",class="2xx"} 1"#));
        // The second sample is counted on the counter the first one took from the family.
        assert!(text.contains(r#"tether_requests_total{direction="called",class="5xx"} 2"#));
        // A label set shows from its first sample only.
        assert!(!text.contains(r#"class="4xx""#));
        assert!(text.contains(r#"tether_resets_total{direction="sent",code="CANCEL"} 1"#));
        assert!(text.contains(r#"tether_closes_total{code="4007",initiator="local"} 1"#));
    }

    #[test]
    fn a_meter_takes_its_share_out_of_the_gauges_when_dropped() {
        let m = Metrics::new();
        let mut meter = Meter::new(Some(m.clone()));
        meter.on_event(&Event::Received {
            id: uuid::Uuid::nil(),
            metadata: Bytes::new(),
        });
        assert_eq!(m.connections(), 1);
        drop(meter);
        assert_eq!(m.connections(), 0);
    }

    #[test]
    fn budgets_are_summed_once_each_while_their_configs_live() {
        use tether_proto::streams::StreamsConfig;
        let config =
            |streams: StreamsConfig| Arc::new(Config::builder().streams(streams).build().unwrap());
        let gauge = |m: &Metrics, name: &str, budget: &str| -> u64 {
            let text = m.encode();
            let key = format!("tether_budget_{name}_bytes{{budget=\"{budget}\"}} ");
            let line = text.lines().find(|l| l.starts_with(&key)).unwrap();
            line[key.len()..].parse().unwrap()
        };
        let m = Metrics::new();
        assert_eq!(gauge(&m, "limit", "send"), 0, "nothing reported yet");
        let shared = StreamsConfig {
            send_budget: SendBudget::new(1000),
            recv_budget: RecvBudget::new(5000),
            ..StreamsConfig::default()
        };
        // Two configs sharing one pair of budgets (a server and a client of one process),
        // one reported twice: each budget counts once.
        let (a, b) = (config(shared.clone()), config(shared.clone()));
        m.report_budgets(&a);
        m.report_budgets(&a);
        m.report_budgets(&b);
        assert_eq!(gauge(&m, "limit", "send"), 1000);
        assert_eq!(gauge(&m, "limit", "receive"), 5000);
        // A config with budgets of its own adds them.
        let own = config(StreamsConfig {
            send_budget: SendBudget::new(1000),
            recv_budget: RecvBudget::new(7),
            ..StreamsConfig::default()
        });
        m.report_budgets(&own);
        assert_eq!(gauge(&m, "limit", "send"), 2000);
        assert_eq!(gauge(&m, "limit", "receive"), 5007);
        assert_eq!(gauge(&m, "used", "receive"), 0);
        // Gone with the last holder of its config.
        drop(own);
        assert_eq!(gauge(&m, "limit", "send"), 1000);
        drop((a, b));
        assert_eq!(gauge(&m, "limit", "receive"), 0);
    }
}
