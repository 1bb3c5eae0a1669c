//! The task that moves messages between one WebSocket and the binding's channels.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::codec::{Codec, Data};
use super::{BindingConfig, Disconnect};
use crate::acceptor::Command;
use crate::closing;
use crate::upgrade::ServerStream;

pub(super) struct Driver<C: Codec> {
    pub(super) ws: ServerStream,
    pub(super) config: BindingConfig,
    pub(super) in_tx: mpsc::Sender<C::In>,
    pub(super) out_rx: mpsc::Receiver<C::Out>,
    pub(super) close_rx: mpsc::Receiver<CloseFrame>,
    pub(super) done: watch::Sender<Option<Disconnect>>,
    pub(super) server: Option<watch::Receiver<Command>>,
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
                        Some(Ok(Message::Text(t))) => Data::Text(t),
                        Some(Ok(Message::Binary(b))) => Data::Binary(b),
                        Some(Ok(Message::Close(frame))) => {
                            // tungstenite queued the echo; drive it out.
                            closing::close_reply(&mut self.ws).await;
                            return Disconnect::Peer(frame);
                        }
                        Some(Ok(_)) => continue, // ping (answered by tungstenite), pong
                        Some(Err(e)) => return self.read_failed(e).await,
                        None => return Disconnect::Peer(None),
                    };
                    match C::decode(data) {
                        Ok(item) => {
                            if let Some(p) = permit.take() {
                                p.send(item);
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

    /// Feeds `first` and whatever else is queued, then flushes once.
    async fn write_burst(&mut self, first: C::Out) -> Result<(), Disconnect> {
        let timeout = self.config.write_timeout;
        let burst = async {
            let mut next = Some(first);
            while let Some(item) = next {
                match C::encode(item) {
                    Ok(message) => self.ws.feed(message).await?,
                    Err(frame) => return Ok(Some(frame)),
                }
                next = self.out_rx.try_recv().ok();
            }
            self.ws.flush().await?;
            Ok::<_, WsError>(None)
        };
        match tokio::time::timeout(timeout, burst).await {
            Ok(Ok(None)) => Ok(()),
            Ok(Ok(Some(frame))) => {
                closing::close(&mut self.ws, Some(frame.clone())).await;
                Err(Disconnect::Error(super::BindingError::Encode(frame)))
            }
            other => Err(write_failed(other.map(|r| r.map(|_| ())), timeout)
                .unwrap_or(Disconnect::Peer(None))),
        }
    }

    async fn read_failed(&mut self, e: WsError) -> Disconnect {
        let frame = closing::close_frame_for(&e);
        if let Some(frame) = &frame {
            closing::close(&mut self.ws, Some(frame.clone())).await;
        }
        Disconnect::Error(super::BindingError::from_ws(e, frame))
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

fn close_frame(code: CloseCode, reason: &'static str) -> CloseFrame {
    CloseFrame {
        code,
        reason: reason.into(),
    }
}
