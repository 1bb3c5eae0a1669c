//! The embedder's duties the machine takes on by default (capacity release, answering
//! requests nobody serves, discarded bodies) and the borrowed stream views.

use super::*;

/// A client that sends `len` body bytes on a new POST to the server, pumping as the
/// windows allow; returns the stream id.
fn post(p: &mut Pair, len: usize) -> StreamId {
    let id = p
        .client
        .s
        .open(
            RequestHead::new(Method::POST, Uri::from_static("/up")),
            false,
            None,
            p.now,
        )
        .unwrap();
    let body = pattern(id, len);
    let mut sent = 0;
    for _ in 0..200 {
        if sent < len {
            let chunk = body.slice(sent..(sent + 16 * 1024).min(len));
            let end = sent + chunk.len() == len;
            if p.client.s.send_data(id, chunk.clone(), end).is_ok() {
                sent += chunk.len();
            }
        }
        if p.pump() == 0 && sent == len {
            break;
        }
    }
    id
}

fn received(events: &[StreamEvent], id: StreamId) -> usize {
    body_of(events, id).len()
}

#[test]
fn by_default_the_machine_releases_what_it_reports() {
    // The server's application serves requests but never releases a byte.
    let serving = StreamsConfig {
        serve_requests: true,
        ..StreamsConfig::default()
    };
    let mut p = Pair::with_defaults(StreamsConfig::default(), serving.clone());
    p.server.auto_release = false;
    // Four stream windows' worth: it only arrives if the machine releases.
    let id = post(&mut p, 1024 * 1024);
    assert_eq!(received(&p.server.events, id), 1024 * 1024);

    // The same application with manual release stalls the peer at one window: the
    // default is what made the difference.
    let manual = StreamsConfig {
        manual_release: true,
        ..serving
    };
    let mut p = Pair::with_defaults(StreamsConfig::default(), manual);
    p.server.auto_release = false;
    let id = post(&mut p, 1024 * 1024);
    let window = StreamsConfig::default().initial_stream_window as usize;
    assert_eq!(received(&p.server.events, id), window);
    // Releasing through the view lets the rest through.
    p.server
        .s
        .stream(id)
        .unwrap()
        .release_capacity(window as u32);
    p.pump();
    assert!(received(&p.server.events, id) > window);
}

#[test]
fn by_default_requests_are_answered_501_and_not_reported() {
    let mut p = Pair::with_defaults(StreamsConfig::default(), StreamsConfig::default());
    p.client.auto_release = true;
    // A body larger than the windows: the machine releases it until the 501 is out.
    let id = post(&mut p, 600 * 1024);
    let status = p.client.events.iter().find_map(|e| match e {
        StreamEvent::Response { id: i, head, .. } if *i == id => Some(head.status),
        _ => None,
    });
    assert_eq!(status, Some(StatusCode::NOT_IMPLEMENTED));
    assert_eq!(body_of(&p.client.events, id), UNSERVED_BODY);
    assert_eq!(outcomes(&p.client.events)[&id], vec![Outcome::Finished]);
    // The server's application heard nothing of this stream, and it is gone.
    assert!(p.server.events.is_empty(), "{:?}", p.server.events);
    assert_eq!(p.server.s.open_streams(), 0);

    // Once the embedder says it serves, requests are its own.
    p.server.s.set_serve_requests(true);
    let id = p.client.s.open(get("/"), true, None, p.now).unwrap();
    p.pump();
    assert!(matches!(
        p.server.events.as_slice(),
        [StreamEvent::Request { id: i, .. }] if *i == id
    ));
}

#[test]
fn discarding_a_body_releases_it_and_stops_reporting_it() {
    let mut p = Pair::new(StreamsConfig::default(), StreamsConfig::default());
    p.server.auto_release = false;
    let id = p.client.s.open(get("/upload"), false, None, p.now).unwrap();
    p.client
        .s
        .send_data(id, pattern(id, 200 * 1024), false)
        .unwrap();
    p.pump();
    assert_eq!(received(&p.server.events, id), 200 * 1024);
    let seen = p.server.events.len();
    p.server.s.stream(id).unwrap().discard_body(p.now);
    // What was unread went back to the client: it may send the whole window again.
    p.client
        .s
        .send_data(id, pattern(id, 200 * 1024), true)
        .unwrap();
    p.pump();
    assert_eq!(p.client.s.queued_bytes(id), 0);
    // ...and none of it is reported.
    assert_eq!(
        p.server.events.len(),
        seen,
        "{:?}",
        &p.server.events[seen..]
    );
}

