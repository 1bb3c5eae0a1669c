//! The task that moves messages between one WebSocket and the binding's channels.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tether_proto::connection::ProbeLimit;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::codec::{BindingData, Codec};
use super::metered::{Metered, MeteredStream, ReadLimit};
use super::{BindingConfig, Disconnect};
use crate::transport::acceptor::Command;
use crate::transport::burst::{self, BurstError};
use crate::transport::closing;

pub(super) struct Driver<C: Codec> {
    pub(super) ws: MeteredStream,
    pub(super) config: BindingConfig,
    pub(super) in_tx: mpsc::Sender<C::In>,
    pub(super) out_rx: mpsc::Receiver<C::Out>,
    pub(super) close_rx: mpsc::Receiver<CloseFrame>,
    pub(super) done: watch::Sender<Option<Disconnect>>,
    pub(super) server: Option<watch::Receiver<Command>>,
    /// Bytes held for clients, shared by every connection of the server (the stream's
    /// reads hold it too).
    pub(super) budget: Arc<Semaphore>,
}

async fn server_command(server: &mut Option<watch::Receiver<Command>>) -> Option<CloseFrame> {
    match server {
        Some(rx) => match rx.changed().await {
            Ok(()) => rx.borrow_and_update().close_frame(),
            Err(_) => None,
        },
        None => std::future::pending().await,
    }
}

impl<C: Codec> Driver<C> {
    pub(super) async fn run(mut self) {
        let outcome = self.run_inner().await;
        let _ = self.done.send(Some(outcome));
    }

    async fn run_inner(&mut self) -> Disconnect {
        let pong_wait = self.config.pong_wait;
        let mut ping = tokio::time::interval_at(
            Instant::now() + self.config.ping_period,
            self.config.ping_period,
        );
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut read_deadline = Instant::now() + pong_wait;
        let mut pings = ProbeLimit::default();
        // Budget held by received messages still in the receive channel, oldest first.
        let mut inbound: VecDeque<OwnedSemaphorePermit> = VecDeque::new();
        let mut permit: Option<mpsc::OwnedPermit<C::In>> = None;
        let mut receiver_gone = false;
        let mut sender_gone = false;
        let mut handles_gone = false;
        loop {
            if receiver_gone && sender_gone && handles_gone {
                // Nobody can use this connection any more.
                let frame = close_frame(CloseCode::Normal, "handler finished");
                closing::close(&mut self.ws, Some(frame.clone())).await;
                return Disconnect::Local(frame);
            }
            self.release_taken(&mut inbound, permit.is_some());
            let reading = permit.is_some() || receiver_gone;
            tokio::select! {
                reserved = self.in_tx.clone().reserve_owned(), if !reading => match reserved {
                    Ok(p) => {
                        permit = Some(p);
                        // Time spent waiting for the handler is not the peer's silence.
                        read_deadline = read_deadline.max(Instant::now() + pong_wait);
                    }
                    Err(_) => receiver_gone = true,
                },
                () = self.in_tx.closed(), if !receiver_gone => {
                    // The handler dropped its receiver: read on, discarding messages.
                    receiver_gone = true;
                    permit = None;
                }
                message = self.ws.next(), if reading => {
                    read_deadline = Instant::now() + pong_wait;
                    let data = match message {
                        Some(Ok(Message::Text(t))) => BindingData::Text(t),
                        Some(Ok(Message::Binary(b))) => BindingData::Binary(b),
                        Some(Ok(Message::Close(frame))) => {
                            // tungstenite queued the echo; drive it out.
                            closing::close_reply(&mut self.ws).await;
                            return Disconnect::Peer(frame);
                        }
                        Some(Ok(Message::Ping(p))) => {
                            self.meter().credit_control(p.len());
                            if !pings.record(self.config.max_pings, Instant::now().into_std()) {
                                let frame = close_frame(CloseCode::Policy, "too many pings");
                                self.close_and_discard(frame).await;
                                return Disconnect::Error(super::BindingError::PingFlood(
                                    self.config.max_pings,
                                ));
                            }
                            continue; // answered by tungstenite
                        }
                        Some(Ok(Message::Pong(p))) => {
                            self.meter().credit_control(p.len());
                            continue;
                        }
                        Some(Ok(Message::Frame(_))) => continue, // never read
                        Some(Err(e)) => return self.read_failed(e).await,
                        None => return Disconnect::Peer(None),
                    };
                    // The bytes read for the message (held since they were read) become its
                    // share of the budget until the handler takes it; no room closes with
                    // 1013. A message nobody will take gives them back.
                    let read = self.meter().take_held();
                    let held = match permit.is_some().then(|| self.reserve_from(read, data_len(&data))) {
                        Some(None) => return self.overloaded().await,
                        Some(Some(held)) => Some(held),
                        None => None,
                    };
                    match C::decode(data) {
                        Ok(item) => {
                            if let Some(p) = permit.take() {
                                p.send(item);
                                inbound.extend(held);
                            }
                        }
                        Err(frame) => {
                            closing::close(&mut self.ws, Some(frame.clone())).await;
                            return Disconnect::Error(super::BindingError::Decode(frame));
                        }
                    }
                }
                () = tokio::time::sleep_until(read_deadline), if reading => {
                    // The peer is gone: no close handshake to wait for.
                    return Disconnect::Error(super::BindingError::PongTimeout(pong_wait));
                }
                out = self.out_rx.recv(), if !sender_gone => match out {
                    Some(item) => {
                        self.release_taken(&mut inbound, permit.is_some());
                        if let Err(outcome) = self.write_burst(item).await {
                            return outcome;
                        }
                    }
                    None => sender_gone = true,
                },
                _ = ping.tick() => {
                    let sent = tokio::time::timeout(
                        self.config.write_timeout,
                        self.ws.send(Message::Ping(Default::default())),
                    )
                    .await;
                    if let Some(outcome) = write_failed(sent, self.config.write_timeout) {
                        return outcome;
                    }
                }
                frame = self.close_rx.recv(), if !handles_gone => match frame {
                    Some(frame) => {
                        closing::close(&mut self.ws, Some(frame.clone())).await;
                        return Disconnect::Local(frame);
                    }
                    None => handles_gone = true,
                },
                frame = server_command(&mut self.server) => {
                    let frame = frame.unwrap_or_else(|| close_frame(CloseCode::Away, "server shutdown"));
                    closing::close(&mut self.ws, Some(frame.clone())).await;
                    return Disconnect::Local(frame);
                }
            }
        }
    }

