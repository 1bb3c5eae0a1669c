//! `head`: encode and parse typical HTTP heads (the payload of a HEADERS frame).
//!
//! `encode+parse` is the target: encode into a reused buffer, split the bytes off as the
//! received message (no copy; the buffer is reclaimed once the parsed head is dropped),
//! and parse them back into `http` types. `encode` and `parse` alone show the split.

use std::hint::black_box;
use std::time::Duration;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tether_benches::{bench_limits, request_head, response_head};
use tether_proto::{RequestHead, ResponseHead};

fn head(c: &mut Criterion) {
    let limits = bench_limits();
    let mut group = c.benchmark_group("head");

    let request = request_head();
    let mut buf = BytesMut::with_capacity(1024);
    request.encode(&mut buf);
    let encoded = buf.split().freeze();
    drop(encoded.clone());
    group.throughput(Throughput::Bytes(encoded.len() as u64));
    group.bench_function("request/encode", |b| {
        b.iter(|| {
            buf.clear();
            black_box(&request).encode(&mut buf);
            black_box(&buf);
        })
    });
    group.bench_function("request/parse", |b| {
        b.iter(|| RequestHead::decode(black_box(&encoded), &limits))
    });
    group.bench_function("request/encode+parse", |b| {
        b.iter(|| {
            black_box(&request).encode(&mut buf);
            let msg = buf.split().freeze();
            RequestHead::decode(&msg, &limits)
        })
    });

    let response = response_head();
    response.encode(&mut buf);
    let encoded = buf.split().freeze();
    drop(encoded.clone());
    group.throughput(Throughput::Bytes(encoded.len() as u64));
    group.bench_function("response/encode", |b| {
        b.iter(|| {
            buf.clear();
            black_box(&response).encode(&mut buf);
            black_box(&buf);
        })
    });
    group.bench_function("response/parse", |b| {
        b.iter(|| ResponseHead::decode(black_box(&encoded), &limits))
    });
    group.bench_function("response/encode+parse", |b| {
        b.iter(|| {
            black_box(&response).encode(&mut buf);
            let msg = buf.split().freeze();
            ResponseHead::decode(&msg, &limits)
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = head
}
criterion_main!(benches);
