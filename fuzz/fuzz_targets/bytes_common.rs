//! The checks of the proto targets whose input is plain bytes (`frame_decode`,
//! `http_head`, `demo_message`), shared with the workspace test
//! `proto/tests/fuzz_corpus.rs`, which replays their committed corpora.

// Each target uses one of the functions.
#![allow(dead_code)]

use bytes::{Bytes, BytesMut};
use std::time::{Duration, Instant, SystemTime};
use tether_proto::demo::{DemoConfig, DemoMessage, DemoSession};
use tether_proto::head::{decode_trailers, encode_trailers};
use tether_proto::{Frame, Limits, RequestHead, ResponseHead};

/// `data` as one received WebSocket message: decoding never panics, every error has a
/// defined reaction, and whatever decodes re-encodes to an equal frame.
pub fn frame_decode(data: &[u8]) {
    // Small limits so the limit paths are reached with small inputs.
    let limits = Limits {
        max_head_size: 512,
        max_header_count: 16,
        max_metadata_size: 256,
        ..Limits::default()
    };
    match Frame::decode(Bytes::copy_from_slice(data), &limits) {
        Ok(frame) => {
            let mut buf = BytesMut::new();
            frame.encode(&mut buf);
            // Encoding normalises (canonical reason phrase, `name: value` spacing), so a head
            // that just fit the limit may re-encode a little larger: re-decode without limits.
            let roomy = Limits {
                max_frame_payload: Limits::MAX_FRAME_PAYLOAD,
                max_head_size: Limits::MAX_FRAME_PAYLOAD,
                ..limits
            };
            let again = Frame::decode(buf.freeze(), &roomy).expect("a re-encoded frame decodes");
            assert_eq!(again, frame);
        }
        Err(e) => {
            assert!(!e.name().is_empty());
            let _ = e.reaction();
        }
    }
}

/// `data` as a request head, a response head and trailers: parsing never panics, and a
/// parsed head re-encodes to something that parses to the same head.
pub fn http_head(data: &[u8]) {
    let limits = Limits {
        max_head_size: 4096,
        max_header_count: 32,
        ..Limits::default()
    };
    // Re-encoding normalises and may grow a head a little: re-parse with room to spare.
    let roomy = Limits {
        max_head_size: 16 * 1024,
        ..limits
    };
    let src = Bytes::copy_from_slice(data);
    if let Ok(head) = RequestHead::decode(&src, &limits) {
        let mut buf = BytesMut::new();
        head.encode(&mut buf);
        assert_eq!(
            RequestHead::decode(&buf.freeze(), &roomy).as_ref(),
            Ok(&head)
        );
    }
    if let Ok(head) = ResponseHead::decode(&src, &limits) {
        let mut buf = BytesMut::new();
        head.encode(&mut buf);
        assert_eq!(
            ResponseHead::decode(&buf.freeze(), &roomy).as_ref(),
            Ok(&head)
        );
    }
    if let Ok(trailers) = decode_trailers(&src, &limits) {
        let mut buf = BytesMut::new();
        encode_trailers(&trailers, &mut buf);
        assert_eq!(
            decode_trailers(&buf.freeze(), &roomy).as_ref(),
            Ok(&trailers)
        );
    }
}

/// `data` split at 0x00 bytes into demo messages (spec/demo.md); a message that is exactly
/// `\x01` fires the heartbeat timer instead. Time advances one second per message, so
/// subscriptions publish. Never a panic, and every answer is a schema message.
pub fn demo_message(data: &[u8]) {
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
}
