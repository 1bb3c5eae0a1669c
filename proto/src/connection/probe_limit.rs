//! The limit on probes a peer may send (spec/protocol.md §8.5).
//!
//! Every probe costs an answer; a peer that floods them can keep one connection's task
//! busy without sending anything else. The count runs over fixed windows of
//! [`PROBE_WINDOW`]: the first probe opens a window, the first probe at or after its end
//! opens the next one.

use std::time::{Duration, Instant};

/// The window over which probes are counted (spec/protocol.md §8.5).
pub const PROBE_WINDOW: Duration = Duration::from_secs(10);

/// Default number of probes (WebSocket Pings and PING frames together) a peer may send
/// per [`PROBE_WINDOW`] (spec/protocol.md §8.5).
pub const DEFAULT_MAX_PROBES: u32 = 1_000;

/// Counts a peer's probes in fixed windows of [`PROBE_WINDOW`]. The [`Connection`](super::Connection)
/// uses it for its peer's Pings; plain WebSocket servers (the demo and
/// echo servers) use it for theirs.
///
/// ```
/// use std::time::Instant;
/// use tether_proto::connection::ProbeLimit;
///
/// let now = Instant::now();
/// let mut limit = ProbeLimit::default();
/// assert!(limit.record(2, now));
/// assert!(limit.record(2, now));
/// assert!(!limit.record(2, now)); // the third within the window is one too many
/// ```
#[derive(Debug, Clone, Default)]
pub struct ProbeLimit {
    window_start: Option<Instant>,
    count: u32,
}

impl ProbeLimit {
    /// Records one probe received at `now`; `false` when it is one more than `limit` in the
    /// current window.
    pub fn record(&mut self, limit: u32, now: Instant) -> bool {
        match self.window_start {
            Some(start) if now.saturating_duration_since(start) < PROBE_WINDOW => {
                self.count = self.count.saturating_add(1);
            }
            _ => {
                self.window_start = Some(now);
                self.count = 1;
            }
        }
        self.count <= limit
    }
}

/// The limit in force: the configured one, raised to twice the probes the negotiated
/// heartbeat interval makes a correct peer send in a window (spec/protocol.md §8.5).
pub(super) fn effective_limit(configured: u32, interval: Option<Duration>) -> u32 {
    let heartbeat = match interval {
        Some(i) if !i.is_zero() => {
            let per_window = PROBE_WINDOW.as_nanos() / i.as_nanos();
            u32::try_from(per_window.saturating_mul(2)).unwrap_or(u32::MAX)
        }
        _ => 0,
    };
    configured.max(heartbeat)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_after_the_limit_within_a_window_is_refused() {
        let t0 = Instant::now();
        let mut p = ProbeLimit::default();
        for i in 0..3 {
            assert!(p.record(3, t0 + Duration::from_millis(i)));
        }
        assert!(!p.record(3, t0 + Duration::from_millis(9_999)));
    }

    #[test]
    fn a_new_window_starts_the_count_again() {
        let t0 = Instant::now();
        let mut p = ProbeLimit::default();
        for _ in 0..3 {
            assert!(p.record(3, t0));
        }
        assert!(p.record(3, t0 + PROBE_WINDOW));
        assert!(p.record(3, t0 + PROBE_WINDOW));
    }

    #[test]
    fn a_short_heartbeat_interval_raises_the_limit() {
        assert_eq!(effective_limit(1_000, None), 1_000);
        assert_eq!(effective_limit(1_000, Some(Duration::from_secs(10))), 1_000);
        assert_eq!(
            effective_limit(1_000, Some(Duration::from_millis(5))),
            4_000
        );
        assert_eq!(effective_limit(10, Some(Duration::ZERO)), 10);
    }
}
