//! `data_frame`: the DATA frame hot path (decode, header-only encode, full-copy encode).
//!
//! Every message is prebuilt as a *shared* `Bytes` (frozen, then cloned once before the
//! loop), so the per-iteration `clone` is one reference-count increment and no promotion
//! allocation is measured. Throughput is the size of the whole frame (header + payload):
//! for the header-only paths that is the payload a forwarding writer moves by reference.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tether_benches::{bench_limits, body, size_label};
use tether_proto::{Data, Frame, StreamId};

const SIZES: [usize; 4] = [64, 1024, 16 * 1024, 1024 * 1024];

/// A DATA frame on stream 1 and its encoded message, already a shared `Bytes`.
fn fixture(len: usize) -> (Data, Bytes) {
    let data = Data {
        stream_id: StreamId::new(1),
        end_stream: false,
        payload: body(len),
    };
    let mut buf = BytesMut::new();
    Frame::Data(data.clone()).encode(&mut buf);
    let msg = buf.freeze();
    // The first clone of a `Bytes` made from a Vec promotes it to a shared buffer;
    // do that here, outside the measurement.
    drop(msg.clone());
    (data, msg)
}

fn data_frame(c: &mut Criterion) {
    let limits = bench_limits();
    let mut group = c.benchmark_group("data_frame");
    for len in SIZES {
        let (data, msg) = fixture(len);
        let label = size_label(len);
        group.throughput(Throughput::Bytes(msg.len() as u64));

        // The floor under every zero-copy decode: one reference-count increment (clone)
        // and one decrement (drop) of the shared message.
        group.bench_function(BenchmarkId::new("refcount_floor", &label), |b| {
            b.iter(|| black_box(black_box(&msg).clone()))
        });

        group.bench_function(BenchmarkId::new("decode", &label), |b| {
            b.iter(|| Frame::decode(black_box(&msg).clone(), &limits))
        });

        let mut out = BytesMut::with_capacity(64);
        group.bench_function(BenchmarkId::new("encode_header", &label), |b| {
            b.iter(|| {
                out.clear();
                black_box(&data).encode_header(&mut out);
                black_box(&out);
            })
        });

        // The target: receive a DATA frame and write the header for forwarding its
        // payload by reference (vectored write); no payload byte is touched.
        group.bench_function(BenchmarkId::new("decode+encode_header", &label), |b| {
            b.iter(|| {
                out.clear();
                match Frame::decode(black_box(&msg).clone(), &limits) {
                    Ok(Frame::Data(d)) => {
                        d.encode_header(&mut out);
                        black_box((&out, d));
                    }
                    other => panic!("not a DATA frame: {other:?}"),
                }
            })
        });

        // The copying path: header and payload copied into one message buffer.
        let frame = Frame::Data(data.clone());
        let mut out = BytesMut::with_capacity(msg.len());
        group.bench_function(BenchmarkId::new("encode_copy", &label), |b| {
            b.iter(|| {
                out.clear();
                black_box(&frame).encode(&mut out);
                black_box(&out);
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = tether_benches::criterion();
    targets = data_frame
}
criterion_main!(benches);
