//! HELLO and WELCOME payloads (spec/protocol.md §3.4.1, §3.4.2). ACK has no payload and
//! is handled in the frame dispatcher.

use bytes::{BufMut, Bytes, BytesMut};
use std::fmt;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::reader::Reader;
use super::{put_header, FrameError, FrameHeader, FrameType, Settings, StreamId};
use crate::Limits;

/// HELLO flag: the payload carries a [`Resume`] request.
pub(crate) const HELLO_RESUME: u8 = 0x01;
/// WELCOME flag: the server continued the session named in the HELLO.
pub(crate) const WELCOME_RESUMED: u8 = 0x01;
/// The most versions a HELLO may list.
pub const MAX_VERSIONS: u8 = 16;
/// How deep arrays and objects may nest in HELLO metadata (`[[]]` is 2 deep;
/// spec/protocol.md §3.4.1).
pub const MAX_METADATA_DEPTH: usize = 64;

/// Parses HELLO metadata as spec/protocol.md §3.4.1 defines it: exactly one JSON value
/// (RFC 8259) in UTF-8, arrays and objects nested at most [`MAX_METADATA_DEPTH`] deep,
/// no number whose magnitude is too large for an IEEE 754 double, no `\u` escape that is
/// a lone surrogate. Empty metadata is `Null`; anything else that breaks a rule is
/// `None` (the receiver closes with 4004). What passes here is exactly what decodes, so
/// the value an application reads is never silently different from what was sent.
pub fn parse_metadata(bytes: &[u8]) -> Option<serde_json::Value> {
    if bytes.is_empty() {
        return Some(serde_json::Value::Null);
    }
    if nesting_depth(bytes) > MAX_METADATA_DEPTH {
        return None;
    }
    // serde_json checks UTF-8 (also inside strings), refuses lone surrogates and numbers
    // out of range, and its own recursion limit (128) lies beyond ours.
    serde_json::from_slice(bytes).ok()
}

/// The deepest nesting of `[`/`{` outside strings. Exact for valid JSON; for anything else
/// the parser refuses the text anyway.
fn nesting_depth(bytes: &[u8]) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &b in bytes {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// The 128-bit secret that lets a client resume its session (spec/protocol.md §3.4.2).
///
/// Equality is constant-time, and `Debug` does not print the secret.
#[derive(Clone, Copy, Eq)]
pub struct ResumeToken([u8; 16]);

impl ResumeToken {
    /// Wraps 16 bytes (which the server draws from its random source).
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        ResumeToken(bytes)
    }

    /// The token's bytes.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl PartialEq for ResumeToken {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for ResumeToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResumeToken(..)")
    }
}

/// What a client presents to resume a session: the connection id and its token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resume {
    /// The id of the session to resume.
    pub connection_id: Uuid,
    /// The secret the server gave with that id.
    pub token: ResumeToken,
}

/// HELLO: the client's opening message (spec/protocol.md §3.4.1).
///
/// ```text
/// +---------------+-------------------------------+
/// | N (8)         | Version (16) x N ...          |
/// +---------------+-------------------------------+
/// | [RESUME flag] Connection Id (128), Token (128)|
/// +-----------------------------------------------+
/// | Settings block (§3.6)                         |
/// +-----------------------------------------------+
/// | Metadata: one JSON value, UTF-8 (rest)     ...|
/// +-----------------------------------------------+
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// Protocol versions the client speaks, most preferred first (1 to 16 entries).
    pub versions: Vec<u16>,
    /// Present when the client asks to resume a session.
    pub resume: Option<Resume>,
    /// The client's settings.
    pub settings: Settings,
    /// The client's metadata, one JSON value as UTF-8 text; empty means none. It is
    /// checked to be JSON when decoded, and is a slice of the received message.
    pub metadata: Bytes,
}

