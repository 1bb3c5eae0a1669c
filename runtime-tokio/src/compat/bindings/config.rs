//! Options of a channel binding, validated when built.

use std::time::Duration;

use crate::transport::upgrade::AllowedOrigins;

/// Options of a [`BindingServer`](super::BindingServer), built with [`BindingConfig::builder`].
///
/// Defaults follow macaron sockets: write timeout 60 s, pong wait 60 s, ping period 48 s
/// (8/10 of the pong wait), max message 64 KiB, buffers of 10 messages, same-host origins.
#[derive(Debug, Clone)]
pub struct BindingConfig {
    pub(crate) write_timeout: Duration,
    pub(crate) pong_wait: Duration,
    pub(crate) ping_period: Duration,
    pub(crate) max_message_size: usize,
    pub(crate) send_buffer: usize,
    pub(crate) recv_buffer: usize,
    pub(crate) allowed_origins: AllowedOrigins,
    pub(crate) handshake_timeout: Duration,
    pub(crate) max_buffered_bytes: usize,
    pub(crate) buffer_budget: usize,
    pub(crate) budget_wait: Duration,
    pub(crate) max_pings: u32,
}

/// Default process-wide budget of bytes held for clients: 64 MiB.
pub const DEFAULT_BUFFER_BUDGET: usize = 64 * 1024 * 1024;

/// Default time a connection reading a message may wait for room in the buffer budget
/// before it is closed with 1013: 10 s.
pub const DEFAULT_BUDGET_WAIT: Duration = Duration::from_secs(10);

/// Default most bytes one connection has being written toward its client: 1 MiB.
pub const DEFAULT_MAX_BUFFERED_BYTES: usize = 1024 * 1024;

impl Default for BindingConfig {
    fn default() -> Self {
        Self {
            write_timeout: Duration::from_secs(60),
            pong_wait: Duration::from_secs(60),
            ping_period: Duration::from_secs(48),
            max_message_size: 64 * 1024,
            send_buffer: 10,
            recv_buffer: 10,
            allowed_origins: AllowedOrigins::SameHost,
            handshake_timeout: Duration::from_secs(10),
            max_buffered_bytes: DEFAULT_MAX_BUFFERED_BYTES,
            buffer_budget: DEFAULT_BUFFER_BUDGET,
            budget_wait: DEFAULT_BUDGET_WAIT,
            max_pings: tether_proto::connection::DEFAULT_MAX_PROBES,
        }
    }
}

impl BindingConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> BindingConfigBuilder {
        BindingConfigBuilder(Self::default())
    }

    /// Time one burst of writes (or a ping) may take; past it the connection is dropped.
    pub fn write_timeout(&self) -> Duration {
        self.write_timeout
    }
    /// Longest silence (no message, no pong) before the peer is considered gone.
    pub fn pong_wait(&self) -> Duration {
        self.pong_wait
    }
    /// Time between pings; always shorter than the pong wait.
    pub fn ping_period(&self) -> Duration {
        self.ping_period
    }
    /// Largest incoming message; a larger one closes the connection with 1009.
    pub fn max_message_size(&self) -> usize {
        self.max_message_size
    }
    /// Messages buffered from the handler to the socket (0: one in flight, see the builder).
    pub fn send_buffer(&self) -> usize {
        self.send_buffer
    }
    /// Messages buffered from the socket to the handler (0: one in flight, see the builder).
    pub fn recv_buffer(&self) -> usize {
        self.recv_buffer
    }
    /// Which origins may connect (others get 403).
    pub fn allowed_origins(&self) -> &AllowedOrigins {
        &self.allowed_origins
    }
    /// Most bytes one connection has being written toward its client at a time (one write
    /// burst); further messages wait in the send channel. A single larger message is written
    /// alone.
    pub fn max_buffered_bytes(&self) -> usize {
        self.max_buffered_bytes
    }
    /// Bytes held for clients, summed over every connection of the server: messages being
    /// written toward them, received messages the handler has not taken yet, and the bytes
    /// of messages still being received (counted as they are read from the socket, frame
    /// headers included). A complete message that finds no room closes its connection with
    /// 1013 (try again later); a connection reading a message stops reading while the
    /// budget is full, and is closed with 1013 if it finds no room for the
    /// [`budget_wait`](Self::budget_wait). At least `max_message_size` (checked when built):
    /// a message whose bytes, frame headers included, exceed the whole budget cannot be
    /// received, so keep it well above.
    pub fn buffer_budget(&self) -> usize {
        self.buffer_budget
    }
    /// How long a connection reading a message may find no room in the buffer budget
    /// before it is closed with 1013 (default 10 s), so that connections each holding part
    /// of a message cannot wait on each other for ever.
    pub fn budget_wait(&self) -> Duration {
        self.budget_wait
    }
    /// Most pings a client may send per 10 s; one more closes with 1008 (default 1,000).
    pub fn max_pings_per_window(&self) -> u32 {
        self.max_pings
    }
}

