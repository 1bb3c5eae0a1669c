//! Loads spec/vectors/frames.json and checks the codec in both directions: decoding each
//! valid vector gives its fields and encoding those fields gives its bytes; decoding each
//! invalid vector gives the named error and reaction.

use bytes::{Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use tether_proto::*;

fn load() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../spec/vectors/frames.json");
    let text = std::fs::read_to_string(path).expect("spec/vectors/frames.json is readable");
    serde_json::from_str(&text).expect("frames.json is JSON")
}

fn hex(v: &Value) -> Bytes {
    Bytes::from(hex::decode(v.as_str().expect("hex string")).expect("valid hex"))
}

fn u32_of(v: &Value) -> u32 {
    u32::try_from(v.as_u64().expect("number")).expect("fits u32")
}

fn stream(f: &Value) -> StreamId {
    StreamId::new(u32_of(&f["stream_id"]))
}

fn settings(v: &Value) -> Settings {
    let mut s = Settings::default();
    for (name, value) in v.as_object().expect("settings object") {
        let value = Some(u32_of(value));
        match name.as_str() {
            "HEARTBEAT_INTERVAL_MS" => s.heartbeat_interval_ms = value,
            "HEARTBEAT_TIMEOUT_MS" => s.heartbeat_timeout_ms = value,
            "HEARTBEAT_CARRIER" => s.heartbeat_carrier = value,
            "MAX_FRAME_PAYLOAD" => s.max_frame_payload = value,
            "MAX_HEAD_SIZE" => s.max_head_size = value,
            "MAX_HEADER_COUNT" => s.max_header_count = value,
            "MAX_CONCURRENT_STREAMS" => s.max_concurrent_streams = value,
            "INITIAL_STREAM_WINDOW" => s.initial_stream_window = value,
            "INITIAL_CONNECTION_WINDOW" => s.initial_connection_window = value,
            "RESUME_WINDOW_MS" => s.resume_window_ms = value,
            other => panic!("unknown setting name {other} in vectors"),
        }
    }
    s
}

fn header_map(v: &Value) -> HeaderMap {
    let mut map = HeaderMap::new();
    for pair in v.as_array().expect("header list") {
        let name = HeaderName::from_bytes(pair[0].as_str().unwrap().as_bytes()).unwrap();
        let value = match &pair[1] {
            Value::String(s) => HeaderValue::from_str(s).unwrap(),
            obj => HeaderValue::from_bytes(&hex(&obj["hex"])).unwrap(),
        };
        map.append(name, value);
    }
    map
}

fn uuid(v: &Value) -> uuid::Uuid {
    v.as_str().unwrap().parse().unwrap()
}

fn token(v: &Value) -> ResumeToken {
    ResumeToken::from_bytes(hex(v).as_ref().try_into().expect("16-byte token"))
}

