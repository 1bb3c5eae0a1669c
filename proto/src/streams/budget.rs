//! The process-wide budgets: bytes queued toward peers (spec/protocol.md §10.8) and
//! receive windows grown beyond their initial size (§10.3.1).

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The count behind both budgets.
struct Inner {
    limit: usize,
    used: AtomicUsize,
}

impl Inner {
    /// Adds `n` when `admit(used)` gives the new count.
    fn take(&self, admit: impl Fn(usize) -> Option<usize>) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, admit)
            .is_ok()
    }
}

/// What both budgets have in common: a limit and a shared count of bytes, nothing more (no
/// threads, no I/O). Clones share the count. Two budgets compare equal when their limits
/// are equal (as configuration); whether they are the same counter is `is_shared_with`.
macro_rules! budget {
    ($name:ident, $default:expr, $default_doc:literal, $used_doc:literal) => {
        impl $name {
            #[doc = $default_doc]
            pub const DEFAULT_LIMIT: usize = $default;

            /// A fresh budget of `limit` bytes.
            pub fn new(limit: usize) -> Self {
                $name(Arc::new(Inner {
                    limit,
                    used: AtomicUsize::new(0),
                }))
            }

            /// The limit in bytes.
            pub fn limit(&self) -> usize {
                self.0.limit
            }

            #[doc = $used_doc]
            pub fn used(&self) -> usize {
                self.0.used.load(Ordering::Acquire)
            }

            /// Whether `other` is a clone of this budget (counts the same bytes).
            pub fn is_shared_with(&self, other: &$name) -> bool {
                Arc::ptr_eq(&self.0, &other.0)
            }

            /// Gives `n` bytes back (never below zero, whatever a caller does).
            pub(crate) fn release(&self, n: usize) {
                if n > 0 {
                    self.0.take(|used| Some(used.saturating_sub(n)));
                }
            }
        }

        impl Default for $name {
            /// A fresh budget of `DEFAULT_LIMIT`.
            fn default() -> Self {
                $name::new(Self::DEFAULT_LIMIT)
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                self.limit() == other.limit()
            }
        }

        impl Eq for $name {}

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("limit", &self.limit())
                    .field("used", &self.used())
                    .finish()
            }
        }
    };
}

/// Body bytes queued for sending, counted across every stream machine that holds a clone
/// (all connections of a server or client share the one in their
/// [`StreamsConfig`](super::StreamsConfig)). A machine takes budget for each chunk it
/// queues and gives it back as the chunk is sent or dropped; while the budget is used up,
/// `send_data` answers [`SendError::Blocked`](super::SendError::Blocked) and the sender
/// waits for [`StreamEvent::Writable`](super::StreamEvent::Writable).
///
/// It is a counter, nothing more: no threads, no I/O. Clones share the count. Two budgets
/// compare equal when their limits are equal (as configuration); whether they are the same
/// counter is [`is_shared_with`](Self::is_shared_with).
///
/// ```
/// use tether_proto::streams::SendBudget;
///
/// let budget = SendBudget::new(64 * 1024 * 1024);
/// let shared = budget.clone();
/// assert_eq!((shared.used(), shared.limit()), (0, 64 * 1024 * 1024));
/// assert!(budget.is_shared_with(&shared));
/// assert!(!budget.is_shared_with(&SendBudget::new(64 * 1024 * 1024)));
/// ```
#[derive(Clone)]
pub struct SendBudget(Arc<Inner>);

budget!(
    SendBudget,
    64 * 1024 * 1024,
    "The default limit: 64 MiB (spec/protocol.md §10.8).",
    "Bytes currently queued toward peers by every machine sharing this budget."
);

impl SendBudget {
    /// Whether a machine may queue another chunk now (the budget is not used up).
    pub fn has_room(&self) -> bool {
        self.used() < self.0.limit
    }

    /// Takes `n` bytes if the budget is not used up. A chunk taken while below the limit
    /// may end above it, so the count never exceeds the limit by more than one chunk.
    pub(crate) fn try_acquire(&self, n: usize) -> bool {
        let limit = self.0.limit;
        self.0
            .take(|used| (used < limit).then(|| used.saturating_add(n)))
    }
}

/// Receive-window growth, counted across every stream machine that holds a clone (all
/// connections of a server or client share the one in their
/// [`StreamsConfig`](super::StreamsConfig)). A connection window grows beyond its initial
/// size (spec/protocol.md §10.3.1) only by taking the growth from this budget, and gives it
/// back when the machine is dropped; while the budget is used up, windows keep the size
/// they have. So the body bytes that peers can make the process hold are at most the
/// initial connection windows plus this limit.
///
/// A counter, like [`SendBudget`]: clones share the count, and two budgets compare equal
/// when their limits are equal.
///
/// ```
/// use tether_proto::streams::RecvBudget;
///
/// let budget = RecvBudget::new(256 * 1024 * 1024);
/// assert_eq!((budget.clone().used(), budget.limit()), (0, 256 * 1024 * 1024));
/// ```
#[derive(Clone)]
pub struct RecvBudget(Arc<Inner>);

budget!(
    RecvBudget,
    256 * 1024 * 1024,
    "The default limit: 256 MiB (spec/protocol.md §10.3.1). 0: no window ever grows.",
    "Bytes of window growth currently granted by every machine sharing this budget."
);

impl RecvBudget {
    /// Takes `n` bytes if all of them fit under the limit.
    pub(crate) fn try_acquire(&self, n: usize) -> bool {
        let limit = self.0.limit;
        self.0
            .take(|used| used.checked_add(n).filter(|&after| after <= limit))
    }
}

#[cfg(test)]
mod tests {
    use super::{RecvBudget, SendBudget};

    #[test]
    fn growth_is_taken_whole_or_not_at_all() {
        let b = RecvBudget::new(100);
        assert!(b.try_acquire(60));
        assert!(!b.try_acquire(60), "never beyond the limit");
        assert!(b.try_acquire(40));
        assert_eq!(b.used(), 100);
        b.release(60);
        assert!(b.try_acquire(60));
        b.release(1000);
        assert_eq!(b.used(), 0, "never below zero");
    }

    #[test]
    fn takes_while_below_the_limit_and_overshoots_by_at_most_one_chunk() {
        let b = SendBudget::new(100);
        assert!(b.try_acquire(60));
        assert!(b.try_acquire(60), "below the limit: one more chunk");
        assert_eq!(b.used(), 120);
        assert!(!b.has_room());
        assert!(!b.try_acquire(1));
        b.release(60);
        assert!(b.try_acquire(1));
        b.release(1000);
        assert_eq!(b.used(), 0, "never below zero");
    }
}
