//! Serde types of the demo schema (spec/demo.md §2).
//!
//! Field names and their order match the Go demowsserver byte for byte, so a value serialized
//! here is what the Go server would have sent.

use serde::{Deserialize, Serialize};

/// Message type strings (the `type` field), spec/demo.md §2.
pub mod kind {
    /// `error`
    pub const ERROR: &str = "error";
    /// `subscribe_request`
    pub const SUBSCRIBE_REQUEST: &str = "subscribe_request";
    /// `subscribe_response`
    pub const SUBSCRIBE_RESPONSE: &str = "subscribe_response";
    /// `unsubscribe_request`
    pub const UNSUBSCRIBE_REQUEST: &str = "unsubscribe_request";
    /// `unsubscribe_response`
    pub const UNSUBSCRIBE_RESPONSE: &str = "unsubscribe_response";
    /// `echo_request`
    pub const ECHO_REQUEST: &str = "echo_request";
    /// `echo_response`
    pub const ECHO_RESPONSE: &str = "echo_response";
    /// `heartbeat`
    pub const HEARTBEAT: &str = "heartbeat";
}

/// Error codes (the `code` field), spec/demo.md §3.
pub mod code {
    /// Subscribing to a topic already subscribed.
    pub const ALREADY_SUBSCRIBED: &str = "ALREADY_SUBSCRIBED";
    /// Unsubscribing from a topic not subscribed.
    pub const NOT_SUBSCRIBED: &str = "NOT_SUBSCRIBED";
    /// The echo request asked for an error (`"err":true`).
    pub const ASKED_BY_CLIENT: &str = "ASKED_BY_CLIENT";
    /// The topic is not known.
    pub const TOPIC_NOT_FOUND: &str = "TOPIC_NOT_FOUND";
    /// `type` is missing or names no request.
    pub const UNKNOWN_MESSAGE_TYPE: &str = "UNKNOWN_MESSAGE_TYPE";
    /// Not JSON, not an object, or a field of the wrong type.
    pub const BAD_REQUEST: &str = "BAD_REQUEST";
}

/// The only topic: heartbeat publications.
pub const TOPIC_HEARTBEAT: &str = "heartbeat";

/// `status` of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Status {
    /// `"OK"`
    #[serde(rename = "OK")]
    Ok,
    /// `"ERROR"`
    #[serde(rename = "ERROR")]
    Error,
}

/// The `error` object of a response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorData {
    /// Human-readable message.
    pub message: String,
    /// Machine-readable code, one of [`code`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

/// `data` of an echo response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EchoData {
    /// The echoed text.
    pub echo: String,
}

/// `data` of a subscribe or unsubscribe response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicData {
    /// The topic.
    pub topic: String,
}

/// `echo_request`: the client asks for its text back, or for an error.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EchoRequest {
    /// Caller's request id, copied into the response.
    #[serde(rename = "reqId", default, skip_serializing_if = "Option::is_none")]
    pub req_id: Option<String>,
    /// Text to echo (missing means empty, as in Go).
    #[serde(default)]
    pub echo: String,
    /// Ask for an `ASKED_BY_CLIENT` error instead of the echo.
    #[serde(default, skip_serializing_if = "is_false")]
    pub err: bool,
}

/// `subscribe_request` or `unsubscribe_request`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TopicRequest {
    /// Caller's request id, copied into the response.
    #[serde(rename = "reqId", default, skip_serializing_if = "Option::is_none")]
    pub req_id: Option<String>,
    /// Topic (missing means empty, as in Go, and is then not found).
    #[serde(default)]
    pub topic: String,
}

/// A response: `echo_response`, `subscribe_response` or `unsubscribe_response`.
///
/// Field order is Go's: `reqId`, `status`, `error`, `data` (after `type`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response<D> {
    /// The request's id, absent when the request had none.
    #[serde(rename = "reqId", default, skip_serializing_if = "Option::is_none")]
    pub req_id: Option<String>,
    /// `OK` or `ERROR`.
    pub status: Status,
    /// Present when `status` is `ERROR`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorData>,
    /// Present when `status` is `OK`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<D>,
}

impl<D> Response<D> {
    /// A successful response.
    pub fn ok(req_id: Option<String>, data: D) -> Self {
        Self {
            req_id,
            status: Status::Ok,
            error: None,
            data: Some(data),
        }
    }

    /// A failed response.
    pub fn error(req_id: Option<String>, message: impl Into<String>, code: &str) -> Self {
        Self {
            req_id,
            status: Status::Error,
            error: Some(ErrorData {
                message: message.into(),
                code: Some(code.to_owned()),
            }),
            data: None,
        }
    }
}

/// `error`: the answer when no response type applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorMessage {
    /// Human-readable message.
    pub message: String,
    /// Machine-readable code, one of [`code`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// The request id, when it could be read.
    #[serde(rename = "reqId", default, skip_serializing_if = "Option::is_none")]
    pub req_id: Option<String>,
}

/// `heartbeat`: the publication of the `heartbeat` topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Publication time, RFC 3339 UTC with whole seconds (`2026-11-22T04:45:12Z`).
    pub timestamp: String,
    /// Whole seconds since the connection was accepted, as a decimal string.
    pub uptime_seconds: String,
}

/// Every message of the schema, in both directions, tagged by `type`.
///
/// Clients deserialize what the server sends with it; the server parses requests more carefully
/// (see [`DemoSession`](super::DemoSession)) to tell `BAD_REQUEST` from `UNKNOWN_MESSAGE_TYPE`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum DemoMessage {
    /// `echo_request`
    EchoRequest(EchoRequest),
    /// `echo_response`
    EchoResponse(Response<EchoData>),
    /// `subscribe_request`
    SubscribeRequest(TopicRequest),
    /// `subscribe_response`
    SubscribeResponse(Response<TopicData>),
    /// `unsubscribe_request`
    UnsubscribeRequest(TopicRequest),
    /// `unsubscribe_response`
    UnsubscribeResponse(Response<TopicData>),
    /// `heartbeat`
    Heartbeat(Heartbeat),
    /// `error`
    Error(ErrorMessage),
}

impl DemoMessage {
    /// Serializes to the JSON text sent on the wire.
    pub fn to_json(&self) -> String {
        // Serializing these types cannot fail: no maps with non-string keys, no foreign types.
        serde_json::to_string(self).unwrap_or_else(|_| {
            String::from(r#"{"type":"error","message":"internal serialization error"}"#)
        })
    }

    /// Parses a message of any type.
    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}
