//! The settings block of HELLO and WELCOME (spec/protocol.md §3.6).
//!
//! ```text
//! +-------------------------------+
//! |         Count (16)            |
//! +-------------------------------+-------------------------------+
//! |  Identifier (16)              |  Value (32) ...               |
//! +-------------------------------+-------------------------------+
//! |  ... repeated Count times                                    ...
//! ```
//!
//! Identifiers this version does not know are skipped; a known identifier with a value
//! outside its range, or any identifier twice, is an error.

use bytes::{BufMut, BytesMut};

use super::reader::Reader;
use super::FrameError;

/// The settings one side announces in HELLO or WELCOME (spec/protocol.md §3.6). `None`
/// means "not sent"; the handshake section says which default then applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Settings {
    /// 0x01 HEARTBEAT_INTERVAL_MS: the heartbeat interval, after which silence the client
    /// probes and from which the server's longer probe delay follows (0 = no heartbeat,
    /// spec/protocol.md §8.2); the WELCOME's value applies to both sides (§7.4).
    pub heartbeat_interval_ms: Option<u32>,
    /// 0x02 HEARTBEAT_TIMEOUT_MS: silence after which a side declares its peer dead; the
    /// WELCOME's value applies to both sides (spec/protocol.md §7.4).
    pub heartbeat_timeout_ms: Option<u32>,
    /// 0x03 HEARTBEAT_CARRIER: 0 = WebSocket ping/pong, 1 = PING/PONG frames.
    pub heartbeat_carrier: Option<u32>,
    /// 0x04 MAX_FRAME_PAYLOAD: largest payload the sender accepts.
    pub max_frame_payload: Option<u32>,
    /// 0x05 MAX_HEAD_SIZE: largest HTTP head the sender accepts.
    pub max_head_size: Option<u32>,
    /// 0x06 MAX_HEADER_COUNT: most header fields per head the sender accepts.
    pub max_header_count: Option<u32>,
    /// 0x07 MAX_CONCURRENT_STREAMS: most streams the peer may have open toward the sender.
    pub max_concurrent_streams: Option<u32>,
    /// 0x08 INITIAL_STREAM_WINDOW: the sender's initial receive window per stream.
    pub initial_stream_window: Option<u32>,
    /// 0x09 INITIAL_CONNECTION_WINDOW: the sender's initial connection receive window.
    pub initial_connection_window: Option<u32>,
    /// 0x0a RESUME_WINDOW_MS: how long a lost session stays resumable (0 = never).
    pub resume_window_ms: Option<u32>,
}

/// The most settings a block may hold (spec/protocol.md §3.6).
pub(crate) const MAX_SETTINGS: u16 = 64;

const DAY_MS: u32 = 86_400_000;
const MAX_WINDOW: u32 = (1 << 31) - 1;

/// A setting value outside its range, as reported by [`Settings::validate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("setting {name} (0x{id:02x}) = {value} is outside {min}..={max}")]
pub struct SettingError {
    /// The setting's identifier.
    pub id: u16,
    /// The setting's spec name.
    pub name: &'static str,
    /// The rejected value.
    pub value: u32,
    /// Smallest allowed value.
    pub min: u32,
    /// Largest allowed value.
    pub max: u32,
}

/// (identifier, spec name, min, max) of every known setting, in identifier order.
const TABLE: [(u16, &str, u32, u32); 10] = [
    (0x01, "HEARTBEAT_INTERVAL_MS", 0, DAY_MS),
    (0x02, "HEARTBEAT_TIMEOUT_MS", 1, DAY_MS),
    (0x03, "HEARTBEAT_CARRIER", 0, 1),
    (0x04, "MAX_FRAME_PAYLOAD", 1024, 16 * 1024 * 1024),
    (0x05, "MAX_HEAD_SIZE", 256, 16 * 1024 * 1024),
    (0x06, "MAX_HEADER_COUNT", 1, 1024),
    (0x07, "MAX_CONCURRENT_STREAMS", 0, MAX_WINDOW),
    (0x08, "INITIAL_STREAM_WINDOW", 0, MAX_WINDOW),
    (0x09, "INITIAL_CONNECTION_WINDOW", 0, MAX_WINDOW),
    (0x0a, "RESUME_WINDOW_MS", 0, DAY_MS),
];

