//! Sans-IO reconnect back-off with jitter.
//!
//! [`Backoff`] computes how long to wait before the next reconnect attempt. It does no I/O and
//! reads no clock: the caller passes `now` and a [`RandomSource`] for the jitter, so a test with a
//! fixed seed sees a fixed sequence.
//!
//! # Lifecycle
//!
//! ```text
//!            next_delay(now, rng) -> Some(d): sleep d, dial
//!   failed ───────────────────────────────────────────────┐
//!     ▲                                                   │
//!     │ dial failed                                       ▼
//!     └──────────────────────────────────────────── dialing ── ok ──> handle_connected(now)
//!                                                                         │
//!   handle_disconnected(now): resets the sequence if the connection   <──┘
//!   lasted at least `reset_after`, otherwise keeps counting.
//! ```
//!
//! # Delay
//!
//! The base delay of attempt `n` (0-based) is `min(initial * multiplier^n, max_delay)`. The
//! jitter then draws the actual delay from
//!
//! * [`Jitter::None`]: exactly the base;
//! * [`Jitter::Full`]: uniformly from `[0, base]` (the "full jitter" of the AWS architecture blog);
//! * [`Jitter::Proportional(r)`](Jitter::Proportional): uniformly from `[base·(1−r), base·(1+r)]`,
//!   `r` clamped to `[0, 1]` (Socket.IO's and cenkalti/backoff's "randomization factor").
//!
//! The result is finally capped at `max_delay`, so **no delay ever exceeds `max_delay`** (like
//! Socket.IO; cenkalti/backoff can exceed its maximum by the randomization factor).
//!
//! # A resumable session caps every delay
//!
//! After [`Backoff::handle_resumable`] (the connection ended with a session the server keeps
//! for its resume window), every delay, including [`Backoff::delay_for_policy`]'s longest one
//! after 4007, is capped so the next attempt starts no later than [`resume_margin`] before the
//! window ends: a client never loses its session to its own delay (spec/protocol.md §9.5).
//! Once that point has passed, the session is presumed lost and the delays are the usual ones.
//!
//! # Giving up
//!
//! [`Backoff::next_delay`] returns `None` when `max_attempts` attempts have been handed out since
//! the last reset, or when waiting the next delay would end past `max_elapsed` counted from the
//! first failure since the last reset (cenkalti/backoff's rule).
//!
//! # Example
//!
//! ```
//! use std::time::{Duration, Instant};
//! use tether_proto::backoff::{Backoff, BackoffConfig, Jitter};
//!
//! let config = BackoffConfig {
//!     jitter: Jitter::None,
//!     ..BackoffConfig::default()
//! };
//! let mut backoff = Backoff::new(config);
//! let mut rng = |buf: &mut [u8]| buf.fill(0); // any `FnMut(&mut [u8])` is a random source
//! let now = Instant::now(); // the caller reads the clock, never the machine
//! assert_eq!(backoff.next_delay(now, &mut rng), Some(Duration::from_millis(500)));
//! assert_eq!(backoff.next_delay(now, &mut rng), Some(Duration::from_millis(750)));
//! ```

use std::time::{Duration, Instant};

use crate::{CloseCode, RandomSource};

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

/// How the delay is randomized around its base value. See the [module docs](self) for bounds.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Jitter {
    /// No randomization: the delay is the base.
    None,
    /// Uniform in `[0, base]`.
    Full,
    /// Uniform in `[base·(1−r), base·(1+r)]` with `r` clamped to `[0, 1]`.
    Proportional(f64),
}

