//! Configuration of a [`Connection`](super::Connection), validated once when built.

use bytes::Bytes;
use std::time::Duration;

use crate::frame::{SettingError, MAX_PING_PAYLOAD, MAX_VERSIONS};
use crate::streams::StreamsConfig;
use crate::{Limits, LimitsError, Settings, PROTOCOL_VERSION};

/// Length of the sequence number that starts every heartbeat payload (spec/protocol.md §8.2).
pub const HEARTBEAT_SEQ_LEN: usize = 8;

/// The longest heartbeat application data: a probe is at most 125 bytes (a WebSocket
/// control frame's limit, and a PING frame's) and starts with an 8-byte sequence number.
pub const MAX_HEARTBEAT_APP_DATA: usize = MAX_PING_PAYLOAD - HEARTBEAT_SEQ_LEN;

/// How a side sends its heartbeat probes (setting HEARTBEAT_CARRIER, spec/protocol.md §8.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Carrier {
    /// WebSocket ping control frames, answered by pong control frames (value 0).
    #[default]
    WebSocket,
    /// Tether PING frames, answered by PONG frames (value 1), for peers that cannot send
    /// WebSocket control frames (browsers).
    Frame,
}

impl Carrier {
    /// The value of the HEARTBEAT_CARRIER setting.
    pub const fn value(self) -> u32 {
        match self {
            Carrier::WebSocket => 0,
            Carrier::Frame => 1,
        }
    }

    /// The carrier a setting value names (`None` for values v1 does not define).
    pub const fn from_value(value: u32) -> Option<Self> {
        match value {
            0 => Some(Carrier::WebSocket),
            1 => Some(Carrier::Frame),
            _ => None,
        }
    }
}

/// Who answers WebSocket ping control frames with pongs.
///
/// RFC 6455 requires a pong for every ping. Most WebSocket libraries send it themselves
/// (tungstenite queues it while reading; browsers always do), and a second pong from the
/// machine would be a duplicate. PING *frames* are always answered by the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum PongResponder {
    /// The WebSocket library answers; the machine only reports the ping (the default,
    /// right for tungstenite and browsers).
    #[default]
    Transport,
    /// The machine queues a [`WsMessage::Pong`](super::WsMessage::Pong) for every ping,
    /// for libraries that leave it to the application; a Pong not yet handed out by
    /// `poll_transmit` is replaced by the answer to a newer ping (spec/protocol.md §8.5).
    Machine,
}

/// The configuration of a connection, shared by all connections of an endpoint (wrap it
/// in an `Arc`). Built and checked by [`ConfigBuilder`].
///
/// ```
/// use std::time::Duration;
/// use tether_proto::connection::Config;
///
/// let config = Config::builder()
///     .heartbeat(Duration::from_secs(5), Duration::from_secs(15))
///     .heartbeat_app_data(&b"app"[..])
///     .build()?;
/// assert_eq!(config.heartbeat_timeout(), Duration::from_secs(15));
///
/// let too_long = Config::builder().heartbeat_app_data(vec![0u8; 118]).build();
/// assert!(too_long.is_err());
/// # Ok::<(), tether_proto::connection::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    limits: Limits,
    versions: Vec<u16>,
    handshake_timeout: Duration,
    heartbeat_interval: Duration,
    heartbeat_timeout: Duration,
    carrier: Carrier,
    app_data: Bytes,
    pong_responder: PongResponder,
    streams: StreamsConfig,
    max_probes: u32,
}

impl Config {
    /// Default handshake timeout: 10 s (spec/protocol.md §7.5).
    pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
    /// Default heartbeat interval: 10 s (spec/protocol.md §8.4).
    pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(10);
    /// Default heartbeat timeout: 30 s, three intervals (spec/protocol.md §8.4).
    pub const DEFAULT_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(30);