    /// Feeds `first` and whatever else is queued (up to `max_buffered_bytes`), then flushes
    /// once ([`burst::write`]). Every message holds its bytes of the server's budget until
    /// the flush is done; when the budget has no room for the next message, the burst so far
    /// is flushed (which releases what it held) and a new one starts with that message.
    async fn write_burst(&mut self, first: C::Out) -> Result<(), Disconnect> {
        let timeout = self.config.write_timeout;
        let mut burst_bytes = 0usize;
        let mut first = Some(first);
        // A message the budget had no room for, tried again after the flush.
        let mut carried: Option<Message> = None;
        loop {
            let mut held: Vec<OwnedSemaphorePermit> = Vec::new();
            let mut stop: Option<Stop> = None;
            let (out_rx, budget, config) = (&mut self.out_rx, &self.budget, &self.config);
            let next = || {
                let message = match carried.take() {
                    Some(message) => message,
                    None => {
                        let item = match first.take() {
                            Some(item) => item,
                            None if burst_bytes < config.max_buffered_bytes => {
                                out_rx.try_recv().ok()?
                            }
                            None => return None,
                        };
                        match C::encode(item) {
                            Ok(message) => message,
                            Err(frame) => {
                                stop = Some(Stop::Encode(frame));
                                return None;
                            }
                        }
                    }
                };
                let len = message.len();
                let Some(permit) = reserve_from(budget, config, None, len) else {
                    stop = Some(Stop::NoBudget(message));
                    return None;
                };
                held.push(permit);
                burst_bytes = burst_bytes.saturating_add(len);
                Some(message)
            };
            let written = burst::write(&mut self.ws, timeout, next).await;
            let held_some = !held.is_empty();
            drop(held);
            if let Err(e) = written {
                return Err(burst_failed(e, timeout));
            }
            match stop {
                None => return Ok(()),
                Some(Stop::Encode(frame)) => {
                    closing::close(&mut self.ws, Some(frame.clone())).await;
                    return Err(Disconnect::Error(super::BindingError::Encode(frame)));
                }
                // The flush gave back what this burst held: try the message again.
                Some(Stop::NoBudget(message)) if held_some => carried = Some(message),
                Some(Stop::NoBudget(_)) => return Err(self.overloaded().await),
            }
        }
    }