#[test]
fn streams_are_reached_through_views_with_typed_errors() {
    let mut p = Pair::default();
    let id = p.client.s.open(get("/"), true, None, p.now).unwrap();
    p.pump();
    let mut view = p.server.s.stream(id).unwrap();
    assert_eq!(view.id(), id);
    view.send_response(ResponseHead::new(StatusCode::OK), false)
        .unwrap();
    view.send_data(Bytes::from_static(b"hi"), true).unwrap();
    p.pump();
    assert_eq!(p.server.s.stream(id).err(), Some(StreamError::Closed(id)));
    let never = StreamId::new(99);
    assert_eq!(
        p.server.s.stream(never).err(),
        Some(StreamError::Unknown(never))
    );
}

#[test]
fn can_open_does_not_mutate_and_can_open_follows_a_full_house() {
    let one = StreamsConfig {
        max_concurrent_streams: 1,
        ..StreamsConfig::default()
    };
    let mut p = Pair::new(StreamsConfig::default(), one);
    let id = p.client.s.open(get("/"), true, None, p.now).unwrap();
    let s: &Streams = &p.client.s; // a shared borrow is enough to ask
    assert_eq!(s.can_open(), Err(OpenError::Blocked));
    p.pump();
    p.server
        .s
        .send_response(id, ResponseHead::new(StatusCode::NO_CONTENT), true)
        .unwrap();
    p.pump();
    assert!(p.client.events.contains(&StreamEvent::CanOpen));
    assert_eq!(p.client.s.can_open(), Ok(()));
}

/// `abandon` picks the reset the spec gives (§10.5): CANCEL on a stream this end opened,
/// INTERNAL_ERROR on the peer's.
#[test]
fn abandoning_a_stream_resets_it_with_the_code_for_its_side() {
    let serving = StreamsConfig {
        serve_requests: true,
        ..StreamsConfig::default()
    };
    let mut p = Pair::with_defaults(StreamsConfig::default(), serving);
    let head = || RequestHead::new(Method::POST, Uri::from_static("/up"));
    let mine = p.client.s.open(head(), false, None, p.now).unwrap();
    let theirs = p.client.s.open(head(), false, None, p.now).unwrap();
    p.pump();
    // Old enough that the client's CANCEL is not held back (§10.8).
    p.advance(Duration::from_secs(1));
    let now = p.now;
    p.client.s.stream(mine).unwrap().abandon(now);
    p.server.s.stream(theirs).unwrap().abandon(now);
    p.pump();
    let reset = |code, initiator| Outcome::Reset { code, initiator };
    let on_server = outcomes(&p.server.events);
    assert_eq!(
        on_server[&mine],
        vec![reset(ResetCode::CANCEL, Initiator::Peer)]
    );
    assert_eq!(
        on_server[&theirs],
        vec![reset(ResetCode::INTERNAL_ERROR, Initiator::Local)]
    );
    let on_client = outcomes(&p.client.events);
    assert_eq!(
        on_client[&theirs],
        vec![reset(ResetCode::INTERNAL_ERROR, Initiator::Peer)]
    );
    // A stream that is gone is an error value, and abandoning it again does nothing.
    assert!(p.client.s.stream(mine).is_err());
    p.client.s.abandon(mine, now);
    assert_eq!(p.pump(), 0);
}

/// spec/protocol.md §3.4.8 [3.4.8-1]: a GOAWAY reason is at most 256 bytes; a longer one
/// is cut at a character boundary, never in the middle of a character.
#[test]
fn a_goaway_reason_is_cut_to_256_bytes_at_a_character_boundary() {
    let mut s = Streams::new(
        Side::Server,
        StreamsConfig::default(),
        PeerLimits::default(),
    )
    .unwrap();
    // 255 ASCII bytes, then a 3-byte character that would straddle the bound.
    let reason = format!("{}€ and more", "a".repeat(255));
    s.go_away(ResetCode::NO_ERROR, &reason);
    let Some(Frame::GoAway(goaway)) = s.poll_transmit() else {
        panic!("no GOAWAY")
    };
    assert_eq!(goaway.reason, "a".repeat(255));
    let mut s = Streams::new(
        Side::Server,
        StreamsConfig::default(),
        PeerLimits::default(),
    )
    .unwrap();
    s.go_away(ResetCode::NO_ERROR, &"b".repeat(300));
    let Some(Frame::GoAway(goaway)) = s.poll_transmit() else {
        panic!("no GOAWAY")
    };
    assert_eq!(goaway.reason.len(), MAX_GOAWAY_REASON);
}
