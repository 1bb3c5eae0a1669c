//! Sans-IO cool-down for addresses whose connections a server closed for abuse
//! (spec/protocol.md §10.8 "Reconnecting abusers", §11).
//!
//! A connection closed with 4007 ENHANCE_YOUR_CALM for stream churn, a probe flood or
//! replies the peer does not read bounds what one connection can cost, but nothing bounds
//! a peer that opens a new connection at once after each 4007. [`AbuseTable`] remembers,
//! per remote address, the abuse closes the server sent: after one, the address is refused
//! new connections for a cool-down that doubles with each repeat (1 s, 2 s, 4 s … at most
//! 60 s by default) and is forgotten after a quiet period (5 min by default) past the end
//! of its last cool-down.
//!
//! The table does no I/O and reads no clock: `now` comes in as an argument. Expiry is lazy
//! (on lookup, and when the table is full), so it needs no timer. Its size is bounded by
//! [`CooldownConfig::capacity`]; when full, the entry whose cool-down ends first is evicted,
//! so a peer cannot erase a longer penalty of another address by creating entries of its
//! own: each entry costs it an abuse close, and it can only push out penalties that end
//! sooner than every other one.
//!
//! IPv6 addresses are keyed by their /64 prefix (one host usually owns a whole /64), and
//! IPv4-mapped IPv6 addresses by their IPv4 address.
//!
//! ```
//! use std::net::IpAddr;
//! use std::time::{Duration, Instant};
//! use tether_proto::abuse::{AbuseTable, CooldownConfig};
//!
//! let mut table = AbuseTable::new(CooldownConfig::default());
//! let addr: IpAddr = "192.0.2.7".parse().unwrap();
//! let t0 = Instant::now();
//! assert!(table.check(addr, t0).is_ok());
//! table.record(addr, t0); // the server closed one of its connections with 4007
//! assert_eq!(table.check(addr, t0).unwrap_err().0, Duration::from_secs(1));
//! assert!(table.check(addr, t0 + Duration::from_secs(1)).is_ok());
//! ```

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

/// Settings of an [`AbuseTable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CooldownConfig {
    /// Cool-down after the first abuse close (default 1 s).
    pub initial: Duration,
    /// Longest cool-down (default 60 s); each repeat doubles the previous one up to this.
    pub max: Duration,
    /// An address with no abuse close for this long after its last cool-down ended starts
    /// again at [`initial`](Self::initial) (default 5 min).
    pub forget_after: Duration,
    /// Addresses remembered at most (default 10 000; at least 1).
    pub capacity: usize,
}

impl Default for CooldownConfig {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            forget_after: Duration::from_secs(300),
            capacity: 10_000,
        }
    }
}

impl CooldownConfig {
    /// The defaults with another first and longest cool-down (`max` is raised to `initial`
    /// if below it).
    pub fn with_range(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max: max.max(initial),
            ..Self::default()
        }
    }

    /// The cool-down after the `strikes`-th abuse close in a row (1-based).
    fn cooldown(&self, strikes: u32) -> Duration {
        let shift = strikes.saturating_sub(1).min(31);
        self.initial
            .checked_mul(1u32 << shift)
            .unwrap_or(self.max)
            .min(self.max)
    }
}

/// Whether a connection that failed with `error` ended in an abuse close this side sent:
/// 4007 ENHANCE_YOUR_CALM for stream churn, a probe flood or unread replies (§8.5, §10.8).
/// Only these are recorded in an [`AbuseTable`]; a HELLO refused with 4007 because the
/// server's session store is full is an orderly close, not a failure, and is not one.
pub fn is_abuse_close(error: &crate::ConnectionError) -> bool {
    error.initiator() == crate::Initiator::Local
        && error.close_code() == Some(crate::CloseCode::ENHANCE_YOUR_CALM)
}

/// How long a refused address must wait before its next connection is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("address in abuse cool-down; retry after {0:?}")]
pub struct RetryAfter(pub Duration);

impl RetryAfter {
    /// The wait in whole seconds, rounded up (for an HTTP `Retry-After` header), at least 1.
    pub fn seconds(&self) -> u64 {
        let d = self.0;
        d.as_secs()
            .saturating_add(u64::from(d.subsec_nanos() > 0))
            .max(1)
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Abuse closes in a row, without a quiet period between them.
    strikes: u32,
    /// End of the current cool-down; `None` when it lies beyond what the clock can
    /// represent (a configured cool-down near `Duration::MAX`): refused for good.
    until: Option<Instant>,
}

/// Whether `entry` no longer matters at `now`: its cool-down and then `forget_after`
/// passed. An end beyond the clock is never reached.
fn forgotten(entry: &Entry, forget_after: Duration, now: Instant) -> bool {
    entry
        .until
        .and_then(|until| until.checked_add(forget_after))
        .is_some_and(|forget_at| now >= forget_at)
}

/// Per-address record of recent abuse closes (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct AbuseTable {
    config: CooldownConfig,
    entries: HashMap<IpAddr, Entry>,
}