impl Hello {
    pub(crate) fn load(
        head: FrameHeader,
        payload: Bytes,
        limits: &Limits,
    ) -> Result<Self, FrameError> {
        head.require_zero_stream()?;
        let mut r = Reader::new(FrameType::Hello, &payload);
        let count = r.u8()?;
        if count == 0 || count > MAX_VERSIONS {
            return Err(FrameError::BadVersionCount { count });
        }
        let mut versions = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            versions.push(r.u16()?);
        }
        let resume = if head.has(HELLO_RESUME) {
            let connection_id = Uuid::from_bytes(r.array()?);
            Some(Resume {
                connection_id,
                token: ResumeToken(r.array()?),
            })
        } else {
            None
        };
        let settings = Settings::read(&mut r)?;
        let rest = r.rest();
        if rest.len() > limits.max_metadata_size as usize {
            return Err(FrameError::MetadataTooLarge {
                len: rest.len(),
                max: limits.max_metadata_size,
            });
        }
        if parse_metadata(rest).is_none() {
            return Err(FrameError::MetadataNotJson);
        }
        let metadata = payload.slice_ref(rest);
        Ok(Hello {
            versions,
            resume,
            settings,
            metadata,
        })
    }

    /// The metadata parsed as a JSON value (`Null` when there is none). A decoded HELLO
    /// always has metadata that [`parse_metadata`] accepts; only a `Hello` built by hand
    /// with invalid metadata yields `Null` here.
    pub fn metadata_json(&self) -> serde_json::Value {
        parse_metadata(&self.metadata).unwrap_or(serde_json::Value::Null)
    }

    pub(crate) fn encode(&self, dst: &mut BytesMut) {
        let flags = if self.resume.is_some() {
            HELLO_RESUME
        } else {
            0
        };
        let len = 1
            + 2 * self.versions.len()
            + if self.resume.is_some() { 32 } else { 0 }
            + self.settings.encoded_len()
            + self.metadata.len();
        dst.reserve(super::HEADER_LEN + len);
        put_header(dst, FrameType::Hello, flags, StreamId::ZERO);
        // At most MAX_VERSIONS are meaningful; more would not decode, so none are written.
        let versions = &self.versions[..self.versions.len().min(usize::from(MAX_VERSIONS))];
        dst.put_u8(versions.len() as u8);
        for v in versions {
            dst.put_u16(*v);
        }
        if let Some(resume) = &self.resume {
            dst.put_slice(resume.connection_id.as_bytes());
            dst.put_slice(resume.token.as_bytes());
        }
        self.settings.encode(dst);
        dst.put_slice(&self.metadata);
    }
}

/// WELCOME: the server's acceptance (spec/protocol.md §3.4.2).
///
/// ```text
/// +-------------------------------+
/// | Version (16)                  |
/// +-------------------------------+
/// | Connection Id (128)           |
/// +-------------------------------+
/// | Resume Token (128)            |
/// +-------------------------------+
/// | Settings block (§3.6)         |
/// +-------------------------------+
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Welcome {
    /// The version both sides now speak (one the HELLO listed).
    pub version: u16,
    /// The connection's id (a UUID v4).
    pub connection_id: Uuid,
    /// The secret that resumes this session.
    pub resume_token: ResumeToken,
    /// Whether this continues the session named by the HELLO's resume request.
    pub resumed: bool,
    /// The settings of the connection (§3.6).
    pub settings: Settings,
}

impl Welcome {
    pub(crate) fn load(head: FrameHeader, payload: &[u8]) -> Result<Self, FrameError> {
        head.require_zero_stream()?;
        let mut r = Reader::new(FrameType::Welcome, payload);
        let version = r.u16()?;
        let connection_id = Uuid::from_bytes(r.array()?);
        let resume_token = ResumeToken(r.array()?);
        let settings = Settings::read(&mut r)?;
        r.finish()?;
        let resumed = head.has(WELCOME_RESUMED);
        Ok(Welcome {
            version,
            connection_id,
            resume_token,
            resumed,
            settings,
        })
    }

