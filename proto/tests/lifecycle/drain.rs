//! spec/protocol.md §10.7, §7.2: a graceful close is a state of the machine with its own
//! timer. GOAWAY goes out, the streams in flight run to completion, and the machine closes
//! by itself when they are done or when the drain time is up.

use std::time::Duration;

use http::{Method, StatusCode, Uri};
use tether_proto::connection::{Event, Initiator, State, Transmit, WsMessage};
use tether_proto::streams::{OpenError, Outcome, StreamEvent};
use tether_proto::{CloseCode, Frame, RequestHead, ResetCode, ResponseHead, StreamId};

use crate::pair::{Pair, Peer};

const DRAIN: Duration = Duration::from_secs(5);

fn get(path: &'static str) -> RequestHead {
    RequestHead::new(Method::GET, Uri::from_static(path))
}

/// An established pair with one request from the client in flight: the server has it and
/// has not answered.
fn request_in_flight() -> (Pair, StreamId) {
    let mut pair = Pair::default_configs();
    pair.handshake();
    // The server answers requests itself (else the machine would answer 501 at once).
    pair.server.conn.set_serve_requests(true);
    let now = pair.now;
    let id = pair
        .client
        .conn
        .open(get("/slow"), true, None, now)
        .unwrap();
    pair.drive();
    assert_eq!(pair.server.conn.streams().unwrap().open_streams(), 1);
    (pair, id)
}

fn answer(pair: &mut Pair, id: StreamId) {
    pair.server
        .conn
        .stream(id)
        .unwrap()
        .send_response(ResponseHead::new(StatusCode::OK), true)
        .unwrap();
    pair.drive();
}

fn closed(code: CloseCode, reason: &str, initiator: Initiator) -> Event {
    Event::Closed {
        code,
        reason: reason.into(),
        initiator,
    }
}

fn outcome(p: &Peer, id: StreamId) -> Option<Outcome> {
    p.events.iter().find_map(|e| match e {
        Event::Stream(StreamEvent::Closed { id: i, outcome }) if *i == id => Some(outcome.clone()),
        _ => None,
    })
}

fn got_goaway(p: &Peer) -> bool {
    p.events
        .iter()
        .any(|e| matches!(e, Event::Stream(StreamEvent::GoAway { code, .. }) if *code == ResetCode::NO_ERROR))
}

#[test]
fn a_drained_connection_closes_at_once_with_the_code() {
    let (mut pair, id) = request_in_flight();
    let now = pair.now;
    pair.server
        .conn
        .close_gracefully(CloseCode::GOING_AWAY, "shutdown", DRAIN, now);
    assert_eq!(pair.server.conn.state(), State::Draining);
    assert!(pair.server.conn.is_established() && pair.server.conn.is_draining());
    assert!(pair
        .server
        .conn
        .poll_timeout()
        .is_some_and(|t| t <= now + DRAIN));
    pair.drive();
    assert!(pair.server.events.contains(&Event::Draining));
    assert!(got_goaway(&pair.client), "GOAWAY reached the client");
    // No new stream either way while draining.
    assert_eq!(
        pair.client.conn.open(get("/more"), true, None, now),
        Err(OpenError::GoingAway)
    );
    assert_eq!(
        pair.server.conn.open(get("/push"), true, None, now),
        Err(OpenError::GoingAway)
    );
    assert_eq!(
        pair.server.conn.state(),
        State::Draining,
        "the request is in flight"
    );
    // The answer is the last stream: its frames go out, then the close.
    pair.run_for(Duration::from_millis(10));
    answer(&mut pair, id);
    assert_eq!(pair.server.conn.state(), State::Closed);
    assert!(pair.elapsed() < DRAIN);
    assert_eq!(
        pair.server.last_event(),
        Some(&closed(CloseCode::GOING_AWAY, "shutdown", Initiator::Local))
    );
    assert_eq!(outcome(&pair.client, id), Some(Outcome::Finished));
    assert_eq!(
        pair.client.last_event(),
        Some(&closed(CloseCode::GOING_AWAY, "shutdown", Initiator::Peer))
    );
    assert_eq!(
        pair.server.count(|e| matches!(e, Event::Closed { .. })),
        1,
        "one end"
    );
}

