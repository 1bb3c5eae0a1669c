//! `head`: encode and parse typical HTTP heads (the payload of a HEADERS frame).
//!
//! `encode+parse` is the target: encode into a reused buffer, split the bytes off as the
//! received message (no copy; the buffer is reclaimed once the parsed head is dropped),
//! and parse them back into `http` types. `encode` and `parse` alone show the split, and
//! `request/httparse_only` is the floor: the HTTP/1.1 syntax pass without building
//! `http::Uri` and `http::HeaderMap`.

use std::hint::black_box;

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
    // The floor: httparse alone over the same bytes, building no `http` types.
    group.bench_function("request/httparse_only", |b| {
        b.iter(|| {
            let mut fields = [httparse::EMPTY_HEADER; 16];
            let mut req = httparse::Request::new(&mut fields);
            let status = req.parse(black_box(&encoded)).expect("valid head");
            black_box((status, req.path));
        })
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
    config = tether_benches::criterion();
    targets = head
}
criterion_main!(benches);
