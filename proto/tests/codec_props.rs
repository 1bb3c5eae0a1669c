//! Property tests of the codec: every frame survives encode then decode unchanged, and
//! no input at all makes the decoder panic. Failing cases are persisted by proptest and
//! replayable with `PROPTEST_SEED`-style regression files.

use bytes::{Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Uri};
use proptest::prelude::*;
use tether_proto::*;

fn limits() -> Limits {
    Limits {
        max_frame_payload: Limits::MAX_FRAME_PAYLOAD,
        ..Limits::default()
    }
}

fn stream_id() -> impl Strategy<Value = StreamId> {
    (1u32..).prop_map(StreamId::new)
}

fn bytes(max: usize) -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

fn header_map() -> impl Strategy<Value = HeaderMap> {
    let name = "[a-z][a-z0-9-]{0,15}".prop_filter("not connection-specific", |n| {
        !matches!(
            n.as_str(),
            "connection"
                | "keep-alive"
                | "proxy-connection"
                | "transfer-encoding"
                | "upgrade"
                | "te"
                | "content-length"
                | "tether-timeout"
        )
    });
    // Visible ASCII and obs-text, no leading/trailing whitespace (it is not significant).
    let value = proptest::collection::vec(
        prop_oneof![0x21u8..=0x7e, 0x80u8..=0xff, Just(b' '), Just(b'\t')],
        0..24,
    )
    .prop_map(|mut v| {
        while v.last().is_some_and(|b| *b == b' ' || *b == b'\t') {
            v.pop();
        }
        while v.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
            v.remove(0);
        }
        v
    });
    proptest::collection::vec((name, value), 0..10).prop_map(|fields| {
        let mut map = HeaderMap::new();
        for (n, v) in fields {
            map.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_bytes(&v).unwrap(),
            );
        }
        map
    })
}

fn uri() -> impl Strategy<Value = Uri> {
    prop_oneof![
        "/[a-zA-Z0-9._~/%-]{0,30}(\\?[a-z0-9=&]{0,20})?",
        "https?://[a-z]{1,10}(:[0-9]{1,4})?/[a-z0-9/]{0,10}",
    ]
    .prop_map(|s| s.parse::<Uri>().unwrap())
}

/// A method and a request-target that go together (spec/protocol.md §4.1): asterisk-form
/// with OPTIONS, authority-form with CONNECT, the other forms with any other method.
fn method_and_target() -> impl Strategy<Value = (Method, Uri)> {
    prop_oneof![
        (method(), uri()),
        Just((Method::OPTIONS, Uri::from_static("*"))),
        "[a-z]{1,10}:[0-9]{1,5}".prop_map(|a| (Method::CONNECT, a.parse::<Uri>().unwrap())),
    ]
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        Just(Method::GET),
        Just(Method::POST),
        Just(Method::PUT),
        Just(Method::DELETE),
        Just(Method::PATCH),
        "[A-Z]{1,12}"
            .prop_filter("CONNECT takes an authority-form target", |m| m != "CONNECT")
            .prop_map(|m| Method::from_bytes(m.as_bytes()).unwrap()),
    ]
}

fn head() -> impl Strategy<Value = Head> {
    prop_oneof![
        (
            method_and_target(),
            header_map(),
            proptest::option::of(0..=tether_proto::head::MAX_TIMEOUT_MS)
        )
            .prop_map(
                |((method, uri), headers, timeout_ms)| Head::Request(RequestHead {
                    method,
                    uri,
                    headers,
                    timeout_ms
                })
            ),
        (100u16..1000, header_map()).prop_map(|(s, headers)| Head::Response(ResponseHead {
            status: StatusCode::from_u16(s).unwrap(),
            headers
        })),
        header_map().prop_map(Head::Trailers),
    ]
}

fn settings() -> impl Strategy<Value = Settings> {
    (
        proptest::option::of(0u32..=86_400_000),
        proptest::option::of(1u32..=86_400_000),
        proptest::option::of(0u32..=1),
        proptest::option::of(1024u32..=16 << 20),
        proptest::option::of(0u32..=(1 << 31) - 1),
        proptest::option::of(0u32..=(1 << 31) - 1),
    )
        .prop_map(|(hi, ht, hc, mfp, isw, rw)| Settings {
            heartbeat_interval_ms: hi,
            heartbeat_timeout_ms: ht,
            heartbeat_carrier: hc,
            max_frame_payload: mfp,
            initial_stream_window: isw,
            resume_window_ms: rw.map(|v| v % 86_400_001),
            ..Settings::default()
        })
}

fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        (
            proptest::collection::vec(any::<u16>(), 1..=16),
            proptest::option::of((any::<[u8; 16]>(), any::<[u8; 16]>())),
            settings(),
            prop_oneof![
                Just(String::new()),
                "[a-z0-9 ]{0,20}".prop_map(|s| format!("{s:?}"))
            ],
        )
            .prop_map(|(versions, resume, settings, md)| Frame::Hello(Hello {
                versions,
                resume: resume.map(|(id, t)| Resume {
                    connection_id: uuid::Uuid::from_bytes(id),
                    token: ResumeToken::from_bytes(t)
                }),
                settings,
                metadata: Bytes::from(md),
            })),
        (
            any::<u16>(),
            any::<[u8; 16]>(),
            any::<[u8; 16]>(),
            any::<bool>(),
            settings()
        )
            .prop_map(
                |(version, id, t, resumed, settings)| Frame::Welcome(Welcome {
                    version,
                    connection_id: uuid::Uuid::from_bytes(id),
                    resume_token: ResumeToken::from_bytes(t),
                    resumed,
                    settings,
                })
            ),
        Just(Frame::Ack),
        (stream_id(), any::<bool>(), head()).prop_map(|(stream_id, end_stream, head)| {
            let end_stream = end_stream || matches!(head, Head::Trailers(_));
            Frame::Headers(Headers {
                stream_id,
                end_stream,
                head,
            })
        }),
        (stream_id(), any::<bool>(), bytes(4096)).prop_map(|(stream_id, end_stream, payload)| {
            Frame::Data(Data {
                stream_id,
                end_stream,
                payload,
            })
        }),
        (stream_id(), any::<u32>()).prop_map(|(stream_id, c)| Frame::Reset(Reset {
            stream_id,
            code: ResetCode::from_u(c)
        })),
        (any::<u32>(), 1u32..=(1 << 31) - 1).prop_map(|(s, increment)| Frame::WindowUpdate(
            WindowUpdate {
                stream_id: StreamId::new(s),
                increment
            }
        )),
        (any::<u32>(), any::<u32>(), ".{0,40}").prop_map(|(l, c, reason)| Frame::GoAway(GoAway {
            last_stream_id: StreamId::new(l),
            code: ResetCode::from_u(c),
            reason
        })),
        bytes(126).prop_map(|b| Frame::Ping(Ping(b))),
        bytes(126).prop_map(|b| Frame::Pong(Pong(b))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn encode_then_decode_is_identity(f in frame()) {
        let mut buf = BytesMut::new();
        f.encode(&mut buf);
        let decoded = Frame::decode(buf.freeze(), &limits());
        prop_assert_eq!(decoded, Ok(f));
    }

    /// `encoded_size` is exactly what `encode` writes (so a head can be checked against
    /// the peer's limits before it is sent), connection-specific fields included.
    #[test]
    fn encoded_size_is_exact(h in head(), hop in any::<bool>()) {
        let mut h = h;
        if hop {
            let headers = match &mut h {
                Head::Request(r) => &mut r.headers,
                Head::Response(r) => &mut r.headers,
                Head::Trailers(t) => t,
            };
            headers.insert("connection", HeaderValue::from_static("x-hop, close"));
            headers.insert("x-hop", HeaderValue::from_static("1"));
            headers.insert("keep-alive", HeaderValue::from_static("5"));
            headers.insert("te", HeaderValue::from_static("trailers"));
        }
        let mut buf = BytesMut::new();
        let (size, start_line) = match &h {
            Head::Request(r) => { r.encode(&mut buf); (r.encoded_size(), 1) }
            Head::Response(r) => { r.encode(&mut buf); (r.encoded_size(), 1) }
            Head::Trailers(t) => {
                tether_proto::head::encode_trailers(t, &mut buf);
                (tether_proto::head::trailers_encoded_size(t), 0)
            }
        };
        prop_assert_eq!(size.bytes, buf.len());
        let lines = buf.windows(2).filter(|w| w == b"\r\n").count();
        prop_assert_eq!(size.fields, lines - 1 - start_line);
    }

    #[test]
    fn arbitrary_bytes_never_panic(msg in bytes(512)) {
        let _ = Frame::decode(msg, &Limits::default());
    }

    /// Arbitrary bytes behind a valid header reach every payload parser.
    #[test]
    fn arbitrary_payloads_never_panic(ty in 0u8..=11, flags in any::<u8>(), sid in 0u32..4, payload in bytes(300)) {
        let mut msg = vec![ty, flags, 0, 0];
        msg.extend_from_slice(&sid.to_be_bytes());
        msg.extend_from_slice(&payload);
        let limits = Limits { max_head_size: 256, max_header_count: 8, ..Limits::default() };
        if let Err(e) = Frame::decode(Bytes::from(msg), &limits) {
            // Every error has a name and a defined reaction.
            prop_assert!(!e.name().is_empty());
            let _ = e.reaction();
        }
    }

    /// A decoded frame re-encodes to something that decodes to the same frame.
    #[test]
    fn decode_encode_decode_is_stable(ty in 1u8..=10, flags in any::<u8>(), sid in 0u32..4, payload in bytes(200)) {
        let mut msg = vec![ty, flags, 0, 0];
        msg.extend_from_slice(&sid.to_be_bytes());
        msg.extend_from_slice(&payload);
        if let Ok(f) = Frame::decode(Bytes::from(msg), &Limits::default()) {
            let mut buf = BytesMut::new();
            f.encode(&mut buf);
            prop_assert_eq!(Frame::decode(buf.freeze(), &Limits::default()), Ok(f));
        }
    }
}

#[test]
fn data_payload_is_a_slice_of_the_message() {
    let mut buf = BytesMut::new();
    Frame::Data(Data {
        stream_id: StreamId::new(1),
        end_stream: false,
        payload: Bytes::from(vec![7u8; 1000]),
    })
    .encode(&mut buf);
    let msg = buf.freeze();
    let Ok(Frame::Data(d)) = Frame::decode(msg.clone(), &Limits::default()) else {
        panic!("not DATA")
    };
    assert_eq!(
        d.payload.as_ptr(),
        msg[8..].as_ptr(),
        "payload shares the message's memory"
    );
}
