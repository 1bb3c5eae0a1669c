//! What a connection does with requests while no HTTP service is attached to it.
//!
//! Streams are open as soon as the handshake is done (spec/protocol.md §7.2), so a peer may send
//! requests before this end serves anything. They are answered at once with
//! `501 Not Implemented` instead of being left to time out; a request body is released as
//! it arrives (the peer's windows never stall) and stopped once the 501 is out.

use bytes::Bytes;
use http::{header, HeaderValue, StatusCode};
use tether_proto::connection::Connection;
use tether_proto::{RequestHead, ResponseHead, StreamId};

const BODY: &[u8] = b"no HTTP service is attached to this end of the Tether connection\n";

/// Answers request `id` with 501 (the driver calls this when no service is attached).
pub(crate) fn refuse(conn: &mut Connection, id: StreamId, head: &RequestHead) {
    let Some(streams) = conn.streams() else {
        return;
    };
    tracing::debug!(%id, method = %head.method, uri = %head.uri, "request refused: no service attached (501)");
    let mut res = ResponseHead::new(StatusCode::NOT_IMPLEMENTED);
    res.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res.headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(BODY.len()));
    let sent = streams
        .send_response(id, res, false)
        .and_then(|()| streams.send_data(id, Bytes::from_static(BODY), true));
    if let Err(e) = sent {
        tracing::debug!(%id, "could not answer: {e}");
        if let tether_proto::streams::SendError::Blocked { .. } = e {
            // No room for even this short body (the send budget is used up): end the
            // stream rather than leave the head without its body.
            streams.reset(id, tether_proto::ResetCode::INTERNAL_ERROR);
            return;
        }
    }
    // The rest of a request body is not wanted: once the 501 is out, the stream is reset
    // with NO_ERROR so the peer stops sending (spec/protocol.md §10.2).
    streams.stop_receiving(id, tether_proto::ResetCode::NO_ERROR);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rest::{Driver, RestConfig};
    use http::{Method, Uri};
    use std::sync::Arc;
    use std::time::Instant;
    use tether_proto::connection::{Admission, Config, Event};
    use tether_proto::streams::{Outcome, StreamEvent};
    use tether_proto::RequestHead;

    /// Moves messages both ways; the server side serves nothing.
    fn pump(
        client: &mut Connection,
        server: &mut Connection,
        driver: &mut Driver,
        now: Instant,
        seen: &mut Vec<Event>,
    ) {
        loop {
            let mut moved = false;
            while let Some(m) = client.poll_transmit() {
                server.handle_message(m, now);
                moved = true;
            }
            while let Some(m) = server.poll_transmit() {
                client.handle_message(m, now);
                moved = true;
            }
            while let Some(e) = server.poll_event() {
                if let Event::Stream(e) = e {
                    driver.on_event(server, e, now);
                }
                moved = true;
            }
            while let Some(e) = client.poll_event() {
                seen.push(e);
                moved = true;
            }
            if !moved {
                return;
            }
        }
    }

    #[test]
    fn requests_to_an_end_that_serves_nothing_get_501_and_their_body_is_consumed() {
        let config = Arc::new(Config::builder().heartbeat_disabled().build().unwrap());
        let now = Instant::now();
        let mut client = Connection::client(config.clone(), Bytes::new(), None, now).unwrap();
        let mut server = Connection::server(config, now);
        let mut seen = vec![];
        // The connection's HTTP side, with no service attached.
        let mut driver = Driver::new(RestConfig::default(), Arc::default());
        pump(&mut client, &mut server, &mut driver, now, &mut seen);
        let mut n = 0u8;
        let mut rng = |b: &mut [u8]| {
            b.fill_with(|| {
                n = n.wrapping_add(1);
                n
            })
        };
        server
            .accept(Admission::fresh(&mut rng).unwrap(), now)
            .unwrap();
        pump(&mut client, &mut server, &mut driver, now, &mut seen);
        let streams = client.streams().unwrap();
        let id = streams
            .open(
                RequestHead::new(Method::POST, Uri::from_static("/x")),
                false,
                None,
                now,
            )
            .unwrap();
        // A body larger than the default stream window: it only gets through if the
        // unserved end keeps releasing capacity.
        streams
            .send_data(id, Bytes::from(vec![0; 600 * 1024]), true)
            .ok();
        for _ in 0..10 {
            pump(&mut client, &mut server, &mut driver, now, &mut seen);
            let _ = client.streams().unwrap().send_data(id, Bytes::new(), true);
        }
        let status = seen.iter().find_map(|e| match e {
            Event::Stream(StreamEvent::Response { id: i, head, .. }) if *i == id => {
                Some(head.status)
            }
            _ => None,
        });
        assert_eq!(status, Some(StatusCode::NOT_IMPLEMENTED));
        assert!(seen.contains(&Event::Stream(StreamEvent::Closed {
            id,
            outcome: Outcome::Finished
        })));
    }
}
