//! The command queue of a connection task: many senders, one receiver, and no memory held
//! while it is empty.
//!
//! Every connection task has two: its HTTP side's commands (bodies, handlers, callers) and
//! the commands of its handle (close; on the server also "replaced"). tokio's `mpsc`
//! channel allocates its shared state (512 bytes, padded to cache lines) and a first block
//! of 32 slots when it is created, used or not: 2.9 KiB of every idle connection for the
//! two (issue 11 goal 5: the server's goal is 8 KiB per idle connection). This queue is
//! one small allocation (128 bytes) until a value is sent; the slots are allocated
//! with the first value and freed again when the receiver takes the last one, so a
//! connection at rest holds none, whatever it carried before. A receiver that expects
//! more soon keeps them, up to a number of slots it chooses ([`Receiver::keep_slots`]): a
//! connection task keeps all of them while it has streams open, where a tunnel's every
//! request would otherwise allocate and free them once (about 300 instructions at each
//! end, benches/RESULTS.md, nineteenth pass), and a few between requests, until its next
//! deadline finds it with nothing open (benches/RESULTS.md, twenty-second pass).
//!
//! A bound, when given, is checked before a value is queued ([`Sender::send`] hands the
//! value back with [`SendError::Full`]); [`unbounded`] is for a queue whose every kind of
//! value is bounded by something else (see [`rest::driver`](crate::rest::driver)).
//!
//! The lock is held only to push or pop one value; the receiver's waker is woken after it
//! is released. An empty queue is asked without the lock: a flag beside the lock says
//! whether there is anything to look at (a run loop asks its queues two to four times per
//! small request, and they are empty nearly every time). [`Receiver::try_recv`] reads only
//! that flag. [`Receiver::poll_recv`] also needs its waker registered: the waker stays
//! registered until the receiver is polled with another one (a sender wakes it without
//! taking it, when its value is the first of an empty queue), and the registered waker's
//! two pointers beside the lock tell the receiver, without the lock, that the waker it is
//! polled with is that one. 4 polls per request took 276 instructions at the TCP tunnel's
//! client (benches/RESULTS.md, nineteenth pass).

use std::collections::VecDeque;
use std::fmt;
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

struct State<T> {
    items: VecDeque<T>,
    /// Most values waiting at once (`usize::MAX`: unbounded).
    bound: usize,
    /// The receiver's waker, from its last poll that waited: woken (not taken) by the value
    /// that makes the queue non-empty and by the last sender's leaving.
    waker: Option<Waker>,
    /// The receiver is gone: sending fails.
    closed: bool,
}

struct Inner<T> {
    /// Whether the receiver has something to look at under the lock: values queued, or the
    /// end (no sender left, or closed). Written under the lock whenever that changes, read
    /// without it by the receiver. A value sent before something that happens before the
    /// read (the wake that polls the receiver's task) is seen.
    queued: AtomicBool,
    /// The data and vtable pointers of the registered waker (`State::waker`), 0 for none.
    /// Written by the receiver under the lock when it registers one; read by the receiver
    /// alone, so without the lock.
    waker_data: AtomicUsize,
    waker_vtable: AtomicUsize,
    /// Live senders: when the last goes, the receiver sees the end. Counted outside the
    /// lock, as `Arc` counts: a sender is cloned and dropped for most requests (a caller's
    /// cancel guard, a received body's handle), and only the last one's leaving needs the
    /// lock.
    senders: AtomicUsize,
    /// Most slots kept when the queue runs empty ([`Receiver::keep_slots`]; `u32::MAX`:
    /// all); more are freed.
    keep: AtomicU32,
    /// The queue ran empty and kept its slots: freed when `keep` goes below them. Both are
    /// the receiver's alone (values are only taken by it), read and written without the
    /// lock; they sit in the padding after `queued`.
    kept: AtomicBool,
    state: Mutex<State<T>>,
}

type Shared<T> = Arc<Inner<T>>;

fn lock<T>(shared: &Shared<T>) -> MutexGuard<'_, State<T>> {
    // Nothing runs user code under the lock (values are only moved in and out, and
    // dropped after it is released), so a poisoned lock still holds a consistent queue.
    shared.state.lock().unwrap_or_else(|e| e.into_inner())
}

fn new<T>(bound: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Inner {
        queued: AtomicBool::new(false),
        waker_data: AtomicUsize::new(0),
        waker_vtable: AtomicUsize::new(0),
        senders: AtomicUsize::new(1),
        keep: AtomicU32::new(0),
        kept: AtomicBool::new(false),
        state: Mutex::new(State {
            items: VecDeque::new(),
            bound,
            waker: None,
            closed: false,
        }),
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared },
    )
}

