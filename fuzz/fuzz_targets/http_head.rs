//! Arbitrary bytes as a request head, a response head and trailers: parsing never panics,
//! and a parsed head re-encodes to something that parses to the same head.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use tether_proto::head::{decode_trailers, encode_trailers};
use tether_proto::{Limits, RequestHead, ResponseHead};

fuzz_target!(|data: &[u8]| {
    let limits = Limits { max_head_size: 4096, max_header_count: 32, ..Limits::default() };
    // Re-encoding normalises and may grow a head a little: re-parse with room to spare.
    let roomy = Limits { max_head_size: 16 * 1024, ..limits };
    let src = Bytes::copy_from_slice(data);
    if let Ok(head) = RequestHead::decode(&src, &limits) {
        let mut buf = BytesMut::new();
        head.encode(&mut buf);
        assert_eq!(RequestHead::decode(&buf.freeze(), &roomy).as_ref(), Ok(&head));
    }
    if let Ok(head) = ResponseHead::decode(&src, &limits) {
        let mut buf = BytesMut::new();
        head.encode(&mut buf);
        assert_eq!(ResponseHead::decode(&buf.freeze(), &roomy).as_ref(), Ok(&head));
    }
    if let Ok(trailers) = decode_trailers(&src, &limits) {
        let mut buf = BytesMut::new();
        encode_trailers(&trailers, &mut buf);
        assert_eq!(decode_trailers(&buf.freeze(), &roomy).as_ref(), Ok(&trailers));
    }
});
