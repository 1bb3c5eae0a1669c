//! The connection's timers: one enum, one fixed table (spec/protocol.md §7.5, §8.3,
//! §10.7).
//!
//! Every deadline of a [`Connection`](super::Connection) lives here, so that
//! `poll_timeout` is a minimum over four slots, whatever the connection is doing.

use std::time::Instant;

/// One deadline of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Timer {
    /// The handshake must be complete by then (§7.5).
    Handshake = 0,
    /// Send a heartbeat probe: nothing was received for this side's probe delay (§8.2).
    Probe = 1,
    /// The peer is dead: nothing was received for the heartbeat timeout (§8.3).
    Idle = 2,
    /// A graceful close gives up waiting for the streams in flight and closes (§10.7).
    Drain = 3,
}

impl Timer {
    const COUNT: usize = 4;
}

/// A deadline per [`Timer`], `None` when the timer is stopped.
#[derive(Debug, Clone, Default)]
pub(super) struct TimerTable {
    data: [Option<Instant>; Timer::COUNT],
}

impl TimerTable {
    pub(super) fn set(&mut self, timer: Timer, deadline: Instant) {
        self.data[timer as usize] = Some(deadline);
    }

    /// Sets `timer` to `deadline`, or stops it when there is none (a deadline too far
    /// to represent is never reached: spec/protocol.md §5).
    pub(super) fn set_or_stop(&mut self, timer: Timer, deadline: Option<Instant>) {
        self.data[timer as usize] = deadline;
    }

    pub(super) fn get(&self, timer: Timer) -> Option<Instant> {
        self.data[timer as usize]
    }

    pub(super) fn stop(&mut self, timer: Timer) {
        self.data[timer as usize] = None;
    }

    pub(super) fn stop_all(&mut self) {
        self.data = [None; Timer::COUNT];
    }

    /// Whether `timer` is running and its deadline is at or before `now`.
    pub(super) fn is_expired(&self, timer: Timer, now: Instant) -> bool {
        self.get(timer).is_some_and(|deadline| deadline <= now)
    }

    /// The earliest running deadline.
    pub(super) fn next_timeout(&self) -> Option<Instant> {
        self.data.iter().flatten().min().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn next_timeout_is_the_minimum_of_running_timers() {
        let t0 = Instant::now();
        let mut table = TimerTable::default();
        assert_eq!(table.next_timeout(), None);
        table.set(Timer::Idle, t0 + Duration::from_secs(3));
        table.set(Timer::Handshake, t0 + Duration::from_secs(1));
        assert_eq!(table.next_timeout(), Some(t0 + Duration::from_secs(1)));
        assert!(table.is_expired(Timer::Handshake, t0 + Duration::from_secs(1)));
        assert!(!table.is_expired(Timer::Idle, t0 + Duration::from_secs(1)));
        assert!(!table.is_expired(Timer::Probe, t0 + Duration::from_secs(9)));
        table.stop(Timer::Handshake);
        assert_eq!(table.next_timeout(), Some(t0 + Duration::from_secs(3)));
        table.stop_all();
        assert_eq!(table.next_timeout(), None);
    }
}
