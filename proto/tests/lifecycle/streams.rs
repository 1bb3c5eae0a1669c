//! The stream layer inside the connection machine (spec/protocol.md §10): requests both
//! ways over an established connection, stream errors that keep the connection, and every
//! open stream ending when the connection does.

use bytes::Bytes;
use http::{Method, StatusCode, Uri};
use tether_proto::connection::{ConnectionError, Event, Transmit, WsMessage};
use tether_proto::streams::{Outcome, StreamEvent};
use tether_proto::{Frame, Limits, RequestHead, ResetCode, ResponseHead, StreamId};

use crate::pair::{Pair, Peer};

fn stream_events(p: &Peer) -> Vec<&StreamEvent> {
    p.events
        .iter()
        .filter_map(|e| match e {
            Event::Stream(s) => Some(s),
            _ => None,
        })
        .collect()
}

fn outcome(p: &Peer, id: StreamId) -> Vec<Outcome> {
    stream_events(p)
        .into_iter()
        .filter_map(|e| match e {
            StreamEvent::Closed { id: i, outcome } if *i == id => Some(outcome.clone()),
            _ => None,
        })
        .collect()
}

fn get(path: &'static str) -> RequestHead {
    RequestHead::new(Method::GET, Uri::from_static(path))
}

#[test]
fn no_streams_before_the_handshake() {
    let mut pair = Pair::default_configs();
    assert!(pair.client.conn.streams().is_none());
    assert!(pair.server.conn.streams().is_none());
    pair.handshake();
    assert!(pair.client.conn.streams().is_some());
    assert!(pair.server.conn.streams().is_some());
}

#[test]
fn requests_both_ways_over_one_connection() {
    let mut pair = Pair::default_configs();
    pair.handshake();
    let now = pair.now;
    // The client calls the server...
    let up = pair
        .client
        .conn
        .streams()
        .unwrap()
        .open(get("/status"), true, None, now)
        .unwrap();
    // ...and the server calls the client at the same time.
    let down = pair
        .server
        .conn
        .streams()
        .unwrap()
        .open(get("/device/temp"), true, None, now)
        .unwrap();
    assert!(up.is_client_initiated() && down.is_server_initiated());
    pair.drive();
    for (peer, id, path) in [
        (&pair.server, up, "/status"),
        (&pair.client, down, "/device/temp"),
    ] {
        assert!(stream_events(peer).iter().any(
            |e| matches!(e, StreamEvent::Request { id: i, head, .. } if *i == id && head.uri.path() == path)
        ));
    }
    let s = pair.server.conn.streams().unwrap();
    s.send_response(up, ResponseHead::new(StatusCode::OK), false)
        .unwrap();
    s.send_data(up, Bytes::from_static(b"ok"), true).unwrap();
    let c = pair.client.conn.streams().unwrap();
    c.send_response(down, ResponseHead::new(StatusCode::OK), false)
        .unwrap();
    c.send_data(down, Bytes::from_static(b"21.5"), true)
        .unwrap();
    pair.drive();
    assert_eq!(outcome(&pair.client, up), vec![Outcome::Finished]);
    assert_eq!(outcome(&pair.server, up), vec![Outcome::Finished]);
    assert_eq!(outcome(&pair.client, down), vec![Outcome::Finished]);
    assert_eq!(outcome(&pair.server, down), vec![Outcome::Finished]);
    assert!(stream_events(&pair.server).iter().any(
        |e| matches!(e, StreamEvent::Data { id, data, .. } if *id == down && &data[..] == b"21.5")
    ));
}

#[test]
fn a_stream_error_resets_the_stream_and_keeps_the_connection() {
    let mut pair = Pair::default_configs();
    pair.handshake();
    // WINDOW_UPDATE with increment 0 on stream 3, which the client never opened yet.
    let bad = Bytes::from_static(b"\x07\0\0\0\0\0\0\x03\0\0\0\0");
    let now = pair.now;
    pair.server.conn.handle_message(WsMessage::Binary(bad), now);
    assert!(pair.server.conn.is_established());
    let Some(WsMessage::Binary(reset)) = pair.server.conn.poll_transmit().map(WsMessage::from)
    else {
        panic!("no RESET")
    };
    assert!(matches!(
        Frame::decode(reset, &Limits::default()),
        Ok(Frame::Reset(r)) if r.stream_id.value() == 3 && r.code == ResetCode::PROTOCOL_ERROR
    ));
}

#[test]
fn a_connection_error_of_the_stream_layer_closes_with_its_code() {
    let mut pair = Pair::default_configs();
    pair.handshake();
    // DATA on a stream the client never opened: close 4000 (§10.1).
    let data = Bytes::from_static(b"\x05\0\0\0\0\0\0\x09hi");
    let now = pair.now;
    pair.server
        .conn
        .handle_message(WsMessage::Binary(data), now);
    pair.server
        .events
        .extend(std::iter::from_fn(|| pair.server.conn.poll_event()));
    assert!(pair.server.events.iter().any(|e| matches!(
        e,
        Event::Failure { error: ConnectionError::StreamLayer(s) } if s.code == tether_proto::CloseCode::PROTOCOL_ERROR
    )));
    assert!(pair.server.conn.is_closed());
}

#[test]
fn every_open_stream_ends_when_the_connection_does() {
    let mut pair = Pair::default_configs();
    pair.handshake();
    let now = pair.now;
    let ids: Vec<StreamId> = (0..5)
        .map(|_| {
            pair.client
                .conn
                .streams()
                .unwrap()
                .open(get("/slow"), false, None, now)
                .unwrap()
        })
        .collect();
    pair.drive();
    pair.client.conn.handle_transport_lost(now);
    pair.server.conn.handle_transport_lost(now);
    pair.drive();
    for id in ids {
        assert_eq!(outcome(&pair.client, id), vec![Outcome::ConnectionLost]);
        assert_eq!(outcome(&pair.server, id), vec![Outcome::ConnectionLost]);
    }
    // The streams' ends come before the connection's own.
    let last = pair.client.events.last().unwrap();
    assert!(matches!(last, Event::Failure { .. }), "{last:?}");
    assert!(pair.client.conn.streams().is_none());
}

#[test]
fn data_leaves_as_header_and_the_queued_bytes_without_a_copy() {
    let mut pair = Pair::default_configs();
    pair.handshake();
    let now = pair.now;
    let id = pair
        .client
        .conn
        .streams()
        .unwrap()
        .open(
            RequestHead::new(Method::POST, Uri::from_static("/sink")),
            false,
            None,
            now,
        )
        .unwrap();
    pair.drive();
    let body = Bytes::from(vec![0x5a; 1000]);
    let s = pair.client.conn.streams().unwrap();
    s.send_data(id, body.clone(), true).unwrap();
    let Some(Transmit::Data { header, payload }) = pair.client.conn.poll_transmit() else {
        panic!("no DATA")
    };
    // spec/protocol.md §3.2, §3.4.5: type 0x05, END_STREAM, reserved 0, stream id.
    let mut expected = [0x05, 0x01, 0, 0, 0, 0, 0, 0];
    expected[4..].copy_from_slice(&id.value().to_be_bytes());
    assert_eq!(header, expected);
    // The very bytes the application queued: same memory, no copy.
    assert_eq!(payload.as_ptr(), body.as_ptr());
    assert_eq!(payload.len(), body.len());
    assert!(
        pair.client.conn.bytes_sent() >= 8 + 1000,
        "the parts are counted"
    );
}
