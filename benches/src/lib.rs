//! Shared fixtures for Tether's criterion benchmarks (`benches/benches/*.rs`).
//!
//! The benchmarks live in `benches/benches/`; this library holds what more than one of
//! them needs, so that each bench file only says what it measures:
//!
//! - [`request_head`], [`upload_head`] and [`response_head`]: typical HTTP heads;
//! - [`body`]: a deterministic binary body;
//! - [`bench_limits`]: receive limits raised so a 1 MiB DATA frame decodes;
//! - [`envelope`]: the baseline, a request carried as a JSON envelope with a base64 body
//!   the way swaggersocket- and Socket.IO-style systems carry it;
//! - [`tether`]: the same request carried as a Tether HEADERS frame plus a DATA frame.
//!
//! Results and the command that produced them: `benches/RESULTS.md`.
//!
//! ```
//! use tether_benches::{body, upload_head};
//! let (head, body) = (upload_head(), body(1024));
//! let mut round = tether_benches::tether::RoundTrip::new(&head, &body);
//! let (decoded_head, decoded_body) = round.run().unwrap();
//! assert_eq!(decoded_head, head);
//! assert_eq!(decoded_body, body);
//! ```
#![warn(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{Method, StatusCode, Uri};
use tether_proto::{Limits, RequestHead, ResponseHead};

/// Receive limits for the benchmarks: the defaults with `max_frame_payload` raised to the
/// protocol's maximum (16 MiB), so that a DATA frame with a 1 MiB payload decodes.
pub fn bench_limits() -> Limits {
    Limits {
        max_frame_payload: Limits::MAX_FRAME_PAYLOAD,
        ..Limits::default()
    }
}

/// The eight header fields of the typical request: what a browser or API client sends.
const REQUEST_FIELDS: [(&str, &str); 8] = [
    ("host", "api.example.com"),
    ("user-agent", "tether-bench/0.1 (x86_64-unknown-linux-gnu) rustc"),
    ("accept", "application/json, text/plain;q=0.9, */*;q=0.8"),
    ("accept-encoding", "gzip, deflate, br"),
    (
        "authorization",
        "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI0NzExIiwiZXhwIjoxNzAwMDAwMDAwfQ.c2lnbmF0dXJlLW5vdC1yZWFs",
    ),
    ("x-request-id", "3f2b8c1e-9a4d-4e7b-8c21-5d6f0a1b2c3d"),
    ("content-type", "application/json"),
    (
        "cookie",
        "session=a81f3c0d9e7b4a62; theme=dark; locale=en-GB; consent=analytics",
    ),
];

/// Path and query of the typical request.
const REQUEST_TARGET: &str = "/api/v1/customers/4711/orders?status=open&sort=-created&limit=50";

/// The six header fields of the typical response.
const RESPONSE_FIELDS: [(&str, &str); 6] = [
    ("content-type", "application/json; charset=utf-8"),
    ("content-length", "16384"),
    ("cache-control", "no-store"),
    ("date", "Sun, 22 Nov 2026 05:00:00 GMT"),
    ("x-request-id", "3f2b8c1e-9a4d-4e7b-8c21-5d6f0a1b2c3d"),
    ("etag", "\"5d6f0a1b2c3d\""),
];