impl Settings {
    fn slot(&mut self, id: u16) -> Option<&mut Option<u32>> {
        Some(match id {
            0x01 => &mut self.heartbeat_interval_ms,
            0x02 => &mut self.heartbeat_timeout_ms,
            0x03 => &mut self.heartbeat_carrier,
            0x04 => &mut self.max_frame_payload,
            0x05 => &mut self.max_head_size,
            0x06 => &mut self.max_header_count,
            0x07 => &mut self.max_concurrent_streams,
            0x08 => &mut self.initial_stream_window,
            0x09 => &mut self.initial_connection_window,
            0x0a => &mut self.resume_window_ms,
            _ => return None,
        })
    }

    /// The value of setting `id`, if known and present.
    pub fn get(&self, id: u16) -> Option<u32> {
        match id {
            0x01 => self.heartbeat_interval_ms,
            0x02 => self.heartbeat_timeout_ms,
            0x03 => self.heartbeat_carrier,
            0x04 => self.max_frame_payload,
            0x05 => self.max_head_size,
            0x06 => self.max_header_count,
            0x07 => self.max_concurrent_streams,
            0x08 => self.initial_stream_window,
            0x09 => self.initial_connection_window,
            0x0a => self.resume_window_ms,
            _ => None,
        }
    }

    /// The settings present, as `(identifier, value)` in identifier order.
    pub fn iter(&self) -> impl Iterator<Item = (u16, u32)> + '_ {
        TABLE
            .iter()
            .filter_map(|&(id, ..)| self.get(id).map(|v| (id, v)))
    }

    /// Checks every present value against its range (spec/protocol.md §3.6).
    pub fn validate(&self) -> Result<(), SettingError> {
        for &(id, name, min, max) in &TABLE {
            if let Some(value) = self.get(id) {
                if !(min..=max).contains(&value) {
                    return Err(SettingError {
                        id,
                        name,
                        value,
                        min,
                        max,
                    });
                }
            }
        }
        Ok(())
    }

    /// Length of the encoded block.
    pub(crate) fn encoded_len(&self) -> usize {
        2 + 6 * self.iter().count()
    }

    pub(crate) fn encode(&self, dst: &mut BytesMut) {
        let count = self.iter().count();
        dst.put_u16(count as u16);
        for (id, value) in self.iter() {
            dst.put_u16(id);
            dst.put_u32(value);
        }
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Settings, FrameError> {
        let count = r.u16()?;
        if count > MAX_SETTINGS {
            return Err(FrameError::TooManySettings { count });
        }
        let mut settings = Settings::default();
        let mut seen_unknown = [0u16; MAX_SETTINGS as usize];
        for i in 0..usize::from(count) {
            let id = r.u16()?;
            let value = r.u32()?;
            match settings.slot(id) {
                Some(slot) if slot.is_some() => return Err(FrameError::DuplicateSetting { id }),
                Some(slot) => *slot = Some(value),
                None => {
                    if seen_unknown[..i].contains(&id) {
                        return Err(FrameError::DuplicateSetting { id });
                    }
                    seen_unknown[i] = id;
                }
            }
        }
        settings
            .validate()
            .map_err(|e| FrameError::InvalidSetting {
                id: e.id,
                value: e.value,
            })?;
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::FrameType;

    fn read(bytes: &[u8]) -> Result<Settings, FrameError> {
        Settings::read(&mut Reader::new(FrameType::Welcome, bytes))
    }

    #[test]
    fn unknown_ids_are_skipped_but_not_twice() {
        let s = read(b"\x00\x02\x7f\x00\x00\x00\x00\x09\x00\x04\x00\x00\x10\x00").unwrap();
        assert_eq!(s.max_frame_payload, Some(4096));
        assert_eq!(s.iter().count(), 1);
        assert_eq!(
            read(b"\x00\x02\x7f\x00\x00\x00\x00\x09\x7f\x00\x00\x00\x00\x09"),
            Err(FrameError::DuplicateSetting { id: 0x7f00 })
        );
    }

    #[test]
    fn ranges_are_enforced() {
        assert_eq!(
            read(b"\x00\x01\x00\x03\x00\x00\x00\x02"),
            Err(FrameError::InvalidSetting { id: 3, value: 2 })
        );
        let s = Settings {
            max_header_count: Some(0),
            ..Settings::default()
        };
        assert_eq!(s.validate().unwrap_err().name, "MAX_HEADER_COUNT");
    }

    #[test]
    fn count_is_bounded_before_reading() {
        assert_eq!(
            read(b"\xff\xff"),
            Err(FrameError::TooManySettings { count: 65535 })
        );
        assert_eq!(
            read(b"\x00\x01\x00"),
            Err(FrameError::Truncated {
                ty: FrameType::Welcome
            })
        );
    }
}
