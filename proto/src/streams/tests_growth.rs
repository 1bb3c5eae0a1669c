//! Receive windows that grow when they limit the rate (spec/protocol.md §10.3.1), over a
//! simulated path: each frame arrives a fixed one-way delay after it left.

use super::*;

const CHUNK: usize = 16 * 1024;
const MIB: usize = 1024 * 1024;

/// How a transfer went.
#[derive(Debug)]
struct Run {
    /// Virtual time from the first byte sent to the last received.
    took: Duration,
    /// The receiver's stream and connection windows at the end.
    stream_window: u32,
    connection_window: u32,
    /// The round trip the receiver measured.
    rtt: Option<Duration>,
}

/// The server sends `body` bytes to the client over a path of `one_way` delay each way,
/// stepping time by `step`; the client's reader takes at most `read_per_step` bytes a step
/// (releasing them with the step's time).
fn transfer(
    client: StreamsConfig,
    body: usize,
    one_way: Duration,
    step: Duration,
    read_per_step: usize,
) -> Run {
    let mut p = Pair::new(client, StreamsConfig::default());
    let id = p
        .client
        .s
        .open(
            RequestHead::new(http::Method::GET, "/big".parse().unwrap()),
            true,
            None,
            p.now,
        )
        .unwrap();
    p.pump();
    p.server
        .s
        .send_response(id, ResponseHead::new(http::StatusCode::OK), false)
        .unwrap();
    p.pump();
    let start = p.now;
    let (mut to_client, mut to_server) = (VecDeque::new(), VecDeque::new());
    let (mut sent, mut received, mut unread) = (0, 0, 0);
    for _ in 0..1_000_000 {
        let now = p.now;
        while to_client.front().is_some_and(|&(at, _)| at <= now) {
            let (_, frame) = to_client.pop_front().unwrap();
            p.client.s.handle_frame(frame, now).unwrap();
        }
        while let Some(e) = p.client.s.poll_event() {
            if let StreamEvent::Data { data, .. } = e {
                received += data.len();
                unread += data.len();
            }
        }
        let read = unread.min(read_per_step);
        if read > 0 {
            unread -= read;
            p.client.s.release_capacity_at(id, read as u32, now);
        }
        if received == body {
            return Run {
                took: now - start,
                stream_window: p.client.s.stream_window_size(id).unwrap(),
                connection_window: p.client.s.connection_window_size(),
                rtt: p.client.s.window_rtt(),
            };
        }
        while let Some(frame) = p.client.s.poll_transmit() {
            to_server.push_back((now + one_way, frame));
        }
        while to_server.front().is_some_and(|&(at, _)| at <= now) {
            let (_, frame) = to_server.pop_front().unwrap();
            p.server.s.handle_frame(frame, now).unwrap();
        }
        while sent < body && p.server.s.is_writable(id) {
            let n = CHUNK.min(body - sent);
            p.server
                .s
                .send_data(id, Bytes::from(vec![7; n]), false)
                .unwrap();
            sent += n;
        }
        while p.server.s.poll_event().is_some() {}
        while let Some(frame) = p.server.s.poll_transmit() {
            to_client.push_back((now + one_way, frame));
        }
        p.now += step;
    }
    panic!("{received} of {body} bytes arrived")
}

/// Drives the connection window's growth alone, by hand: `n` grants of half the window,
/// 10 ms apart, with a measured round trip of 20 ms.
fn grant_connection_halves(s: &mut Streams, n: u64) {
    let t0 = Instant::now();
    Tuning::of(&mut s.tuning, s.config.initial_connection_window)
        .sample_rtt(Duration::from_millis(20));
    for i in 0..n {
        s.clock = Some(t0 + Duration::from_millis(10 * i));
        let half = s.connection_window_size() / 2;
        s.conn_recv_window -= half;
        s.release_connection(half, false).unwrap();
    }
}

fn no_growth() -> StreamsConfig {
    StreamsConfig {
        max_stream_window: 0,
        max_connection_window: 0,
        ..StreamsConfig::default()
    }
}

