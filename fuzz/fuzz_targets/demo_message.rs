//! Arbitrary bytes into a demo session (spec/demo.md): never a panic, and every answer is a
//! well-formed JSON message of the schema.
//!
//! The input is split at 0x00 bytes into messages; a message that is exactly `\x01` fires the
//! heartbeat timer instead. Time advances one second per message, so subscriptions publish.
#![no_main]

use std::time::{Duration, Instant, SystemTime};

use libfuzzer_sys::fuzz_target;
use tether_proto::demo::{DemoConfig, DemoMessage, DemoSession};

fuzz_target!(|data: &[u8]| {
    let t0 = Instant::now();
    let mut session = DemoSession::new(DemoConfig::default(), t0, SystemTime::UNIX_EPOCH);
    for (i, message) in data.split(|&b| b == 0).take(64).enumerate() {
        let now = t0 + Duration::from_secs(i as u64);
        let expect_answer = message != [1];
        if expect_answer {
            session.handle_message(message, now);
        } else {
            session.handle_timeout(now);
        }
        let mut answers = 0;
        while let Some(answer) = session.poll_message() {
            answers += 1;
            assert!(answers <= 2, "at most an answer and a heartbeat");
            let value: serde_json::Value = serde_json::from_str(&answer).expect("answer is JSON");
            assert!(
                value.get("type").and_then(|t| t.as_str()).is_some(),
                "{answer}"
            );
            DemoMessage::from_json(answer.as_bytes()).expect("answer is a schema message");
        }
        if expect_answer {
            assert!(answers >= 1, "every message is answered");
        }
        if !expect_answer {
            if let Some(deadline) = session.poll_timeout() {
                assert!(deadline > now, "a handled timeout moves the timer past now");
            }
        }
    }
});
