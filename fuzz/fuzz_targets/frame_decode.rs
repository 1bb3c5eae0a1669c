//! Arbitrary bytes as one received WebSocket message: decoding never panics, every error
//! has a defined reaction, and whatever decodes re-encodes to an equal frame.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use tether_proto::{Frame, Limits};

fuzz_target!(|data: &[u8]| {
    // Small limits so the limit paths are reached with small inputs.
    let limits = Limits { max_head_size: 512, max_header_count: 16, max_metadata_size: 256, ..Limits::default() };
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
});
