//! Golden tests against spec/vectors/demo/*.json.
//!
//! `TETHER_BLESS=1 cargo test -p tether-proto demo::` rewrites the `expect` lists of
//! session.json from the current implementation (review the diff before committing).

use std::time::{Duration, Instant, SystemTime};

use proptest::prelude::*;
use serde_json::Value;

use super::message::*;
use super::*;

fn vector(name: &str) -> (std::path::PathBuf, Value) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../spec/vectors/demo")
        .join(name);
    let text = std::fs::read_to_string(&path).expect("vector file");
    (path, serde_json::from_str(&text).expect("vector is JSON"))
}

fn s(v: &str) -> String {
    v.to_owned()
}

fn expected(name: &str) -> DemoMessage {
    let one = Some(s("1"));
    match name {
        "echo_request" => DemoMessage::EchoRequest(EchoRequest {
            req_id: one,
            echo: s("Hello"),
            err: false,
        }),
        "echo_request_no_req_id" => DemoMessage::EchoRequest(EchoRequest {
            req_id: None,
            echo: s("Hello"),
            err: false,
        }),
        "echo_request_err" => DemoMessage::EchoRequest(EchoRequest {
            req_id: one,
            echo: s("Hello"),
            err: true,
        }),
        "echo_response_ok" => {
            DemoMessage::EchoResponse(Response::ok(one, EchoData { echo: s("Hello") }))
        }
        "echo_response_ok_no_req_id" => {
            DemoMessage::EchoResponse(Response::ok(None, EchoData { echo: s("Hello") }))
        }
        "echo_response_error" => DemoMessage::EchoResponse(Response::error(
            one,
            "error asked by client",
            code::ASKED_BY_CLIENT,
        )),
        "subscribe_request" => DemoMessage::SubscribeRequest(TopicRequest {
            req_id: Some(s("2")),
            topic: s("heartbeat"),
        }),
        "subscribe_response_ok" => DemoMessage::SubscribeResponse(Response::ok(
            Some(s("2")),
            TopicData {
                topic: s("heartbeat"),
            },
        )),
        "subscribe_response_already" => DemoMessage::SubscribeResponse(Response::error(
            Some(s("2")),
            "already subscribed to topic heartbeat",
            code::ALREADY_SUBSCRIBED,
        )),
        "subscribe_response_topic_not_found" => DemoMessage::SubscribeResponse(Response::error(
            None,
            "topic not found: news",
            code::TOPIC_NOT_FOUND,
        )),
        "unsubscribe_request" => DemoMessage::UnsubscribeRequest(TopicRequest {
            req_id: Some(s("3")),
            topic: s("heartbeat"),
        }),
        "unsubscribe_response_ok" => DemoMessage::UnsubscribeResponse(Response::ok(
            Some(s("3")),
            TopicData {
                topic: s("heartbeat"),
            },
        )),
        "unsubscribe_response_not_subscribed" => DemoMessage::UnsubscribeResponse(Response::error(
            Some(s("3")),
            "not subscribed to topic heartbeat",
            code::NOT_SUBSCRIBED,
        )),
        "heartbeat" => DemoMessage::Heartbeat(Heartbeat {
            timestamp: s("2023-11-14T22:13:25Z"),
            uptime_seconds: s("5"),
        }),
        "error_unknown_type" => DemoMessage::Error(ErrorMessage {
            message: s("unknown message type: ping"),
            code: Some(s(code::UNKNOWN_MESSAGE_TYPE)),
            req_id: Some(s("4")),
        }),
        "error_bad_request_no_req_id" => DemoMessage::Error(ErrorMessage {
            message: s("message is not a JSON object: expected value at line 1 column 1"),
            code: Some(s(code::BAD_REQUEST)),
            req_id: None,
        }),
        other => panic!("vector {other} has no expected value in tests.rs"),
    }
}

#[test]
fn golden_messages_both_directions() {
    let (_, v) = vector("messages.json");
    let messages = v["messages"].as_array().unwrap();
    let mut kinds = std::collections::BTreeSet::new();
    for m in messages {
        let name = m["name"].as_str().unwrap();
        let wire = m["wire"].as_str().unwrap();
        let want = expected(name);
        assert_eq!(
            DemoMessage::from_json(wire.as_bytes()).unwrap(),
            want,
            "{name}: parse"
        );
        assert_eq!(want.to_json(), wire, "{name}: serialize");
        let t: Value = serde_json::from_str(wire).unwrap();
        kinds.insert(t["type"].as_str().unwrap().to_owned());
    }
    let all = [
        kind::ECHO_REQUEST,
        kind::ECHO_RESPONSE,
        kind::SUBSCRIBE_REQUEST,
        kind::SUBSCRIBE_RESPONSE,
        kind::UNSUBSCRIBE_REQUEST,
        kind::UNSUBSCRIBE_RESPONSE,
        kind::HEARTBEAT,
        kind::ERROR,
    ];
    for k in all {
        assert!(kinds.contains(k), "no golden vector for {k}");
    }
}