/// Configuration of a [`Backoff`].
///
/// The defaults sit between Socket.IO (1 s initial, ×2, 5 s max, 0.5 randomization, unlimited
/// attempts) and cenkalti/backoff (500 ms initial, ×1.5, 60 s max, 0.5 randomization, 15 min max
/// elapsed):
///
/// * `initial = 500 ms`: a dropped connection usually comes back at once (a server restart, a
///   NAT rebinding); half a second is quick without hammering.
/// * `multiplier = 1.5`: gentler than doubling, so the delay reaches the cap after ~9 attempts
///   instead of jumping from seconds to tens of seconds.
/// * `max_delay = 30 s`: Socket.IO's 5 s makes 10,000 devices hit a recovering server every 5 s;
///   cenkalti's 60 s leaves a device offline for a minute after a short outage. 30 s halves that.
/// * `jitter = Proportional(0.5)`: both references use 0.5; it spreads a herd of clients that lost
///   the same server over ±50 % of the delay while keeping each delay predictable.
/// * `max_attempts = None`, `max_elapsed = None`: a device behind NAT must come back by itself
///   however long the outage lasts, so the default never gives up (Socket.IO's choice, not
///   cenkalti's 15 minutes). Set either to make a client give up.
/// * `reset_after = 10 s`: a connection that stayed up 10 s was a real one; one that drops sooner
///   (a server that accepts and crashes) keeps the delay growing instead of looping fast.
#[derive(Debug, Clone, PartialEq)]
pub struct BackoffConfig {
    /// Base delay of the first attempt.
    pub initial: Duration,
    /// Factor applied to the base delay after each attempt; values below 1 are treated as 1.
    pub multiplier: f64,
    /// Upper bound of every delay, jitter included.
    pub max_delay: Duration,
    /// Randomization of each delay.
    pub jitter: Jitter,
    /// Give up after this many attempts since the last reset (`None`: never).
    pub max_attempts: Option<u32>,
    /// Give up when the next attempt would start later than this after the first failure since
    /// the last reset (`None`: never).
    pub max_elapsed: Option<Duration>,
    /// A connection that stayed up at least this long resets the sequence when it drops.
    pub reset_after: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(500),
            multiplier: 1.5,
            max_delay: Duration::from_secs(30),
            jitter: Jitter::Proportional(0.5),
            max_attempts: None,
            max_elapsed: None,
            reset_after: Duration::from_secs(10),
        }
    }
}

/// Reconnect delay calculator. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct Backoff {
    config: BackoffConfig,
    /// Attempts handed out since the last reset.
    attempt: u32,
    /// First `next_delay` call since the last reset.
    first_failure: Option<Instant>,
    /// When the current connection came up, if it is up.
    connected_since: Option<Instant>,
    /// The latest start of an attempt that still resumes the last session.
    resume_by: Option<Instant>,
    /// The server's `Retry-After` for the attempt that just failed: the next delay is at
    /// least this long.
    not_before: Option<Duration>,
}