    pub(crate) fn encode(&self, dst: &mut BytesMut) {
        let flags = if self.resumed { WELCOME_RESUMED } else { 0 };
        dst.reserve(super::HEADER_LEN + 34 + self.settings.encoded_len());
        put_header(dst, FrameType::Welcome, flags, StreamId::ZERO);
        dst.put_u16(self.version);
        dst.put_slice(self.connection_id.as_bytes());
        dst.put_slice(self.resume_token.as_bytes());
        self.settings.encode(dst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// spec/protocol.md §11 [11-1]: the token is never logged: no `Debug` output of a
    /// value that carries it (the token, a Resume, a HELLO, a frame) shows its bytes; and
    /// tokens compare by value (the comparison itself is `subtle`'s constant-time one).
    #[test]
    fn the_resume_token_is_never_printed() {
        let token = ResumeToken::from_bytes([0xee; 16]);
        let resume = Resume {
            connection_id: Uuid::nil(),
            token,
        };
        let hello = Hello {
            versions: vec![1],
            resume: Some(resume),
            settings: Settings::default(),
            metadata: Bytes::new(),
        };
        for text in [
            format!("{token:?}"),
            format!("{resume:?}"),
            format!("{hello:?}"),
            format!("{:?}", crate::Frame::Hello(hello.clone())),
            format!("{:#?}", crate::Frame::Hello(hello)),
        ] {
            let lower = text.to_ascii_lowercase();
            for shown in ["eeee", "\\xee", "238"] {
                assert!(!lower.contains(shown), "the token shows in {text}");
            }
        }
        assert_eq!(token, ResumeToken::from_bytes([0xee; 16]));
        let mut other = [0xee; 16];
        other[15] = 0xef;
        assert_ne!(token, ResumeToken::from_bytes(other));
    }

    fn nested(depth: usize) -> Vec<u8> {
        let mut v = vec![b'['; depth];
        v.extend(std::iter::repeat_n(b']', depth));
        v
    }

    #[test]
    fn metadata_that_decodes_is_exactly_what_parses() {
        // spec/protocol.md §3.4.1: each of these was accepted while `metadata_json()`
        // returned Null (issue 9).
        for bad in [
            &b"\"\xff\xfe\""[..],
            b"{\"k\":\"\xc3\"}",
            b"\"\\ud800\"",
            b"\"\\udc00x\"",
            b"1e99999",
            b"-1e99999",
            b"[1e400]",
            b"\xef\xbb\xbf{}",
            b"1 2",
            b"NaN",
        ] {
            assert_eq!(
                parse_metadata(bad),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(parse_metadata(&nested(MAX_METADATA_DEPTH + 1)), None);
        assert_eq!(parse_metadata(&nested(4096)), None);
        let mut objects = b"{\"a\":".repeat(MAX_METADATA_DEPTH + 1);
        objects.extend(b"1");
        objects.extend(b"}".repeat(MAX_METADATA_DEPTH + 1));
        assert_eq!(parse_metadata(&objects), None);

        for good in [
            &b""[..],
            b"null",
            b" {\"user\":\"ada\"} ",
            b"\"\\ud83d\\ude00\"",
            b"\"\xc3\xa9\"",
            b"1e308",
            b"1e-99999",
            b"18446744073709551616",
            b"\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\"",
            b"[\"\\\"[\"]",
        ] {
            assert!(
                parse_metadata(good).is_some(),
                "{}",
                String::from_utf8_lossy(good)
            );
        }
        let deepest = nested(MAX_METADATA_DEPTH);
        assert!(parse_metadata(&deepest).is_some());
        let hello = Hello {
            versions: vec![1],
            resume: None,
            settings: Settings::default(),
            metadata: Bytes::from(deepest),
        };
        assert_ne!(hello.metadata_json(), serde_json::Value::Null);
    }
}