/// Invalid combination of binding options.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BindingsConfigError {
    /// Pings must be sent more often than the pong wait, or every quiet connection times out.
    #[error("ping period {ping_period:?} must be shorter than pong wait {pong_wait:?}")]
    PingPeriodNotBelowPongWait {
        /// The ping period.
        ping_period: Duration,
        /// The pong wait.
        pong_wait: Duration,
    },
    /// A timeout, period or size of zero.
    #[error("{0} must be greater than zero")]
    Zero(&'static str),
    /// A buffer budget over 4 GiB - 1.
    #[error("buffer budget {0} exceeds {MAX_BUFFER_BUDGET} bytes")]
    BudgetTooLarge(usize),
    /// A buffer budget smaller than the max message size: such a message could never be
    /// received.
    #[error("buffer budget {budget} is smaller than the max message size {max_message_size}")]
    BudgetBelowMessageSize {
        /// The buffer budget.
        budget: usize,
        /// The max message size.
        max_message_size: usize,
    },
}

/// Largest [`BindingConfig::buffer_budget`]: 4 GiB - 1.
pub const MAX_BUFFER_BUDGET: usize = u32::MAX as usize;

/// Builder of [`BindingConfig`]; [`build`](Self::build) rejects invalid combinations.
#[derive(Debug, Clone)]
pub struct BindingConfigBuilder(BindingConfig);

