//! When a connection's task wakes for its machine's next deadline.
//!
//! Every idle connection has a heartbeat deadline about one interval away (spec/protocol.md
//! §8.2), and each connection's lies at its own phase: 10,000 connections with a 10 s
//! heartbeat put a timer in every millisecond, so a runtime woken at each would wake a
//! thousand times a second, park and unpark its workers as often, and handle one
//! connection per wake. Waking a little late, on a boundary shared by the whole process,
//! lets the timers that fall between two boundaries fire together: one wake of the runtime
//! for all of them.
//!
//! The lateness is bounded by the wait: at most 1/16 of it and at most 256 ms (a probe due
//! in 10 s goes out up to 256 ms late; a deadline 100 ms away is at most 4 ms late; one
//! closer than 32 ms is not moved). The machine's deadline is still checked against the
//! clock after the wake ([`next_input`](super::next_input)): waking late delays a timer, it
//! never fires one early.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The longest a wake is put off.
const MAX_LATENESS: Duration = Duration::from_millis(256);

/// The process-wide origin of the boundaries.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// The instant to wake at for `deadline`, seen at `now`: `deadline` itself when it is
/// near, else the first boundary after it of a grid of 2^k ms, the coarsest whose step is
/// at most a sixteenth of the wait (and at most [`MAX_LATENESS`]).
pub(crate) fn wake_at(deadline: Instant, now: Instant) -> Instant {
    let epoch = epoch();
    let wait = deadline.saturating_duration_since(now);
    let step_ms = (millis(wait) / 16).min(millis(MAX_LATENESS));
    if step_ms < 2 || deadline < epoch {
        return deadline;
    }
    // The largest power of two not above step_ms.
    let step = 1u64 << (63 - step_ms.leading_zeros());
    let since = millis(deadline.duration_since(epoch));
    let boundary = (since / step).saturating_add(1).saturating_mul(step);
    epoch
        .checked_add(Duration::from_millis(boundary))
        .unwrap_or(deadline)
}

/// Whether a wake armed at `wake` still serves `deadline`, seen at `now`: not before it,
/// and no later than [`wake_at`] allows (a sixteenth of the wait, [`MAX_LATENESS`]).
///
/// A busy connection's deadline moves a little later with every message it receives (the
/// heartbeat waits for inbound silence, spec/protocol.md §8.2), while the wake armed for it
/// stays on its boundary: this check (two subtractions) keeps that wake without computing
/// it again (about 200 instructions a time, twice per small request at each end).
pub(crate) fn keeps(wake: Instant, deadline: Instant, now: Instant) -> bool {
    if wake < deadline {
        return false;
    }
    let late = wake.duration_since(deadline);
    late <= MAX_LATENESS && late.saturating_mul(16) <= deadline.saturating_duration_since(now)
}

/// Whole milliseconds, in 64 bits (`Duration::as_millis` divides in 128; this runs once per
/// wait of every run loop).
fn millis(d: Duration) -> u64 {
    d.as_secs()
        .saturating_mul(1000)
        .saturating_add(u64::from(d.subsec_millis()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_far_deadline_wakes_on_a_shared_boundary_a_little_late() {
        let now = Instant::now();
        let ms = Duration::from_millis;
        // Deadlines 10 s away, a few ms apart: one wake for all of them.
        let wakes: Vec<Instant> = (0..5).map(|i| wake_at(now + ms(10_000 + i), now)).collect();
        for (i, wake) in wakes.iter().enumerate() {
            let deadline = now + ms(10_000 + i as u64);
            assert!(*wake > deadline);
            assert!(*wake - deadline <= MAX_LATENESS);
            // On the 256 ms grid of the process.
            assert_eq!(wake.duration_since(epoch()).as_millis() % 256, 0);
        }
        assert!(wakes.windows(2).filter(|w| w[0] != w[1]).count() <= 1);
    }

    #[test]
    fn a_wake_is_kept_while_it_is_neither_early_nor_too_late() {
        let now = Instant::now();
        let ms = Duration::from_millis;
        // What wake_at gives is kept for its deadline, near or far.
        for wait_ms in [0, 1, 31, 32, 100, 999, 4_000, 10_000, 3_600_000] {
            let deadline = now + ms(wait_ms);
            assert!(keeps(wake_at(deadline, now), deadline, now), "{wait_ms} ms");
        }
        // A deadline that moved later, up to the wake: kept; past it: not (it would wake
        // early, which is harmless, but a wake that is always early is a wasted one).
        let deadline = now + ms(10_000);
        let wake = wake_at(deadline, now);
        assert!(keeps(wake, deadline + (wake - deadline) / 2, now));
        assert!(keeps(wake, wake, now));
        assert!(!keeps(wake, wake + ms(1), now));
        // A deadline that moved earlier: kept only while the wake is late by at most a
        // sixteenth of the wait and MAX_LATENESS.
        let wake = now + ms(10_000);
        assert!(keeps(wake, wake - ms(200), now));
        // More than MAX_LATENESS late:
        assert!(!keeps(wake, wake - ms(300), now));
        // 10 ms late on a 90 ms wait, then 5 ms on 95 (within a sixteenth):
        assert!(!keeps(now + ms(100), now + ms(90), now));
        assert!(keeps(now + ms(100), now + ms(95), now));
        // Time passing shrinks the wait, and with it what lateness is allowed.
        let (deadline, wake) = (now + ms(1_000), now + ms(1_050));
        assert!(keeps(wake, deadline, now));
        assert!(!keeps(wake, deadline, now + ms(500)));
    }

    #[test]
    fn the_lateness_is_at_most_a_sixteenth_of_the_wait() {
        let now = Instant::now();
        for wait_ms in [0, 1, 20, 31, 32, 50, 100, 999, 4_000, 10_000, 3_600_000] {
            let deadline = now + Duration::from_millis(wait_ms);
            let wake = wake_at(deadline, now);
            assert!(wake >= deadline, "{wait_ms} ms: woke early");
            let late = wake - deadline;
            assert!(
                late <= Duration::from_millis(wait_ms) / 16,
                "{wait_ms} ms: {late:?} late"
            );
            assert!(late <= MAX_LATENESS);
        }
        // A deadline already passed is not moved.
        let past = now.checked_sub(Duration::from_secs(1)).unwrap_or(now);
        assert_eq!(wake_at(past, now), past);
    }
}
