//! A deterministic two-peer simulator in virtual time, in the manner of quinn-proto's
//! `Pair`: it carries messages between a client and a server machine (with optional
//! latency, seeded loss and black holes per direction), plays the WebSocket library's
//! part (answering pings when the transport is configured to), plays a server embedder
//! backed by a `SessionStore`, and advances the clock to the earliest deadline.

use bytes::Bytes;
use proptest::prelude::Rng;
use proptest::test_runner::{RngAlgorithm, TestRng};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tether_proto::connection::{
    Admission, Config, Connection, Event, HelloInfo, PongResponder, SessionHandle, SessionOutcome,
    SessionStore, WsMessage,
};
use tether_proto::{CloseCode, Resume};

/// The seed of a randomized test: `TETHER_SEED` when set, else a fresh one. Printed so a
/// failure can be replayed.
pub fn seed() -> u64 {
    let seed = match std::env::var("TETHER_SEED") {
        Ok(s) => s.parse().expect("TETHER_SEED must be a u64"),
        Err(_) => {
            use std::hash::{BuildHasher, RandomState};
            RandomState::new().hash_one(0u8)
        }
    };
    eprintln!("replay with TETHER_SEED={seed}");
    seed
}

pub fn rng(seed: u64) -> TestRng {
    let mut bytes = [0; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    TestRng::from_seed(RngAlgorithm::ChaCha, &bytes)
}

/// What the simulated server application answers to a HELLO.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Accept, with an identity from the store.
    Accept,
    /// Refuse with this code.
    Reject(CloseCode, &'static str),
    /// Never answer.
    Ignore,
}

/// One direction of the wire.
#[derive(Debug, Default)]
pub struct Link {
    in_flight: VecDeque<(Instant, WsMessage)>,
    /// Messages sent into a black hole are lost.
    pub black_hole: bool,
    /// Probability that a message is lost.
    pub loss: f64,
    pub latency: Duration,
    pub delivered: u64,
    pub dropped: u64,
}

pub struct Peer {
    pub conn: Connection,
    pub events: Vec<Event>,
    /// Whether this side's WebSocket library answers pings (tungstenite does).
    transport_pongs: bool,
}

impl Peer {
    fn new(conn: Connection, config: &Config) -> Self {
        Peer {
            conn,
            events: Vec::new(),
            transport_pongs: config.pong_responder() == PongResponder::Transport,
        }
    }

    /// The last event (the terminal one once the connection is closed).
    pub fn last_event(&self) -> Option<&Event> {
        self.events.last()
    }

    pub fn count(&self, f: impl Fn(&Event) -> bool) -> usize {
        self.events.iter().filter(|e| f(e)).count()
    }
}

pub struct Pair {
    pub now: Instant,
    pub start: Instant,
    pub client: Peer,
    pub server: Peer,
    pub to_server: Link,
    pub to_client: Link,
    pub store: SessionStore,
    pub decision: Decision,
    /// A per-connection heartbeat the simulated server application imposes at accept.
    pub heartbeat_override: Option<(Duration, Duration)>,
    /// The session of the current server connection.
    pub session: Option<SessionHandle>,
    /// The live connection's session the latest admission took over (§9.3).
    pub replaces: Option<SessionHandle>,
    /// What each server connection's end did to its session, in order.
    pub session_outcomes: Vec<Option<SessionOutcome>>,
    pub rng: TestRng,
    pub client_config: Arc<Config>,
    pub server_config: Arc<Config>,
}

impl Pair {
    pub fn new(client_config: Config, server_config: Config, seed: u64) -> Self {
        let start = Instant::now();
        let client_config = Arc::new(client_config);
        let server_config = Arc::new(server_config);
        let client = Connection::client(
            client_config.clone(),
            Bytes::from_static(b"{\"user\":\"ada\"}"),
            None,
            start,
        )
        .expect("valid metadata");
        let server = Connection::server(server_config.clone(), start);
        Pair {
            now: start,
            start,
            client: Peer::new(client, &client_config),
            server: Peer::new(server, &server_config),
            to_server: Link::default(),
            to_client: Link::default(),
            store: SessionStore::new(SessionStore::DEFAULT_RESUME_WINDOW),
            decision: Decision::Accept,
            heartbeat_override: None,
            session: None,
            replaces: None,
            session_outcomes: Vec::new(),
            rng: rng(seed),
            client_config,
            server_config,
        }
    }

    pub fn default_configs() -> Self {
        Pair::new(Config::default(), Config::default(), 1)
    }

    /// Time since the pair was made.
    pub fn elapsed(&self) -> Duration {
        self.now.saturating_duration_since(self.start)
    }

    /// Moves every message and event that can move at the current time.
    pub fn drive(&mut self) {
        loop {
            let mut progress = false;
            progress |= self.drain_side(true);
            progress |= self.drain_side(false);
            progress |= self.deliver(true);
            progress |= self.deliver(false);
            if !progress {
                break;
            }
        }
    }

    fn drain_side(&mut self, client: bool) -> bool {
        let mut progress = false;
        // Events first: the server's answer to HELLO queues transmits.
        loop {
            let peer = if client {
                &mut self.client
            } else {
                &mut self.server
            };
            let Some(event) = peer.conn.poll_event() else {
                break;
            };
            progress = true;
            if !client {
                self.server_reacts(&event);
            }
            let peer = if client {
                &mut self.client
            } else {
                &mut self.server
            };
            peer.events.push(event);
        }
        let now = self.now;
        let (peer, link) = if client {
            (&mut self.client, &mut self.to_server)
        } else {
            (&mut self.server, &mut self.to_client)
        };
        while let Some(msg) = peer.conn.poll_transmit().map(WsMessage::from) {
            progress = true;
            send(link, &mut self.rng, now, msg);
        }
        progress
    }

    fn server_reacts(&mut self, event: &Event) {
        match event {
            Event::HelloReceived(hello) => self.answer_hello(hello.clone()),
            // spec/protocol.md §9.1: the machine decides what its end means for the
            // session; the store applies it.
            Event::Failure { .. } | Event::Closed { .. } => {
                let outcome = self.store.connection_ended(&self.server.conn, self.now);
                self.session_outcomes.push(outcome);
            }
            _ => {}
        }
    }

    fn answer_hello(&mut self, hello: HelloInfo) {
        let now = self.now;
        match self.decision.clone() {
            Decision::Accept => {
                let mut rng = |buf: &mut [u8]| self.rng.fill_bytes(buf);
                let admission: Admission = self
                    .store
                    .admit(hello.resume.as_ref(), hello.metadata, &mut rng, now)
                    .expect("fresh ids");
                let admission = match self.heartbeat_override {
                    Some((interval, timeout)) => admission
                        .with_heartbeat(interval, timeout)
                        .expect("valid heartbeat"),
                    None => admission,
                };
                self.session = Some(admission.session());
                self.replaces = admission.replaces();
                self.server
                    .conn
                    .accept(admission, now)
                    .expect("awaiting decision");
            }
            Decision::Reject(code, reason) => self.server.conn.reject(code, reason, now),
            Decision::Ignore => {}
        }
    }

    /// Delivers the messages of one direction that have arrived by now.
    fn deliver(&mut self, to_server: bool) -> bool {
        let mut progress = false;
        loop {
            let now = self.now;
            let link = if to_server {
                &mut self.to_server
            } else {
                &mut self.to_client
            };
            match link.in_flight.front() {
                Some((at, _)) if *at <= now => {}
                _ => break,
            }
            let Some((_, msg)) = link.in_flight.pop_front() else {
                break;
            };
            link.delivered += 1;
            progress = true;
            let (receiver, back) = if to_server {
                (&mut self.server, &mut self.to_client)
            } else {
                (&mut self.client, &mut self.to_server)
            };
            if let WsMessage::Ping(payload) = &msg {
                if receiver.transport_pongs && !receiver.conn.is_closed() {
                    send(back, &mut self.rng, now, WsMessage::Pong(payload.clone()));
                }
            }
            receiver.conn.handle_message(msg, now);
        }
        progress
    }

    /// The next moment something happens: a timer or an arrival.
    pub fn next_wakeup(&self) -> Option<Instant> {
        [
            self.client.conn.poll_timeout(),
            self.server.conn.poll_timeout(),
            self.store.poll_timeout(),
            self.to_server.in_flight.front().map(|(at, _)| *at),
            self.to_client.in_flight.front().map(|(at, _)| *at),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Drives, then jumps to the next wakeup (if it is before `limit`) and fires timers.
    /// Returns false when nothing is left to happen before `limit`.
    pub fn step(&mut self, limit: Instant) -> bool {
        self.drive();
        let Some(next) = self.next_wakeup() else {
            return false;
        };
        if next > limit {
            return false;
        }
        self.now = self.now.max(next);
        self.client.conn.handle_timeout(self.now);
        self.server.conn.handle_timeout(self.now);
        self.store.handle_timeout(self.now);
        self.drive();
        true
    }

    /// Runs for `d` of virtual time (or until nothing is left to happen).
    pub fn run_for(&mut self, d: Duration) {
        let limit = self.now + d;
        while self.step(limit) {}
        self.now = self.now.max(limit);
        self.drive();
    }

    /// Runs until `f` holds, for at most `d`; returns whether it held.
    pub fn run_until(&mut self, d: Duration, mut f: impl FnMut(&Pair) -> bool) -> bool {
        let limit = self.now + d;
        loop {
            self.drive();
            if f(self) {
                return true;
            }
            if !self.step(limit) {
                return f(self);
            }
        }
    }

    pub fn handshake(&mut self) {
        assert!(
            self.run_until(Duration::from_secs(9), |p| p.client.conn.is_established()
                && p.server.conn.is_established()),
            "handshake did not complete: client {:?}, server {:?}",
            self.client.events,
            self.server.events
        );
    }

    /// Both transports die without close frames; in-flight messages are lost.
    pub fn cut(&mut self) {
        self.to_server.in_flight.clear();
        self.to_client.in_flight.clear();
        self.client.conn.handle_transport_lost(self.now);
        self.server.conn.handle_transport_lost(self.now);
        self.drive();
    }

    /// A new transport: a client resuming with `ticket` and a new server machine.
    pub fn reconnect(&mut self, ticket: Option<Resume>) {
        self.to_server = Link::default();
        self.to_client = Link::default();
        let client = Connection::client(
            self.client_config.clone(),
            Bytes::from_static(b"{\"user\":\"ada\"}"),
            ticket,
            self.now,
        )
        .expect("valid metadata");
        self.client = Peer::new(client, &self.client_config);
        self.server = Peer::new(
            Connection::server(self.server_config.clone(), self.now),
            &self.server_config,
        );
        self.session = None;
    }
}

fn send(link: &mut Link, rng: &mut TestRng, now: Instant, msg: WsMessage) {
    let lost = link.black_hole
        || (link.loss > 0.0 && (rng.next_u64() as f64 / u64::MAX as f64) < link.loss);
    if lost {
        link.dropped += 1;
    } else {
        link.in_flight.push_back((now + link.latency, msg));
    }
}