    /// A builder starting from the defaults.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder {
            config: Config {
                limits: Limits::default(),
                versions: vec![PROTOCOL_VERSION],
                handshake_timeout: Self::DEFAULT_HANDSHAKE_TIMEOUT,
                heartbeat_interval: Self::DEFAULT_HEARTBEAT_INTERVAL,
                heartbeat_timeout: Self::DEFAULT_HEARTBEAT_TIMEOUT,
                carrier: Carrier::WebSocket,
                app_data: Bytes::new(),
                pong_responder: PongResponder::Transport,
                streams: StreamsConfig::default(),
                max_probes: super::probe_limit::DEFAULT_MAX_PROBES,
            },
        }
    }

    /// The receive limits, enforced on every inbound frame and announced to the peer.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The protocol versions spoken, most preferred first.
    pub fn versions(&self) -> &[u16] {
        &self.versions
    }

    /// Time allowed from the connection's creation to the end of the handshake.
    pub fn handshake_timeout(&self) -> Duration {
        self.handshake_timeout
    }

    /// Heartbeat interval: a server imposes it; a client proposes it (zero = no heartbeat).
    pub fn heartbeat_interval(&self) -> Duration {
        self.heartbeat_interval
    }

    /// Heartbeat timeout: a server imposes it; a client proposes it.
    pub fn heartbeat_timeout(&self) -> Duration {
        self.heartbeat_timeout
    }

    /// How this side sends its probes.
    pub fn carrier(&self) -> Carrier {
        self.carrier
    }

    /// The application data appended to every probe after the sequence number.
    pub fn heartbeat_app_data(&self) -> &Bytes {
        &self.app_data
    }

    /// Who answers WebSocket pings.
    pub fn pong_responder(&self) -> PongResponder {
        self.pong_responder
    }

    /// The stream layer's limits and policies (spec/protocol.md §10.8).
    pub fn streams(&self) -> &StreamsConfig {
        &self.streams
    }

    /// Most probes (WebSocket Pings and PING frames) the peer may send per 10 s before this
    /// side closes with 4007 (spec/protocol.md §8.5; default 1,000).
    pub fn max_probes_per_window(&self) -> u32 {
        self.max_probes
    }

    /// The settings block this side announces in HELLO or WELCOME (spec/protocol.md §7.4).
    pub(super) fn settings(&self) -> Settings {
        Settings {
            heartbeat_interval_ms: Some(millis(self.heartbeat_interval)),
            heartbeat_timeout_ms: Some(millis(self.heartbeat_timeout)),
            heartbeat_carrier: Some(self.carrier.value()),
            max_frame_payload: Some(self.limits.max_frame_payload),
            max_head_size: Some(self.limits.max_head_size),
            max_header_count: Some(u32::from(self.limits.max_header_count)),
            max_concurrent_streams: Some(self.streams.max_concurrent_streams),
            initial_stream_window: Some(self.streams.initial_stream_window),
            initial_connection_window: Some(self.streams.initial_connection_window),
            ..Settings::default()
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::builder().config
    }
}

/// Whole milliseconds, saturating (durations are range-checked when the config is built).
pub(super) fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

/// Checks heartbeat values against spec/protocol.md §3.6 and §7.4: whole milliseconds
/// within a day, and a timeout longer than a non-zero interval.
pub(super) fn check_heartbeat(interval: Duration, timeout: Duration) -> Result<(), ConfigError> {
    if !interval.is_zero() && timeout <= interval {
        return Err(ConfigError::HeartbeatTimeoutTooShort { interval, timeout });
    }
    if interval.subsec_nanos() % 1_000_000 != 0 || timeout.subsec_nanos() % 1_000_000 != 0 {
        return Err(ConfigError::SubMillisecond);
    }
    Settings {
        heartbeat_interval_ms: Some(u32::try_from(interval.as_millis()).unwrap_or(u32::MAX)),
        heartbeat_timeout_ms: Some(u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX)),
        ..Settings::default()
    }
    .validate()?;
    Ok(())
}

