//! Options shared by `tether server`, `tether client` and `tether demo`, and the one-line
//! event format they print.

use std::sync::Arc;
use std::time::Duration;

use tether_proto::connection::{Config, ConfigBuilder};
use tether_proto::streams::{RecvBudget, SendBudget, StreamsConfig};
use tether_tokio::client::ClientEvent;
use tether_tokio::server::ServerEvent;

use super::common::{parse_byte_size, parse_duration};

/// Heartbeat and handshake timing.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Timing {
    /// Heartbeat interval: an idle client probes after this much silence, a server somewhat
    /// later (spec §8.2); a server imposes it, a client proposes it.
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

/// Limits on body bytes queued toward the peer (spec/protocol.md §10.8) and on the receive
/// windows' growth (§10.3.1).
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
    /// Largest receive window of a stream and of a connection (e.g. 16MiB). Windows start
    /// at 256 KiB per stream and 1 MiB per connection and double, up to this, while they
    /// and not the reader limit a body's rate (spec §10.3.1): over a 50 ms round trip,
    /// 50 MiB/s needs 2.5 MiB of window. It bounds the body bytes a peer can make one
    /// connection hold; 256KiB keeps every window at its initial size.
    #[arg(long, default_value = "16MiB", value_parser = parse_byte_size)]
    pub(crate) max_window: usize,
    /// Most receive-window growth granted by all connections of this process together
    /// (e.g. 256MiB): once used up, windows keep the size they have.
    #[arg(long, default_value = "256MiB", value_parser = parse_byte_size)]
    pub(crate) recv_budget: usize,
}

impl Flow {
    /// The connection config: `timing` plus these limits, one budget for the process.
    pub(crate) fn config(&self, timing: &Timing) -> Result<Arc<Config>, String> {
        // Above 2^31-1 the builder refuses it with a message naming the limit.
        let max_window = u32::try_from(self.max_window).unwrap_or(u32::MAX);
        build(timing.builder().streams(StreamsConfig {
            send_budget: SendBudget::new(self.send_budget),
            stall_timeout: self.stall_timeout,
            max_stream_window: max_window,
            max_connection_window: max_window,
            recv_budget: RecvBudget::new(self.recv_budget),
            ..StreamsConfig::default()
        }))
    }
}

/// The metadata for an event line: a JSON text's tabs and line breaks between tokens become
/// spaces (the value is the same, and stays on one line); inside strings JSON allows no raw
/// control character, and what else is unsafe to print [`one_line`] escapes.
fn text(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "null".to_owned();
    }
    let (mut in_string, mut escaped) = (false, false);
    String::from_utf8_lossy(bytes)
        .chars()
        .map(|c| {
            if in_string {
                match c {
                    _ if escaped => escaped = false,
                    '\\' => escaped = true,
                    '"' => in_string = false,
                    _ => {}
                }
                return c;
            }
            match c {
                '"' => in_string = true,
                '\t' | '\r' | '\n' => return ' ',
                _ => {}
            }
            c
        })
        .collect()
}

/// Whether printing `c` raw could break or disguise an event line: control characters (C0,
/// DEL, C1: line breaks, terminal escapes), bidirectional controls (which reorder what a
/// terminal shows), line and paragraph separators, and invisible format characters.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{061c}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{2069}' | '\u{feff}')
}

/// One event, one line: every character [`is_unsafe`] is written as a JSON escape
/// (`\u000d`), which inside the metadata's strings keeps it valid JSON with the same
/// value. The peer controls metadata and reasons; what it sends must not forge lines or
/// hide text in the log (spec/protocol.md §11).
fn one_line(line: String) -> String {
    if !line.chars().any(is_unsafe) {
        return line;
    }
    let mut out = String::with_capacity(line.len() + 16);
    for c in line.chars() {
        if is_unsafe(c) {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// `received <id> <metadata>`, `resumed <id>`, `closed <id> <code> <reason>`,
/// `failure <id> <reason>`, `expired <id>`: always one line ([`one_line`]).
pub(crate) fn server_line(event: &ServerEvent) -> String {
    one_line(server_line_raw(event))
}

fn server_line_raw(event: &ServerEvent) -> String {
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
        ServerEvent::Expired { id } => format!("expired {id}"),
        other => format!("event {other:?}"),
    }
}

/// `connected <id>`, `reconnecting attempt=N delay=…`, `resumed <id>`, `closed …`,
/// `failure …`, each one line ([`one_line`]); `None` for RTT samples.
pub(crate) fn client_line(event: &ClientEvent) -> Option<String> {
    client_line_raw(event).map(one_line)
}

fn client_line_raw(event: &ClientEvent) -> Option<String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn received(metadata: &'static [u8]) -> String {
        server_line(&ServerEvent::Received {
            id: uuid::Uuid::nil(),
            metadata: Bytes::from_static(metadata),
            remote_addr: "127.0.0.1:1".parse().unwrap(),
        })
    }

    #[test]
    fn one_event_is_one_line_whatever_the_metadata() {
        let prefix = "received 00000000-0000-0000-0000-000000000000 ";
        // Line breaks between JSON tokens: spaces, the value unchanged.
        let line = received(b"{\"a\":\r\n1,\r\n\"b\":\t2}");
        assert_eq!(
            line,
            format!("{prefix}{{\"a\":  1,  \"b\": 2}} from=127.0.0.1:1")
        );
        // Bidi, C1, DEL and separators inside strings: JSON escapes, still the same value.
        let line = received("{\"u\":\"a\u{202e}b\u{85}c\u{7f}d\u{2028}e\"}".as_bytes());
        assert_eq!(
            line,
            format!("{prefix}{{\"u\":\"a\\u202eb\\u0085c\\u007fd\\u2028e\"}} from=127.0.0.1:1")
        );
        let json = line
            .strip_prefix(prefix)
            .unwrap()
            .strip_suffix(" from=127.0.0.1:1");
        let value: serde_json::Value = serde_json::from_str(json.unwrap()).unwrap();
        assert_eq!(value["u"], "a\u{202e}b\u{85}c\u{7f}d\u{2028}e");
        // Not JSON at all (never accepted by the machine, but printed safely anyway).
        let line = received(b"x\r\nreceived forged\x1b[2J");
        assert!(!line.contains(['\r', '\n', '\x1b']), "{line}");
        assert_eq!(received(b""), format!("{prefix}null from=127.0.0.1:1"));
    }

    #[test]
    fn reasons_and_errors_stay_on_one_line() {
        let line = client_line(&ClientEvent::Failure {
            id: None,
            error: tether_tokio::client::ClientError::Connect("a\r\nb\u{202e}".into()),
        })
        .unwrap();
        assert_eq!(line, "failure - connect failed: a\\u000d\\u000ab\\u202e");
    }
}
