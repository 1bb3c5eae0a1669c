//! Runs the scripted exchanges of spec/vectors/streams.json against the stream layer
//! (spec/protocol.md §10).

use bytes::{Bytes, BytesMut};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tether_proto::streams::{
    Initiator, Outcome, PeerLimits, Side, StreamEvent, Streams, StreamsConfig,
};
use tether_proto::{Frame, Limits, Reaction, RequestHead, ResetCode, ResponseHead, StreamId};

fn hex(v: &Value) -> Bytes {
    Bytes::from(hex::decode(v.as_str().expect("hex")).expect("valid hex"))
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("number expected: {v}"))
}

fn event(e: StreamEvent) -> Value {
    match e {
        StreamEvent::Request {
            id,
            head,
            end_stream,
        } => {
            json!([
                "request",
                id.value(),
                head.method.as_str(),
                // The target as sent: a path, or for CONNECT an authority (§4.1).
                match (head.uri.scheme(), head.uri.authority()) {
                    (None, Some(authority)) => authority.as_str(),
                    _ => head.uri.path(),
                },
                end_stream
            ])
        }
        StreamEvent::Response {
            id,
            head,
            end_stream,
        } => {
            json!(["response", id.value(), head.status.as_u16(), end_stream])
        }
        StreamEvent::Data {
            id,
            data,
            end_stream,
        } => json!(["data", id.value(), data.len(), end_stream]),
        StreamEvent::Trailers { id, .. } => json!(["trailers", id.value()]),
        StreamEvent::GoAway {
            last_stream_id,
            code,
            ..
        } => json!(["goaway", last_stream_id.value(), code.value()]),
        StreamEvent::Writable { id } => json!(["writable", id.value()]),
        StreamEvent::CanOpen => json!(["can_open"]),
        StreamEvent::Closed { id, outcome } => match outcome {
            Outcome::Finished => json!(["closed", id.value(), "finished"]),
            Outcome::Refused => json!(["closed", id.value(), "refused"]),
            Outcome::TimedOut => json!(["closed", id.value(), "timed_out"]),
            Outcome::ConnectionLost => json!(["closed", id.value(), "connection_lost"]),
            Outcome::Reset { code, initiator } => {
                let by = if initiator == Initiator::Local {
                    "local"
                } else {
                    "peer"
                };
                json!(["closed", id.value(), "reset", code.value(), by])
            }
            other => json!(["closed", id.value(), format!("{other:?}")]),
        },
        other => json!([format!("{other:?}")]),
    }
}

fn run(script: &Value) {
    let name = script["name"].as_str().unwrap();
    let c = &script["config"];
    let config = StreamsConfig {
        max_concurrent_streams: n(&c["max_concurrent_streams"]) as u32,
        initial_stream_window: n(&c["initial_stream_window"]) as u32,
        initial_connection_window: n(&c["initial_connection_window"]) as u32,
        max_body_size: c["max_body_size"].as_u64(),
        stall_timeout: Duration::from_millis(n(&c["stall_timeout_ms"])),
        max_churn: n(&c["max_churn"]) as u32,
        churn_min_lifetime: Duration::from_millis(n(&c["churn_min_lifetime_ms"])),
        // The scripts release explicitly and answer requests themselves.
        manual_release: true,
        serve_requests: true,
        ..StreamsConfig::default()
    };
    let peer = PeerLimits {
        max_frame_payload: n(&c["peer_max_frame_payload"]) as u32,
        max_concurrent_streams: n(&c["peer_max_concurrent_streams"]) as u32,
        initial_stream_window: n(&c["peer_initial_stream_window"]) as u32,
        initial_connection_window: n(&c["peer_initial_connection_window"]) as u32,
        ..PeerLimits::default()
    };
    let side = if script["role"] == "client" {
        Side::Client
    } else {
        Side::Server
    };
    let mut s = Streams::new(side, config, peer).expect("valid peer limits");
    let mut now = Instant::now();
    for (i, step) in script["steps"].as_array().unwrap().iter().enumerate() {
        let at = format!("{name} step {i}");
        let mut result = Ok(());
        if let Some(f) = step.get("recv") {
            // A decode error confined to one stream is the stream layer's to apply
            // (spec/protocol.md §3.5, §10.1); any other is not a stream vector.
            result = match Frame::decode(hex(f), &Limits::default()) {
                Ok(frame) => s.handle_frame(frame, now),
                Err(e) => match (e.reaction(), e.frame_type()) {
                    (Reaction::Reset(id, code), Some(ty)) => {
                        s.handle_stream_error(id, ty, code, now)
                    }
                    _ => panic!("{at}: {e}"),
                },
            };
        } else if let Some(o) = step.get("open") {
            let head = RequestHead::new(
                o[0].as_str().unwrap().parse().unwrap(),
                o[1].as_str().unwrap().parse().unwrap(),
            );
            let timeout = o[3].as_u64().map(Duration::from_millis);
            s.open(head, o[2].as_bool().unwrap(), timeout, now)
                .unwrap_or_else(|e| panic!("{at}: {e}"));
        } else if let Some(r) = step.get("respond") {
            let status = http::StatusCode::from_u16(n(&r[1]) as u16).unwrap();
            s.send_response(
                StreamId::new(n(&r[0]) as u32),
                ResponseHead::new(status),
                r[2].as_bool().unwrap(),
            )
            .unwrap_or_else(|e| panic!("{at}: {e}"));
        } else if let Some(d) = step.get("send_data") {
            s.send_data(
                StreamId::new(n(&d[0]) as u32),
                hex(&d[1]),
                d[2].as_bool().unwrap(),
            )
            .unwrap_or_else(|e| panic!("{at}: {e}"));
        } else if let Some(r) = step.get("release") {
            s.release_capacity(StreamId::new(n(&r[0]) as u32), n(&r[1]) as u32);
        } else if let Some(code) = step.get("go_away") {
            s.go_away(ResetCode::from_name(code.as_str().unwrap()).unwrap(), "");
        } else if let Some(ms) = step.get("advance_ms") {
            now += Duration::from_millis(n(ms));
            s.handle_timeout(now);
        } else {
            panic!("{at}: unknown step {step}");
        }
        if let Some(code) = step.get("close") {
            let err = result.expect_err(&format!("{at}: expected a connection error"));
            assert_eq!(
                u64::from(err.close_code().value()),
                n(code),
                "{at}: close code"
            );
            continue;
        }
        result.unwrap_or_else(|e| panic!("{at}: unexpected connection error {e}"));
        let mut sent = vec![];
        while let Some(f) = s.poll_transmit() {
            let mut buf = BytesMut::new();
            f.encode(&mut buf);
            sent.push(Value::String(hex::encode(&buf)));
        }
        assert_eq!(Value::Array(sent), step["send"], "{at}: frames sent");
        let events: Vec<Value> = std::iter::from_fn(|| s.poll_event()).map(event).collect();
        assert_eq!(Value::Array(events), step["events"], "{at}: events");
    }
}

#[test]
fn stream_vectors() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../spec/vectors/streams.json");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let scripts = doc["scripts"].as_array().unwrap();
    assert!(scripts.len() >= 20);
    for script in scripts {
        run(script);
    }
}
