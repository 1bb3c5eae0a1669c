//! Receive limits (spec/protocol.md §5).
//!
//! Every limit the codec enforces lives in [`Limits`]. Each is checked before memory is
//! reserved for the thing it bounds.

/// The limits a receiver enforces while decoding frames (spec/protocol.md §5).
///
/// ```
/// use tether_proto::Limits;
/// let limits = Limits { max_header_count: 32, ..Limits::default() };
/// assert!(limits.validate().is_ok());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest frame payload accepted, in bytes (the frame header is not counted).
    /// Default 65,536; allowed 1,024..=16,777,216.
    pub max_frame_payload: u32,
    /// Largest encoded HTTP head (request, response or trailers), in bytes.
    /// Default 16,384; allowed 256..=`max_frame_payload`.
    pub max_head_size: u32,
    /// Most header fields in one head. Default 100; allowed 1..=1,024.
    pub max_header_count: u16,
    /// Largest HELLO metadata, in bytes. Default 8,192; at most `max_frame_payload`.
    pub max_metadata_size: u32,
}

impl Limits {
    /// Lower bound of `max_frame_payload`.
    pub const MIN_FRAME_PAYLOAD: u32 = 1024;
    /// Upper bound of `max_frame_payload`.
    pub const MAX_FRAME_PAYLOAD: u32 = 16 * 1024 * 1024;
    /// Lower bound of `max_head_size`.
    pub const MIN_HEAD_SIZE: u32 = 256;
    /// Upper bound of `max_header_count`.
    pub const MAX_HEADER_COUNT: u16 = 1024;

    /// Checks that the limits are within the ranges of spec/protocol.md §5.
    pub fn validate(&self) -> Result<(), LimitsError> {
        let bad = |field: &'static str, value: u64| Err(LimitsError { field, value });
        if !(Self::MIN_FRAME_PAYLOAD..=Self::MAX_FRAME_PAYLOAD).contains(&self.max_frame_payload) {
            return bad("max_frame_payload", self.max_frame_payload.into());
        }
        if !(Self::MIN_HEAD_SIZE..=self.max_frame_payload).contains(&self.max_head_size) {
            return bad("max_head_size", self.max_head_size.into());
        }
        if !(1..=Self::MAX_HEADER_COUNT).contains(&self.max_header_count) {
            return bad("max_header_count", self.max_header_count.into());
        }
        if self.max_metadata_size > self.max_frame_payload {
            return bad("max_metadata_size", self.max_metadata_size.into());
        }
        Ok(())
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame_payload: 64 * 1024,
            max_head_size: 16 * 1024,
            max_header_count: 100,
            max_metadata_size: 8 * 1024,
        }
    }
}

/// A [`Limits`] field outside its allowed range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("limit {field} = {value} is outside the range allowed by spec/protocol.md §5")]
pub struct LimitsError {
    /// The field's name.
    pub field: &'static str,
    /// The rejected value.
    pub value: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        Limits::default().validate().unwrap();
    }

    #[test]
    fn out_of_range_is_named() {
        let l = Limits {
            max_frame_payload: 10,
            ..Limits::default()
        };
        assert_eq!(l.validate().unwrap_err().field, "max_frame_payload");
        let l = Limits {
            max_head_size: 128 * 1024,
            ..Limits::default()
        };
        assert_eq!(l.validate().unwrap_err().field, "max_head_size");
        let l = Limits {
            max_header_count: 0,
            ..Limits::default()
        };
        assert_eq!(l.validate().unwrap_err().field, "max_header_count");
        let l = Limits {
            max_metadata_size: u32::MAX,
            ..Limits::default()
        };
        assert_eq!(l.validate().unwrap_err().field, "max_metadata_size");
    }
}