/// The key an address is remembered under: IPv4 as it is, IPv6 by its /64 prefix.
fn key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

impl AbuseTable {
    /// An empty table.
    pub fn new(config: CooldownConfig) -> Self {
        Self {
            config,
            entries: HashMap::new(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &CooldownConfig {
        &self.config
    }

    /// Addresses remembered now (including ones whose record has expired but was not
    /// looked up since).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no address is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether an entry no longer matters at `now`: its cool-down and quiet period passed.
    fn forgotten(&self, entry: &Entry, now: Instant) -> bool {
        forgotten(entry, self.config.forget_after, now)
    }

    /// Whether a new connection from `addr` may be accepted at `now`; if not, how long
    /// until it may.
    pub fn check(&mut self, addr: IpAddr, now: Instant) -> Result<(), RetryAfter> {
        let key = key(addr);
        let Some(entry) = self.entries.get(&key).copied() else {
            return Ok(());
        };
        if self.forgotten(&entry, now) {
            self.entries.remove(&key);
            return Ok(());
        }
        match entry.until {
            Some(until) if now >= until => Ok(()),
            Some(until) => Err(RetryAfter(until - now)),
            None => Err(RetryAfter(Duration::MAX)),
        }
    }

    /// The server closed a connection from `addr` for abuse at `now`: starts its next
    /// cool-down (twice the previous one, within the configured range) and returns it.
    pub fn record(&mut self, addr: IpAddr, now: Instant) -> Duration {
        let key = key(addr);
        let strikes = match self.entries.get(&key) {
            Some(entry) if !self.forgotten(entry, now) => entry.strikes.saturating_add(1),
            _ => 1,
        };
        if !self.entries.contains_key(&key) && self.entries.len() >= self.config.capacity.max(1) {
            self.evict(now);
        }
        let cooldown = self.config.cooldown(strikes);
        self.entries.insert(
            key,
            Entry {
                strikes,
                until: now.checked_add(cooldown),
            },
        );
        cooldown
    }

    /// Makes room for one entry: drops every forgotten entry, or else the one whose
    /// cool-down ends first.
    fn evict(&mut self, now: Instant) {
        let forget_after = self.config.forget_after;
        self.entries.retain(|_, e| !forgotten(e, forget_after, now));
        if self.entries.len() < self.config.capacity.max(1) {
            return;
        }
        let first = self
            .entries
            .iter()
            // Cool-downs without an end go last.
            .min_by_key(|(_, e)| (e.until.is_none(), e.until))
            .map(|(k, _)| *k);
        if let Some(k) = first {
            self.entries.remove(&k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn unknown_address_is_accepted() {
        let mut t = AbuseTable::new(CooldownConfig::default());
        assert_eq!(t.check(ip("10.0.0.1"), Instant::now()), Ok(()));
    }

    #[test]
    fn cooldown_doubles_then_caps() {
        let mut t = AbuseTable::new(CooldownConfig::default());
        let a = ip("10.0.0.1");
        let mut now = Instant::now();
        let mut seen = Vec::new();
        for _ in 0..9 {
            let d = t.record(a, now);
            seen.push(d.as_secs());
            // Refused until exactly the end of the cool-down.
            assert_eq!(t.check(a, now), Err(RetryAfter(d)));
            assert_eq!(
                t.check(a, now + d - Duration::from_millis(1)),
                Err(RetryAfter(Duration::from_millis(1)))
            );
            now += d;
            assert_eq!(t.check(a, now), Ok(()));
            // The attacker comes back at once and is closed again 100 ms later.
            now += Duration::from_millis(100);
        }
        assert_eq!(seen, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }

    #[test]
    fn resets_after_a_quiet_period() {
        let cfg = CooldownConfig::default();
        let mut t = AbuseTable::new(cfg);
        let a = ip("10.0.0.1");
        let t0 = Instant::now();
        assert_eq!(t.record(a, t0), S);
        assert_eq!(t.record(a, t0 + S), 2 * S);
        // Just before the quiet period ends, a repeat still doubles.
        let end = t0 + 3 * S;
        assert_eq!(t.record(a, end + cfg.forget_after - S), 4 * S);
        // A full quiet period after that cool-down ended: back to the first cool-down.
        let end = end + cfg.forget_after - S + 4 * S;
        assert_eq!(t.check(a, end + cfg.forget_after), Ok(()));
        assert!(t.is_empty(), "a lookup drops the forgotten entry");
        assert_eq!(t.record(a, end + cfg.forget_after), S);
    }

    #[test]
    fn addresses_are_independent_and_ipv6_is_keyed_by_prefix() {
        let mut t = AbuseTable::new(CooldownConfig::default());
        let now = Instant::now();
        t.record(ip("127.0.0.1"), now);
        assert!(t.check(ip("127.0.0.1"), now).is_err());
        assert_eq!(t.check(ip("127.0.0.2"), now), Ok(()));
        t.record(ip("2001:db8:1:2::1"), now);
        assert!(t.check(ip("2001:db8:1:2:ffff::9"), now).is_err());
        assert_eq!(t.check(ip("2001:db8:1:3::1"), now), Ok(()));
        assert!(t.check(ip("::ffff:127.0.0.1"), now).is_err());
    }

    #[test]
    fn capacity_is_bounded_and_evicts_the_penalty_that_ends_first() {
        let cfg = CooldownConfig {
            capacity: 3,
            ..CooldownConfig::default()
        };
        let mut t = AbuseTable::new(cfg);
        let now = Instant::now();
        // A persistent abuser with a long penalty.
        let long = ip("10.0.0.1");
        for _ in 0..6 {
            t.record(long, now);
        }
        assert_eq!(t.check(long, now), Err(RetryAfter(32 * S)));
        // Many new addresses, each closed once: the table never grows past 3 and the
        // long penalty survives; the newest first-time entries push out each other.
        for i in 0..100u8 {
            t.record(
                IpAddr::from([10, 1, 0, i]),
                now + Duration::from_millis(u64::from(i)),
            );
            assert!(t.len() <= 3);
            assert!(t.check(long, now).is_err(), "round {i}");
        }
        assert!(t.check(ip("10.1.0.99"), now + S / 2).is_err());
        assert_eq!(t.check(ip("10.1.0.0"), now), Ok(()), "evicted");
    }

    #[test]
    fn forgotten_entries_are_evicted_before_live_ones() {
        let cfg = CooldownConfig {
            capacity: 2,
            ..CooldownConfig::default()
        };
        let mut t = AbuseTable::new(cfg);
        let t0 = Instant::now();
        t.record(ip("10.0.0.1"), t0);
        let later = t0 + S + cfg.forget_after;
        t.record(ip("10.0.0.2"), later);
        t.record(ip("10.0.0.3"), later);
        assert_eq!(t.len(), 2);
        assert!(t.check(ip("10.0.0.2"), later).is_err());
        assert!(t.check(ip("10.0.0.3"), later).is_err());
    }

    #[test]
    fn only_abuse_closes_this_side_sent_count() {
        use crate::connection::ConnectionError;
        use crate::CloseCode;
        let flood = ConnectionError::ProbeFlood {
            limit: 10,
            window: S,
        };
        assert!(is_abuse_close(&flood));
        let peer = ConnectionError::PeerClosed {
            code: CloseCode::ENHANCE_YOUR_CALM,
            reason: String::new(),
        };
        assert!(
            !is_abuse_close(&peer),
            "the peer's 4007 is not our abuse close"
        );
        assert!(!is_abuse_close(&ConnectionError::TransportLost));
        assert!(!is_abuse_close(&ConnectionError::HeartbeatTimeout(S)));
    }

    #[test]
    fn retry_after_seconds_round_up() {
        assert_eq!(RetryAfter(Duration::from_millis(1)).seconds(), 1);
        assert_eq!(RetryAfter(Duration::from_millis(1001)).seconds(), 2);
        assert_eq!(RetryAfter(2 * S).seconds(), 2);
        assert_eq!(RetryAfter(Duration::ZERO).seconds(), 1);
    }

    /// Cool-downs and quiet periods beyond what `Instant` can represent are refusals for
    /// good, never a panic (issue 10 §4).
    #[test]
    fn durations_beyond_the_clock_never_panic() {
        let cfg = CooldownConfig {
            initial: Duration::MAX,
            max: Duration::MAX,
            forget_after: Duration::MAX,
            capacity: 1,
        };
        let mut t = AbuseTable::new(cfg);
        let now = Instant::now();
        let a = ip("10.0.0.1");
        assert_eq!(t.record(a, now), Duration::MAX);
        let refused = t.check(a, now).unwrap_err();
        assert_eq!(refused.0, Duration::MAX);
        assert_eq!(refused.seconds(), u64::MAX);
        // A second address evicts nothing it cannot, and nothing panics.
        t.record(ip("10.0.0.2"), now);
        assert!(t.check(ip("10.0.0.2"), now).is_err());
        assert_eq!(RetryAfter(Duration::MAX).seconds(), u64::MAX);
    }
}
