//! What a peer that grants no credit can make us hold, and for how long
//! (spec/protocol.md §10.3, §10.8).

use super::*;

const CHUNK: usize = 16 * 1024;

/// A client that announces zero windows (it never lets a DATA byte through) and a server
/// with `server` as its stream config.
fn zero_window_pair(server: StreamsConfig) -> Pair {
    Pair::new(
        StreamsConfig {
            initial_stream_window: 0,
            initial_connection_window: 0,
            ..StreamsConfig::default()
        },
        server,
    )
}

/// Opens `n` GETs from the client and answers each with a head; returns the ids.
fn open_answered(p: &mut Pair, n: usize) -> Vec<StreamId> {
    let ids: Vec<StreamId> = (0..n)
        .map(|_| p.client.s.open(get("/big"), true, None, p.now).unwrap())
        .collect();
    p.pump();
    for &id in &ids {
        p.server
            .s
            .send_response(id, ResponseHead::new(StatusCode::OK), false)
            .unwrap();
    }
    p.pump();
    ids
}

/// Offers `CHUNK`s on `id` until the machine refuses one (a sender that ignores
/// `is_writable`: the worst case). Returns the bytes taken.
fn fill(p: &mut Pair, id: StreamId) -> usize {
    let mut taken = 0;
    for _ in 0..1000 {
        match p.server.s.send_data(id, pattern(id, CHUNK), false) {
            Ok(()) => taken += CHUNK,
            Err(SendError::Blocked { .. }) => return taken,
            Err(e) => panic!("{e}"),
        }
    }
    panic!("stream {id} took {taken} bytes and still takes more")
}

fn writable(events: &[StreamEvent], id: StreamId) -> bool {
    events.contains(&StreamEvent::Writable { id })
}

#[test]
fn a_zero_window_peer_gets_one_chunk_per_stream_within_the_connection_cap() {
    let cap = 512 * 1024;
    let mut p = zero_window_pair(StreamsConfig {
        max_connection_send_buffer: cap,
        send_budget: SendBudget::new(usize::MAX),
        ..StreamsConfig::default()
    });
    let ids = open_answered(&mut p, 128);
    let mut per_stream = vec![];
    for &id in &ids {
        per_stream.push(fill(&mut p, id));
        assert!(!p.server.s.is_writable(id), "no room left on {id}");
        p.pump();
    }
    // Without credit a stream takes one chunk (its queue was empty), never more; the
    // connection stops taking chunks once its cap is reached.
    assert!(per_stream.iter().all(|&n| n <= CHUNK), "{per_stream:?}");
    let held = p.server.s.buffered_bytes();
    assert_eq!(held, per_stream.iter().sum::<usize>());
    assert!(held >= cap && held <= cap + CHUNK, "held {held}");
    assert!(per_stream.ends_with(&[0]), "later streams get nothing");
}

#[test]
fn credit_drives_how_much_a_stream_takes() {
    // A peer with a 64 KiB stream window: the queue grows to the window (at most one
    // chunk beyond it), not to max_send_buffer.
    let mut p = Pair::new(
        StreamsConfig {
            initial_stream_window: 64 * 1024,
            ..StreamsConfig::default()
        },
        StreamsConfig::default(),
    );
    p.client.auto_release = false;
    let id = open_answered(&mut p, 1)[0];
    let first = fill(&mut p, id);
    assert_eq!(first, 64 * 1024, "up to the window");
    assert!(!p.server.s.is_writable(id));
    p.pump(); // 64 KiB go out and use the window up; the empty queue takes one chunk
    assert!(writable(&p.server.events, id));
    p.server.events.clear();
    assert_eq!(fill(&mut p, id), CHUNK, "no credit: one chunk");
    p.pump();
    assert_eq!(p.server.s.queued_bytes(id), CHUNK);
    assert!(!writable(&p.server.events, id));
    // The reader consumes: credit comes back and the stream is writable again.
    p.client.s.release_capacity(id, 64 * 1024);
    p.pump();
    assert!(writable(&p.server.events, id));
    assert!(p.server.s.is_writable(id));
}