impl BindingConfigBuilder {
    /// See [`BindingConfig::write_timeout`].
    pub fn write_timeout(mut self, d: Duration) -> Self {
        self.0.write_timeout = d;
        self
    }
    /// See [`BindingConfig::pong_wait`].
    pub fn pong_wait(mut self, d: Duration) -> Self {
        self.0.pong_wait = d;
        self
    }
    /// See [`BindingConfig::ping_period`].
    pub fn ping_period(mut self, d: Duration) -> Self {
        self.0.ping_period = d;
        self
    }
    /// See [`BindingConfig::max_message_size`].
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.0.max_message_size = bytes;
        self
    }
    /// Messages buffered from the handler to the socket.
    ///
    /// Zero is allowed and means what an unbuffered Go channel gives: at most one message in
    /// flight between the handler and the socket. tokio's bounded channel needs a capacity of at
    /// least one, so 0 and 1 build the same channel; since the writer takes a message only when
    /// it can write it, either holds one message at most.
    pub fn send_buffer(mut self, messages: usize) -> Self {
        self.0.send_buffer = messages;
        self
    }
    /// Messages buffered from the socket to the handler.
    ///
    /// Zero is allowed (see [`send_buffer`](Self::send_buffer)): the reader reads the next
    /// message from the socket only once it has room to hand it over, so with 0 (mapped to a
    /// channel of capacity 1) exactly one message waits for the handler, as with a Go reader
    /// goroutine blocked on an unbuffered channel. A handler that stops receiving stops the
    /// reading, which is the back-pressure TCP then carries to the peer.
    pub fn recv_buffer(mut self, messages: usize) -> Self {
        self.0.recv_buffer = messages;
        self
    }
    /// See [`BindingConfig::allowed_origins`].
    pub fn allowed_origins(mut self, origins: AllowedOrigins) -> Self {
        self.0.allowed_origins = origins;
        self
    }
    /// Time a client has to complete the HTTP upgrade (default 10 s).
    pub fn handshake_timeout(mut self, d: Duration) -> Self {
        self.0.handshake_timeout = d;
        self
    }

    /// See [`BindingConfig::max_buffered_bytes`].
    pub fn max_buffered_bytes(mut self, bytes: usize) -> Self {
        self.0.max_buffered_bytes = bytes;
        self
    }
    /// See [`BindingConfig::buffer_budget`].
    pub fn buffer_budget(mut self, bytes: usize) -> Self {
        self.0.buffer_budget = bytes;
        self
    }
    /// See [`BindingConfig::budget_wait`].
    pub fn budget_wait(mut self, d: Duration) -> Self {
        self.0.budget_wait = d;
        self
    }
    /// See [`BindingConfig::max_pings_per_window`].
    pub fn max_pings_per_window(mut self, pings: u32) -> Self {
        self.0.max_pings = pings;
        self
    }

    /// Checks the combination.
    pub fn build(self) -> Result<BindingConfig, BindingsConfigError> {
        let c = self.0;
        for (name, d) in [
            ("write timeout", c.write_timeout),
            ("pong wait", c.pong_wait),
            ("ping period", c.ping_period),
            ("handshake timeout", c.handshake_timeout),
            ("budget wait", c.budget_wait),
        ] {
            if d.is_zero() {
                return Err(BindingsConfigError::Zero(name));
            }
        }
        for (name, n) in [
            ("max message size", c.max_message_size),
            ("max buffered bytes", c.max_buffered_bytes),
            ("buffer budget", c.buffer_budget),
        ] {
            if n == 0 {
                return Err(BindingsConfigError::Zero(name));
            }
        }
        if c.buffer_budget > MAX_BUFFER_BUDGET {
            return Err(BindingsConfigError::BudgetTooLarge(c.buffer_budget));
        }
        if c.buffer_budget < c.max_message_size {
            return Err(BindingsConfigError::BudgetBelowMessageSize {
                budget: c.buffer_budget,
                max_message_size: c.max_message_size,
            });
        }
        if c.ping_period >= c.pong_wait {
            return Err(BindingsConfigError::PingPeriodNotBelowPongWait {
                ping_period: c.ping_period,
                pong_wait: c.pong_wait,
            });
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_build_and_bad_combinations_are_rejected() {
        assert!(BindingConfig::builder().build().is_ok());
        let err = BindingConfig::builder()
            .pong_wait(Duration::from_secs(1))
            .ping_period(Duration::from_secs(1))
            .build()
            .unwrap_err();
        assert!(matches!(
            err,
            BindingsConfigError::PingPeriodNotBelowPongWait { .. }
        ));
        let err = BindingConfig::builder()
            .write_timeout(Duration::ZERO)
            .build()
            .unwrap_err();
        assert_eq!(err, BindingsConfigError::Zero("write timeout"));
        assert_eq!(
            BindingConfig::builder()
                .max_message_size(0)
                .build()
                .unwrap_err(),
            BindingsConfigError::Zero("max message size")
        );
        assert_eq!(
            BindingConfig::builder()
                .buffer_budget(0)
                .build()
                .unwrap_err(),
            BindingsConfigError::Zero("buffer budget")
        );
        assert_eq!(
            BindingConfig::builder()
                .buffer_budget(MAX_BUFFER_BUDGET + 1)
                .build()
                .unwrap_err(),
            BindingsConfigError::BudgetTooLarge(MAX_BUFFER_BUDGET + 1)
        );
        assert_eq!(
            BindingConfig::builder()
                .max_message_size(2048)
                .buffer_budget(1024)
                .build()
                .unwrap_err(),
            BindingsConfigError::BudgetBelowMessageSize {
                budget: 1024,
                max_message_size: 2048
            }
        );
        let zero = BindingConfig::builder()
            .send_buffer(0)
            .recv_buffer(0)
            .build()
            .unwrap();
        assert_eq!((zero.send_buffer(), zero.recv_buffer()), (0, 0));
    }
}