#[test]
fn the_drain_timer_closes_with_the_code() {
    let (mut pair, id) = request_in_flight();
    let start = pair.now;
    let drain = Duration::from_secs(2);
    pair.server
        .conn
        .close_gracefully(CloseCode::NORMAL, "bye", drain, start);
    assert!(pair
        .server
        .conn
        .poll_timeout()
        .is_some_and(|t| t <= start + drain));
    pair.run_for(Duration::from_millis(1_999));
    assert_eq!(pair.server.conn.state(), State::Draining);
    pair.run_for(Duration::from_millis(1));
    assert_eq!(pair.server.conn.state(), State::Closed);
    assert_eq!(pair.now, start + drain);
    // The stream still open ends as connection lost (§10.7).
    assert_eq!(outcome(&pair.server, id), Some(Outcome::ConnectionLost));
    assert_eq!(
        pair.server.last_event(),
        Some(&closed(CloseCode::NORMAL, "bye", Initiator::Local))
    );
    assert_eq!(
        pair.client.last_event(),
        Some(&closed(CloseCode::NORMAL, "bye", Initiator::Peer))
    );
}

#[test]
fn a_close_that_is_not_normal_or_has_nothing_in_flight_is_immediate() {
    // Not 1000/1001, or a zero drain: at once, no GOAWAY, even with a stream in flight.
    for (code, drain) in [
        (CloseCode::from_u(4500), DRAIN),
        (CloseCode::SESSION_REPLACED, DRAIN),
        (CloseCode::NORMAL, Duration::ZERO),
    ] {
        let (mut pair, _) = request_in_flight();
        let now = pair.now;
        pair.server.conn.close_gracefully(code, "now", drain, now);
        assert_eq!(pair.server.conn.state(), State::Closed, "{code}");
        assert!(pair.server.conn.poll_event().is_some());
        assert!(matches!(
            pair.server.conn.poll_transmit(),
            Some(Transmit::Message(WsMessage::Close(Some(f)))) if f.code == code
        ));
    }
    // Nothing in flight: at once.
    let mut pair = Pair::default_configs();
    pair.handshake();
    let now = pair.now;
    pair.client
        .conn
        .close_gracefully(CloseCode::NORMAL, "done", DRAIN, now);
    assert_eq!(pair.client.conn.state(), State::Closed);
    pair.drive();
    assert!(!pair.client.events.contains(&Event::Draining));
    assert_eq!(
        pair.client.last_event(),
        Some(&closed(CloseCode::NORMAL, "done", Initiator::Local))
    );
    // Not established yet: at once.
    let mut pair = Pair::default_configs();
    let now = pair.now;
    pair.client
        .conn
        .close_gracefully(CloseCode::NORMAL, "early", DRAIN, now);
    assert_eq!(pair.client.conn.state(), State::Closed);
}

#[test]
fn close_during_the_drain_is_immediate_and_a_second_graceful_close_changes_nothing() {
    // A second graceful close keeps the first one's code, reason and deadline.
    let (mut pair, _) = request_in_flight();
    let start = pair.now;
    pair.server
        .conn
        .close_gracefully(CloseCode::GOING_AWAY, "first", DRAIN, start);
    pair.run_for(Duration::from_secs(1));
    let later = pair.now;
    pair.server
        .conn
        .close_gracefully(CloseCode::NORMAL, "second", DRAIN, later);
    assert_eq!(pair.server.conn.state(), State::Draining);
    assert!(pair.run_until(2 * DRAIN, |p| p.server.conn.is_closed()));
    assert_eq!(pair.now, start + DRAIN);
    assert_eq!(
        pair.server.last_event(),
        Some(&closed(CloseCode::GOING_AWAY, "first", Initiator::Local))
    );

    // close() during the drain: at once, the streams end as connection lost.
    let (mut pair, id) = request_in_flight();
    let now = pair.now;
    pair.server
        .conn
        .close_gracefully(CloseCode::GOING_AWAY, "first", DRAIN, now);
    pair.server
        .conn
        .close(CloseCode::from_u(4501), "enough", now);
    assert_eq!(pair.server.conn.state(), State::Closed);
    pair.drive();
    assert_eq!(outcome(&pair.server, id), Some(Outcome::ConnectionLost));
    assert_eq!(
        pair.server.last_event(),
        Some(&closed(CloseCode::from_u(4501), "enough", Initiator::Local))
    );

    // A graceful close with another code during the drain is a close as well.
    let (mut pair, _) = request_in_flight();
    let now = pair.now;
    pair.server
        .conn
        .close_gracefully(CloseCode::GOING_AWAY, "first", DRAIN, now);
    pair.server
        .conn
        .close_gracefully(CloseCode::SESSION_REPLACED, "moved", DRAIN, now);
    assert_eq!(pair.server.conn.state(), State::Closed);
}