/// The longest `Retry-After` a client honours (spec/protocol.md §10.8): a longer one is cut
/// to this, so that a misconfigured server cannot park its clients for hours.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// Parses an HTTP `Retry-After` value in its delay-seconds form (RFC 9110 §10.2.3), the
/// form a Tether server sends with `429 Too Many Requests` (spec/protocol.md §10.8). The
/// HTTP-date form, anything else and an empty value give `None` (the client then uses its
/// usual delay). Surrounding whitespace is allowed; the value is capped at
/// [`MAX_RETRY_AFTER`].
pub fn parse_retry_after(value: &[u8]) -> Option<Duration> {
    let value = value.trim_ascii();
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // All digits: the only failure left is overflow, which is "very long".
    let secs = std::str::from_utf8(value)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(u64::MAX);
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

/// How long before the end of a resume window the reference client starts its last attempt
/// to resume: a quarter of the window, at most 5 s (the dial and the handshake must fit;
/// spec/protocol.md §9.5).
pub fn resume_margin(window: Duration) -> Duration {
    (window / 4).min(Duration::from_secs(5))
}

impl Backoff {
    /// Creates a back-off at its first attempt.
    pub fn new(config: BackoffConfig) -> Self {
        Self {
            config,
            attempt: 0,
            first_failure: None,
            connected_since: None,
            resume_by: None,
            not_before: None,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &BackoffConfig {
        &self.config
    }

    /// Number of delays handed out since the last reset.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Starts the sequence over, as if no attempt had failed.
    pub fn reset(&mut self) {
        self.attempt = 0;
        self.first_failure = None;
    }

    /// The connection is up as of `now`.
    pub fn handle_connected(&mut self, now: Instant) {
        self.connected_since = Some(now);
        self.resume_by = None;
    }

    /// The connection ended at `now` with a session the server keeps resumable for `window`
    /// (RESUME_WINDOW_MS of its last WELCOME): delays are capped from now on so that an
    /// attempt starts while the session can still be resumed (spec/protocol.md §9.5).
    pub fn handle_resumable(&mut self, now: Instant, window: Duration) {
        self.resume_by = window
            .checked_sub(resume_margin(window))
            .filter(|d| !d.is_zero())
            .and_then(|d| now.checked_add(d));
    }

    /// The delay before the next attempt after a connection ended under `policy`, or `None`
    /// to give up (also for [`RetryPolicy::Fatal`]): [`RetryPolicy::RetrySlowly`] waits the
    /// longest delay, [`RetryPolicy::Retry`] the next one of the sequence; both within the
    /// resume cap.
    pub fn delay_for_policy(
        &mut self,
        policy: RetryPolicy,
        now: Instant,
        rng: &mut impl RandomSource,
    ) -> Option<Duration> {
        let floor = self.not_before.take();
        let delay = match policy {
            RetryPolicy::Fatal => return None,
            RetryPolicy::Retry => self.next_delay(now, rng)?,
            RetryPolicy::RetrySlowly => {
                self.next_delay(now, rng)?;
                self.capped(now, self.config.max_delay)
            }
        };
        // spec/protocol.md §10.8 [10.8-5]: never before the server's Retry-After, even
        // inside a resume window (the server would refuse an earlier attempt anyway).
        Some(floor.map_or(delay, |floor| delay.max(floor)))
    }

    /// The server refused the attempt that just failed with `429 Too Many Requests` and a
    /// `Retry-After` of `wait` ([`parse_retry_after`]): the next delay from
    /// [`delay_for_policy`](Self::delay_for_policy) is at least `wait` (at most
    /// [`MAX_RETRY_AFTER`]), spec/protocol.md §10.8.
    pub fn handle_retry_after(&mut self, wait: Duration) {
        self.not_before = Some(wait.min(MAX_RETRY_AFTER));
    }

    /// `delay`, shortened so the attempt starts while the last session is resumable.
    fn capped(&mut self, now: Instant, delay: Duration) -> Duration {
        match self.resume_by {
            Some(by) if now < by => delay.min(by.saturating_duration_since(now)),
            Some(_) => {
                self.resume_by = None; // presumed lost: the usual delays apply
                delay
            }
            None => delay,
        }
    }

    /// The connection went down at `now`: resets the sequence if it had been up for at least
    /// `reset_after`.
    pub fn handle_disconnected(&mut self, now: Instant) {
        if let Some(since) = self.connected_since.take() {
            if now.saturating_duration_since(since) >= self.config.reset_after {
                self.reset();
            }
        }
    }

    /// The delay to wait before the next attempt, or `None` to give up.
    pub fn next_delay(&mut self, now: Instant, rng: &mut impl RandomSource) -> Option<Duration> {
        if let Some(max) = self.config.max_attempts {
            if self.attempt >= max {
                return None;
            }
        }
        let first = *self.first_failure.get_or_insert(now);
        let delay = self.delay_for(self.attempt, rng);
        let delay = self.capped(now, delay);
        if let Some(max_elapsed) = self.config.max_elapsed {
            let elapsed = now.saturating_duration_since(first);
            if elapsed.saturating_add(delay) > max_elapsed {
                return None;
            }
        }
        self.attempt = self.attempt.saturating_add(1);
        Some(delay)
    }

    fn delay_for(&self, attempt: u32, rng: &mut impl RandomSource) -> Duration {
        let max = self.config.max_delay.as_secs_f64();
        let multiplier = self.config.multiplier.max(1.0);
        // powi saturates to +inf, which min() then caps; NaN cannot arise from finite >= 1 inputs.
        let exp = i32::try_from(attempt).unwrap_or(i32::MAX);
        let base = (self.config.initial.as_secs_f64() * multiplier.powi(exp)).min(max);
        let delay = match self.config.jitter {
            Jitter::None => base,
            Jitter::Full => base * unit(rng),
            Jitter::Proportional(r) => {
                let r = if r.is_nan() { 0.0 } else { r.clamp(0.0, 1.0) };
                let low = base * (1.0 - r);
                let high = base * (1.0 + r);
                low + (high - low) * unit(rng)
            }
        };
        // try_from_secs_f64 rejects negative/NaN/overflow; none can occur here, but never panic.
        Duration::try_from_secs_f64(delay.clamp(0.0, max)).unwrap_or(self.config.max_delay)
    }
}

/// A uniform value in `[0, 1)` from the top 53 bits of a random `u64`.
/// A uniform value in [0, 1); 0.5 (the nominal delay) if the source fails, since jitter
/// only spreads reconnects out and is not worth failing over.
fn unit(rng: &mut impl RandomSource) -> f64 {
    match rng.next_u64() {
        Ok(v) => (v >> 11) as f64 / (1u64 << 53) as f64,
        Err(_) => 0.5,
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn retry_after_is_delay_seconds_only_and_capped() {
        assert_eq!(parse_retry_after(b"3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after(b" 60 "), Some(Duration::from_secs(60)));
        assert_eq!(parse_retry_after(b"0"), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after(b"99999999999999999999999"),
            Some(MAX_RETRY_AFTER)
        );
        for bad in [
            &b""[..],
            b"-1",
            b"1.5",
            b"Wed, 21 Oct 2015 07:28:00 GMT",
            b"\xff",
        ] {
            assert_eq!(parse_retry_after(bad), None, "{bad:?}");
        }
    }

    /// spec/protocol.md §10.8 [10.8-5]: after a 429 the next attempt waits at least the
    /// server's Retry-After, whatever the backoff and the resume window say; once.
    #[test]
    fn the_next_delay_waits_for_retry_after_once() {
        let config = BackoffConfig {
            initial: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            jitter: Jitter::None,
            ..BackoffConfig::default()
        };
        let mut rng = |b: &mut [u8]| b.fill(0);
        let now = Instant::now();
        let mut b = Backoff::new(config);
        b.handle_resumable(now, Duration::from_secs(4));
        b.handle_retry_after(Duration::from_secs(7));
        assert_eq!(
            b.delay_for_policy(RetryPolicy::Retry, now, &mut rng),
            Some(Duration::from_secs(7))
        );
        // Used up: the sequence goes on as usual.
        assert_eq!(
            b.delay_for_policy(RetryPolicy::Retry, now, &mut rng),
            Some(Duration::from_millis(150))
        );
        b.handle_retry_after(Duration::from_secs(3600));
        assert_eq!(
            b.delay_for_policy(RetryPolicy::RetrySlowly, now, &mut rng),
            Some(MAX_RETRY_AFTER)
        );
        // A Retry-After shorter than the delay changes nothing; Fatal stays fatal.
        b.handle_retry_after(Duration::from_millis(1));
        assert_eq!(b.delay_for_policy(RetryPolicy::Fatal, now, &mut rng), None);
    }

    #[test]
    fn retry_policy_follows_the_spec_table() {
        use super::RetryPolicy::*;
        let p = |c: Option<CloseCode>| RetryPolicy::for_close_code(c);
        assert_eq!(p(None), Retry, "a lost transport is retried");
        for c in [
            CloseCode::GOING_AWAY,
            CloseCode::HANDSHAKE_TIMEOUT,
            CloseCode::HEARTBEAT_TIMEOUT,
            CloseCode::INTERNAL_ERROR,
        ] {
            assert_eq!(p(Some(c)), Retry, "{c}");
        }
        for c in [
            CloseCode::NORMAL,
            CloseCode::REJECTED,
            CloseCode::UNSUPPORTED_VERSION,
            CloseCode::SESSION_REPLACED,
            CloseCode::PROTOCOL_ERROR,
        ] {
            assert_eq!(p(Some(c)), Fatal, "{c}");
        }
        assert_eq!(p(Some(CloseCode::ENHANCE_YOUR_CALM)), RetrySlowly);
        assert_eq!(
            p(Some(CloseCode::from_u(4600))),
            Retry,
            "application codes are retried"
        );
    }

    use super::*;
    use proptest::prelude::*;

    fn no_jitter() -> BackoffConfig {
        BackoffConfig {
            jitter: Jitter::None,
            ..BackoffConfig::default()
        }
    }

    /// SplitMix64, a fixed-seed source for tests.
    fn seeded(mut state: u64) -> impl FnMut(&mut [u8]) {
        move |buf: &mut [u8]| {
            for chunk in buf.chunks_mut(8) {
                state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = state;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                let z = z ^ (z >> 31);
                chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
            }
        }
    }

    #[test]
    fn sequence_without_jitter_grows_then_caps() {
        let mut b = Backoff::new(no_jitter());
        let now = Instant::now();
        let mut rng = |b: &mut [u8]| b.fill(0);
        let got: Vec<u128> = (0..12)
            .map(|_| b.next_delay(now, &mut rng).unwrap().as_millis())
            .collect();
        assert_eq!(
            got,
            [500, 750, 1125, 1687, 2531, 3796, 5695, 8542, 12814, 19221, 28832, 30000]
        );
        assert_eq!(b.attempt(), 12);
    }

    #[test]
    fn max_attempts_gives_up() {
        let mut b = Backoff::new(BackoffConfig {
            max_attempts: Some(2),
            ..no_jitter()
        });
        let now = Instant::now();
        assert!(b.next_delay(now, &mut |b: &mut [u8]| b.fill(0)).is_some());
        assert!(b.next_delay(now, &mut |b: &mut [u8]| b.fill(0)).is_some());
        assert_eq!(b.next_delay(now, &mut |b: &mut [u8]| b.fill(0)), None);
        b.reset();
        assert!(b.next_delay(now, &mut |b: &mut [u8]| b.fill(0)).is_some());
    }

    #[test]
    fn max_elapsed_gives_up() {
        let mut b = Backoff::new(BackoffConfig {
            max_elapsed: Some(Duration::from_secs(2)),
            ..no_jitter()
        });
        let t0 = Instant::now();
        assert_eq!(
            b.next_delay(t0, &mut |b: &mut [u8]| b.fill(0)),
            Some(Duration::from_millis(500))
        );
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(
            b.next_delay(t1, &mut |b: &mut [u8]| b.fill(0)),
            Some(Duration::from_millis(750))
        );
        // 1.25 s elapsed + 1.125 s > 2 s.
        let t2 = t1 + Duration::from_millis(750);
        assert_eq!(b.next_delay(t2, &mut |b: &mut [u8]| b.fill(0)), None);
    }

    #[test]
    fn stable_connection_resets_short_one_does_not() {
        let mut b = Backoff::new(no_jitter());
        let t0 = Instant::now();
        b.next_delay(t0, &mut |b: &mut [u8]| b.fill(0));
        b.next_delay(t0, &mut |b: &mut [u8]| b.fill(0));
        b.handle_connected(t0);
        b.handle_disconnected(t0 + Duration::from_secs(1));
        assert_eq!(b.attempt(), 2, "a short connection keeps the sequence");
        b.handle_connected(t0);
        b.handle_disconnected(t0 + Duration::from_secs(10));
        assert_eq!(b.attempt(), 0, "a stable connection resets it");
        assert_eq!(
            b.next_delay(t0, &mut |b: &mut [u8]| b.fill(0)),
            Some(Duration::from_millis(500))
        );
    }

    #[test]
    fn fixed_seed_gives_fixed_sequence() {
        let run = || {
            let mut b = Backoff::new(BackoffConfig::default());
            let mut rng = seeded(42);
            let now = Instant::now();
            (0..20)
                .map(|_| b.next_delay(now, &mut rng).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
    }

    /// spec/protocol.md §9.5: after 4007 (the longest delay, 30 s, equal to the default
    /// resume window) the client still comes back while its session is resumable.
    #[test]
    fn no_delay_outlasts_the_resume_window() {
        let window = Duration::from_secs(30);
        let mut b = Backoff::new(BackoffConfig::default());
        let mut rng = seeded(7);
        let t0 = Instant::now();
        b.handle_connected(t0);
        let ended = t0 + Duration::from_secs(3);
        b.handle_disconnected(ended);
        b.handle_resumable(ended, window);
        let d = b
            .delay_for_policy(RetryPolicy::RetrySlowly, ended, &mut rng)
            .unwrap();
        assert_eq!(d, Duration::from_secs(25), "30 s window - 5 s margin");
        // Without a session the slow delay is the longest one.
        let mut plain = Backoff::new(BackoffConfig::default());
        assert_eq!(
            plain.delay_for_policy(RetryPolicy::RetrySlowly, ended, &mut rng),
            Some(Duration::from_secs(30))
        );
        // Every later attempt within the window also starts before its end.
        let mut b = Backoff::new(no_jitter());
        b.handle_resumable(t0, window);
        let mut now = t0;
        for _ in 0..20 {
            let d = b.next_delay(now, &mut rng).unwrap();
            if now < t0 + Duration::from_secs(25) {
                assert!(now + d <= t0 + Duration::from_secs(25), "{now:?} + {d:?}");
            }
            now += d;
        }
        // Past the cap the session is presumed lost: the usual sequence goes on.
        assert_eq!(b.next_delay(now, &mut rng), Some(Duration::from_secs(30)));
        // A short window: the margin is a quarter of it.
        let mut b = Backoff::new(BackoffConfig::default());
        b.handle_resumable(t0, Duration::from_secs(2));
        assert_eq!(
            b.delay_for_policy(RetryPolicy::RetrySlowly, t0, &mut rng),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(b.delay_for_policy(RetryPolicy::Fatal, t0, &mut rng), None);
        // A new connection ends the cap.
        b.handle_connected(t0);
        assert_eq!(
            b.delay_for_policy(RetryPolicy::RetrySlowly, t0, &mut rng),
            Some(Duration::from_secs(30))
        );
    }

    proptest! {
        #[test]
        fn jitter_stays_in_bounds(seed: u64, attempts in 1usize..40, r in 0.0f64..=1.0, full: bool) {
            let jitter = if full { Jitter::Full } else { Jitter::Proportional(r) };
            let config = BackoffConfig { jitter, ..BackoffConfig::default() };
            let mut plain = Backoff::new(BackoffConfig { jitter: Jitter::None, ..config.clone() });
            let mut b = Backoff::new(config.clone());
            let mut rng = seeded(seed);
            let now = Instant::now();
            for _ in 0..attempts {
                let base = plain.next_delay(now, &mut |b: &mut [u8]| b.fill(0)).unwrap().as_secs_f64();
                let d = b.next_delay(now, &mut rng).unwrap().as_secs_f64();
                prop_assert!(d <= config.max_delay.as_secs_f64());
                let (low, high) = if full { (0.0, base) } else { (base * (1.0 - r), base * (1.0 + r)) };
                // 1 µs slack for float rounding.
                prop_assert!(d >= low - 1e-6 && d <= high + 1e-6, "{d} not in [{low}, {high}]");
            }
        }
    }
}
