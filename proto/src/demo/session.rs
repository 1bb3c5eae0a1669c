//! The per-connection state machine of the demo server (spec/demo.md §4).

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime};

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::message::{
    code, kind, DemoMessage, EchoData, EchoRequest, ErrorMessage, Heartbeat, Response, TopicData,
    TopicRequest, TOPIC_HEARTBEAT,
};

/// Default heartbeat interval, as in the Go original.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);

/// Shortest heartbeat interval; shorter configured values are raised to it.
pub const MIN_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(1);

/// Configuration of a [`DemoSession`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoConfig {
    /// Time between heartbeat publications (default 5 s, at least [`MIN_HEARTBEAT_INTERVAL`]).
    pub heartbeat_interval: Duration,
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
        }
    }
}

/// The demo server's logic for one connection, without I/O.
///
/// Inputs are [`handle_message`](Self::handle_message) (one WebSocket message, text or binary,
/// as bytes) and [`handle_timeout`](Self::handle_timeout); outputs are drained with
/// [`poll_message`](Self::poll_message) until `None`, and [`poll_timeout`](Self::poll_timeout)
/// gives the next deadline (the heartbeat). Every input message yields exactly one answer; a
/// successful subscribe yields two (the response, then the first heartbeat). Drained after every
/// input, the queue never holds more than two messages.
///
/// Time: `now` is a monotonic [`Instant`]. Heartbeat timestamps need wall-clock time, which the
/// machine never reads: the constructor takes the wall-clock time of the accept, and a
/// heartbeat's timestamp is that plus the monotonic time elapsed since (spec/demo.md §4.3).
///
/// ```
/// use std::time::{Duration, Instant, SystemTime};
/// use tether_proto::demo::{DemoConfig, DemoSession};
///
/// let accepted = Instant::now();
/// let mut session = DemoSession::new(DemoConfig::default(), accepted, SystemTime::UNIX_EPOCH);
/// session.handle_message(br#"{"type":"echo_request","reqId":"1","echo":"Hello"}"#, accepted);
/// assert_eq!(
///     session.poll_message().as_deref(),
///     Some(r#"{"type":"echo_response","reqId":"1","status":"OK","data":{"echo":"Hello"}}"#)
/// );
/// assert_eq!(session.poll_message(), None);
///
/// session.handle_message(br#"{"type":"subscribe_request","topic":"heartbeat"}"#, accepted);
/// while let Some(_answer) = session.poll_message() {}
/// let next = session.poll_timeout().unwrap();
/// assert_eq!(next, accepted + Duration::from_secs(5));
/// session.handle_timeout(next);
/// assert_eq!(
///     session.poll_message().as_deref(),
///     Some(r#"{"type":"heartbeat","timestamp":"1970-01-01T00:00:05Z","uptime_seconds":"5"}"#)
/// );
/// ```
#[derive(Debug)]
pub struct DemoSession {
    interval: Duration,
    accepted_at: Instant,
    accepted_wall: SystemTime,
    subscribed: bool,
    /// The one timer: the next heartbeat, set while subscribed (unless the interval
    /// reaches past what the clock can represent).
    next_heartbeat: Option<Instant>,
    out: VecDeque<String>,
}

impl DemoSession {
    /// A session for a connection accepted at `now` (monotonic) and `wall_clock` (UTC).
    pub fn new(config: DemoConfig, now: Instant, wall_clock: SystemTime) -> Self {
        Self {
            interval: config.heartbeat_interval.max(MIN_HEARTBEAT_INTERVAL),
            accepted_at: now,
            accepted_wall: wall_clock,
            subscribed: false,
            next_heartbeat: None,
            out: VecDeque::with_capacity(2),
        }
    }

    /// Whether the connection is subscribed to heartbeats.
    pub fn is_subscribed(&self) -> bool {
        self.subscribed
    }

    /// Handles one message received at `now`. Any bytes are accepted; bad ones are answered with
    /// an error message and the session goes on (spec/demo.md §3).
    pub fn handle_message(&mut self, message: &[u8], now: Instant) {
        let answer = self.answer(message, now);
        self.out.push_back(answer.to_json());
        if matches!(&answer, DemoMessage::SubscribeResponse(r) if r.error.is_none()) {
            // spec/demo.md §4.2: first heartbeat right after the subscribe response.
            self.out.push_back(self.heartbeat(now).to_json());
            // An interval too long to represent: no heartbeat is ever due.
            self.subscribed = true;
            self.next_heartbeat = now.checked_add(self.interval);
        }
    }