/// Builds the frame a vector's `frame` object describes.
fn frame_of(f: &Value) -> Frame {
    match f["type"].as_str().unwrap() {
        "HELLO" => Frame::Hello(Hello {
            versions: f["versions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| u32_of(v) as u16)
                .collect(),
            resume: (!f["resume"].is_null()).then(|| Resume {
                connection_id: uuid(&f["resume"]["connection_id"]),
                token: token(&f["resume"]["token"]),
            }),
            settings: settings(&f["settings"]),
            metadata: Bytes::from(f["metadata"].as_str().unwrap().to_owned()),
        }),
        "WELCOME" => Frame::Welcome(Welcome {
            version: u32_of(&f["version"]) as u16,
            connection_id: uuid(&f["connection_id"]),
            resume_token: token(&f["resume_token"]),
            resumed: f["resumed"].as_bool().unwrap(),
            settings: settings(&f["settings"]),
        }),
        "ACK" => Frame::Ack,
        "HEADERS" => {
            let head = if let Some(r) = f.get("request") {
                Head::Request(RequestHead {
                    method: r["method"].as_str().unwrap().parse().unwrap(),
                    uri: r["uri"].as_str().unwrap().parse().unwrap(),
                    headers: header_map(&r["headers"]),
                    timeout_ms: r.get("timeout_ms").map(|v| v.as_u64().unwrap()),
                })
            } else if let Some(r) = f.get("response") {
                Head::Response(ResponseHead {
                    status: http::StatusCode::from_u16(u32_of(&r["status"]) as u16).unwrap(),
                    headers: header_map(&r["headers"]),
                })
            } else {
                Head::Trailers(header_map(&f["trailers"]))
            };
            Frame::Headers(Headers {
                stream_id: stream(f),
                end_stream: f["end_stream"].as_bool().unwrap(),
                head,
            })
        }
        "DATA" => Frame::Data(Data {
            stream_id: stream(f),
            end_stream: f["end_stream"].as_bool().unwrap(),
            payload: hex(&f["payload"]),
        }),
        "RESET" => {
            let code = ResetCode::from_u(u32_of(&f["code"]));
            assert_eq!(
                code.name(),
                f["code_name"].as_str(),
                "code_name matches code"
            );
            Frame::Reset(Reset {
                stream_id: stream(f),
                code,
            })
        }
        "WINDOW_UPDATE" => Frame::WindowUpdate(WindowUpdate {
            stream_id: stream(f),
            increment: u32_of(&f["increment"]),
        }),
        "GOAWAY" => Frame::GoAway(GoAway {
            last_stream_id: StreamId::new(u32_of(&f["last_stream_id"])),
            code: ResetCode::from_u(u32_of(&f["code"])),
            reason: f["reason"].as_str().unwrap().to_owned(),
        }),
        "PING" => Frame::Ping(Ping(hex(&f["payload"]))),
        "PONG" => Frame::Pong(Pong(hex(&f["payload"]))),
        other => panic!("unknown frame type {other} in vectors"),
    }
}

fn limits_of(doc: &Value, v: &Value) -> Limits {
    let mut l = Limits::default();
    let d = &doc["default_limits"];
    assert_eq!(
        u32_of(&d["max_frame_payload"]),
        l.max_frame_payload,
        "spec defaults match the code"
    );
    assert_eq!(u32_of(&d["max_head_size"]), l.max_head_size);
    assert_eq!(
        u32_of(&d["max_header_count"]),
        u32::from(l.max_header_count)
    );
    assert_eq!(u32_of(&d["max_metadata_size"]), l.max_metadata_size);
    if let Some(o) = v.get("limits").and_then(Value::as_object) {
        for (k, val) in o {
            match k.as_str() {
                "max_frame_payload" => l.max_frame_payload = u32_of(val),
                "max_head_size" => l.max_head_size = u32_of(val),
                "max_header_count" => l.max_header_count = u32_of(val) as u16,
                "max_metadata_size" => l.max_metadata_size = u32_of(val),
                other => panic!("unknown limit {other}"),
            }
        }
    }
    l
}

#[test]
fn valid_vectors_decode_and_encode() {
    let doc = load();
    let valid = doc["valid"].as_array().unwrap();
    let mut types = std::collections::HashSet::new();
    for v in valid {
        let name = v["name"].as_str().unwrap();
        let msg = hex(&v["hex"]);
        let want = frame_of(&v["frame"]);
        let got = Frame::decode(msg.clone(), &limits_of(&doc, v))
            .unwrap_or_else(|e| panic!("{name}: decode failed: {e}"));
        assert_eq!(got, want, "{name}: decoded fields");
        let mut out = BytesMut::new();
        want.encode(&mut out);
        let expect = v.get("reencoded").map(hex).unwrap_or(msg);
        assert_eq!(
            hex::encode(&out),
            hex::encode(&expect),
            "{name}: encoded bytes"
        );
        types.insert(got.frame_type());
    }
    assert_eq!(types.len(), 10, "every frame type has a valid vector");
}

#[test]
fn invalid_vectors_fail_with_the_named_error_and_reaction() {
    let doc = load();
    for v in doc["invalid"].as_array().unwrap() {
        let name = v["name"].as_str().unwrap();
        let err = Frame::decode(hex(&v["hex"]), &limits_of(&doc, v))
            .err()
            .unwrap_or_else(|| panic!("{name}: decoded although invalid"));
        assert_eq!(
            err.name(),
            v["error"].as_str().unwrap(),
            "{name}: error ({err})"
        );
        let r = &v["reaction"];
        let want = if let Some(code) = r.get("close") {
            Reaction::Close(CloseCode::from_u(u32_of(code) as u16))
        } else {
            let s = &r["reset"];
            Reaction::Reset(stream(s), ResetCode::from_u(u32_of(&s["code"])))
        };
        assert_eq!(err.reaction(), want, "{name}: reaction");
    }
}

#[test]
fn there_are_at_least_forty_vectors() {
    let doc = load();
    let n = doc["valid"].as_array().unwrap().len() + doc["invalid"].as_array().unwrap().len();
    assert!(n >= 40, "{n} vectors");
}
