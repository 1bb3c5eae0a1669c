//! Client reconnection: which close codes are worth retrying, and how long to wait
//! (spec/protocol.md §6.2, retry column).

use std::time::{Duration, Instant};

use super::RandomSource;
use crate::CloseCode;

/// Whether a client should reconnect after a connection ended with a close code
/// (spec/protocol.md §6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RetryPolicy {
    /// Reconnect with the usual backoff.
    Retry,
    /// Reconnect, but only after the longest delay (the server asked to slow down).
    RetrySlowly,
    /// Do not reconnect: the peer meant it, or retrying would fail the same way.
    Fatal,
}

impl RetryPolicy {
    /// The policy for a connection that ended with `code` (`None`: the transport was lost
    /// without a close frame, which is retried). Codes the table does not name, including
    /// the application range, are retried.
    pub fn for_close_code(code: Option<CloseCode>) -> Self {
        let Some(code) = code else {
            return RetryPolicy::Retry;
        };
        match code {
            CloseCode::ENHANCE_YOUR_CALM => RetryPolicy::RetrySlowly,
            CloseCode::NORMAL
            | CloseCode::UNSUPPORTED_DATA
            | CloseCode::MESSAGE_TOO_BIG
            | CloseCode::PROTOCOL_ERROR
            | CloseCode::UNSUPPORTED_VERSION
            | CloseCode::REJECTED
            | CloseCode::INVALID_METADATA
            | CloseCode::FLOW_CONTROL_ERROR
            | CloseCode::SESSION_REPLACED => RetryPolicy::Fatal,
            _ => RetryPolicy::Retry,
        }
    }
}

/// Parameters of a [`Backoff`]. The defaults sit between Socket.IO's (1 s doubling to
/// 5 s, ±50 %, forever) and cenkalti/backoff's (0.5 s ×1.5 to 60 s, ±50 %, 15 min): a
/// tunnel client should keep trying, but not hammer a server that is down.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffConfig {
    /// Delay before the first retry (default 500 ms).
    pub initial: Duration,
    /// Factor between successive delays (default 2.0; at least 1.0).
    pub multiplier: f64,
    /// Largest delay (default 30 s).
    pub max_delay: Duration,
    /// Randomization factor: each delay is drawn uniformly from
    /// `[d × (1 − jitter), d × (1 + jitter)]`, capped at `max_delay` (default 0.5; 0..=1).
    pub jitter: f64,
    /// Give up after this many consecutive failed attempts (default `None`: never).
    pub max_attempts: Option<u32>,
    /// Give up when the first failure of the current series is this old (default `None`).
    pub max_elapsed: Option<Duration>,
    /// A connection that stayed up this long resets the series (default 30 s).
    pub reset_after: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            initial: Duration::from_millis(500),
            multiplier: 2.0,
            max_delay: Duration::from_secs(30),
            jitter: 0.5,
            max_attempts: None,
            max_elapsed: None,
            reset_after: Duration::from_secs(30),
        }
    }
}

/// What to do after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Retry {
    /// Reconnect after this delay; `attempt` counts from 1 in the current series.
    After {
        /// The delay.
        delay: Duration,
        /// The attempt this delay precedes.
        attempt: u32,
    },
    /// Stop reconnecting.
    GiveUp(GiveUpReason),
}

/// Why a [`Backoff`] gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum GiveUpReason {
    /// The close code is fatal ([`RetryPolicy::Fatal`]).
    Fatal(CloseCode),
    /// `max_attempts` reached.
    MaxAttempts,
    /// `max_elapsed` reached.
    MaxElapsed,
}

