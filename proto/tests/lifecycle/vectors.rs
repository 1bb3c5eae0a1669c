//! Runs the scripted handshakes of spec/vectors/handshake.json (spec/protocol.md §7.8).

use bytes::Bytes;
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tether_proto::connection::{
    Admission, CloseFrame, Config, Connection, Event, State, WsMessage,
};
use tether_proto::{CloseCode, Limits, Resume, ResumeToken};

const VECTORS: &str = include_str!("../../../spec/vectors/handshake.json");

fn config(c: &Value) -> Config {
    let n = |k: &str| c[k].as_u64().unwrap_or_else(|| panic!("config.{k}"));
    let ms = |k: &str| Duration::from_millis(n(k));
    let versions: Vec<u16> = c["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u16)
        .collect();
    Config::builder()
        .versions(&versions)
        .handshake_timeout(ms("handshake_timeout_ms"))
        .heartbeat(ms("heartbeat_interval_ms"), ms("heartbeat_timeout_ms"))
        .carrier(
            tether_proto::connection::Carrier::from_value(n("heartbeat_carrier") as u32).unwrap(),
        )
        .limits(Limits {
            max_frame_payload: n("max_frame_payload") as u32,
            max_head_size: n("max_head_size") as u32,
            max_header_count: n("max_header_count") as u16,
            max_metadata_size: n("max_metadata_size") as u32,
        })
        .streams(tether_proto::streams::StreamsConfig {
            max_concurrent_streams: n("max_concurrent_streams") as u32,
            initial_stream_window: n("initial_stream_window") as u32,
            initial_connection_window: n("initial_connection_window") as u32,
            ..Default::default()
        })
        .build()
        .expect("vector config is valid")
}

fn hex(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().expect("hex string")).expect("valid hex")
}

fn message(v: &Value) -> WsMessage {
    if let Some(b) = v.get("binary") {
        WsMessage::Binary(Bytes::from(hex(b)))
    } else if let Some(t) = v.get("text") {
        WsMessage::Text(Bytes::from(t.as_str().unwrap().to_owned()))
    } else if let Some(code) = v.get("close") {
        WsMessage::Close(Some(CloseFrame::new(
            CloseCode::from_u(code.as_u64().unwrap() as u16),
            "",
        )))
    } else {
        panic!("unknown message {v}")
    }
}

fn event_name(e: &Event) -> &'static str {
    match e {
        Event::HelloReceived(_) => "hello_received",
        Event::Received { .. } => "received",
        Event::Resumed { .. } => "resumed",
        Event::Established { .. } => "established",
        Event::PingReceived { .. } => "ping_received",
        Event::PongReceived { .. } => "pong_received",
        Event::Stream(_) => "stream",
        Event::Closed { .. } => "closed",
        Event::Failure { .. } => "failure",
        _ => "other",
    }
}

fn state_name(s: State) -> &'static str {
    match s {
        State::AwaitingHello => "AwaitingHello",
        State::AwaitingDecision => "AwaitingDecision",
        State::AwaitingAck => "AwaitingAck",
        State::AwaitingWelcome => "AwaitingWelcome",
        State::Established => "Established",
        State::Closed => "Closed",
        _ => "other",
    }
}

fn run(script: &Value) {
    let name = script["name"].as_str().unwrap();
    let t0 = Instant::now();
    let mut now = t0;
    let config = Arc::new(config(&script["config"]));
    let mut random = script
        .get("random")
        .map(hex)
        .unwrap_or_default()
        .into_iter();
    let mut conn = match script["role"].as_str().unwrap() {
        "server" => Connection::server(config, t0),
        "client" => {
            let resume = script.get("resume").map(|r| Resume {
                connection_id: uuid::Uuid::from_slice(&hex(&r["connection_id"])).unwrap(),
                token: ResumeToken::from_bytes(hex(&r["token"]).try_into().unwrap()),
            });
            let metadata = Bytes::from(script["metadata"].as_str().unwrap().to_owned());
            Connection::client(config, metadata, resume, t0).unwrap()
        }
        other => panic!("role {other}"),
    };
    let mut last_event = None;
    for (i, step) in script["steps"].as_array().unwrap().iter().enumerate() {
        let at = format!("{name} step {i}");
        if let Some(msg) = step.get("recv") {
            conn.handle_message(message(msg), now);
        } else if let Some(ms) = step.get("advance_ms") {
            now += Duration::from_millis(ms.as_u64().unwrap());
            conn.handle_timeout(now);
        } else if step.get("accept").is_some() {
            let mut rng = |buf: &mut [u8]| {
                buf.iter_mut()
                    .for_each(|b| *b = random.next().expect("enough random bytes"))
            };
            conn.accept(Admission::fresh(&mut rng).expect(&at), now)
                .expect(&at);
        } else if let Some(code) = step.get("reject") {
            conn.reject(
                CloseCode::from_u(code.as_u64().unwrap() as u16),
                "rejected",
                now,
            );
        } else {
            assert!(step.get("start").is_some(), "{at}: unknown step");
        }
        let mut sent = Vec::new();
        let mut close = None;
        while let Some(msg) = conn.poll_transmit().map(WsMessage::from) {
            match msg {
                WsMessage::Binary(b) => sent.push(hex::encode(b)),
                WsMessage::Close(Some(f)) => close = Some(f.code.value()),
                other => panic!("{at}: unexpected {other:?}"),
            }
        }
        let want: Vec<String> = step["send"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["binary"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(sent, want, "{at}: messages sent");
        let mut events = Vec::new();
        while let Some(e) = conn.poll_event() {
            events.push(event_name(&e));
            last_event = Some(e);
        }
        let want: Vec<&str> = step["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(events, want, "{at}: events");
        if let Some(state) = step.get("state") {
            assert_eq!(
                state_name(conn.state()),
                state.as_str().unwrap(),
                "{at}: state"
            );
        }
        if let Some(code) = step.get("close") {
            let code = code.as_u64().unwrap() as u16;
            let ended_with = match &last_event {
                Some(Event::Failure { error }) => error.close_code().map(|c| c.value()),
                Some(Event::Closed { code, .. }) => Some(code.value()),
                _ => None,
            };
            assert_eq!(ended_with, Some(code), "{at}: end code");
            if step.get("recv").and_then(|m| m.get("close")).is_none() {
                assert_eq!(close, Some(code), "{at}: close frame sent");
            } else {
                assert_eq!(
                    close, None,
                    "{at}: a received close is not echoed by the machine"
                );
            }
        } else {
            assert_eq!(close, None, "{at}: no close frame expected");
        }
    }
}

#[test]
fn handshake_vectors() {
    let doc: Value = serde_json::from_str(VECTORS).expect("valid JSON");
    let scripts = doc["scripts"].as_array().unwrap();
    assert!(scripts.len() >= 20);
    for script in scripts {
        run(script);
    }
}