/// A queue of at most `bound` waiting values.
pub(crate) fn bounded<T>(bound: usize) -> (Sender<T>, Receiver<T>) {
    new(bound)
}

/// A queue without a bound of its own: for values bounded by something else.
pub(crate) fn unbounded<T>() -> (Sender<T>, Receiver<T>) {
    new(usize::MAX)
}

/// Why [`Sender::send`] did not queue a value; the value comes back.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SendError<T> {
    /// The queue holds its bound.
    Full(T),
    /// The receiver is gone.
    Closed(T),
}

impl<T> SendError<T> {
    /// The value that was not sent.
    pub(crate) fn into_inner(self) -> T {
        match self {
            SendError::Full(v) | SendError::Closed(v) => v,
        }
    }
}

/// The sending half; cloned for every sender.
pub(crate) struct Sender<T> {
    shared: Shared<T>,
}

impl<T> Sender<T> {
    /// Queues `value` without waiting, and wakes the receiver.
    pub(crate) fn send(&self, value: T) -> Result<(), SendError<T>> {
        let waker = {
            let mut state = lock(&self.shared);
            if state.closed {
                return Err(SendError::Closed(value));
            }
            if state.items.len() >= state.bound {
                return Err(SendError::Full(value));
            }
            let first = state.items.is_empty();
            state.items.push_back(value);
            self.shared.queued.store(true, Ordering::Release);
            // A receiver waits only after it found the queue empty: a value behind others
            // has a wake on its way already.
            if first {
                state.waker.clone()
            } else {
                None
            }
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        // Relaxed, as `Arc::clone`: the clone is made from a live sender, so the count
        // cannot reach zero meanwhile.
        self.shared.senders.fetch_add(1, Ordering::Relaxed);
        Sender {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        // Release: what this sender did happens before the receiver sees the end.
        if self.shared.senders.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        let waker = {
            let state = lock(&self.shared);
            self.shared.queued.store(true, Ordering::Release); // the end, to look at
            state.waker.clone()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender").finish_non_exhaustive()
    }
}

/// The receiving half. Dropping it drops what is still queued (a caller waiting on a
/// reply inside a command hears that it will not come) and makes sending fail.
pub(crate) struct Receiver<T> {
    shared: Shared<T>,
}

impl<T> Receiver<T> {
    /// The next value; `None` once it is empty and every sender is gone (or it is closed).
    pub(crate) async fn recv(&mut self) -> Option<T> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Refuses further values; those already queued can still be taken.
    pub(crate) fn close(&mut self) {
        lock(&self.shared).closed = true;
        self.shared.queued.store(true, Ordering::Release);
    }

    /// The next value if one is waiting.
    pub(crate) fn try_recv(&mut self) -> Option<T> {
        if !self.shared.queued.load(Ordering::Acquire) {
            return None;
        }
        pop(&self.shared, &mut lock(&self.shared))
    }

    /// How many slots stay allocated when the queue runs empty (0 at first: freed each
    /// time); more than that are freed. Lowering it frees slots kept beyond it; it takes the
    /// lock only if there are any.
    pub(crate) fn keep_slots(&mut self, slots: usize) {
        let shared = &self.shared;
        let slots = u32::try_from(slots).unwrap_or(u32::MAX);
        let lower = slots < shared.keep.load(Ordering::Relaxed);
        shared.keep.store(slots, Ordering::Relaxed);
        if !lower || !shared.kept.load(Ordering::Relaxed) {
            return;
        }
        let freed = {
            let mut state = lock(shared);
            if state.items.capacity() <= slots as usize {
                return;
            }
            shared.kept.store(false, Ordering::Relaxed);
            if state.items.is_empty() {
                std::mem::take(&mut state.items)
            } else {
                VecDeque::new() // the next value taken that empties it frees them
            }
        };
        drop(freed);
    }

    /// The slots allocated now.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        lock(&self.shared).items.capacity()
    }

    /// No value will come: every sender is gone (or the queue is closed) and none waits.
    pub(crate) fn is_done(&self) -> bool {
        let state = lock(&self.shared);
        ended(&self.shared, &state) && state.items.is_empty()
    }

    /// [`recv`](Self::recv) as a poll.
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let shared = &self.shared;
        let waker = cx.waker();
        // Nothing to look at, and this waker is registered: a sender will wake it.
        if !shared.queued.load(Ordering::Acquire)
            && shared.waker_data.load(Ordering::Relaxed) == waker.data() as usize
            && shared.waker_vtable.load(Ordering::Relaxed)
                == std::ptr::from_ref(waker.vtable()) as usize
        {
            return Poll::Pending;
        }
        let mut state = lock(shared);
        if let Some(value) = pop(shared, &mut state) {
            return Poll::Ready(Some(value));
        }
        if ended(shared, &state) {
            return Poll::Ready(None);
        }
        match &mut state.waker {
            Some(registered) if registered.will_wake(waker) => {}
            slot => *slot = Some(waker.clone()),
        }
        // Written while the lock is held, so always those of `state.waker`.
        shared
            .waker_data
            .store(waker.data() as usize, Ordering::Relaxed);
        shared.waker_vtable.store(
            std::ptr::from_ref(waker.vtable()) as usize,
            Ordering::Relaxed,
        );
        Poll::Pending
    }
}

/// No value will be sent any more: every sender is gone, or the receiver closed the queue.
fn ended<T>(shared: &Shared<T>, state: &State<T>) -> bool {
    state.closed || shared.senders.load(Ordering::Acquire) == 0
}

/// Takes the front value (`state` is `shared`'s, locked); when the queue runs empty its
/// slots are freed, unless the receiver keeps that many ([`Receiver::keep_slots`]).
fn pop<T>(shared: &Shared<T>, state: &mut State<T>) -> Option<T> {
    let value = state.items.pop_front();
    if state.items.is_empty() {
        shared.queued.store(ended(shared, state), Ordering::Release);
        let capacity = state.items.capacity();
        if capacity > shared.keep.load(Ordering::Relaxed) as usize {
            state.items = VecDeque::new();
            shared.kept.store(false, Ordering::Relaxed);
        } else if capacity > 0 {
            shared.kept.store(true, Ordering::Relaxed);
        }
    }
    value
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let (items, waker) = {
            let mut state = lock(&self.shared);
            state.closed = true;
            self.shared.queued.store(false, Ordering::Release);
            (std::mem::take(&mut state.items), state.waker.take())
        };
        // Dropped outside the lock: a value's drop may send on this queue.
        drop(items);
        drop(waker);
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn values_arrive_in_order_and_the_slots_are_freed() {
        let (tx, mut rx) = unbounded();
        for i in 0..100 {
            tx.send(i).unwrap();
        }
        assert!(lock(&rx.shared).items.capacity() >= 100);
        for i in 0..100 {
            assert_eq!(rx.try_recv(), Some(i));
        }
        assert_eq!(rx.try_recv(), None);
        assert_eq!(lock(&rx.shared).items.capacity(), 0);
    }

    /// `try_recv` looks at the flag first: it must follow every way a value comes and
    /// goes, and show a value sent on another thread before a signal the receiver saw.
    #[tokio::test]
    async fn try_recv_sees_every_value_queued_and_nothing_else() {
        let (tx, mut rx) = unbounded();
        assert_eq!(rx.try_recv(), None);
        tx.send(1).unwrap();
        tx.send(2).unwrap();
        assert_eq!(rx.recv().await, Some(1));
        assert_eq!(rx.try_recv(), Some(2));
        assert_eq!(rx.try_recv(), None);
        tx.send(3).unwrap();
        assert_eq!(rx.try_recv(), Some(3));
        assert_eq!(rx.try_recv(), None);
        for round in 0..1000 {
            let (signal, seen) = std::sync::mpsc::channel();
            let tx = tx.clone();
            std::thread::spawn(move || {
                tx.send(round).unwrap();
                signal.send(()).unwrap();
            });
            seen.recv().unwrap();
            assert_eq!(rx.try_recv(), Some(round));
            assert_eq!(rx.try_recv(), None);
        }
    }

    /// `Arc` adds 16 bytes and glibc's malloc gives a request of n bytes a chunk of n + 8
    /// rounded up to 16: 96 bytes (without the flags) and 104 (with them) both take 112;
    /// the registered waker's two pointers take it to 128 (16 bytes a queue, two queues a
    /// connection: `idle_connections`, 15.63 → 15.75 KiB a pair).
    #[test]
    fn the_shared_state_stays_in_its_allocation() {
        // 72 bytes (80 when the count of senders was in it); with the flags, the waker's
        // pointers, the count and the Arc's two counts, one 128-byte chunk of glibc's
        // malloc (112 before the pointers).
        assert!(std::mem::size_of::<Mutex<State<u64>>>() <= 72);
        assert!(std::mem::size_of::<Inner<u64>>() <= 104);
    }

    #[test]
    fn a_registered_waker_is_woken_by_the_first_value_and_the_end_without_being_taken() {
        use crate::test_util::counting_waker;
        let (tx, mut rx) = unbounded::<u32>();
        let (a, woken_a) = counting_waker();
        let (b, woken_b) = counting_waker();
        let mut cx_a = Context::from_waker(&a);
        let mut cx_b = Context::from_waker(&b);
        assert!(rx.poll_recv(&mut cx_a).is_pending());
        // Polled again with the same waker: nothing to look at, nothing changes.
        assert!(rx.poll_recv(&mut cx_a).is_pending());
        tx.send(1).unwrap();
        tx.send(2).unwrap();
        assert_eq!(
            woken_a.load(Ordering::SeqCst),
            1,
            "the first value of an empty queue"
        );
        assert_eq!(rx.poll_recv(&mut cx_a), Poll::Ready(Some(1)));
        assert_eq!(rx.poll_recv(&mut cx_a), Poll::Ready(Some(2)));
        assert!(rx.poll_recv(&mut cx_a).is_pending());
        // Still registered (not taken by the wake): the next first value wakes it again,
        // also after try_recv emptied the queue.
        tx.send(3).unwrap();
        assert_eq!(woken_a.load(Ordering::SeqCst), 2);
        assert_eq!(rx.try_recv(), Some(3));
        tx.send(4).unwrap();
        assert_eq!(woken_a.load(Ordering::SeqCst), 3);
        assert_eq!(rx.try_recv(), Some(4));
        // Another waker replaces it.
        assert!(rx.poll_recv(&mut cx_b).is_pending());
        tx.send(5).unwrap();
        assert_eq!(woken_a.load(Ordering::SeqCst), 3);
        assert_eq!(woken_b.load(Ordering::SeqCst), 1);
        assert_eq!(rx.poll_recv(&mut cx_b), Poll::Ready(Some(5)));
        assert!(rx.poll_recv(&mut cx_b).is_pending());
        // The last sender's leaving wakes it, and the end is seen although the waker is
        // the registered one.
        drop(tx);
        assert_eq!(woken_b.load(Ordering::SeqCst), 2);
        assert_eq!(rx.poll_recv(&mut cx_b), Poll::Ready(None));
        assert_eq!(rx.poll_recv(&mut cx_b), Poll::Ready(None), "and stays seen");
    }

    #[test]
    fn a_closed_queue_is_seen_ended_by_a_registered_waker() {
        let (tx, mut rx) = unbounded::<u32>();
        let (a, _) = crate::test_util::counting_waker();
        let mut cx = Context::from_waker(&a);
        assert!(rx.poll_recv(&mut cx).is_pending());
        tx.send(1).unwrap();
        rx.close();
        assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(Some(1)));
        assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(None));
        assert_eq!(tx.send(2), Err(SendError::Closed(2)));
        // Closed while empty and waiting:
        let (_tx, mut rx) = unbounded::<u32>();
        assert!(rx.poll_recv(&mut cx).is_pending());
        rx.close();
        assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(None));
    }

    #[test]
    fn kept_slots_stay_while_kept_and_go_when_no_longer() {
        let (tx, mut rx) = unbounded();
        let capacity = |rx: &Receiver<u32>| lock(&rx.shared).items.capacity();
        rx.keep_slots(usize::MAX);
        tx.send(1).unwrap();
        assert_eq!(rx.try_recv(), Some(1));
        assert!(capacity(&rx) > 0, "kept while kept");
        tx.send(2).unwrap();
        rx.keep_slots(0);
        assert!(capacity(&rx) > 0, "not freed while a value waits");
        assert_eq!(rx.try_recv(), Some(2));
        assert_eq!(capacity(&rx), 0, "freed by the value that emptied it");
        // Kept, then no longer: freed at once.
        rx.keep_slots(usize::MAX);
        tx.send(3).unwrap();
        assert_eq!(rx.try_recv(), Some(3));
        rx.keep_slots(0);
        assert_eq!(capacity(&rx), 0);
        assert!(!rx.shared.kept.load(Ordering::Relaxed));
        // Not kept: freed each time the queue runs empty, as before.
        tx.send(4).unwrap();
        assert_eq!(rx.try_recv(), Some(4));
        assert_eq!(capacity(&rx), 0);
    }

    /// A receiver keeps as many slots as it says and no more: a burst's slots go when the
    /// queue runs empty, a few are kept, and lowering the number frees what is above it.
    #[test]
    fn only_as_many_slots_as_asked_are_kept() {
        let (tx, mut rx) = unbounded();
        let capacity = |rx: &Receiver<u32>| lock(&rx.shared).items.capacity();
        rx.keep_slots(8);
        tx.send(1).unwrap();
        assert_eq!(rx.try_recv(), Some(1));
        let few = capacity(&rx);
        assert!((1..=8).contains(&few), "a few kept: {few}");
        // The next value reuses them.
        tx.send(2).unwrap();
        assert_eq!(capacity(&rx), few);
        assert_eq!(rx.try_recv(), Some(2));
        // A burst grows them past the number: freed when it has been taken.
        for i in 0..100 {
            tx.send(i).unwrap();
        }
        for i in 0..100 {
            assert_eq!(rx.try_recv(), Some(i));
        }
        assert_eq!(capacity(&rx), 0, "more than 8 are not kept");
        tx.send(3).unwrap();
        assert_eq!(rx.try_recv(), Some(3));
        assert_eq!(capacity(&rx), few);
        // Raising the number keeps what is there; lowering it under them frees them.
        rx.keep_slots(usize::MAX);
        assert_eq!(capacity(&rx), few);
        rx.keep_slots(few);
        assert_eq!(capacity(&rx), few);
        rx.keep_slots(0);
        assert_eq!(capacity(&rx), 0);
    }

    #[test]
    fn a_bounded_queue_refuses_past_its_bound() {
        let (tx, mut rx) = bounded(2);
        tx.send(1).unwrap();
        tx.send(2).unwrap();
        assert_eq!(tx.send(3), Err(SendError::Full(3)));
        assert_eq!(rx.try_recv(), Some(1));
        tx.send(3).unwrap();
        assert_eq!(rx.try_recv(), Some(2));
        assert_eq!(rx.try_recv(), Some(3));
    }

    #[test]
    fn a_dropped_receiver_drops_the_queue_and_refuses_more() {
        let (tx, rx) = unbounded();
        let (reply, answer) = tokio::sync::oneshot::channel::<()>();
        tx.send(reply).unwrap();
        drop(rx);
        // The reply inside the queued value is gone: its caller hears it.
        assert!(answer.blocking_recv().is_err());
        let (reply, _answer) = tokio::sync::oneshot::channel::<()>();
        assert!(matches!(tx.send(reply), Err(SendError::Closed(_))));
    }

    #[test]
    fn a_closed_queue_refuses_more_and_keeps_what_it_has() {
        let (tx, mut rx) = unbounded();
        tx.send(1).unwrap();
        rx.close();
        assert_eq!(tx.send(2), Err(SendError::Closed(2)));
        assert_eq!(rx.try_recv(), Some(1));
        assert_eq!(rx.try_recv(), None);
    }

    #[tokio::test]
    async fn the_receiver_sees_the_end_once_every_sender_is_gone() {
        let (tx, mut rx) = unbounded();
        let tx2 = tx.clone();
        tx.send(1).unwrap();
        drop(tx);
        assert_eq!(rx.recv().await, Some(1));
        let waiting = tokio::spawn(async move { rx.recv().await });
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(tx2);
        assert_eq!(waiting.await.unwrap(), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn senders_cloned_and_dropped_elsewhere_end_the_queue_only_with_the_last() {
        let (tx, mut rx) = unbounded::<u32>();
        let waiting = tokio::spawn(async move {
            let first = rx.recv().await;
            (first, rx.recv().await, rx.is_done())
        });
        let churn: Vec<_> = (0..4)
            .map(|_| {
                let tx = tx.clone();
                tokio::spawn(async move {
                    for i in 0..10_000 {
                        drop(tx.clone());
                        if i % 1000 == 0 {
                            tokio::task::yield_now().await;
                        }
                    }
                })
            })
            .collect();
        for task in churn {
            task.await.unwrap();
        }
        assert!(!waiting.is_finished(), "one sender is left");
        tx.send(7).unwrap();
        drop(tx);
        assert_eq!(waiting.await.unwrap(), (Some(7), None, true));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiting_receiver_is_woken_by_senders_on_other_threads() {
        let (tx, mut rx) = unbounded();
        let senders: Vec<_> = (0..4)
            .map(|t| {
                let tx = tx.clone();
                tokio::spawn(async move {
                    for i in 0..1000 {
                        tx.send((t, i)).unwrap();
                        if i % 100 == 0 {
                            tokio::task::yield_now().await;
                        }
                    }
                })
            })
            .collect();
        drop(tx);
        let mut next = [0; 4];
        while let Some((t, i)) = rx.recv().await {
            // Each sender's values arrive in its order.
            assert_eq!(next[t], i);
            next[t] += 1;
        }
        assert_eq!(next, [1000; 4]);
        for s in senders {
            s.await.unwrap();
        }
    }
}
