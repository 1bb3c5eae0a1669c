//! `envelope_vs_tether`: one request (the typical head, `POST`, plus a binary body) carried
//! two ways, each encoded and then parsed back, measured in the same run:
//!
//! - `envelope_json_base64`: the baseline, a serde_json envelope with a base64 body, the
//!   way swaggersocket- and Socket.IO-style systems carry HTTP over a WebSocket
//!   (see `tether_benches::envelope` for how it is set up, kindly to the baseline);
//! - `tether`: a HEADERS frame and a DATA frame, both with the full-copy `Frame::encode`,
//!   then `Frame::decode` of both messages.
//!
//! Throughput is the body size.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tether_benches::envelope::{self, EnvelopeCodec};
use tether_benches::{body, size_label, tether::RoundTrip, upload_head};

fn envelope_vs_tether(c: &mut Criterion) {
    let head = upload_head();
    let mut group = c.benchmark_group("envelope_vs_tether");
    for len in [1024, 16 * 1024] {
        let body = body(len);
        let label = size_label(len);
        group.throughput(Throughput::Bytes(len as u64));

        let mut codec = EnvelopeCodec::new();
        group.bench_function(BenchmarkId::new("envelope_json_base64", &label), |b| {
            b.iter(|| {
                let msg = codec.encode(1, black_box(&head), black_box(&body));
                let parsed = envelope::decode(msg).expect("envelope round trip");
                black_box(parsed);
            })
        });

        let mut round = RoundTrip::new(&head, &body);
        group.bench_function(BenchmarkId::new("tether", &label), |b| {
            b.iter(|| black_box(round.run().expect("tether round trip")))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = tether_benches::criterion();
    targets = envelope_vs_tether
}
criterion_main!(benches);
