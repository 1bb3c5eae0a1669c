//! What a detached session costs (spec/protocol.md §9.1, issue 9 item 8): 10,000 detached
//! sessions with 8 KB of metadata each, counted by a counting allocator. This file is its
//! own test binary, so the allocator counts only what its one test allocates.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tether_proto::connection::SessionStore;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: same layout, same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[test]
fn a_detached_session_costs_its_metadata_plus_a_few_hundred_bytes() {
    const SESSIONS: usize = 10_000;
    const METADATA: usize = 8 * 1024;
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut rng = move |buf: &mut [u8]| {
        for b in buf {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *b = state as u8;
        }
    };
    let before = LIVE.load(Ordering::Relaxed);
    // Each HELLO's metadata is a view into a larger message buffer, as after decoding.
    let messages: Vec<Bytes> = (0..SESSIONS)
        .map(|_| Bytes::from(vec![b' '; METADATA + 64]))
        .collect();
    let t0 = Instant::now();
    let mut store = SessionStore::new(Duration::from_secs(30)).with_max_detached(SESSIONS);
    for message in &messages {
        let admission = store
            .admit(None, message.slice(32..32 + METADATA), &mut rng, t0)
            .unwrap();
        assert!(store.detach(admission.session(), t0));
    }
    drop(messages); // the store must not pin them
    let held = LIVE.load(Ordering::Relaxed) - before;
    let per_session = held / SESSIONS;
    println!(
        "{SESSIONS} detached sessions with {METADATA} B of metadata: {held} B, \
         {per_session} B each ({} B besides the metadata)",
        per_session - METADATA
    );
    assert_eq!(store.detached_len(), SESSIONS);
    assert!(
        per_session <= METADATA + 512,
        "{per_session} B per detached session"
    );
}
