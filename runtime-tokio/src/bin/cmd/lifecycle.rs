//! Options shared by `tether server`, `tether client` and `tether demo`, and the one-line
//! event format they print.

use std::sync::Arc;
use std::time::Duration;

use tether_proto::connection::{Config, ConfigBuilder};
use tether_proto::streams::{SendBudget, StreamsConfig};
use tether_tokio::client::ClientEvent;
use tether_tokio::server::ServerEvent;

use super::common::{parse_byte_size, parse_duration};

/// Heartbeat and handshake timing.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Timing {
    /// Time between heartbeat probes (a server imposes it; a client proposes it).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub(crate) heartbeat_interval: Duration,
    /// Silence after which the peer is declared dead (close 4005); longer than the interval.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub(crate) heartbeat_timeout: Duration,
    /// Time allowed for the HELLO / WELCOME / ACK handshake (close 4002).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub(crate) handshake_timeout: Duration,
}

impl Timing {
    fn builder(&self) -> ConfigBuilder {
        Config::builder()
            .heartbeat(self.heartbeat_interval, self.heartbeat_timeout)
            .handshake_timeout(self.handshake_timeout)
    }
}

fn build(builder: ConfigBuilder) -> Result<Arc<Config>, String> {
    builder.build().map(Arc::new).map_err(|e| e.to_string())
}

/// Limits on body bytes queued toward the peer (spec/protocol.md §10.8).
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Flow {
    /// Most response and request body bytes queued toward peers by all connections of this
    /// process together (e.g. 64MiB); beyond it senders wait, and bodies wait in their
    /// source (the upstream, the kernel).
    #[arg(long, default_value = "64MiB", value_parser = parse_byte_size)]
    pub(crate) send_budget: usize,
    /// A stream whose queued bytes the peer takes none of for this long is reset with
    /// ENHANCE_YOUR_CALM (a stream with nothing queued, e.g. a long poll, is never cut).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub(crate) stall_timeout: Duration,
}

impl Flow {
    /// The connection config: `timing` plus these limits, one budget for the process.
    pub(crate) fn config(&self, timing: &Timing) -> Result<Arc<Config>, String> {
        build(timing.builder().streams(StreamsConfig {
            send_budget: SendBudget::new(self.send_budget),
            stall_timeout: self.stall_timeout,
            ..StreamsConfig::default()
        }))
    }
}

fn text(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        "null".to_owned()
    } else {
        String::from_utf8_lossy(bytes).into_owned()
    }
}

/// `received <id> <metadata>`, `resumed <id>`, `closed <id> <code> <reason>`,
/// `failure <id> <reason>`.
pub(crate) fn server_line(event: &ServerEvent) -> String {
    match event {
        ServerEvent::Received {
            id,
            metadata,
            remote_addr,
        } => format!("received {id} {} from={remote_addr}", text(metadata)),
        ServerEvent::Resumed {
            id, remote_addr, ..
        } => format!("resumed {id} from={remote_addr}"),
        ServerEvent::Closed {
            id, code, reason, ..
        } => format!("closed {id} {} {reason:?}", code.value()),
        ServerEvent::Failure { id, error } => format!("failure {id} {error}"),
        other => format!("event {other:?}"),
    }
}

/// `connected <id>`, `reconnecting attempt=N delay=…`, `resumed <id>`, `closed …`,
/// `failure …`; `None` for RTT samples.
pub(crate) fn client_line(event: &ClientEvent) -> Option<String> {
    let opt = |id: &Option<uuid::Uuid>| id.map_or_else(|| "-".to_owned(), |id| id.to_string());
    Some(match event {
        ClientEvent::Connected { id, .. } => format!("connected {id}"),
        ClientEvent::Resumed { id, .. } => format!("resumed {id}"),
        ClientEvent::Reconnecting { attempt, delay } => format!(
            "reconnecting attempt={attempt} delay={}",
            humantime::format_duration(round_ms(*delay))
        ),
        ClientEvent::Closed {
            id, code, reason, ..
        } => format!("closed {} {} {reason:?}", opt(id), code.value()),
        ClientEvent::Failure { id, error } => format!("failure {} {error}", opt(id)),
        ClientEvent::Rtt { .. } => return None,
        other => format!("event {other:?}"),
    })
}

/// Whole milliseconds (for printing).
pub(crate) fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis().try_into().unwrap_or(u64::MAX))
}
