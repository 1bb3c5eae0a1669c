//! spec/protocol.md §9: session resume.

use std::time::Duration;
use tether_proto::connection::{
    ConnectionError, Event, Initiator, SessionOutcome, Transmit, WsMessage,
};
use tether_proto::{CloseCode, Resume, ResumeToken};

use crate::pair::Pair;

fn established_and_cut() -> (Pair, Resume) {
    let mut pair = Pair::default_configs();
    pair.handshake();
    let ticket = pair
        .client
        .conn
        .resume_ticket()
        .expect("server keeps sessions");
    pair.cut();
    assert_eq!(
        pair.server.last_event(),
        Some(&Event::Failure {
            error: ConnectionError::TransportLost
        })
    );
    assert_eq!(pair.store.detached_len(), 1);
    assert!(pair.client.conn.is_closed());
    assert_eq!(
        pair.client.conn.resume_ticket(),
        Some(ticket),
        "the ticket outlives the connection: a reconnecting client reads it after the end"
    );
    (pair, ticket)
}

#[test]
fn valid_token_resumes_the_same_id() {
    let (mut pair, ticket) = established_and_cut();
    pair.run_for(Duration::from_secs(29));
    pair.reconnect(Some(ticket));
    pair.handshake();
    let id = ticket.connection_id;
    assert_eq!(pair.server.conn.connection_id(), Some(id));
    assert_eq!(
        pair.client.events,
        vec![Event::Established { id, resumed: true }]
    );
    assert!(matches!(pair.server.last_event(), Some(Event::Resumed { id: i, .. }) if *i == id));
    assert_eq!(
        pair.server.count(|e| matches!(e, Event::Received { .. })),
        0
    );
    // A new token was issued; the old one is spent.
    let next = pair.client.conn.resume_ticket().unwrap();
    assert_eq!(next.connection_id, id);
    assert_ne!(next.token, ticket.token);
    assert_eq!(pair.store.detached_len(), 0);
}

#[test]
fn wrong_token_gets_a_fresh_session() {
    let (mut pair, ticket) = established_and_cut();
    let forged = Resume {
        token: ResumeToken::from_bytes([0xaa; 16]),
        ..ticket
    };
    pair.reconnect(Some(forged));
    pair.handshake();
    let id = pair.server.conn.connection_id().unwrap();
    assert_ne!(id, ticket.connection_id);
    assert_eq!(
        pair.client.events,
        vec![Event::Established { id, resumed: false }]
    );
    assert!(matches!(
        pair.server.last_event(),
        Some(Event::Received { .. })
    ));
    // The real owner can still resume.
    pair.reconnect(Some(ticket));
    pair.handshake();
    assert_eq!(pair.client.conn.connection_id(), Some(ticket.connection_id));
}

#[test]
fn expired_token_gets_a_fresh_session() {
    let (mut pair, ticket) = established_and_cut();
    pair.run_for(Duration::from_secs(30));
    assert_eq!(pair.store.poll_expired(), Some(ticket.connection_id));
    pair.reconnect(Some(ticket));
    pair.handshake();
    assert_ne!(pair.client.conn.connection_id(), Some(ticket.connection_id));
    assert!(matches!(
        pair.client.last_event(),
        Some(Event::Established { resumed: false, .. })
    ));
}

#[test]
fn resume_while_the_old_connection_lives_replaces_it() {
    let mut pair = Pair::default_configs();
    pair.handshake();
    let ticket = pair.client.conn.resume_ticket().unwrap();
    let old_session = pair.session.unwrap();
    // The client lost the transport; the server has not noticed yet.
    let mut old_server = std::mem::replace(
        &mut pair.server.conn,
        tether_proto::Connection::server(pair.server_config.clone(), pair.now),
    );
    pair.reconnect(Some(ticket));
    pair.handshake();
    assert_eq!(pair.client.conn.connection_id(), Some(ticket.connection_id));
    // The admission names the live connection to close; the embedder routes it there, and
    // the machine picks the close (§9.3).
    assert_eq!(pair.replaces, Some(old_session));
    assert_eq!(old_server.session(), Some(old_session));
    old_server.replaced(pair.now);
    assert_eq!(
        old_server.poll_event(),
        Some(Event::Closed {
            code: CloseCode::SESSION_REPLACED,
            reason: "session resumed on a new connection".into(),
            initiator: Initiator::Local,
        })
    );
    assert!(matches!(
        old_server.poll_transmit(),
        Some(Transmit::Message(WsMessage::Close(Some(f)))) if f.code == CloseCode::SESSION_REPLACED
    ));
    // Its end must not touch the session, which lives on in the new connection.
    assert_eq!(pair.store.connection_ended(&old_server, pair.now), None);
    assert!(!pair.store.detach(old_session, pair.now));
    assert_eq!(pair.store.detached_len(), 0);
    // The new connection's failure detaches it as usual.
    pair.cut();
    assert_eq!(pair.session_outcomes, vec![Some(SessionOutcome::Detach)]);
    assert_eq!(pair.store.detached_len(), 1);
}

