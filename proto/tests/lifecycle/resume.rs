//! spec/protocol.md §9: session resume.

use std::time::Duration;
use tether_proto::connection::{ConnectionError, Event};
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
    // The embedder closes the old connection with SESSION_REPLACED; its failure report
    // later must not detach the new one.
    old_server.close(CloseCode::SESSION_REPLACED, "resumed elsewhere", pair.now);
    assert!(!pair.store.detach(old_session, pair.now));
    assert_eq!(pair.store.detached_len(), 0);
}

#[test]
fn server_without_store_announces_no_resume() {
    let mut pair = Pair::default_configs();
    pair.store = tether_proto::SessionStore::new(Duration::ZERO);
    pair.handshake();
    assert_eq!(pair.client.conn.resume_ticket(), None);
    pair.cut();
    assert!(pair.store.is_empty());
}
