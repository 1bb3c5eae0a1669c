//! The stream layer inside the connection machine (spec/protocol.md §10): requests both
//! ways over an established connection, stream errors that keep the connection, and every
//! open stream ending when the connection does.

use bytes::Bytes;
use http::{Method, StatusCode, Uri};
use tether_proto::connection::{ConnectionError, Event, Transmit, WsMessage};
use tether_proto::streams::{OpenError, Outcome, StreamError, StreamEvent};
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
    pair.client.conn.set_serve_requests(true);
    pair.server.conn.set_serve_requests(true);
    let up = pair
        .client
        .conn
        .open(get("/status"), true, None, now)
        .unwrap();
    // ...and the server calls the client at the same time.
    let down = pair
        .server
        .conn
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
    let mut s = pair.server.conn.stream(up).unwrap();
    s.send_response(ResponseHead::new(StatusCode::OK), false)
        .unwrap();
    s.send_data(Bytes::from_static(b"ok"), true).unwrap();
    let mut c = pair.client.conn.stream(down).unwrap();
    c.send_response(ResponseHead::new(StatusCode::OK), false)
        .unwrap();
    c.send_data(Bytes::from_static(b"21.5"), true).unwrap();
    pair.drive();
    // A stream that ended is a typed error, not a panic.
    assert_eq!(
        pair.client.conn.stream(up).err(),
        Some(StreamError::Closed(up))
    );
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
    // HEADERS with TRAILERS but without END_STREAM on stream 3, which the client never
    // opened yet: it uses up the id and resets it (spec/protocol.md §3.5, §10.1). (The
    // same error in a WINDOW_UPDATE for a stream never opened closes the connection:
    // streams.json `zero_window_update_on_idle_stream`.)
    let bad = Bytes::from_static(b"\x04\x04\0\0\0\0\0\x03\r\n");
    let now = pair.now;
    pair.server.conn.handle_message(WsMessage::Binary(bad), now);
    assert!(pair.server.conn.is_established());
    let Some(Transmit::Message(WsMessage::Binary(reset))) = pair.server.conn.poll_transmit() else {
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
        Event::Failure { error: ConnectionError::StreamLayer(s) } if s.close_code() == tether_proto::CloseCode::PROTOCOL_ERROR
    )));
    assert!(pair.server.conn.is_closed());
}

#[test]
fn every_open_stream_ends_when_the_connection_does() {
    let mut pair = Pair::default_configs();
    pair.handshake();
    let now = pair.now;
    pair.server.conn.set_serve_requests(true);
    let ids: Vec<StreamId> = (0..5)
        .map(|_| {
            pair.client
                .conn
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
fn streams_are_reached_through_typed_views() {
    let mut pair = Pair::default_configs();
    let now = pair.now;
    // Before the handshake: no streams, and saying so is an error value.
    assert_eq!(
        pair.client.conn.open(get("/"), true, None, now),
        Err(OpenError::NotEstablished)
    );
    assert_eq!(pair.client.conn.can_open(), Err(OpenError::NotEstablished));
    assert_eq!(
        pair.client.conn.stream(StreamId::new(1)).err(),
        Some(StreamError::NoStreams)
    );
    pair.handshake();
    assert_eq!(pair.client.conn.can_open(), Ok(()));
    assert_eq!(
        pair.client.conn.stream(StreamId::new(1)).err(),
        Some(StreamError::Unknown(StreamId::new(1)))
    );
}

/// An end that serves nothing (the default) answers every request 501 by itself, and a
/// request body larger than the windows still gets through: the machine releases it.
#[test]
fn an_end_that_serves_nothing_answers_501_and_consumes_the_body() {
    let mut pair = Pair::default_configs();
    pair.handshake();
    let now = pair.now;
    let id = pair
        .client
        .conn
        .open(
            RequestHead::new(Method::POST, Uri::from_static("/x")),
            false,
            None,
            now,
        )
        .unwrap();
    // Larger than the default stream window (256 KiB): it only gets through if the
    // unserved end releases what arrives.
    let body = Bytes::from(vec![0; 600 * 1024]);
    let mut sent = 0;
    for _ in 0..50 {
        if let Ok(mut stream) = pair.client.conn.stream(id) {
            let chunk = body.slice(sent..(sent + 64 * 1024).min(body.len()));
            let end = sent + chunk.len() == body.len();
            if sent < body.len() && stream.send_data(chunk.clone(), end).is_ok() {
                sent += chunk.len();
            }
        }
        pair.drive();
    }
    let status = stream_events(&pair.client)
        .into_iter()
        .find_map(|e| match e {
            StreamEvent::Response { id: i, head, .. } if *i == id => Some(head.status),
            _ => None,
        });
    assert_eq!(status, Some(StatusCode::NOT_IMPLEMENTED));
    // The server's embedder heard of none of it.
    assert!(!stream_events(&pair.server)
        .iter()
        .any(|e| matches!(e, StreamEvent::Request { .. } | StreamEvent::Data { .. })));
    // Either the whole body went through and both directions finished, or the server
    // stopped it with NO_ERROR once its 501 was out; never a stall.
    let ended = outcome(&pair.client, id);
    assert!(
        ended == vec![Outcome::Finished]
            || ended
                == vec![Outcome::Reset {
                    code: ResetCode::NO_ERROR,
                    initiator: tether_proto::Initiator::Peer
                }],
        "{ended:?}"
    );
}

/// A DATA frame leaves the machine as its 8-byte header and the very bytes the application
/// queued (issue 10 §3: no copy in proto).
#[test]
fn data_leaves_as_header_and_the_queued_bytes_without_a_copy() {
    let mut pair = Pair::default_configs();
    pair.handshake();
    pair.server.conn.set_serve_requests(true);
    let now = pair.now;
    let id = pair
        .client
        .conn
        .open(
            RequestHead::new(Method::POST, Uri::from_static("/sink")),
            false,
            None,
            now,
        )
        .unwrap();
    pair.drive();
    let body = Bytes::from(vec![0x5a; 1000]);
    pair.client
        .conn
        .stream(id)
        .unwrap()
        .send_data(body.clone(), true)
        .unwrap();
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