fn with_fields<'a>(
    headers: &mut http::HeaderMap,
    fields: impl IntoIterator<Item = &'a (&'static str, &'static str)>,
) {
    for (name, value) in fields {
        headers.append(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
}

/// A typical API request head: `GET` with a path and query string and eight header fields
/// (host, user-agent, accept, accept-encoding, authorization, x-request-id, content-type,
/// cookie).
pub fn request_head() -> RequestHead {
    let mut head = RequestHead::new(Method::GET, Uri::from_static(REQUEST_TARGET));
    with_fields(&mut head.headers, &REQUEST_FIELDS);
    head
}

/// [`request_head`] with method `POST`: the head of a request that carries a body.
pub fn upload_head() -> RequestHead {
    RequestHead {
        method: Method::POST,
        ..request_head()
    }
}

/// A typical response head: `200 OK` with six header fields.
pub fn response_head() -> ResponseHead {
    let mut head = ResponseHead::new(StatusCode::OK);
    with_fields(&mut head.headers, &RESPONSE_FIELDS);
    head
}

/// `len` bytes of deterministic, incompressible-looking binary data (xorshift64), so that
/// neither side benefits from a body of zeros or of printable text.
pub fn body(len: usize) -> Bytes {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let take = (len - out.len()).min(8);
        out.extend_from_slice(&state.to_le_bytes()[..take]);
    }
    Bytes::from(out)
}

/// A byte count for bench labels: `64B`, `1KiB`, `16KiB`, `1MiB`.
pub fn size_label(len: usize) -> String {
    match len {
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{}MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{}KiB", n >> 10),
        n => format!("{n}B"),
    }
}

pub mod envelope {
    //! The baseline: a request as a JSON envelope with a base64 body.
    //!
    //! This is how swaggersocket- and Socket.IO-style systems put an HTTP request on a
    //! WebSocket: one text message
    //! `{"id":..,"method":..,"url":..,"headers":{..},"body":"<base64>"}`.
    //!
    //! The implementation is deliberately kind to the baseline: output buffers are reused
    //! across calls, method, URL and the base64 text are borrowed from the message when
    //! they contain no escapes, and the parsed request is left as strings (Tether's side
    //! also validates every header field and builds `http` types). Header fields are owned
    //! strings after parsing, as they are in the systems this models.

    use std::borrow::Cow;
    use std::collections::HashMap;

    use base64::Engine as _;
    use serde::ser::SerializeMap;
    use serde::{Deserialize, Serialize, Serializer};
    use tether_proto::RequestHead;

    const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

    /// The envelope as it is written: borrows the request it describes.
    #[derive(Debug, Serialize)]
    pub struct EnvelopeOut<'a> {
        /// Request id (the envelope's multiplexing key).
        pub id: u64,
        /// Request method.
        pub method: &'a str,
        /// Request target.
        pub url: &'a str,
        /// Header fields as a JSON object.
        #[serde(serialize_with = "serialize_fields")]
        pub headers: &'a http::HeaderMap,
        /// The body, base64-encoded.
        pub body: &'a str,
    }

    fn serialize_fields<S: Serializer>(
        headers: &&http::HeaderMap,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(headers.len()))?;
        for (name, value) in headers.iter() {
            map.serialize_entry(name.as_str(), &String::from_utf8_lossy(value.as_bytes()))?;
        }
        map.end()
    }

    /// The envelope as it is read back.
    #[derive(Debug, Deserialize)]
    pub struct EnvelopeIn<'a> {
        /// Request id.
        pub id: u64,
        /// Request method.
        #[serde(borrow)]
        pub method: Cow<'a, str>,
        /// Request target.
        #[serde(borrow)]
        pub url: Cow<'a, str>,
        /// Header fields.
        pub headers: HashMap<String, String>,
        /// The body, base64-encoded.
        #[serde(borrow)]
        pub body: Cow<'a, str>,
    }

    /// A request parsed from an envelope: the envelope's fields and the decoded body.
    #[derive(Debug)]
    pub struct Parsed<'a> {
        /// The envelope with the body still base64 text.
        pub envelope: EnvelopeIn<'a>,
        /// The decoded body.
        pub body: Vec<u8>,
    }

    /// Why an envelope did not parse.
    #[derive(Debug, thiserror::Error)]
    pub enum EnvelopeError {
        /// The message is not a valid envelope.
        #[error("invalid JSON envelope: {0}")]
        Json(#[from] serde_json::Error),
        /// The body is not valid base64.
        #[error("invalid base64 body: {0}")]
        Base64(#[from] base64::DecodeError),
    }

    /// Writes and parses envelopes, reusing its buffers across requests.
    #[derive(Debug, Default)]
    pub struct EnvelopeCodec {
        body_text: String,
        message: Vec<u8>,
    }

    impl EnvelopeCodec {
        /// A codec with empty buffers (they grow on first use and are then reused).
        pub fn new() -> Self {
            Self::default()
        }

        /// Writes the envelope for one request and returns the message bytes.
        pub fn encode(&mut self, id: u64, head: &RequestHead, body: &[u8]) -> &[u8] {
            self.body_text.clear();
            BASE64.encode_string(body, &mut self.body_text);
            let url = head
                .uri
                .path_and_query()
                .map_or("/", http::uri::PathAndQuery::as_str);
            let envelope = EnvelopeOut {
                id,
                method: head.method.as_str(),
                url,
                headers: &head.headers,
                body: &self.body_text,
            };
            self.message.clear();
            serde_json::to_writer(&mut self.message, &envelope)
                .expect("serializing to a Vec cannot fail");
            &self.message
        }
    }

    /// Parses one envelope message and decodes its body.
    pub fn decode(message: &[u8]) -> Result<Parsed<'_>, EnvelopeError> {
        let envelope: EnvelopeIn<'_> = serde_json::from_slice(message)?;
        let body = BASE64.decode(envelope.body.as_bytes())?;
        Ok(Parsed { envelope, body })
    }
}

pub mod tether {
    //! The same request carried by Tether: a HEADERS frame and a DATA frame.

    use bytes::{Bytes, BytesMut};
    use tether_proto::{Data, Frame, FrameError, Head, Headers, Limits, RequestHead, StreamId};

    use crate::bench_limits;

