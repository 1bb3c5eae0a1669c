//! What a connection does with stream events while no HTTP service is attached to it.
//!
//! The stream layer runs from the handshake on (spec/protocol.md §10), so a peer may send
//! requests before this end serves anything. They are answered at once with
//! `501 Not Implemented` instead of being left to time out, and any request body is
//! consumed so that the peer's flow-control windows never stall.

use bytes::Bytes;
use http::{header, HeaderValue, StatusCode};
use tether_proto::connection::Connection;
use tether_proto::streams::StreamEvent;
use tether_proto::ResponseHead;

const BODY: &[u8] = b"no HTTP service is attached to this end of the Tether connection\n";

/// Handles one stream event on a connection that serves nothing.
pub(crate) fn on_stream_event(conn: &mut Connection, event: StreamEvent) {
    let Some(streams) = conn.streams() else {
        return;
    };
    match event {
        StreamEvent::Request { id, head, .. } => {
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
            }
        }
        StreamEvent::Data { id, data, .. } => {
            // Consume and drop: the window goes back to the peer.
            streams.release_capacity(id, u32::try_from(data.len()).unwrap_or(u32::MAX));
        }
        other => tracing::trace!(?other, "stream event"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Method, Uri};
    use std::sync::Arc;
    use std::time::Instant;
    use tether_proto::connection::{Admission, Config, Event};
    use tether_proto::streams::Outcome;
    use tether_proto::RequestHead;

    /// Moves messages both ways; the server side serves nothing.
    fn pump(client: &mut Connection, server: &mut Connection, now: Instant, seen: &mut Vec<Event>) {
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
                    on_stream_event(server, e);
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
        pump(&mut client, &mut server, now, &mut seen);
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
        pump(&mut client, &mut server, now, &mut seen);
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
            pump(&mut client, &mut server, now, &mut seen);
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
