//! The wait between two connection attempts, shared by the Tether [client](crate::client)
//! and the compat [engine](crate::compat::engine): the next delay of a
//! [`tether_proto::backoff::Backoff`] (jitter from the one [`OsRandom`]), slept unless
//! something more urgent (a close or stop command) comes first.

use std::future::Future;
use std::time::{Duration, Instant};

use tether_proto::backoff::{Backoff, RetryPolicy};

use super::OsRandom;

/// How a wait ended.
#[derive(Debug)]
pub(crate) enum Wait<T> {
    /// The delay is over: dial again.
    Elapsed,
    /// The backoff has no more attempts (or the policy is fatal): stop reconnecting.
    GaveUp,
    /// `interrupt` completed first, with this value.
    Interrupted(T),
}

/// Takes the next delay of `backoff` for `policy`, tells `on_delay` (attempt number, delay),
/// then sleeps it, or returns what `interrupt` yields if it completes first.
pub(crate) async fn wait<T>(
    backoff: &mut Backoff,
    policy: RetryPolicy,
    interrupt: impl Future<Output = T>,
    on_delay: impl FnOnce(u32, Duration),
) -> Wait<T> {
    let Some(delay) = backoff.delay_for_policy(policy, Instant::now(), &mut OsRandom) else {
        return Wait::GaveUp;
    };
    on_delay(backoff.attempt(), delay);
    tokio::select! {
        () = tokio::time::sleep(delay) => Wait::Elapsed,
        value = interrupt => Wait::Interrupted(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_proto::backoff::{BackoffConfig, Jitter};

    fn config(max_attempts: Option<u32>) -> BackoffConfig {
        BackoffConfig {
            initial: Duration::from_secs(1),
            max_delay: Duration::from_secs(8),
            jitter: Jitter::None,
            max_attempts,
            ..BackoffConfig::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn sleeps_the_delay_then_gives_up_after_the_last_attempt() {
        let mut backoff = Backoff::new(config(Some(1)));
        let mut seen = None;
        let start = tokio::time::Instant::now();
        let first = wait(
            &mut backoff,
            RetryPolicy::Retry,
            std::future::pending::<()>(),
            |a, d| seen = Some((a, d)),
        )
        .await;
        assert!(matches!(first, Wait::Elapsed));
        assert_eq!(seen, Some((1, Duration::from_secs(1))));
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        let second = wait(
            &mut backoff,
            RetryPolicy::Retry,
            std::future::pending::<()>(),
            |_, _| panic!("no delay after the last attempt"),
        )
        .await;
        assert!(matches!(second, Wait::GaveUp));
    }

    #[tokio::test(start_paused = true)]
    async fn an_interrupt_ends_the_wait_early_and_fatal_never_waits() {
        let mut backoff = Backoff::new(config(None));
        let start = tokio::time::Instant::now();
        let ended = wait(
            &mut backoff,
            RetryPolicy::RetrySlowly,
            async { 7 },
            |_, d| assert_eq!(d, Duration::from_secs(8)),
        )
        .await;
        assert!(matches!(ended, Wait::Interrupted(7)));
        assert_eq!(start.elapsed(), Duration::ZERO);
        let fatal = wait(&mut backoff, RetryPolicy::Fatal, async {}, |_, _| {}).await;
        assert!(matches!(fatal, Wait::GaveUp));
    }
}