#[test]
fn the_budget_is_shared_and_frees_waiters_on_other_connections() {
    let budget = SendBudget::new(256 * 1024);
    let config = StreamsConfig {
        send_budget: budget.clone(),
        ..StreamsConfig::default()
    };
    let mut a = zero_window_pair(config.clone());
    let mut b = Pair::new(StreamsConfig::default(), config);
    // Connection A's zero-window peer pins the whole budget.
    for id in open_answered(&mut a, 32) {
        fill(&mut a, id);
    }
    assert!(!budget.has_room());
    assert!(budget.used() <= 256 * 1024 + CHUNK, "{budget:?}");
    assert_eq!(budget.used(), a.server.s.buffered_bytes());
    // Connection B, whose peer reads, must wait: refused, not failed.
    let id = open_answered(&mut b, 1)[0];
    let Err(SendError::Blocked { data, .. }) = b.server.s.send_data(id, pattern(id, CHUNK), false)
    else {
        panic!("B took data beyond the shared budget")
    };
    // B learns of budget freed elsewhere by looking again soon (no other input comes).
    let retry = b.server.s.poll_timeout().expect("a retry is armed");
    assert!(retry <= b.now + BUDGET_RETRY);
    b.advance(BUDGET_RETRY);
    b.pump();
    assert!(!writable(&b.server.events, id), "nothing was freed yet");
    // A's peer goes away: its queued bytes are dropped and the budget is free again.
    a.server.s.handle_connection_lost();
    drop(a);
    assert_eq!(budget.used(), 0);
    let retry = b.server.s.poll_timeout().expect("still armed");
    b.advance(retry.saturating_duration_since(b.now));
    b.pump();
    assert!(writable(&b.server.events, id), "B is woken");
    b.server.s.send_data(id, data, true).unwrap();
    b.pump();
    assert_eq!(body_of(&b.client.events, id), pattern(id, CHUNK));
    assert_eq!(budget.used(), 0);
}

#[test]
fn a_waiter_is_woken_when_its_own_connection_frees_room() {
    let mut p = Pair::new(
        StreamsConfig::default(),
        StreamsConfig {
            max_connection_send_buffer: 64 * 1024,
            ..StreamsConfig::default()
        },
    );
    p.client.auto_release = false;
    let ids = open_answered(&mut p, 2);
    // Stream 1 fills the connection's cap (its peer window is 256 KiB).
    let taken = fill(&mut p, ids[0]);
    assert_eq!(taken, 64 * 1024);
    assert!(p
        .server
        .s
        .send_data(ids[1], pattern(ids[1], CHUNK), false)
        .is_err());
    // The queued bytes go out: room on the connection, stream 2 hears of it.
    p.pump();
    assert!(writable(&p.server.events, ids[1]));
    p.server
        .s
        .send_data(ids[1], pattern(ids[1], CHUNK), false)
        .unwrap();
}

#[test]
fn a_stream_whose_queued_bytes_do_not_move_is_reset_and_a_waiting_one_is_not() {
    let stall = Duration::from_secs(30);
    let mut p = zero_window_pair(StreamsConfig {
        stall_timeout: stall,
        ..StreamsConfig::default()
    });
    let ids = open_answered(&mut p, 2);
    let (stuck, long_poll) = (ids[0], ids[1]);
    fill(&mut p, stuck);
    p.pump();
    assert_eq!(p.server.s.queued_bytes(stuck), CHUNK);
    // Heartbeats and nothing else, for just under one period: nothing happens.
    p.advance(stall - Duration::from_millis(1));
    p.pump();
    assert!(outcomes(&p.server.events).is_empty());
    // Within two periods of the data stopping, the stuck stream is reset on both sides;
    // the long poll, with nothing queued, is left alone.
    for _ in 0..4 {
        p.advance(stall / 2);
        p.pump();
    }
    let reset = Outcome::Reset {
        code: ResetCode::ENHANCE_YOUR_CALM,
        initiator: Initiator::Local,
    };
    assert_eq!(outcomes(&p.server.events)[&stuck], vec![reset.clone()]);
    assert_eq!(
        outcomes(&p.client.events)[&stuck],
        vec![Outcome::Reset {
            code: ResetCode::ENHANCE_YOUR_CALM,
            initiator: Initiator::Peer,
        }]
    );
    assert_eq!(p.server.s.buffered_bytes(), 0, "its bytes are freed");
    for _ in 0..20 {
        p.advance(stall);
        p.pump();
    }
    assert!(!outcomes(&p.server.events).contains_key(&long_poll));
    // When the long poll answers, its bytes are subject to the rule like any others.
    p.server
        .s
        .send_data(long_poll, pattern(long_poll, 100), false)
        .unwrap();
    for _ in 0..4 {
        p.advance(stall / 2);
        p.pump();
    }
    assert_eq!(outcomes(&p.server.events)[&long_poll], vec![reset]);
}

#[test]
fn a_slow_reader_that_keeps_granting_credit_is_not_stalled() {
    let stall = Duration::from_secs(30);
    let mut p = Pair::new(
        StreamsConfig {
            initial_stream_window: 1024,
            ..StreamsConfig::default()
        },
        StreamsConfig {
            stall_timeout: stall,
            ..StreamsConfig::default()
        },
    );
    p.client.auto_release = false;
    let id = open_answered(&mut p, 1)[0];
    p.server
        .s
        .send_data(id, pattern(id, 64 * 1024), false)
        .unwrap();
    p.pump();
    let mut got = 0;
    // 1 KiB every 20 s, for ten minutes: slow, but the data moves.
    for _ in 0..30 {
        p.advance(Duration::from_secs(20));
        p.client.s.release_capacity(id, 1024);
        // Release is batched at half a window: 1024 is due at once here.
        p.pump();
        let now = body_of(&p.client.events, id).len();
        assert!(now > got, "the reader keeps getting data");
        got = now;
    }
    assert!(!outcomes(&p.server.events).contains_key(&id));
}