/// Sans-IO exponential backoff with jitter for a reconnecting client.
///
/// ```
/// use std::time::{Duration, Instant};
/// use tether_proto::connection::{Backoff, BackoffConfig, Retry};
///
/// let mut backoff = Backoff::new(BackoffConfig { jitter: 0.0, ..BackoffConfig::default() });
/// let mut rng = |buf: &mut [u8]| buf.fill(0);
/// let t0 = Instant::now();
/// // The transport was lost (no close code): retry after 0.5 s, then 1 s, ...
/// assert_eq!(backoff.next(None, t0, &mut rng), Retry::After { delay: Duration::from_millis(500), attempt: 1 });
/// assert_eq!(backoff.next(None, t0, &mut rng), Retry::After { delay: Duration::from_secs(1), attempt: 2 });
/// ```
#[derive(Debug, Clone)]
pub struct Backoff {
    config: BackoffConfig,
    attempt: u32,
    /// The un-jittered delay of the next retry.
    next_delay: Duration,
    series_start: Option<Instant>,
    connected_at: Option<Instant>,
}

impl Backoff {
    /// A backoff with `config` (out-of-range multiplier and jitter are clamped).
    pub fn new(mut config: BackoffConfig) -> Self {
        if config.multiplier.is_nan() || config.multiplier < 1.0 {
            config.multiplier = 1.0;
        }
        config.jitter = if config.jitter.is_nan() {
            0.0
        } else {
            config.jitter.clamp(0.0, 1.0)
        };
        config.initial = config.initial.min(config.max_delay);
        Backoff {
            config,
            attempt: 0,
            next_delay: config.initial,
            series_start: None,
            connected_at: None,
        }
    }

    /// Attempts made in the current series.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// A connection was established at `now`; if it stays up for `reset_after`, the next
    /// failure starts a new series.
    pub fn on_connected(&mut self, now: Instant) {
        self.connected_at = Some(now);
    }

    /// The connection (or a connection attempt) ended at `now` with close code `code`
    /// (`None` for a lost transport or a failed connect): when to try again.
    pub fn next(
        &mut self,
        code: Option<CloseCode>,
        now: Instant,
        rng: &mut impl RandomSource,
    ) -> Retry {
        if let Some(up_since) = self.connected_at.take() {
            if now.saturating_duration_since(up_since) >= self.config.reset_after {
                self.reset();
            }
        }
        let policy = RetryPolicy::for_close_code(code);
        if let (RetryPolicy::Fatal, Some(code)) = (policy, code) {
            return Retry::GiveUp(GiveUpReason::Fatal(code));
        }
        let series_start = *self.series_start.get_or_insert(now);
        if let Some(max) = self.config.max_elapsed {
            if now.saturating_duration_since(series_start) >= max {
                return Retry::GiveUp(GiveUpReason::MaxElapsed);
            }
        }
        if self
            .config
            .max_attempts
            .is_some_and(|max| self.attempt >= max)
        {
            return Retry::GiveUp(GiveUpReason::MaxAttempts);
        }
        self.attempt = self.attempt.saturating_add(1);
        let base = if policy == RetryPolicy::RetrySlowly {
            self.config.max_delay
        } else {
            self.next_delay
        };
        self.next_delay = self
            .next_delay
            .mul_f64(self.config.multiplier)
            .min(self.config.max_delay);
        let delay = jittered(base, self.config.jitter, rng).min(self.config.max_delay);
        Retry::After {
            delay,
            attempt: self.attempt,
        }
    }

    /// Starts a new series.
    pub fn reset(&mut self) {
        self.attempt = 0;
        self.next_delay = self.config.initial;
        self.series_start = None;
    }
}