#[test]
fn golden_sessions() {
    let (path, mut v) = vector("session.json");
    let bless = std::env::var_os("TETHER_BLESS").is_some();
    for session in v["sessions"].as_array_mut().unwrap() {
        let name = session["name"].as_str().unwrap().to_owned();
        let t0 = Instant::now();
        let wall = SystemTime::UNIX_EPOCH
            + Duration::from_secs(session["accepted_unix"].as_u64().unwrap());
        let interval = Duration::from_millis(session["heartbeat_interval_ms"].as_u64().unwrap());
        let mut machine = DemoSession::new(
            DemoConfig {
                heartbeat_interval: interval,
            },
            t0,
            wall,
        );
        for (i, step) in session["steps"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .enumerate()
        {
            let now = t0 + Duration::from_millis(step["at_ms"].as_u64().unwrap());
            if let Some(text) = step.get("send").and_then(Value::as_str) {
                machine.handle_message(text.as_bytes(), now);
            } else if let Some(hex) = step.get("send_hex").and_then(Value::as_str) {
                machine.handle_message(&hex::decode(hex).unwrap(), now);
            } else {
                assert_eq!(step["timeout"], Value::Bool(true));
                machine.handle_timeout(now);
            }
            let got: Vec<Value> = std::iter::from_fn(|| machine.poll_message())
                .map(Value::String)
                .collect();
            if bless {
                step["expect"] = Value::Array(got);
            } else {
                assert_eq!(step["expect"], Value::Array(got), "{name} step {i}");
            }
        }
    }
    if bless {
        let text = serde_json::to_string_pretty(&v).unwrap();
        std::fs::write(path, text + "\n").unwrap();
    }
}

#[test]
fn heartbeat_timer_and_uptime() {
    let t0 = Instant::now();
    let mut m = DemoSession::new(DemoConfig::default(), t0, SystemTime::UNIX_EPOCH);
    assert_eq!(m.poll_timeout(), None);
    m.handle_timeout(t0 + Duration::from_secs(100)); // spurious: nothing
    assert_eq!(m.poll_message(), None);
    let t1 = t0 + Duration::from_millis(1500);
    m.handle_message(br#"{"type":"subscribe_request","topic":"heartbeat"}"#, t1);
    assert!(m.poll_message().unwrap().contains("subscribe_response"));
    assert_eq!(
        m.poll_message().unwrap(),
        r#"{"type":"heartbeat","timestamp":"1970-01-01T00:00:01Z","uptime_seconds":"1"}"#
    );
    assert_eq!(m.poll_timeout(), Some(t1 + Duration::from_secs(5)));
    // A stalled driver gets one heartbeat, not a burst, and the timer moves past now.
    let late = t1 + Duration::from_secs(60);
    m.handle_timeout(late);
    assert!(m
        .poll_message()
        .unwrap()
        .contains(r#""uptime_seconds":"61""#));
    assert_eq!(m.poll_message(), None);
    assert_eq!(m.poll_timeout(), Some(late + Duration::from_secs(5)));
    m.handle_message(
        br#"{"type":"unsubscribe_request","topic":"heartbeat"}"#,
        late,
    );
    assert!(m.poll_message().unwrap().contains(r#""status":"OK""#));
    assert_eq!(m.poll_timeout(), None);
}

#[test]
fn huge_bad_field_gives_small_answer() {
    let big = "x".repeat(100_000);
    let input = format!(r#"{{"type":"echo_request","reqId":"1","err":"{big}"}}"#);
    let mut m = DemoSession::new(
        DemoConfig::default(),
        Instant::now(),
        SystemTime::UNIX_EPOCH,
    );
    m.handle_message(input.as_bytes(), Instant::now());
    let answer = m.poll_message().unwrap();
    assert!(answer.len() < 400, "{}", answer.len());
    assert!(answer.contains("BAD_REQUEST"));
}

/// The invariant the `demo_message` fuzz target checks, here as a property test.
fn check_answer(answer: &str) {
    let v: Value = serde_json::from_str(answer).expect("answer is JSON");
    let obj = v.as_object().expect("answer is an object");
    let t = obj["type"].as_str().expect("type is a string");
    assert!(
        [
            kind::ECHO_RESPONSE,
            kind::SUBSCRIBE_RESPONSE,
            kind::UNSUBSCRIBE_RESPONSE,
            kind::HEARTBEAT,
            kind::ERROR
        ]
        .contains(&t),
        "{t}"
    );
    DemoMessage::from_json(answer.as_bytes()).expect("answer parses as a schema message");
}

proptest! {
    #[test]
    fn any_bytes_get_one_well_formed_answer(input in proptest::collection::vec(any::<u8>(), 0..200)) {
        let t0 = Instant::now();
        let mut m = DemoSession::new(DemoConfig::default(), t0, SystemTime::UNIX_EPOCH);
        m.handle_message(&input, t0);
        let answer = m.poll_message().expect("one answer");
        check_answer(&answer);
    }

    #[test]
    fn json_like_input_gets_well_formed_answers(
        ty in prop_oneof![Just("echo_request"), Just("subscribe_request"), Just("unsubscribe_request"), Just("x"), Just("")],
        topic in prop_oneof![Just("\"heartbeat\""), Just("1"), Just("null"), Just("\"a\"")],
        req in prop_oneof![Just("\"1\""), Just("2"), Just("{}")],
        echo in ".{0,20}",
    ) {
        let t0 = Instant::now();
        let mut m = DemoSession::new(DemoConfig::default(), t0, SystemTime::UNIX_EPOCH);
        let echo = serde_json::to_string(&echo).unwrap();
        let input = format!(r#"{{"type":"{ty}","topic":{topic},"reqId":{req},"echo":{echo}}}"#);
        for _ in 0..3 {
            m.handle_message(input.as_bytes(), t0);
            while let Some(answer) = m.poll_message() {
                check_answer(&answer);
            }
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Subscribe,
    Unsubscribe,
    Echo,
    Advance(u64),
    Timeout,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        Just(Op::Subscribe),
        Just(Op::Unsubscribe),
        Just(Op::Echo),
        (0u64..12_000).prop_map(Op::Advance),
        Just(Op::Timeout),
    ]
}

proptest! {
    /// The session against a one-flag model with a virtual clock: answers, heartbeats only while
    /// subscribed, the timer set exactly while subscribed, never more than one interval ahead.
    #[test]
    fn session_matches_model(ops in proptest::collection::vec(op(), 1..60)) {
        let t0 = Instant::now();
        let interval = Duration::from_secs(5);
        let mut m = DemoSession::new(DemoConfig { heartbeat_interval: interval }, t0, SystemTime::UNIX_EPOCH);
        let mut now = t0;
        let mut subscribed = false;
        for op in ops {
            let out: Vec<Value> = {
                match op {
                    Op::Subscribe => m.handle_message(br#"{"type":"subscribe_request","topic":"heartbeat"}"#, now),
                    Op::Unsubscribe => m.handle_message(br#"{"type":"unsubscribe_request","topic":"heartbeat"}"#, now),
                    Op::Echo => m.handle_message(br#"{"type":"echo_request","echo":"e"}"#, now),
                    Op::Advance(ms) => now += Duration::from_millis(ms),
                    Op::Timeout => m.handle_timeout(now),
                }
                std::iter::from_fn(|| m.poll_message())
                    .map(|s| serde_json::from_str(&s).unwrap())
                    .collect()
            };
            let heartbeats = out.iter().filter(|v| v["type"] == "heartbeat").count();
            match op {
                Op::Subscribe => {
                    let ok = out[0]["status"] == "OK";
                    prop_assert_eq!(ok, !subscribed);
                    prop_assert_eq!(heartbeats, usize::from(ok));
                    subscribed = true;
                }
                Op::Unsubscribe => {
                    prop_assert_eq!(out[0]["status"] == "OK", subscribed);
                    prop_assert_eq!(heartbeats, 0);
                    subscribed = false;
                }
                Op::Echo => prop_assert_eq!(&out[0]["data"]["echo"], "e"),
                Op::Advance(_) => prop_assert!(out.is_empty()),
                Op::Timeout => {
                    prop_assert!(heartbeats <= 1);
                    prop_assert!(subscribed || heartbeats == 0);
                    if let Some(next) = m.poll_timeout() {
                        prop_assert!(next > now && next <= now + interval);
                    }
                }
            }
            prop_assert_eq!(m.poll_timeout().is_some(), subscribed);
            prop_assert_eq!(m.is_subscribed(), subscribed);
        }
    }
}
