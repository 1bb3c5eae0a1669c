//! The hasher of the maps keyed by stream id.
//!
//! A stream id is chosen by the peer, so the map must not let the peer pick ids that all
//! land in one bucket (HashDoS). The standard library's SipHash resists that, at about 150
//! instructions per lookup, and a DATA frame costs several lookups between the machine
//! and a runtime's own map: 9 % of all the instructions of a connection that tunnels one
//! small request at a time (benches/RESULTS.md, "Lighter turns"). foldhash, the hasher of
//! hashbrown and of the standard library's own map implementation, hashes a `u32` in a
//! few instructions. Its per-map seed is secret here: it comes from the standard
//! library's random keys (the same source SipHash's default keys come from, drawn from
//! the OS once per thread), so a peer that cannot see the hashes cannot construct ids
//! that collide. What a collision could cost is bounded besides: a map holds at most the
//! concurrent streams the limits allow (spec/protocol.md §10.8).

use std::hash::BuildHasher;

/// The [`BuildHasher`] of maps keyed by [`StreamId`](crate::StreamId): foldhash with a
/// secret per-map seed (see the module docs). `Default` draws the seed.
///
/// ```
/// use std::collections::HashMap;
/// use tether_proto::streams::StreamIdHasher;
/// use tether_proto::StreamId;
///
/// let mut bodies: HashMap<StreamId, Vec<u8>, StreamIdHasher> = HashMap::default();
/// bodies.insert(StreamId::new(1), b"hello".to_vec());
/// assert_eq!(bodies[&StreamId::new(1)], b"hello");
/// ```
#[derive(Clone, Debug)]
pub struct StreamIdHasher(foldhash::fast::FixedState);

impl Default for StreamIdHasher {
    fn default() -> Self {
        // The standard library's `RandomState` is keyed from the OS once per thread and
        // then varied per instance; one keyed hash of a constant is a secret 64-bit seed.
        let seed = std::hash::RandomState::new().hash_one(0x7465_7468_6572_u64);
        StreamIdHasher(foldhash::fast::FixedState::with_seed(seed))
    }
}

impl BuildHasher for StreamIdHasher {
    type Hasher = foldhash::fast::FoldHasher<'static>;

    #[inline]
    fn build_hasher(&self) -> Self::Hasher {
        self.0.build_hasher()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StreamId;
    use std::collections::HashMap;

    /// Two maps draw two seeds: the same id hashes differently (a peer cannot carry a
    /// colliding set from one connection to the next).
    #[test]
    fn every_map_has_its_own_seed() {
        let (a, b) = (StreamIdHasher::default(), StreamIdHasher::default());
        let ids = (1..=64u32).map(|i| StreamId::new(i * 2 + 1));
        let same = ids.filter(|id| a.hash_one(id) == b.hash_one(id)).count();
        assert_eq!(same, 0);
    }

    /// Ids spaced by a power of two (what breaks an identity or plain multiplicative
    /// hash, whose low bits pick the bucket) spread over the buckets.
    #[test]
    fn power_of_two_strides_spread() {
        let h = StreamIdHasher::default();
        for shift in [1u32, 8, 16, 20] {
            let mut buckets = [0u32; 64];
            for i in 0..1024u32 {
                let id = StreamId::new((i << shift) | 1);
                buckets[(h.hash_one(id) & 63) as usize] += 1;
            }
            let fullest = *buckets.iter().max().unwrap();
            assert!(
                fullest < 64,
                "stride 2^{shift}: {fullest} of 1024 in one of 64 buckets"
            );
        }
        let mut map: HashMap<StreamId, u32, StreamIdHasher> = HashMap::default();
        map.insert(StreamId::new(7), 7);
        assert_eq!(map.get(&StreamId::new(7)), Some(&7));
    }
}
