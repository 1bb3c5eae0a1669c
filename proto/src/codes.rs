//! The two error-code namespaces on the wire (spec/protocol.md §6).
//!
//! Both are open newtypes over the wire integer, as in h2's `Reason`: a code this
//! version does not name still decodes, round-trips and prints as a number, and a
//! receiver treats it as described in the spec (§6.1, §6.2).

use std::fmt;

/// A stream error code, carried in RESET and GOAWAY frames (spec/protocol.md §6.1).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ResetCode(u32);

macro_rules! codes {
    ($ty:ident($int:ty) { $( $(#[$doc:meta])* $name:ident = $value:expr, $text:literal; )* }) => {
        impl $ty {
            $( $(#[$doc])* pub const $name: $ty = $ty($value); )*

            /// Wraps a code received from the wire (any value is accepted).
            pub const fn from_u(value: $int) -> Self {
                $ty(value)
            }

            /// The value written on the wire.
            pub const fn value(self) -> $int {
                self.0
            }

            /// The spec's name of the code (e.g. `"PROTOCOL_ERROR"`), or `None` for a code
            /// this version does not define.
            pub const fn name(self) -> Option<&'static str> {
                match self.0 {
                    $( $value => Some(stringify!($name)), )*
                    _ => None,
                }
            }

            /// Looks a code up by its spec name.
            pub fn from_name(name: &str) -> Option<Self> {
                match name {
                    $( stringify!($name) => Some(Self::$name), )*
                    _ => None,
                }
            }

            /// A one-line human description of the code.
            pub const fn description(self) -> &'static str {
                match self.0 {
                    $( $value => $text, )*
                    _ => "unknown code",
                }
            }
        }
    };
}

codes!(ResetCode(u32) {
    /// Not an error: the sender needs no more of the stream (e.g. the response is complete
    /// and the rest of the request body is not wanted).
    NO_ERROR = 0x0, "no error";
    /// The peer broke a protocol rule on this stream (malformed head, frame in a wrong state).
    PROTOCOL_ERROR = 0x1, "protocol error";
    /// The sender hit an unexpected internal failure (e.g. the handler panicked or failed).
    INTERNAL_ERROR = 0x2, "internal error";
    /// The peer sent more than the stream's flow-control window allowed.
    FLOW_CONTROL_ERROR = 0x3, "flow-control window exceeded";
    /// The stream was refused before any processing: always safe to retry.
    REFUSED_STREAM = 0x4, "stream refused before processing; safe to retry";
    /// The sender no longer wants the stream (the caller gave up).
    CANCEL = 0x5, "stream cancelled";
    /// The request's deadline passed before it completed.
    TIMEOUT = 0x6, "deadline exceeded";
    /// The head exceeded the receiver's head-size or header-count limit.
    HEAD_TOO_LARGE = 0x7, "head too large";
    /// The body exceeded the receiver's body-size limit.
    BODY_TOO_LARGE = 0x8, "body too large";
    /// A frame arrived for a stream that is already closed.
    STREAM_CLOSED = 0x9, "stream already closed";
    /// The sender is protecting itself from a peer that opens or resets too many streams,
    /// or leaves the DATA queued toward it unread past the stall timeout (§10.8).
    ENHANCE_YOUR_CALM = 0xa, "resource limit exceeded (streams opened or reset too fast, or data left unread); slow down";
});

impl ResetCode {
    /// Whether a request reset with this code is known not to have been processed by
    /// the peer, so that a client may send it again (spec/protocol.md §6.1).
    pub const fn is_safe_to_retry(self) -> bool {
        self.0 == Self::REFUSED_STREAM.0
    }
}

impl fmt::Debug for ResetCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "ResetCode(0x{:x})", self.0),
        }
    }
}

impl fmt::Display for ResetCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name} ({})", self.description()),
            None => write!(f, "unknown reset code 0x{:x}", self.0),
        }
    }
}

/// A WebSocket close code as Tether uses it (spec/protocol.md §6.2).
///
/// Codes below 4000 are RFC 6455's; 4000–4499 are Tether's; 4500–4999 belong to the
/// application (e.g. a server closing one client for its own reasons).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CloseCode(u16);

codes!(CloseCode(u16) {
    /// RFC 6455: orderly close after both sides are done (follows a GOAWAY).
    NORMAL = 1000, "normal closure";
    /// RFC 6455: the endpoint is going away (server shutdown, process exit).
    GOING_AWAY = 1001, "going away";
    /// RFC 6455: a WebSocket-level protocol violation.
    WEBSOCKET_PROTOCOL_ERROR = 1002, "WebSocket protocol error";
    /// RFC 6455: a message of a kind the endpoint cannot take (a text message on a Tether
    /// connection).
    UNSUPPORTED_DATA = 1003, "unsupported data (text message)";
    /// RFC 6455: a message larger than the receiver accepts.
    MESSAGE_TOO_BIG = 1009, "message too big";
    /// A malformed frame, or a frame not allowed in the connection's state.
    PROTOCOL_ERROR = 4000, "Tether protocol error";
    /// No protocol version in common.
    UNSUPPORTED_VERSION = 4001, "no protocol version in common";
    /// The handshake did not finish in time.
    HANDSHAKE_TIMEOUT = 4002, "handshake timeout";
    /// The server's application refused the HELLO (authentication, policy).
    REJECTED = 4003, "handshake rejected";
    /// HELLO metadata was not JSON or was larger than the limit.
    INVALID_METADATA = 4004, "invalid handshake metadata";
    /// The peer stopped answering heartbeats.
    HEARTBEAT_TIMEOUT = 4005, "heartbeat timeout";
    /// The peer overran the connection flow-control window.
    FLOW_CONTROL_ERROR = 4006, "connection flow-control window exceeded";
    /// The peer exceeded a resource limit (buffered bytes, stream churn).
    ENHANCE_YOUR_CALM = 4007, "resource limit exceeded";
    /// The sender failed internally.
    INTERNAL_ERROR = 4008, "internal error";
    /// The session was resumed on a newer transport; this one is obsolete.
    SESSION_REPLACED = 4009, "session resumed elsewhere";
});

impl CloseCode {
    /// Whether the code is in the application's range, 4500–4999.
    pub const fn is_application(self) -> bool {
        matches!(self.0, 4500..=4999)
    }
}

impl fmt::Debug for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "CloseCode({})", self.0),
        }
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{} {name} ({})", self.0, self.description()),
            None if self.is_application() => write!(f, "{} (application-defined)", self.0),
            None => write!(f, "{} (unknown close code)", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for v in 0..=0xbu32 {
            let c = ResetCode::from_u(v);
            if let Some(name) = c.name() {
                assert_eq!(ResetCode::from_name(name), Some(c));
            } else {
                assert_eq!(v, 0xb, "codes 0..=0xa are all named");
            }
        }
        assert_eq!(
            CloseCode::from_name("HEARTBEAT_TIMEOUT"),
            Some(CloseCode::HEARTBEAT_TIMEOUT)
        );
        assert_eq!(CloseCode::from_name("nope"), None);
    }

    #[test]
    fn unknown_codes_print_as_numbers() {
        assert_eq!(format!("{:?}", ResetCode::from_u(77)), "ResetCode(0x4d)");
        assert_eq!(
            CloseCode::from_u(4600).to_string(),
            "4600 (application-defined)"
        );
        assert!(ResetCode::REFUSED_STREAM.is_safe_to_retry());
        assert!(!ResetCode::CANCEL.is_safe_to_retry());
    }
}
