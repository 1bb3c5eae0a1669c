//! Why a message could not be decoded, and what the receiver does about it
//! (spec/protocol.md §3.5).

use super::{FrameType, StreamId};
use crate::head::HeadError;
use crate::{CloseCode, ResetCode};

/// A message that is not a valid Tether frame. Each variant names what was wrong;
/// [`FrameError::reaction`] gives the receiver's defined response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The message is shorter than the 8-byte frame header.
    #[error("message of {len} bytes is shorter than the 8-byte frame header")]
    TruncatedHeader {
        /// The message's length.
        len: usize,
    },
    /// The type byte is not a v1 frame type.
    #[error("unknown frame type 0x{ty:02x}")]
    UnknownType {
        /// The type byte.
        ty: u8,
    },
    /// The payload is larger than `max_frame_payload`.
    #[error("{ty} payload of {len} bytes exceeds the limit of {max}")]
    PayloadTooLarge {
        /// The frame's type.
        ty: FrameType,
        /// The payload's length.
        len: usize,
        /// The limit.
        max: u32,
    },
    /// A connection frame carries a non-zero stream id.
    #[error("{ty} frame must be on stream 0, not {stream_id}")]
    StreamIdNotZero {
        /// The frame's type.
        ty: FrameType,
        /// The stream id it carried.
        stream_id: StreamId,
    },
    /// A stream frame carries stream id 0.
    #[error("{ty} frame must not be on stream 0")]
    StreamIdZero {
        /// The frame's type.
        ty: FrameType,
    },
    /// The payload ends before all of the type's fields.
    #[error("{ty} payload ends before its fields do")]
    Truncated {
        /// The frame's type.
        ty: FrameType,
    },
    /// Bytes follow the last field of a fixed-layout payload.
    #[error("{ty} payload has bytes after its last field")]
    TrailingBytes {
        /// The frame's type.
        ty: FrameType,
    },
    /// A payload whose size is fixed or bounded has another size.
    #[error("{ty} payload has an invalid length of {len} bytes")]
    BadLength {
        /// The frame's type.
        ty: FrameType,
        /// The payload's length.
        len: usize,
    },
    /// A HELLO lists no protocol version, or more than 16.
    #[error("HELLO must list 1 to 16 versions, not {count}")]
    BadVersionCount {
        /// The count it carried.
        count: u8,
    },
    /// A settings block announces more than 64 entries.
    #[error("settings block announces {count} entries; at most 64 are allowed")]
    TooManySettings {
        /// The count it announced.
        count: u16,
    },
    /// A setting appears twice.
    #[error("setting 0x{id:04x} appears twice")]
    DuplicateSetting {
        /// The setting's id.
        id: u16,
    },
    /// A known setting has a value outside its range.
    #[error("setting 0x{id:04x} has out-of-range value {value}")]
    InvalidSetting {
        /// The setting's id.
        id: u16,
        /// The value.
        value: u32,
    },
    /// HELLO metadata is larger than `max_metadata_size`.
    #[error("HELLO metadata of {len} bytes exceeds the limit of {max}")]
    MetadataTooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: u32,
    },
    /// HELLO metadata is not one JSON value.
    #[error("HELLO metadata is not valid JSON")]
    MetadataNotJson,
    /// A WINDOW_UPDATE increment of zero.
    #[error("WINDOW_UPDATE on stream {stream_id} has a zero increment")]
    ZeroWindowIncrement {
        /// The stream (0 = connection window).
        stream_id: StreamId,
    },
    /// A GOAWAY reason that is not UTF-8.
    #[error("GOAWAY reason is not UTF-8")]
    InvalidReason,
    /// HEADERS flags that contradict each other (RESPONSE with TRAILERS, or TRAILERS
    /// without END_STREAM).
    #[error("HEADERS on stream {stream_id} has contradictory flags 0x{flags:02x}")]
    ConflictingFlags {
        /// The stream.
        stream_id: StreamId,
        /// The flags byte.
        flags: u8,
    },
    /// The HTTP head of a HEADERS frame is invalid.
    #[error("HEADERS on stream {stream_id}: {error}")]
    Head {
        /// The stream.
        stream_id: StreamId,
        /// What was wrong with the head.
        error: HeadError,
    },
}

/// What a receiver does about a [`FrameError`] (spec/protocol.md §3.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reaction {
    /// Close the connection with this WebSocket close code.
    Close(CloseCode),
    /// Reset this stream with this code; the connection stays up.
    Reset(StreamId, ResetCode),
}

impl FrameError {
    /// The stable name used in spec/vectors (e.g. `"truncated_header"`).
    pub const fn name(&self) -> &'static str {
        match self {
            FrameError::TruncatedHeader { .. } => "truncated_header",
            FrameError::UnknownType { .. } => "unknown_type",
            FrameError::PayloadTooLarge { .. } => "payload_too_large",
            FrameError::StreamIdNotZero { .. } => "stream_id_not_zero",
            FrameError::StreamIdZero { .. } => "stream_id_zero",
            FrameError::Truncated { .. } => "truncated_payload",
            FrameError::TrailingBytes { .. } => "trailing_bytes",
            FrameError::BadLength { .. } => "bad_length",
            FrameError::BadVersionCount { .. } => "bad_version_count",
            FrameError::TooManySettings { .. } => "too_many_settings",
            FrameError::DuplicateSetting { .. } => "duplicate_setting",
            FrameError::InvalidSetting { .. } => "invalid_setting",
            FrameError::MetadataTooLarge { .. } => "metadata_too_large",
            FrameError::MetadataNotJson => "metadata_not_json",
            FrameError::ZeroWindowIncrement { .. } => "zero_window_increment",
            FrameError::InvalidReason => "invalid_reason",
            FrameError::ConflictingFlags { .. } => "conflicting_flags",
            FrameError::Head { error, .. } => error.name(),
        }
    }

    /// The type of the frame a stream-level error (a [`Reaction::Reset`]) came in;
    /// `None` for errors that close the connection.
    pub const fn frame_type(&self) -> Option<FrameType> {
        match self {
            FrameError::ZeroWindowIncrement { .. } => Some(FrameType::WindowUpdate),
            FrameError::ConflictingFlags { .. } | FrameError::Head { .. } => {
                Some(FrameType::Headers)
            }
            _ => None,
        }
    }

    /// The receiver's reaction: errors inside one stream's HEADERS or WINDOW_UPDATE reset
    /// that stream; everything else closes the connection.
    pub const fn reaction(&self) -> Reaction {
        match self {
            FrameError::PayloadTooLarge { .. } => Reaction::Close(CloseCode::MESSAGE_TOO_BIG),
            FrameError::MetadataTooLarge { .. } | FrameError::MetadataNotJson => {
                Reaction::Close(CloseCode::INVALID_METADATA)
            }
            FrameError::ZeroWindowIncrement { stream_id } if !stream_id.is_zero() => {
                Reaction::Reset(*stream_id, ResetCode::PROTOCOL_ERROR)
            }
            FrameError::ConflictingFlags { stream_id, .. } => {
                Reaction::Reset(*stream_id, ResetCode::PROTOCOL_ERROR)
            }
            FrameError::Head { stream_id, error } => {
                Reaction::Reset(*stream_id, error.reset_code())
            }
            _ => Reaction::Close(CloseCode::PROTOCOL_ERROR),
        }
    }
}