    /// Publishes the heartbeat if its time has come. Spurious calls do nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(due) = self.next_heartbeat else {
            return;
        };
        if now < due {
            return;
        }
        self.out.push_back(self.heartbeat(now).to_json());
        // One heartbeat per call even if several intervals were missed: no burst after a stall.
        self.next_heartbeat = match due.checked_add(self.interval) {
            Some(next) if next > now => Some(next),
            _ => now.checked_add(self.interval),
        };
    }

    /// The next text message to send, until `None`.
    pub fn poll_message(&mut self) -> Option<String> {
        self.out.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_heartbeat
    }

    fn heartbeat(&self, now: Instant) -> DemoMessage {
        let uptime = now.saturating_duration_since(self.accepted_at);
        let wall = self
            .accepted_wall
            .checked_add(uptime)
            .unwrap_or(self.accepted_wall);
        DemoMessage::Heartbeat(Heartbeat {
            timestamp: format_utc(wall),
            uptime_seconds: uptime.as_secs().to_string(),
        })
    }

    fn answer(&mut self, message: &[u8], _now: Instant) -> DemoMessage {
        let map: Map<String, Value> = match serde_json::from_slice(message) {
            Ok(map) => map,
            Err(e) => return bad_request(None, "message is not a JSON object", &e),
        };
        // spec/demo.md §3: the reqId is echoed whenever it is a string, even in errors.
        let req_id = map.get("reqId").and_then(Value::as_str).map(str::to_owned);
        let msg_type = match map.get("type") {
            None => return error(req_id, "missing message type", code::UNKNOWN_MESSAGE_TYPE),
            Some(Value::String(t)) => t.as_str(),
            Some(_) => return error(req_id, "message type is not a string", code::BAD_REQUEST),
        };
        match msg_type {
            kind::ECHO_REQUEST => match parse::<EchoRequest>(map) {
                Ok(req) => echo(req),
                Err(e) => bad_request(req_id, "bad echo_request", &e),
            },
            kind::SUBSCRIBE_REQUEST => match parse::<TopicRequest>(map) {
                Ok(req) => self.subscribe(req),
                Err(e) => bad_request(req_id, "bad subscribe_request", &e),
            },
            kind::UNSUBSCRIBE_REQUEST => match parse::<TopicRequest>(map) {
                Ok(req) => self.unsubscribe(req),
                Err(e) => bad_request(req_id, "bad unsubscribe_request", &e),
            },
            other => {
                let message = format!("unknown message type: {}", truncate(other, 64));
                error(req_id, message, code::UNKNOWN_MESSAGE_TYPE)
            }
        }
    }

    fn subscribe(&mut self, req: TopicRequest) -> DemoMessage {
        let response = if req.topic != TOPIC_HEARTBEAT {
            topic_not_found(req)
        } else if self.is_subscribed() {
            Response::error(
                req.req_id,
                "already subscribed to topic heartbeat",
                code::ALREADY_SUBSCRIBED,
            )
        } else {
            // The timer is armed by handle_message, together with the first heartbeat.
            Response::ok(req.req_id, TopicData { topic: req.topic })
        };
        DemoMessage::SubscribeResponse(response)
    }

    fn unsubscribe(&mut self, req: TopicRequest) -> DemoMessage {
        let response = if req.topic != TOPIC_HEARTBEAT {
            topic_not_found(req)
        } else if !self.is_subscribed() {
            Response::error(
                req.req_id,
                "not subscribed to topic heartbeat",
                code::NOT_SUBSCRIBED,
            )
        } else {
            // spec/demo.md §5 (deviation 1): unsubscribe really ends the subscription.
            self.subscribed = false;
            self.next_heartbeat = None;
            Response::ok(req.req_id, TopicData { topic: req.topic })
        };
        DemoMessage::UnsubscribeResponse(response)
    }
}

fn parse<T: DeserializeOwned>(map: Map<String, Value>) -> Result<T, serde_json::Error> {
    serde_json::from_value(Value::Object(map))
}

fn echo(req: EchoRequest) -> DemoMessage {
    DemoMessage::EchoResponse(if req.err {
        Response::error(req.req_id, "error asked by client", code::ASKED_BY_CLIENT)
    } else {
        Response::ok(req.req_id, EchoData { echo: req.echo })
    })
}

fn topic_not_found(req: TopicRequest) -> Response<TopicData> {
    let message = format!("topic not found: {}", truncate(&req.topic, 64));
    Response::error(req.req_id, message, code::TOPIC_NOT_FOUND)
}

fn bad_request(req_id: Option<String>, what: &str, e: &serde_json::Error) -> DemoMessage {
    // serde's messages quote the offending value: keep the answer small whatever the input.
    let detail = e.to_string();
    error(
        req_id,
        format!("{what}: {}", truncate(&detail, 160)),
        code::BAD_REQUEST,
    )
}

fn error(req_id: Option<String>, message: impl Into<String>, code: &str) -> DemoMessage {
    DemoMessage::Error(ErrorMessage {
        message: message.into(),
        code: Some(code.to_owned()),
        req_id,
    })
}

/// At most `max` characters of `s`, so an error message never echoes a huge field.
fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// RFC 3339 UTC with whole seconds, e.g. `2026-11-22T04:45:12Z`.
pub fn format_utc(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}