/// `base × (1 + jitter × u)`, `u` uniform in [−1, 1).
fn jittered(base: Duration, jitter: f64, rng: &mut impl RandomSource) -> Duration {
    if jitter == 0.0 {
        return base;
    }
    let mut bytes = [0; 8];
    rng.fill(&mut bytes);
    // 53 random bits as a float in [0, 1).
    let unit = (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64;
    base.mul_f64(1.0 + jitter * (2.0 * unit - 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seeded(seed: u64) -> impl FnMut(&mut [u8]) {
        use proptest::prelude::Rng;
        use proptest::test_runner::{RngAlgorithm, TestRng};
        let mut key = [0; 32];
        key[..8].copy_from_slice(&seed.to_le_bytes());
        let mut rng = TestRng::from_seed(RngAlgorithm::ChaCha, &key);
        move |buf: &mut [u8]| rng.fill_bytes(buf)
    }

    fn delay(r: Retry) -> Duration {
        match r {
            Retry::After { delay, .. } => delay,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn sequence_without_jitter_doubles_to_the_cap() {
        let mut b = Backoff::new(BackoffConfig {
            jitter: 0.0,
            ..BackoffConfig::default()
        });
        let mut rng = seeded(1);
        let t0 = Instant::now();
        let got: Vec<u64> = (0..9)
            .map(|_| delay(b.next(None, t0, &mut rng)).as_millis() as u64)
            .collect();
        assert_eq!(
            got,
            [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
        assert_eq!(b.attempt(), 9);
    }

    #[test]
    fn jitter_stays_within_bounds_and_varies() {
        let mut b = Backoff::new(BackoffConfig::default());
        let mut rng = seeded(42);
        let t0 = Instant::now();
        let mut base = 500.0_f64;
        let mut seen = Vec::new();
        for _ in 0..200 {
            let d = delay(b.next(None, t0, &mut rng)).as_secs_f64() * 1000.0;
            let cap = 30_000.0;
            assert!(
                d >= (base * 0.5).min(cap) - 1e-6 && d <= (base * 1.5).min(cap) + 1e-6,
                "{d} vs {base}"
            );
            seen.push(d);
            base = (base * 2.0).min(cap);
        }
        let distinct = seen[8..].iter().filter(|&&d| d != seen[8]).count();
        assert!(distinct > 100, "jitter must vary");
    }

    #[test]
    fn fatal_codes_give_up_at_once() {
        let mut b = Backoff::new(BackoffConfig::default());
        let mut rng = seeded(1);
        let t0 = Instant::now();
        assert_eq!(
            b.next(Some(CloseCode::REJECTED), t0, &mut rng),
            Retry::GiveUp(GiveUpReason::Fatal(CloseCode::REJECTED))
        );
        for code in [
            CloseCode::HEARTBEAT_TIMEOUT,
            CloseCode::GOING_AWAY,
            CloseCode::from_u(4600),
        ] {
            assert_eq!(
                RetryPolicy::for_close_code(Some(code)),
                RetryPolicy::Retry,
                "{code}"
            );
        }
        assert_eq!(RetryPolicy::for_close_code(None), RetryPolicy::Retry);
        // Slow down: straight to the longest delay.
        let mut b = Backoff::new(BackoffConfig {
            jitter: 0.0,
            ..BackoffConfig::default()
        });
        assert_eq!(
            delay(b.next(Some(CloseCode::ENHANCE_YOUR_CALM), t0, &mut rng)),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn limits_and_reset() {
        let s = Duration::from_secs;
        let config = BackoffConfig {
            jitter: 0.0,
            max_attempts: Some(2),
            ..BackoffConfig::default()
        };
        let mut b = Backoff::new(config);
        let mut rng = seeded(1);
        let t0 = Instant::now();
        b.next(None, t0, &mut rng);
        b.next(None, t0, &mut rng);
        assert_eq!(
            b.next(None, t0, &mut rng),
            Retry::GiveUp(GiveUpReason::MaxAttempts)
        );
        // A short-lived connection does not reset the series...
        b.on_connected(t0);
        assert_eq!(
            b.next(None, t0 + s(29), &mut rng),
            Retry::GiveUp(GiveUpReason::MaxAttempts)
        );
        // ...a stable one does.
        b.on_connected(t0 + s(29));
        assert_eq!(
            b.next(None, t0 + s(59), &mut rng),
            Retry::After {
                delay: Duration::from_millis(500),
                attempt: 1
            }
        );

        let mut b = Backoff::new(BackoffConfig {
            max_elapsed: Some(s(60)),
            ..config
        });
        b.next(None, t0, &mut rng);
        assert_eq!(
            b.next(None, t0 + s(60), &mut rng),
            Retry::GiveUp(GiveUpReason::MaxElapsed)
        );
        // Silly configs are clamped, not panics.
        let mut b = Backoff::new(BackoffConfig {
            multiplier: f64::NAN,
            jitter: 7.0,
            initial: s(100),
            ..BackoffConfig::default()
        });
        assert!(delay(b.next(None, t0, &mut rng)) <= s(30));
    }
}
