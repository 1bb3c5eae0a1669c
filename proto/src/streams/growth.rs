//! Receive windows that grow when they, and not the reader, limit the rate
//! (spec/protocol.md §10.3.1). Nothing of this is on the wire: a receiver only grants
//! more than it consumed.
//!
//! A window that the peer uses up within one round trip holds the sender back: the bytes
//! in flight can never exceed it, so a 256 KiB window over a 50 ms path caps a body at
//! about 5 MiB/s whatever the link. At each grant at least a round trip after the last
//! decision, the receiver looks at the rate its reader consumed at since then; when a
//! whole window would be consumed at that rate in less than two round trips (the window
//! is below twice the bytes that rate moves per round trip), the window doubles, up to
//! its maximum, and for the connection window only as far as the process-wide
//! [`RecvBudget`](super::RecvBudget) allows. Over loopback, where a round trip is tens of
//! microseconds, windows grow once or twice at most.
//!
//! The round trip is measured from the grants themselves: a DATA frame carrying a byte
//! beyond what the peer was allowed before a grant cannot have left the peer before that
//! grant reached it, so the time from the grant to that frame is at least one round trip.
//! The smallest such time seen on the connection is its estimate.

use std::time::{Duration, Instant};

/// The growth state of one receive window (a stream's or the connection's).
#[derive(Debug, Clone)]
pub(crate) struct Growth {
    /// The window's size: what the receiver keeps granted ahead of what it consumed.
    size: u32,
    /// The timing of the reader's rate: when it began (a grant), and the bytes consumed
    /// and granted back since (growth not counted).
    timing: Option<(Instant, u64)>,
    /// A round-trip probe: the bytes the peer could still send without the grant (the
    /// window left before it), counted down as DATA arrives, and when the grant went out.
    probe: Option<(u32, Instant)>,
}

impl Growth {
    pub(crate) fn new(size: u32) -> Self {
        Growth {
            size,
            timing: None,
            probe: None,
        }
    }

    /// The window's size now.
    pub(crate) fn size(&self) -> u32 {
        self.size
    }

    /// A DATA frame of `len` bytes arrived at `now`: a round-trip sample when it carries a
    /// byte beyond what the peer could send without the probe's grant.
    pub(crate) fn on_data(&mut self, len: u32, now: Option<Instant>) -> Option<Duration> {
        let (left, at) = self.probe.as_mut()?;
        if len <= *left {
            *left -= len;
            return None;
        }
        let at = *at;
        self.probe = None;
        now.map(|now| now.saturating_duration_since(at))
    }

    /// A grant of `consumed` bytes the reader consumed goes out at `now`; before it the
    /// peer could send `left` more bytes. Whether the window should grow: at least a round
    /// trip has passed since the last decision, and at the rate the reader consumed at
    /// since then a whole window takes less than two round trips.
    pub(crate) fn on_grant(
        &mut self,
        consumed: u32,
        left: u32,
        now: Option<Instant>,
        rtt: Option<Duration>,
    ) -> bool {
        let Some(now) = now else {
            return false;
        };
        if self.probe.is_none() {
            self.probe = Some((left, now));
        }
        // What the first grant of a timing gives back was consumed before it began.
        let (Some((began, since)), Some(rtt)) = (self.timing.as_mut(), rtt) else {
            self.timing = Some((now, 0));
            return false;
        };
        *since += u64::from(consumed);
        let span = now.saturating_duration_since(*began);
        if span < rtt || span.is_zero() {
            return false;
        }
        // bytes / span > size / (2 rtt), without dividing.
        let bytes = u128::from(*since);
        self.timing = Some((now, 0));
        bytes * rtt.saturating_mul(2).as_nanos() > u128::from(self.size) * span.as_nanos()
    }

    /// How much the window may grow toward `max`: its size again (doubling), or what is
    /// left below `max`.
    pub(crate) fn headroom(&self, max: u32) -> u32 {
        self.size.min(max.saturating_sub(self.size))
    }

    /// The window grows by `extra`.
    pub(crate) fn grow(&mut self, extra: u32) {
        self.size += extra;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_consumed_within_two_round_trips_doubles_and_the_rest_do_not() {
        let t0 = Instant::now();
        let ms = |n: u64| Some(t0 + Duration::from_millis(n));
        let rtt = Some(Duration::from_millis(20));
        let mut g = Growth::new(1000);
        // The first grant begins the timing (what it grants was consumed before).
        assert!(!g.on_grant(500, 1000, ms(10), rtt));
        assert!(
            !g.on_grant(500, 1500, ms(29), rtt),
            "less than a round trip later"
        );
        // 600 bytes in 20 ms: a whole window in 33 ms, less than two round trips.
        assert!(g.on_grant(100, 1600, ms(30), rtt));
        assert_eq!(g.headroom(1500), 500, "never above the maximum");
        assert_eq!(g.headroom(10_000), 1000, "doubles");
        g.grow(1000);
        assert_eq!(g.size(), 2000);
        // 2000 bytes in 40 ms: a window of the new size in exactly two round trips.
        assert!(!g.on_grant(2000, 3500, ms(70), rtt));
        // 2001 bytes in 40 ms: just under.
        assert!(g.on_grant(2001, 5501, ms(110), rtt));
        // A burst after a long pause is slow on average: no growth.
        assert!(!g.on_grant(2000, 7501, ms(1110), rtt));
        // Without an estimate, or a clock, there is no decision.
        assert!(!g.on_grant(4000, 9000, ms(1130), None));
        assert!(!g.on_grant(4000, 9000, None, rtt));
    }

    #[test]
    fn the_first_byte_beyond_the_old_limit_times_a_round_trip() {
        let t0 = Instant::now();
        let at = |n: u64| Some(t0 + Duration::from_millis(n));
        let mut g = Growth::new(1000);
        assert_eq!(g.on_data(500, at(1)), None, "no probe yet");
        g.on_grant(500, 500, at(5), None); // the peer may send 500 more without it
        g.on_grant(500, 500, at(6), None); // the probe of the first grant stays
        assert_eq!(g.on_data(300, at(7)), None, "within the old limit");
        assert_eq!(g.on_data(200, at(8)), None, "up to it");
        assert_eq!(g.on_data(1, at(25)), Some(Duration::from_millis(20)));
        assert_eq!(g.on_data(1000, at(26)), None, "one sample per probe");
    }
}