/// Builds a [`Config`]; [`build`](ConfigBuilder::build) checks every value.
#[derive(Debug, Clone)]
pub struct ConfigBuilder {
    config: Config,
}

impl ConfigBuilder {
    /// Receive limits (default [`Limits::default`]).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.config.limits = limits;
        self
    }

    /// Protocol versions spoken, most preferred first (default `[1]`).
    pub fn versions(mut self, versions: &[u16]) -> Self {
        self.config.versions = versions.to_vec();
        self
    }

    /// Handshake timeout (default 10 s).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.config.handshake_timeout = timeout;
        self
    }

    /// Heartbeat interval and timeout (default 10 s and 30 s). The timeout must be longer
    /// than the interval. The client probes after an interval of silence, the server after
    /// the smaller of 1.5 intervals and the midpoint of interval and timeout
    /// (spec/protocol.md §8.2).
    pub fn heartbeat(mut self, interval: Duration, timeout: Duration) -> Self {
        self.config.heartbeat_interval = interval;
        self.config.heartbeat_timeout = timeout;
        self
    }

    /// No heartbeat: no probes, and silence never kills the connection.
    pub fn heartbeat_disabled(mut self) -> Self {
        self.config.heartbeat_interval = Duration::ZERO;
        self
    }

    /// How this side sends probes (default [`Carrier::WebSocket`]).
    pub fn carrier(mut self, carrier: Carrier) -> Self {
        self.config.carrier = carrier;
        self
    }

    /// Application data carried by every probe (default empty, at most
    /// [`MAX_HEARTBEAT_APP_DATA`] bytes).
    pub fn heartbeat_app_data(mut self, data: impl Into<Bytes>) -> Self {
        self.config.app_data = data.into();
        self
    }

    /// Who answers WebSocket pings (default [`PongResponder::Transport`]).
    pub fn pong_responder(mut self, responder: PongResponder) -> Self {
        self.config.pong_responder = responder;
        self
    }

    /// Limits and policies of the stream layer (default [`StreamsConfig::default`]);
    /// its concurrency and window limits are announced in the handshake (§10.8).
    pub fn streams(mut self, streams: StreamsConfig) -> Self {
        self.config.streams = streams;
        self
    }

    /// Most probes (WebSocket Pings and PING frames together) the peer may send per 10 s;
    /// one more closes the connection with 4007 ENHANCE_YOUR_CALM (spec/protocol.md §8.5).
    /// The machine raises it to twice what the negotiated heartbeat interval needs.
    pub fn max_probes_per_window(mut self, max: u32) -> Self {
        self.config.max_probes = max;
        self
    }

    /// Checks the configuration.
    pub fn build(self) -> Result<Config, ConfigError> {
        let c = self.config;
        c.limits.validate()?;
        if c.versions.is_empty() || c.versions.len() > usize::from(MAX_VERSIONS) {
            return Err(ConfigError::VersionCount(c.versions.len()));
        }
        if c.handshake_timeout.is_zero() {
            return Err(ConfigError::ZeroHandshakeTimeout);
        }
        if c.app_data.len() > MAX_HEARTBEAT_APP_DATA {
            return Err(ConfigError::AppDataTooLong(c.app_data.len()));
        }
        check_heartbeat(c.heartbeat_interval, c.heartbeat_timeout)?;
        let st = &c.streams;
        if st.max_send_buffer == 0
            || st.max_connection_send_buffer == 0
            || st.send_budget.limit() == 0
        {
            return Err(ConfigError::ZeroSendBuffer);
        }
        if st.stall_timeout.is_zero() {
            return Err(ConfigError::ZeroStallTimeout);
        }
        let largest = crate::frame::MAX_INCREMENT;
        if st.max_stream_window > largest || st.max_connection_window > largest {
            return Err(ConfigError::WindowTooLarge);
        }
        c.settings().validate()?;
        Ok(c)
    }
}

