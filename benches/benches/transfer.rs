//! A simulated transfer through two complete connection machines in memory: every byte
//! goes through the stream layer's flow control, the frame encoder, the decoder and the
//! events, with no I/O. Baseline in the same run: a plain copy of the same bytes (the
//! floor any transport pays at least once). Also: many small request/response exchanges.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use http::{Method, StatusCode, Uri};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;
use tether_proto::connection::{Admission, Config, Connection, Event};
use tether_proto::streams::{StreamEvent, StreamsConfig};
use tether_proto::{RequestHead, ResponseHead};

/// Two established connections and the clock they share.
struct Pair {
    client: Connection,
    server: Connection,
    now: Instant,
}

impl Pair {
    fn new() -> Self {
        let config = Arc::new(
            Config::builder()
                .heartbeat_disabled()
                .streams(StreamsConfig {
                    max_concurrent_streams: 1024,
                    initial_stream_window: 1 << 20,
                    initial_connection_window: 4 << 20,
                    serve_requests: true, // the server answers (else the machine says 501)
                    ..StreamsConfig::default()
                })
                .build()
                .expect("valid config"),
        );
        let now = Instant::now();
        let client = Connection::client(config.clone(), Bytes::new(), None, now).expect("client");
        let server = Connection::server(config, now);
        let mut pair = Pair {
            client,
            server,
            now,
        };
        let mut seed = 1u8;
        let mut rng = |buf: &mut [u8]| {
            for b in buf {
                seed = seed.wrapping_mul(31).wrapping_add(7);
                *b = seed;
            }
        };
        pair.pump(&mut |_, _| {});
        pair.server
            .accept(Admission::fresh(&mut rng).expect("random"), now)
            .expect("accept");
        pair.pump(&mut |_, _| {});
        assert!(pair.client.is_established() && pair.server.is_established());
        pair
    }

    /// Moves messages both ways until both are quiet; `on` sees every event
    /// (`true` = the server's) and may act on either connection.
    fn pump(&mut self, on: &mut dyn FnMut(bool, Event)) {
        loop {
            let mut moved = false;
            while let Some(m) = self
                .client
                .poll_transmit()
                .map(tether_proto::WsMessage::from)
            {
                self.server.handle_message(m, self.now);
                moved = true;
            }
            while let Some(m) = self
                .server
                .poll_transmit()
                .map(tether_proto::WsMessage::from)
            {
                self.client.handle_message(m, self.now);
                moved = true;
            }
            // Received DATA is released by the machine (the default).
            while let Some(e) = self.server.poll_event() {
                on(true, e);
                moved = true;
            }
            while let Some(e) = self.client.poll_event() {
                on(false, e);
                moved = true;
            }
            if !moved {
                return;
            }
        }
    }
}

fn bulk(c: &mut Criterion) {
    let mut group = c.benchmark_group("transfer/bulk");
    const TOTAL: usize = 16 << 20;
    let chunk = Bytes::from(vec![0x5a; 64 * 1024]);
    group.throughput(Throughput::Bytes(TOTAL as u64));
    // The floor: each byte copied once, as Tether's encoder does, from the same 64 KiB
    // chunk into a reused buffer (cache-hot like the transfer; a cold 16 MiB copy would
    // flatter Tether).
    group.bench_function("memcpy_floor", |b| {
        let mut dst = vec![0_u8; chunk.len()];
        b.iter(|| {
            for _ in 0..TOTAL / chunk.len() {
                dst.copy_from_slice(black_box(&chunk));
                black_box(&dst);
            }
        })
    });
    group.bench_function("tether_16MiB_one_stream", |b| {
        b.iter(|| {
            let mut pair = Pair::new();
            let now = pair.now;
            let id = pair
                .client
                .open(
                    RequestHead::new(Method::PUT, Uri::from_static("/blob")),
                    false,
                    None,
                    now,
                )
                .expect("open");
            let mut sent = 0;
            let mut received = 0usize;
            while sent < TOTAL {
                let mut s = pair.client.stream(id).expect("open");
                match s.send_data(chunk.clone(), sent + chunk.len() == TOTAL) {
                    Ok(()) => sent += chunk.len(),
                    Err(_) => pair.pump(&mut |server, e| {
                        if let (true, Event::Stream(StreamEvent::Data { data, .. })) = (server, e) {
                            received += data.len();
                        }
                    }),
                }
            }
            pair.pump(&mut |server, e| {
                if let (true, Event::Stream(StreamEvent::Data { data, .. })) = (server, e) {
                    received += data.len();
                }
            });
            assert_eq!(received, TOTAL);
        })
    });
    group.finish();
}

fn small_requests(c: &mut Criterion) {
    let mut group = c.benchmark_group("transfer/requests");
    for &n in &[100usize, 1000] {
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(BenchmarkId::new("get_1KiB_response", n), |b| {
            let body = Bytes::from(vec![b'x'; 1024]);
            b.iter(|| {
                let mut pair = Pair::new();
                let now = pair.now;
                for _ in 0..n {
                    let head = RequestHead::new(Method::GET, Uri::from_static("/item?id=42"));
                    pair.client.open(head, true, None, now).expect("open");
                }
                let mut done = 0;
                let mut requests = vec![];
                while done < n {
                    pair.pump(&mut |server, e| match (server, e) {
                        (true, Event::Stream(StreamEvent::Request { id, .. })) => requests.push(id),
                        (false, Event::Stream(StreamEvent::Closed { .. })) => done += 1,
                        _ => {}
                    });
                    for id in requests.drain(..) {
                        let mut s = pair.server.stream(id).expect("open");
                        s.send_response(ResponseHead::new(StatusCode::OK), false)
                            .expect("respond");
                        s.send_data(body.clone(), true).expect("body");
                    }
                }
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = tether_benches::criterion();
    targets = bulk, small_requests
}
criterion_main!(benches);