/// The peer's GOAWAY refuses the draining side's own stream above its last id: that was
/// the last one, so the drain is over at once.
#[test]
fn a_peer_goaway_that_refuses_the_last_stream_ends_the_drain() {
    let mut pair = Pair::default_configs();
    pair.handshake();
    // The server's request reaches the client only after a while.
    pair.to_client.latency = Duration::from_secs(1);
    let now = pair.now;
    let push = pair
        .server
        .conn
        .open(get("/device"), true, None, now)
        .unwrap();
    pair.server
        .conn
        .close_gracefully(CloseCode::GOING_AWAY, "shutdown", DRAIN, now);
    pair.drive();
    assert_eq!(pair.server.conn.state(), State::Draining);
    // The client goes away too before it saw the request: its GOAWAY's last id is 0.
    pair.client.conn.go_away(ResetCode::NO_ERROR, "me too");
    pair.drive();
    assert_eq!(outcome(&pair.server, push), Some(Outcome::Refused));
    assert_eq!(pair.server.conn.state(), State::Closed);
    assert!(pair.elapsed() < Duration::from_secs(1));
    assert_eq!(
        pair.server.last_event(),
        Some(&closed(CloseCode::GOING_AWAY, "shutdown", Initiator::Local))
    );
}

/// Both sides drain at once: the first to see its last stream done closes, the other
/// hears an orderly close from its peer; neither fails.
#[test]
fn both_sides_draining_end_with_one_orderly_close() {
    let (mut pair, id) = request_in_flight();
    let now = pair.now;
    pair.client
        .conn
        .close_gracefully(CloseCode::NORMAL, "client done", DRAIN, now);
    pair.server
        .conn
        .close_gracefully(CloseCode::GOING_AWAY, "server done", DRAIN, now);
    pair.drive();
    assert!(got_goaway(&pair.client) && got_goaway(&pair.server));
    assert_eq!(pair.client.conn.state(), State::Draining);
    answer(&mut pair, id);
    assert!(pair.client.conn.is_closed() && pair.server.conn.is_closed());
    assert_eq!(
        pair.server.last_event(),
        Some(&closed(
            CloseCode::GOING_AWAY,
            "server done",
            Initiator::Local
        ))
    );
    // The client's stream was done when the response arrived; the server's close came
    // after it on the wire, but the client closed on the response first.
    assert!(matches!(
        pair.client.last_event(),
        Some(Event::Closed { code, .. }) if *code == CloseCode::NORMAL || *code == CloseCode::GOING_AWAY
    ));
    for p in [&pair.client, &pair.server] {
        assert_eq!(p.count(|e| matches!(e, Event::Failure { .. })), 0);
    }
}

/// A drain time beyond what the clock can represent is no deadline: no panic, no timer;
/// the drain still ends when the streams are done.
#[test]
fn a_drain_time_beyond_the_clock_is_no_deadline() {
    let (mut pair, id) = request_in_flight();
    let before = pair.server.conn.poll_timeout();
    let now = pair.now;
    pair.server
        .conn
        .close_gracefully(CloseCode::NORMAL, "whenever", Duration::MAX, now);
    assert_eq!(pair.server.conn.state(), State::Draining);
    assert_eq!(pair.server.conn.poll_timeout(), before, "no drain timer");
    pair.run_for(Duration::from_secs(3));
    assert_eq!(pair.server.conn.state(), State::Draining);
    answer(&mut pair, id);
    assert_eq!(
        pair.server.last_event(),
        Some(&closed(CloseCode::NORMAL, "whenever", Initiator::Local))
    );
}

/// The last frame of the last stream leaves before the close frame (§10.7): a drain that
/// ends on the machine's own RESET sends the RESET first.
#[test]
fn the_last_frames_go_out_before_the_close() {
    let (mut pair, id) = request_in_flight();
    let now = pair.now;
    pair.server
        .conn
        .close_gracefully(CloseCode::NORMAL, "bye", DRAIN, now);
    pair.drive();
    pair.server
        .conn
        .stream(id)
        .unwrap()
        .reset(ResetCode::CANCEL);
    let mut sent = Vec::new();
    while let Some(msg) = pair.server.conn.poll_transmit() {
        sent.push(msg);
    }
    assert_eq!(sent.len(), 2, "{sent:?}");
    match &sent[0] {
        Transmit::Message(WsMessage::Binary(b)) => assert!(matches!(
            Frame::decode(b.clone(), &Default::default()),
            Ok(Frame::Reset(r)) if r.stream_id == id
        )),
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(&sent[1], Transmit::Message(WsMessage::Close(Some(f))) if f.code == CloseCode::NORMAL)
    );
    assert!(pair.server.conn.is_closed());
}