/// A [`Config`] value that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A receive limit is out of range.
    #[error(transparent)]
    Limits(#[from] LimitsError),
    /// A value announced as a setting is out of the setting's range.
    #[error(transparent)]
    Setting(#[from] SettingError),
    /// The version list is empty or longer than 16.
    #[error("a config must list 1 to 16 protocol versions, not {0}")]
    VersionCount(usize),
    /// A send limit of the stream layer (per stream, per connection or the process-wide
    /// budget) is zero (nothing could ever be sent).
    #[error("send buffers and the send budget must not be zero")]
    ZeroSendBuffer,
    /// A receive window's maximum (`max_stream_window`, `max_connection_window`) is above
    /// 2,147,483,647, the largest window spec/protocol.md §10.3 allows.
    #[error("a receive window may grow to at most 2,147,483,647 bytes")]
    WindowTooLarge,
    /// The stream layer's stall timeout is zero (every queued byte would be a stall).
    #[error("the stall timeout must not be zero")]
    ZeroStallTimeout,
    /// The handshake timeout is zero.
    #[error("the handshake timeout must not be zero")]
    ZeroHandshakeTimeout,
    /// The heartbeat application data does not fit a probe.
    #[error("heartbeat app data of {0} bytes exceeds {MAX_HEARTBEAT_APP_DATA} (125 minus the 8-byte sequence number)")]
    AppDataTooLong(usize),
    /// The heartbeat timeout is not longer than the interval.
    #[error("heartbeat timeout {timeout:?} must be longer than the interval {interval:?}")]
    HeartbeatTimeoutTooShort {
        /// The interval.
        interval: Duration,
        /// The timeout.
        timeout: Duration,
    },
    /// A heartbeat duration is not a whole number of milliseconds.
    #[error("heartbeat durations are whole milliseconds")]
    SubMillisecond,
    /// Client metadata that the server would refuse.
    #[error("client metadata: {0}")]
    Metadata(MetadataError),
}

/// What is wrong with a client's HELLO metadata (spec/protocol.md §3.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MetadataError {
    /// Larger than the limit.
    #[error("{len} bytes, larger than max_metadata_size ({max})")]
    TooLarge {
        /// Its size.
        len: usize,
        /// `max_metadata_size`.
        max: u32,
    },
    /// Not one JSON value.
    #[error("not one JSON value (spec/protocol.md §3.4.1)")]
    NotJson,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_build() {
        let c = Config::builder().build().unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.settings().heartbeat_interval_ms, Some(10_000));
    }

    #[test]
    fn bad_values_are_named() {
        let b = Config::builder;
        assert_eq!(
            b().heartbeat_app_data(vec![1u8; 118]).build(),
            Err(ConfigError::AppDataTooLong(118))
        );
        assert!(b().heartbeat_app_data(vec![1u8; 117]).build().is_ok());
        assert!(matches!(
            b().heartbeat(Duration::from_secs(5), Duration::from_secs(5))
                .build(),
            Err(ConfigError::HeartbeatTimeoutTooShort { .. })
        ));
        assert!(matches!(
            b().heartbeat(Duration::from_secs(5), Duration::from_secs(86_401))
                .build(),
            Err(ConfigError::Setting(_))
        ));
        assert_eq!(
            b().heartbeat(Duration::from_micros(1500), Duration::from_secs(1))
                .build(),
            Err(ConfigError::SubMillisecond)
        );
        assert_eq!(b().versions(&[]).build(), Err(ConfigError::VersionCount(0)));
        assert_eq!(
            b().handshake_timeout(Duration::ZERO).build(),
            Err(ConfigError::ZeroHandshakeTimeout)
        );
        let limits = Limits {
            max_frame_payload: 1,
            ..Limits::default()
        };
        assert!(matches!(
            b().limits(limits).build(),
            Err(ConfigError::Limits(_))
        ));
        assert!(b().heartbeat_disabled().build().is_ok());
    }
}
