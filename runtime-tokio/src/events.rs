//! Bounded event streams that never block the producer.
//!
//! A connection task publishes into a fixed-size ring (a tokio broadcast channel). When a
//! consumer falls behind by more than the capacity, **the oldest events are overwritten**:
//! the producer never waits and memory stays bounded. The consumer learns how many it
//! missed from [`EventStream::dropped`] (and a `warn` trace). Every subscriber sees every
//! event sent after it subscribed.

use std::sync::Arc;

use tokio::sync::broadcast;

/// Default number of events an [`EventStream`] holds for a slow consumer: a server's one
/// stream carries every connection's events.
pub const DEFAULT_EVENT_CAPACITY: usize = 1024;

/// Default for a client's own stream: lifecycle events and one RTT sample per heartbeat.
/// Kept small because the ring is allocated up front, per client: at 1,024 entries it was
/// about 185 KiB of every idle connection (benches/RESULTS.md, idle connections). Each
/// slot holds a pointer to its event, not the event itself, so the 64 slots cost about
/// 2.5 KiB, not the 11.5 KiB they did with events of 184 bytes inline.
pub const DEFAULT_CLIENT_EVENT_CAPACITY: usize = 64;

/// A stream of events of a server or client; see the [module docs](self) for what happens
/// when the consumer falls behind.
#[derive(Debug)]
pub struct EventStream<T> {
    /// Events travel as `Arc`s: the ring's slots stay pointer-sized (it is allocated up
    /// front, per client) and each event is allocated only when it is published.
    rx: broadcast::Receiver<Arc<T>>,
    dropped: u64,
}

impl<T: Clone> EventStream<T> {
    pub(crate) fn new(rx: broadcast::Receiver<Arc<T>>) -> Self {
        Self { rx, dropped: 0 }
    }

    /// The event itself: moved out when this was its last holder, cloned otherwise.
    fn owned(event: Arc<T>) -> T {
        Arc::try_unwrap(event).unwrap_or_else(|shared| (*shared).clone())
    }

    /// The next event; `None` once the server or client is gone and every event was read.
    pub async fn recv(&mut self) -> Option<T> {
        loop {
            match self.rx.recv().await {
                Ok(event) => return Some(Self::owned(event)),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(
                        dropped = n,
                        "event consumer fell behind; oldest events dropped"
                    );
                    self.dropped = self.dropped.saturating_add(n);
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// The next event if one is ready, without waiting.
    pub fn try_recv(&mut self) -> Option<T> {
        loop {
            match self.rx.try_recv() {
                Ok(event) => return Some(Self::owned(event)),
                Err(broadcast::error::TryRecvError::Lagged(n)) => {
                    self.dropped = self.dropped.saturating_add(n);
                }
                Err(_) => return None,
            }
        }
    }

    /// How many events this stream lost because its consumer fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

/// The sending half: publishing never blocks, and succeeds with no subscriber too.
#[derive(Debug, Clone)]
pub(crate) struct Publisher<T> {
    tx: broadcast::Sender<Arc<T>>,
}

impl<T: Clone> Publisher<T> {
    pub(crate) fn new(capacity: usize) -> (Self, EventStream<T>) {
        let (tx, rx) = broadcast::channel(capacity.max(1));
        (Self { tx }, EventStream::new(rx))
    }

    pub(crate) fn publish(&self, event: T) {
        let _ = self.tx.send(Arc::new(event));
    }

    pub(crate) fn subscribe(&self) -> EventStream<T> {
        EventStream::new(self.tx.subscribe())
    }

    /// A handle that can subscribe without keeping the streams open.
    pub(crate) fn subscriber(&self) -> Subscriber<T> {
        Subscriber {
            tx: self.tx.downgrade(),
        }
    }
}

/// Subscribes while the publisher lives; streams end when it is gone.
#[derive(Debug, Clone)]
pub(crate) struct Subscriber<T> {
    tx: broadcast::WeakSender<Arc<T>>,
}

impl<T: Clone> Subscriber<T> {
    pub(crate) fn subscribe(&self) -> EventStream<T> {
        match self.tx.upgrade() {
            Some(tx) => EventStream::new(tx.subscribe()),
            // The publisher is gone: a stream that ends at once.
            None => EventStream::new(broadcast::channel(1).1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_slow_consumer_loses_the_oldest_and_counts_them() {
        let (tx, mut rx) = Publisher::new(4);
        for i in 0..10 {
            tx.publish(i);
        }
        assert_eq!(rx.recv().await, Some(6));
        assert_eq!(rx.dropped(), 6);
        assert_eq!(rx.try_recv(), Some(7));
        drop(tx);
        assert_eq!(rx.recv().await, Some(8));
        assert_eq!(rx.recv().await, Some(9));
        assert_eq!(rx.recv().await, None);
    }
}
