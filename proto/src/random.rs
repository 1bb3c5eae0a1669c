//! Where the machines get their randomness: from the caller (spec/protocol.md §7.3).
//!
//! One trait for every machine: connection ids and resume tokens (which need a
//! cryptographically secure source) and reconnect jitter (which does not) alike.

/// A source of random bytes, supplied by the embedder.
///
/// Connection ids and resume tokens are drawn from it, so in production it must be a
/// cryptographically secure generator (the OS's, e.g. through `getrandom` or
/// `rand::rngs::OsRng`): a resume token is a bearer secret. Tests pass a seeded
/// generator to be deterministic.
///
/// Any `FnMut(&mut [u8])` is a source:
///
/// ```
/// use tether_proto::RandomSource;
/// let mut counter = 0u8;
/// let mut source = |buf: &mut [u8]| {
///     for b in buf {
///         counter = counter.wrapping_add(1);
///         *b = counter;
///     }
/// };
/// let mut buf = [0; 3];
/// source.fill(&mut buf)?;
/// assert_eq!(buf, [1, 2, 3]);
/// # Ok::<(), tether_proto::RandomError>(())
/// ```
///
/// A source that can fail (the operating system's) implements the trait on its own type
/// and returns [`RandomError`]; the machines then refuse what needed the randomness (a
/// server rejects the HELLO with 4008 INTERNAL_ERROR) instead of panicking.
pub trait RandomSource {
    /// Fills `buf` with random bytes.
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), RandomError>;

    /// A uniformly distributed 64-bit value drawn from [`fill`](Self::fill).
    fn next_u64(&mut self) -> Result<u64, RandomError> {
        let mut b = [0; 8];
        self.fill(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
}

impl<F: FnMut(&mut [u8])> RandomSource for F {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), RandomError> {
        self(buf);
        Ok(())
    }
}

/// The random source could not produce bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the random source failed: {0}")]
pub struct RandomError(pub String);