#[test]
fn a_fresh_resume_of_a_detached_session_replaces_nothing() {
    let (mut pair, ticket) = established_and_cut();
    pair.reconnect(Some(ticket));
    pair.handshake();
    assert_eq!(pair.replaces, None);
}

/// spec/protocol.md §9.1: the machine decides what its end does to the session, and the
/// store applies it with one call.
#[test]
fn the_end_of_a_connection_decides_the_session() {
    // A lost transport: detached, resumable.
    let (pair, _) = established_and_cut();
    assert_eq!(pair.session_outcomes, vec![Some(SessionOutcome::Detach)]);
    assert_eq!(
        pair.server.conn.session_outcome(),
        Some(SessionOutcome::Detach)
    );

    // An orderly close by either side: forgotten.
    for server_closes in [true, false] {
        let mut pair = Pair::default_configs();
        pair.handshake();
        assert_eq!(pair.server.conn.session_outcome(), None, "still open");
        assert_eq!(
            pair.store.connection_ended(&pair.server.conn, pair.now),
            None
        );
        let now = pair.now;
        if server_closes {
            pair.server.conn.close(CloseCode::NORMAL, "bye", now);
        } else {
            pair.client.conn.close(CloseCode::GOING_AWAY, "bye", now);
        }
        pair.drive();
        assert_eq!(pair.session_outcomes, vec![Some(SessionOutcome::End)]);
        assert!(pair.store.is_empty());
        // A second report changes nothing.
        assert_eq!(
            pair.store.connection_ended(&pair.server.conn, pair.now),
            None
        );
    }

    // A failure whose code tells the client not to retry (4000): forgotten.
    let mut pair = Pair::default_configs();
    pair.handshake();
    let now = pair.now;
    pair.server
        .conn
        .handle_message(WsMessage::Binary(bytes::Bytes::from_static(b"\xff")), now);
    pair.drive();
    assert!(matches!(
        pair.server.last_event(),
        Some(Event::Failure { error }) if error.close_code() == Some(CloseCode::PROTOCOL_ERROR)
    ));
    assert_eq!(pair.session_outcomes, vec![Some(SessionOutcome::End)]);
    assert!(pair.store.is_empty());

    // A failure the client retries after (a heartbeat timeout): detached.
    let mut pair = Pair::default_configs();
    pair.handshake();
    pair.to_server.black_hole = true;
    pair.run_until(Duration::from_secs(120), |p| p.server.conn.is_closed());
    assert!(matches!(
        pair.server.last_event(),
        Some(Event::Failure {
            error: ConnectionError::HeartbeatTimeout(_)
        })
    ));
    assert_eq!(pair.session_outcomes, vec![Some(SessionOutcome::Detach)]);
    assert_eq!(pair.store.detached_len(), 1);
}

#[test]
fn server_without_store_announces_no_resume() {
    let mut pair = Pair::default_configs();
    pair.store = tether_proto::SessionStore::new(Duration::ZERO);
    pair.handshake();
    assert_eq!(pair.client.conn.resume_ticket(), None);
    pair.cut();
    assert!(pair.store.is_empty());
    // A failure it would keep, with no window to keep it in: forgotten.
    assert_eq!(pair.session_outcomes, vec![Some(SessionOutcome::End)]);
}

#[test]
fn an_orderly_close_leaves_the_client_nothing_to_resume() {
    // spec/protocol.md §9.2: after an orderly close (here the server's 1001, as at
    // shutdown) or a code it does not retry after, the client does not resume; after a
    // lost transport it does.
    for (code, kept) in [
        (Some(CloseCode::GOING_AWAY), false),
        (Some(CloseCode::NORMAL), false),
        (Some(CloseCode::PROTOCOL_ERROR), false),
        (Some(CloseCode::HEARTBEAT_TIMEOUT), true),
        (None, true),
    ] {
        let mut pair = Pair::default_configs();
        pair.handshake();
        assert!(pair.client.conn.resume_ticket().is_some());
        match code {
            Some(code) => {
                let now = pair.now;
                pair.server.conn.close(code, "bye", now);
                pair.drive();
            }
            None => pair.cut(),
        }
        assert!(pair.client.conn.is_closed(), "{code:?}");
        assert_eq!(
            pair.client.conn.resume_ticket().is_some(),
            kept,
            "after {code:?} the client {} resume",
            if kept { "must" } else { "must not" }
        );
    }
}