    /// Encodes a request as HEADERS + DATA with the full-copy [`Frame::encode`] (the body
    /// is copied into the message, as the envelope copies it into its text), then
    /// decodes both messages.
    #[derive(Debug)]
    pub struct RoundTrip {
        head: Frame,
        data: Frame,
        buf: BytesMut,
        limits: Limits,
    }

    /// Why a round trip failed.
    #[derive(Debug, thiserror::Error)]
    pub enum RoundTripError {
        /// A frame did not decode.
        #[error(transparent)]
        Frame(#[from] FrameError),
        /// A frame decoded to an unexpected type.
        #[error("unexpected frame {0:?}")]
        Unexpected(Box<Frame>),
    }

    impl RoundTrip {
        /// Prepares the frames for `head` and `body` on stream 1.
        pub fn new(head: &RequestHead, body: &Bytes) -> Self {
            let stream_id = StreamId::new(1);
            RoundTrip {
                head: Frame::Headers(Headers {
                    stream_id,
                    end_stream: false,
                    head: Head::Request(head.clone()),
                }),
                data: Frame::Data(Data {
                    stream_id,
                    end_stream: true,
                    payload: body.clone(),
                }),
                buf: BytesMut::with_capacity(body.len() + 1024),
                limits: bench_limits(),
            }
        }

        /// Encodes both frames into the reused buffer, each as its own message.
        pub fn encode(&mut self) -> (Bytes, Bytes) {
            self.head.encode(&mut self.buf);
            let head_msg = self.buf.split().freeze();
            self.data.encode(&mut self.buf);
            let data_msg = self.buf.split().freeze();
            (head_msg, data_msg)
        }

        /// Encodes and decodes the request; returns the decoded head and body.
        pub fn run(&mut self) -> Result<(RequestHead, Bytes), RoundTripError> {
            let (head_msg, data_msg) = self.encode();
            let head = match Frame::decode(head_msg, &self.limits)? {
                Frame::Headers(Headers {
                    head: Head::Request(head),
                    ..
                }) => head,
                other => return Err(RoundTripError::Unexpected(Box::new(other))),
            };
            let body = match Frame::decode(data_msg, &self.limits)? {
                Frame::Data(data) => data.payload,
                other => return Err(RoundTripError::Unexpected(Box::new(other))),
            };
            Ok((head, body))
        }
    }
}

/// The criterion settings every bench here uses: short warm-up and measurement, so the
/// whole suite runs in a few minutes on a 2-core machine (compare ratios within a run).
pub fn criterion() -> criterion::Criterion {
    criterion::Criterion::default()
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_round_trip_preserves_the_request() {
        let (head, body) = (upload_head(), body(16 * 1024));
        let mut codec = envelope::EnvelopeCodec::new();
        let msg = codec.encode(7, &head, &body).to_vec();
        let parsed = envelope::decode(&msg).unwrap();
        assert_eq!(parsed.envelope.id, 7);
        assert_eq!(parsed.envelope.method, "POST");
        assert_eq!(parsed.envelope.url, REQUEST_TARGET);
        assert_eq!(parsed.envelope.headers.len(), 8);
        assert_eq!(parsed.envelope.headers["cookie"], REQUEST_FIELDS[7].1);
        assert_eq!(parsed.body, &body[..]);
        // The base64 text and the URL are borrowed from the message, not copied.
        assert!(matches!(
            parsed.envelope.body,
            std::borrow::Cow::Borrowed(_)
        ));
        assert!(matches!(parsed.envelope.url, std::borrow::Cow::Borrowed(_)));
    }

    #[test]
    fn envelope_rejects_garbage() {
        assert!(envelope::decode(b"{\"id\":1").is_err());
        let bad_body = br#"{"id":1,"method":"GET","url":"/","headers":{},"body":"not base64!"}"#;
        assert!(matches!(
            envelope::decode(bad_body),
            Err(envelope::EnvelopeError::Base64(_))
        ));
    }

    #[test]
    fn tether_round_trip_preserves_the_request_every_time() {
        let (head, body) = (upload_head(), body(16 * 1024));
        let mut round = tether::RoundTrip::new(&head, &body);
        for _ in 0..3 {
            let (h, b) = round.run().unwrap();
            assert_eq!(h, head);
            assert_eq!(b, body);
        }
    }

    #[test]
    fn fixtures_have_the_advertised_shape() {
        assert_eq!(request_head().headers.len(), 8);
        assert_eq!(request_head().method, Method::GET);
        assert_eq!(response_head().headers.len(), 6);
        assert_eq!(body(1000).len(), 1000);
        assert_eq!(body(64), body(64));
        assert!(bench_limits().validate().is_ok());
        assert_eq!(size_label(64), "64B");
        assert_eq!(size_label(16 * 1024), "16KiB");
        assert_eq!(size_label(1 << 20), "1MiB");
    }
}