    /// `len` bytes of the server's budget, taken first from `read` (see [`reserve_from`]).
    fn reserve_from(
        &self,
        read: Option<OwnedSemaphorePermit>,
        len: usize,
    ) -> Option<OwnedSemaphorePermit> {
        reserve_from(&self.budget, &self.config, read, len)
    }

    /// The metered byte stream under the WebSocket.
    fn meter(&mut self) -> &mut Metered<crate::transport::socket::Socket> {
        self.ws.get_mut().get_mut()
    }

    /// Sends `frame` and discards what the client still sends (its bytes unmetered: they are
    /// thrown away as they arrive, and the connection gives back what it held).
    async fn close_and_discard(&mut self, frame: CloseFrame) {
        self.meter().stop();
        closing::close_and_discard(&mut self.ws, frame).await;
    }

    /// The budget has no room: closes with 1013 (try again later).
    async fn overloaded(&mut self) -> Disconnect {
        let frame = close_frame(CloseCode::Again, "server busy");
        // No closing handshake: reading the client's next messages to find its close frame
        // would buffer them; the raw bytes are discarded instead.
        self.close_and_discard(frame).await;
        Disconnect::Error(super::BindingError::Overloaded)
    }

    /// Releases the budget of received messages the handler has taken from the receive
    /// channel (the oldest first: the channel is FIFO).
    fn release_taken(&self, inbound: &mut VecDeque<OwnedSemaphorePermit>, reserved: bool) {
        let free = self.in_tx.capacity() + usize::from(reserved);
        let queued = self.in_tx.max_capacity().saturating_sub(free);
        while inbound.len() > queued {
            inbound.pop_front();
        }
    }

    async fn read_failed(&mut self, e: WsError) -> Disconnect {
        let limit = match &e {
            WsError::Io(io) => ReadLimit::of(io),
            _ => None,
        };
        match limit {
            Some(ReadLimit::Stalled(_)) => return self.overloaded().await,
            Some(ReadLimit::OverCap(_)) => {
                self.close_and_discard(close_frame(CloseCode::Size, "message too big"))
                    .await;
                return Disconnect::Error(super::BindingError::TooBig);
            }
            None => {}
        }
        let frame = closing::close_frame_for(&e);
        if let Some(frame) = &frame {
            closing::close(&mut self.ws, Some(frame.clone())).await;
        }
        Disconnect::Error(super::BindingError::from_ws(e, frame))
    }
}

/// Why a burst stopped before its end.
enum Stop {
    /// The codec could not encode a message: the connection closes with this frame.
    Encode(CloseFrame),
    /// The budget has no room for this message.
    NoBudget(Message),
}

/// `len` bytes of the server's budget, taken first from `read` (what the stream held for
/// the bytes read since the last delivery; the rest of it is given back), then from the
/// budget if it has room.
fn reserve_from(
    budget: &Arc<Semaphore>,
    config: &BindingConfig,
    read: Option<OwnedSemaphorePermit>,
    len: usize,
) -> Option<OwnedSemaphorePermit> {
    let share = len.min(config.buffer_budget);
    let mut held = match read {
        Some(mut read) if read.num_permits() >= share => return read.split(share),
        Some(read) => read,
        None => {
            let n = u32::try_from(share).unwrap_or(u32::MAX);
            return budget.clone().try_acquire_many_owned(n).ok();
        }
    };
    let missing = u32::try_from(share - held.num_permits()).unwrap_or(u32::MAX);
    held.merge(budget.clone().try_acquire_many_owned(missing).ok()?);
    Some(held)
}

fn burst_failed(e: BurstError, timeout: Duration) -> Disconnect {
    match e {
        BurstError::Write(e) => Disconnect::Error(super::BindingError::from_ws(e, None)),
        BurstError::TimedOut => Disconnect::Error(super::BindingError::WriteTimeout(timeout)),
    }
}

fn write_failed(
    result: Result<Result<(), WsError>, tokio::time::error::Elapsed>,
    timeout: Duration,
) -> Option<Disconnect> {
    match result {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(Disconnect::Error(super::BindingError::from_ws(e, None))),
        Err(_) => Some(Disconnect::Error(super::BindingError::WriteTimeout(
            timeout,
        ))),
    }
}

fn data_len(data: &BindingData) -> usize {
    match data {
        BindingData::Text(t) => t.len(),
        BindingData::Binary(b) => b.len(),
    }
}

fn close_frame(code: CloseCode, reason: &'static str) -> CloseFrame {
    CloseFrame {
        code,
        reason: reason.into(),
    }
}