#[test]
fn over_a_long_path_windows_grow_and_the_body_arrives_many_times_sooner() {
    let ms = Duration::from_millis;
    let fixed = transfer(no_growth(), 64 * MIB, ms(10), ms(1), usize::MAX);
    let grown = transfer(
        StreamsConfig::default(),
        64 * MIB,
        ms(10),
        ms(1),
        usize::MAX,
    );
    // Fixed: one 256 KiB window per 20 ms round trip, 256 of them.
    assert_eq!(fixed.stream_window, 256 * 1024);
    assert!(fixed.took >= ms(256 * 20), "{fixed:?}");
    // Grown: doubling about every round trip (to 8 MiB before the body ends).
    assert!(grown.stream_window >= 4 * MIB as u32, "{grown:?}");
    assert!(grown.connection_window >= 4 * MIB as u32, "{grown:?}");
    assert!(grown.took * 10 < fixed.took, "{grown:?} vs {fixed:?}");
    let rtt = grown.rtt.unwrap();
    assert!(rtt >= ms(20) && rtt <= ms(22), "measured {rtt:?}");
}

#[test]
fn a_window_the_reader_limits_does_not_grow() {
    // The path's round trip is 2 ms; the reader takes 16 KiB a millisecond (16 MiB/s),
    // so a 256 KiB window takes 16 ms to consume: the reader, not the window, is slow.
    let ms = Duration::from_millis;
    let run = transfer(StreamsConfig::default(), 8 * MIB, ms(1), ms(1), 16 * 1024);
    assert_eq!(run.stream_window, 256 * 1024, "{run:?}");
    assert_eq!(run.connection_window, MIB as u32, "{run:?}");
    assert!(run.rtt.is_some(), "the round trip was measured: {run:?}");
}

#[test]
fn a_short_path_keeps_the_initial_windows() {
    // A round trip of 20 us (loopback) and a reader at 4 GiB/s: consuming a 256 KiB
    // window takes 60 us, three round trips.
    let us = Duration::from_micros;
    let run = transfer(
        StreamsConfig::default(),
        64 * MIB,
        us(10),
        us(1),
        4 * 1024 + 100,
    );
    assert_eq!(run.stream_window, 256 * 1024, "{run:?}");
    assert_eq!(run.connection_window, MIB as u32, "{run:?}");
}

#[test]
fn the_connection_window_grows_only_within_the_process_budget() {
    let ms = Duration::from_millis;
    let budget = RecvBudget::new(3 * MIB);
    let config = StreamsConfig {
        recv_budget: budget.clone(),
        ..StreamsConfig::default()
    };
    // 1 MiB -> 2 MiB -> 4 MiB takes 3 MiB of budget; 8 MiB would need 4 more.
    let run = transfer(config.clone(), 64 * MIB, ms(10), ms(1), usize::MAX);
    assert_eq!(run.connection_window, 4 * MIB as u32, "{run:?}");
    assert!(
        run.stream_window > 4 * MIB as u32,
        "stream windows are not budgeted"
    );
    // The machine was dropped with its pair: the growth went back.
    assert_eq!(budget.used(), 0);
    // An empty budget: the connection window keeps its initial size.
    let none = StreamsConfig {
        recv_budget: RecvBudget::new(0),
        ..StreamsConfig::default()
    };
    let run = transfer(none, 16 * MIB, ms(10), ms(1), usize::MAX);
    assert_eq!(run.connection_window, MIB as u32, "{run:?}");
}

#[test]
fn a_live_machine_holds_its_growth_in_the_budget() {
    let budget = RecvBudget::new(64 * MIB);
    let mut s = Streams::new(
        Side::Client,
        StreamsConfig {
            recv_budget: budget.clone(),
            ..StreamsConfig::default()
        },
        PeerLimits::default(),
    )
    .unwrap();
    // The connection window's growth alone: 1 MiB -> 2 MiB.
    grant_connection_halves(&mut s, 3);
    assert_eq!(s.connection_window_size(), 2 * MIB as u32);
    assert_eq!(budget.used(), MIB);
    drop(s);
    assert_eq!(budget.used(), 0);
}

#[test]
fn a_window_never_grows_beyond_the_largest_the_spec_allows() {
    // A config built without `ConfigBuilder::build`, whose maximum is out of range.
    let mut s = Streams::new(
        Side::Client,
        StreamsConfig {
            max_connection_window: u32::MAX,
            recv_budget: RecvBudget::new(usize::MAX),
            ..StreamsConfig::default()
        },
        PeerLimits::default(),
    )
    .unwrap();
    grant_connection_halves(&mut s, 200);
    assert_eq!(s.connection_window_size(), crate::frame::MAX_INCREMENT);
    assert!(s.conn_recv_window <= crate::frame::MAX_INCREMENT);
    while let Some(frame) = s.poll_transmit() {
        if let Frame::WindowUpdate(w) = frame {
            assert!(w.increment <= crate::frame::MAX_INCREMENT);
        }
    }
}
