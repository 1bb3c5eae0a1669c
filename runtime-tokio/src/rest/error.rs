//! [`RequestError`]: why a call to the peer did not produce a response.

use std::time::Duration;

use tether_proto::streams::Outcome;
use tether_proto::{Initiator, ResetCode};

use super::{BodyError, BoxError};

/// Why a request to the peer did not produce a response. Whether it is safe to send again
/// is [`is_safe_to_retry`](Self::is_safe_to_retry): only when the peer cannot have
/// processed it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// No connection to send it on: the client was not (re)connected within
    /// [`RestConfig::connect_wait`](super::RestConfig::connect_wait), or the server has no
    /// live connection with this id. Never sent.
    #[error("not connected to the peer")]
    NotConnected,
    /// The client was closed, or gave up reconnecting. Never sent.
    #[error("the Tether client is closed")]
    Closed,
    /// Too many requests are already waiting for a connection or a free stream. Never sent.
    #[error("too many requests waiting")]
    QueueFull,
    /// The peer refused the stream before processing it (REFUSED_STREAM, or it is going
    /// away). Safe to retry.
    #[error("the peer refused the request before processing it")]
    Refused,
    /// The stream was reset. The request may or may not have been processed.
    #[error("stream reset by the {}: {code}", if *initiator == Initiator::Local { "caller" } else { "peer" })]
    Reset {
        /// The reset code.
        code: ResetCode,
        /// Who reset it.
        initiator: Initiator,
    },
    /// The request's timeout passed; the stream was reset with TIMEOUT. The request may
    /// or may not have been processed.
    #[error("no response within {0:?}")]
    TimedOut(Duration),
    /// The connection was lost with the request in flight: it may or may not have been
    /// processed.
    #[error("connection lost with the request in flight; it may or may not have been processed")]
    ConnectionLost,
    /// The request head is larger than the peer accepts (its MAX_HEAD_SIZE or
    /// MAX_HEADER_COUNT, spec/protocol.md §4.5). Never sent.
    #[error("request head of {bytes} bytes and {fields} fields exceeds the peer's limits")]
    HeadTooLarge {
        /// Bytes of the encoded head.
        bytes: usize,
        /// Its field lines.
        fields: usize,
    },
    /// The request cannot be sent as it is.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The request body failed while it was being sent (the stream was reset).
    #[error("request body failed: {0}")]
    Body(#[source] BoxError),
}

impl RequestError {
    /// Whether the peer certainly did not process the request, so that sending it again
    /// cannot do anything twice.
    pub fn is_safe_to_retry(&self) -> bool {
        matches!(
            self,
            RequestError::NotConnected
                | RequestError::Closed
                | RequestError::QueueFull
                | RequestError::Refused
                | RequestError::HeadTooLarge { .. }
        )
    }

    /// The error for a stream that ended before its response head, from its outcome.
    pub(crate) fn from_outcome(outcome: Outcome, timeout: Option<Duration>) -> Self {
        match outcome {
            Outcome::Refused => RequestError::Refused,
            Outcome::Reset { code, .. } if code.is_safe_to_retry() => RequestError::Refused,
            Outcome::Reset { code, initiator } => RequestError::Reset { code, initiator },
            Outcome::TimedOut => RequestError::TimedOut(timeout.unwrap_or_default()),
            _ => RequestError::ConnectionLost,
        }
    }
}

impl BodyError {
    /// The error for a body whose stream ended abnormally (`None` for a finished one).
    pub(crate) fn from_outcome(outcome: &Outcome) -> Option<Self> {
        match outcome {
            Outcome::Finished => None,
            Outcome::Reset { code, initiator } => Some(BodyError::Reset {
                code: *code,
                initiator: *initiator,
            }),
            Outcome::Refused => Some(BodyError::Reset {
                code: ResetCode::REFUSED_STREAM,
                initiator: Initiator::Peer,
            }),
            Outcome::TimedOut => Some(BodyError::TimedOut),
            _ => Some(BodyError::ConnectionLost),
        }
    }
}
