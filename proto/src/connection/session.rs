//! Server-side sessions and their resumption (spec/protocol.md §9).

use bytes::Bytes;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};
use uuid::Uuid;

use crate::{CloseCode, RandomError, RandomSource};
use crate::{Resume, ResumeToken};

/// Names one connection's hold on a session. Sessions outlive connections; the handle's
/// generation tells a stale connection (one replaced by a resume) from the current one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionHandle {
    id: Uuid,
    generation: u64,
}

impl SessionHandle {
    /// The session's (and connection's) id.
    pub fn id(&self) -> Uuid {
        self.id
    }
}

/// The identity a server gives an accepted connection: what
/// [`Connection::accept`](super::Connection::accept) puts in the WELCOME.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    pub(super) handle: SessionHandle,
    pub(super) token: ResumeToken,
    pub(super) resumed: bool,
    /// The live connection's hold on the session this admission takes over (§9.3).
    pub(super) replaces: Option<SessionHandle>,
    pub(super) resume_window: Duration,
    pub(super) heartbeat: Option<(Duration, Duration)>,
}

impl Admission {
    /// A new session that cannot be resumed (RESUME_WINDOW_MS = 0), for servers without a
    /// [`SessionStore`]. The id is a UUID v4 made of 16 bytes from `rng`, the token another
    /// 16 (spec/protocol.md §7.3).
    pub fn fresh(rng: &mut impl RandomSource) -> Result<Self, RandomError> {
        let (id, token) = draw_identity(rng)?;
        Ok(Admission {
            handle: SessionHandle { id, generation: 0 },
            token,
            resumed: false,
            replaces: None,
            resume_window: Duration::ZERO,
            heartbeat: None,
        })
    }

    /// Sets this connection's heartbeat instead of the server config's, for example to
    /// honour the client's proposal in [`HelloInfo::settings`](super::HelloInfo::settings)
    /// (spec/protocol.md §7.4). A zero interval turns the heartbeat off.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tether_proto::connection::Admission;
    /// let mut rng = |buf: &mut [u8]| buf.fill(9);
    /// let ok = Admission::fresh(&mut rng)?.with_heartbeat(Duration::from_secs(5), Duration::from_secs(12));
    /// assert!(ok.is_ok());
    /// let bad = Admission::fresh(&mut rng)?.with_heartbeat(Duration::from_secs(5), Duration::from_secs(5));
    /// assert!(bad.is_err());
    /// # Ok::<(), tether_proto::RandomError>(())
    /// ```
    pub fn with_heartbeat(
        mut self,
        interval: Duration,
        timeout: Duration,
    ) -> Result<Self, super::ConfigError> {
        super::config::check_heartbeat(interval, timeout)?;
        self.heartbeat = Some((interval, timeout));
        Ok(self)
    }

    /// The connection id.
    pub fn id(&self) -> Uuid {
        self.handle.id
    }

    /// The handle to give back to the store when the connection ends.
    pub fn session(&self) -> SessionHandle {
        self.handle
    }

    /// Whether this continues an earlier session.
    pub fn is_resumed(&self) -> bool {
        self.resumed
    }

    /// Whether a connection of this session was still open: it must be closed with
    /// SESSION_REPLACED (spec/protocol.md §9.3); [`replaces`](Self::replaces) names it.
    pub fn replaces_live_connection(&self) -> bool {
        self.replaces.is_some()
    }

    /// The hold on the session of the connection that was still open when this one
    /// resumed it (spec/protocol.md §9.3), `None` when there was none. The embedder routes
    /// it to the connection whose [`session`](super::Connection::session) this is, and
    /// that connection calls [`replaced`](super::Connection::replaced), which closes it
    /// with 4009 SESSION_REPLACED. Its later end changes nothing in the store (its handle
    /// is stale).
    pub fn replaces(&self) -> Option<SessionHandle> {
        self.replaces
    }

    /// How long the session stays resumable after its connection fails (announced as
    /// RESUME_WINDOW_MS).
    pub fn resume_window(&self) -> Duration {
        self.resume_window
    }
}

/// What the end of a connection means for its session (spec/protocol.md §9.1), as the
/// connection decides it ([`Connection::session_outcome`](super::Connection::session_outcome))
/// and as [`SessionStore::connection_ended`] reports what it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SessionOutcome {
    /// The connection failed in a way the client resumes from (a lost transport, or a
    /// close code whose retry column in §6.2 says yes): the session is kept resumable for
    /// the resume window.
    Detach,
    /// The connection was closed in an orderly way, or failed with a code that tells the
    /// client not to retry (1009, 4000, …): the session is forgotten. The store also
    /// reports this for a failure it could not keep (a full store, no resume window).
    End,
}

fn draw_identity(rng: &mut impl RandomSource) -> Result<(Uuid, ResumeToken), RandomError> {
    let mut id = [0; 16];
    rng.fill(&mut id)?;
    Ok((
        uuid::Builder::from_random_bytes(id).into_uuid(),
        draw_token(rng)?,
    ))
}

fn draw_token(rng: &mut impl RandomSource) -> Result<ResumeToken, RandomError> {
    let mut token = [0; 16];
    rng.fill(&mut token)?;
    Ok(ResumeToken::from_bytes(token))
}

/// What [`SessionStore::detach`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Detached {
    /// Resumable until the window ends.
    Kept,
    /// Not kept (a full store, no window, a window beyond the clock): forgotten.
    Forgotten,
    /// A stale handle, or a session already detached: nothing changed.
    Ignored,
}

#[derive(Debug)]
struct Entry {
    token: ResumeToken,
    metadata: Bytes,
    generation: u64,
    /// `Some(deadline)` while detached (its connection failed): resumable until then.
    detached_until: Option<Instant>,
}

/// The sessions of a server: live ones, and failed ones kept for the resume window
/// (spec/protocol.md §9.1). Sans-IO like the connection: time comes in, expiry deadlines
/// come out of [`poll_timeout`](SessionStore::poll_timeout), and the ids of sessions that
/// can no longer be resumed out of [`poll_expired`](SessionStore::poll_expired). The
/// embedder arms one timer for the whole store at `poll_timeout()` and calls
/// [`handle_timeout`](SessionStore::handle_timeout) when it fires (and after every
/// mutation re-reads `poll_timeout()`): expiry is driven by time, not by the next
/// handshake.
///
/// **Capacity** (spec/protocol.md §9.1). At most
/// [`max_detached`](SessionStore::with_max_detached) sessions are detached at once, and a
/// detached session is never evicted before its window ends to make room for another:
/// while the store is full, [`admit`](SessionStore::admit) refuses to create a *new*
/// session ([`StoreError::Full`]; the server closes with 4007 ENHANCE_YOUR_CALM, which
/// clients retry after a longer backoff), and a connection that fails while the store is
/// full is not kept (its session is reported expired at once). Resuming a held session
/// needs no room and always works. So a flood of throwaway handshakes can delay new
/// sessions, but cannot take a session that an earlier client holds.
///
/// **Memory.** A detached session costs its metadata (copied out of the HELLO message into
/// a buffer of its own) plus about 200 bytes of bookkeeping (the map entry, the expiry
/// index); see `tests/session_memory.rs`.
///
/// ```
/// use std::time::{Duration, Instant};
/// use tether_proto::connection::SessionStore;
///
/// let mut rng = |buf: &mut [u8]| buf.fill(7); // use a CSPRNG in production
/// let mut store = SessionStore::new(Duration::from_secs(30));
/// let t0 = Instant::now();
/// let first = store.admit(None, "{}".into(), &mut rng, t0).unwrap();
/// // The connection fails: the session becomes resumable for 30 s.
/// store.detach(first.session(), t0);
/// assert_eq!(store.poll_timeout(), Some(t0 + Duration::from_secs(30)));
/// store.handle_timeout(t0 + Duration::from_secs(30));
/// assert_eq!(store.poll_expired(), Some(first.id()));
/// assert!(store.is_empty());
/// ```
#[derive(Debug)]
pub struct SessionStore {
    window: Duration,
    max_detached: usize,
    sessions: HashMap<Uuid, Entry>,
    /// Detached sessions by deadline: the first is the next to expire.
    expiry: BTreeSet<(Instant, Uuid)>,
    expired: VecDeque<Uuid>,
    next_generation: u64,
}

/// Why the store could not admit a connection (the server rejects it with
/// [`close_code`](StoreError::close_code): 4008, or 4007 for [`Full`](StoreError::Full)).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store holds as many detached sessions as it may: no new session is created, so
    /// that none held is evicted (spec/protocol.md §9.1). Close with 4007
    /// ENHANCE_YOUR_CALM: the client retries later.
    #[error("session store full: {0} detached sessions are held")]
    Full(usize),
    /// The random source produced only connection ids already in use.
    #[error("random source produced only connection ids already in use")]
    IdsExhausted,
    /// The random source failed.
    #[error(transparent)]
    Random(#[from] RandomError),
}

impl StoreError {
    /// The close code a server answers the HELLO with when [`SessionStore::admit`] fails
    /// ([`Connection::admit`](super::Connection::admit) applies it):
    /// - [`Full`](Self::Full): 4007 ENHANCE_YOUR_CALM, a resource limit the client retries
    ///   after a longer backoff (spec/protocol.md §6.2, §9.1);
    /// - a random source that failed, or gave only ids in use: 4008 INTERNAL_ERROR, never
    ///   weaker bytes (§7.3 step 4).
    pub fn close_code(&self) -> CloseCode {
        match self {
            StoreError::Full(_) => CloseCode::ENHANCE_YOUR_CALM,
            StoreError::IdsExhausted | StoreError::Random(_) => CloseCode::INTERNAL_ERROR,
        }
    }

    /// The close frame's reason for [`close_code`](Self::close_code).
    pub fn close_reason(&self) -> &'static str {
        match self {
            StoreError::Full(_) => "session store full; retry later",
            StoreError::IdsExhausted | StoreError::Random(_) => "no session id",
        }
    }
}

impl SessionStore {
    /// Default resume window: 30 s (spec/protocol.md §9.1).
    pub const DEFAULT_RESUME_WINDOW: Duration = Duration::from_secs(30);
    /// Default bound on detached sessions kept at once.
    pub const DEFAULT_MAX_DETACHED: usize = 10_000;

    /// A store keeping failed sessions for `window` (at most a day; longer is cut).
    pub fn new(window: Duration) -> Self {
        SessionStore {
            window: window.min(Duration::from_secs(86_400)),
            max_detached: Self::DEFAULT_MAX_DETACHED,
            sessions: HashMap::new(),
            expiry: BTreeSet::new(),
            expired: VecDeque::new(),
            next_generation: 1,
        }
    }

    /// Bounds the number of detached sessions (at least 1). While that many are held, new
    /// sessions are refused and a failing connection's session is not kept; held ones
    /// are never evicted (see [capacity](SessionStore#capacity)).
    pub fn with_max_detached(mut self, max: usize) -> Self {
        let max = max.max(1);
        self.max_detached = max;
        self
    }

    /// The resume window.
    pub fn resume_window(&self) -> Duration {
        self.window
    }

    /// Sessions held, live and detached.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether no session is held.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Detached sessions, waiting to be resumed or to expire.
    pub fn detached_len(&self) -> usize {
        self.expiry.len()
    }

    /// Whether the store holds as many detached sessions as it may: [`admit`](Self::admit)
    /// then refuses new sessions.
    pub fn is_full(&self) -> bool {
        self.expiry.len() >= self.max_detached
    }

    /// The metadata of a session, from its latest accepted HELLO.
    pub fn metadata(&self, id: &Uuid) -> Option<&Bytes> {
        self.sessions.get(id).map(|e| &e.metadata)
    }

    /// Decides the identity of a connection whose HELLO the embedder accepts
    /// (spec/protocol.md §9.1). A `resume` naming a held session with the right token
    /// resumes it, with a new token; anything else (unknown id, wrong token, expired)
    /// gets a new session: never another client's. A new session is refused with
    /// [`StoreError::Full`] while the store [is full](Self::is_full).
    pub fn admit(
        &mut self,
        resume: Option<&Resume>,
        metadata: Bytes,
        rng: &mut impl RandomSource,
        now: Instant,
    ) -> Result<Admission, StoreError> {
        if let Some(resume) = resume {
            if let Some(admission) = self.try_resume(resume, &metadata, rng, now)? {
                return Ok(admission);
            }
        }
        if self.is_full() {
            return Err(StoreError::Full(self.expiry.len()));
        }
        // The store's copy has a buffer of its own: a slice of the HELLO message would pin
        // the whole read buffer it came from for as long as the session is held.
        let metadata = Bytes::copy_from_slice(&metadata);
        // A v4 id has 122 random bits: a repeat means a broken random source.
        for _ in 0..4 {
            let (id, token) = draw_identity(rng)?;
            if self.sessions.contains_key(&id) {
                continue;
            }
            let generation = self.bump();
            self.sessions.insert(
                id,
                Entry {
                    token,
                    metadata,
                    generation,
                    detached_until: None,
                },
            );
            return Ok(Admission {
                handle: SessionHandle { id, generation },
                token,
                resumed: false,
                replaces: None,
                resume_window: self.window,
                heartbeat: None,
            });
        }
        Err(StoreError::IdsExhausted)
    }

    fn try_resume(
        &mut self,
        resume: &Resume,
        metadata: &Bytes,
        rng: &mut impl RandomSource,
        now: Instant,
    ) -> Result<Option<Admission>, RandomError> {
        let id = resume.connection_id;
        let Some(entry) = self.sessions.get(&id) else {
            return Ok(None);
        };
        if let Some(deadline) = entry.detached_until {
            if deadline <= now {
                // Expired, whether or not handle_timeout ran yet.
                self.expiry.remove(&(deadline, id));
                self.sessions.remove(&id);
                self.expired.push_back(id);
                return Ok(None);
            }
        }
        // ResumeToken's equality is constant-time.
        if entry.token != resume.token {
            return Ok(None);
        }
        // Drawn before anything changes, so a failing source leaves the session as it was.
        let token = draw_token(rng)?;
        let generation = self.bump();
        let Some(entry) = self.sessions.get_mut(&id) else {
            return Ok(None);
        };
        let replaces = match entry.detached_until.take() {
            Some(deadline) => {
                self.expiry.remove(&(deadline, id));
                None
            }
            None => Some(SessionHandle {
                id,
                generation: entry.generation,
            }),
        };
        entry.token = token;
        entry.generation = generation;
        entry.metadata = Bytes::copy_from_slice(metadata);
        Ok(Some(Admission {
            handle: SessionHandle { id, generation },
            token,
            resumed: true,
            replaces,
            resume_window: self.window,
            heartbeat: None,
        }))
    }

    fn bump(&mut self) -> u64 {
        let g = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1);
        g
    }

    /// Applies the end of `conn` to the session it held: the one call a server makes
    /// when a connection it accepted has ended (after its [`Event::Closed`] or
    /// [`Event::Failure`](super::Event::Failure)). The connection decides
    /// ([`Connection::session_outcome`](super::Connection::session_outcome)): a failure
    /// the client resumes from detaches the session (as [`detach`](Self::detach)),
    /// anything else ends it (as [`remove`](Self::remove)), spec/protocol.md §9.1.
    ///
    /// Returns what became of the session: [`Detach`](SessionOutcome::Detach) when it is
    /// resumable now, [`End`](SessionOutcome::End) when it is forgotten (also when a
    /// failure could not be kept: a full store, a zero window), `None` when nothing
    /// changed: the connection is still open, held no session (never accepted, or
    /// accepted with [`Admission::fresh`]), or its handle is stale (the session was
    /// resumed on a newer connection, §9.3) or was already applied.
    ///
    /// [`Event::Closed`]: super::Event::Closed
    pub fn connection_ended(
        &mut self,
        conn: &super::Connection,
        now: Instant,
    ) -> Option<SessionOutcome> {
        let session = conn.session()?;
        match conn.session_outcome()? {
            SessionOutcome::Detach => match self.detach_inner(session, now) {
                Detached::Kept => Some(SessionOutcome::Detach),
                Detached::Forgotten => Some(SessionOutcome::End),
                Detached::Ignored => None,
            },
            SessionOutcome::End => self.remove(session).then_some(SessionOutcome::End),
        }
    }

    /// The session's connection failed: keep the session resumable until `now` plus the
    /// window, and return `true`. Ignored (returns `false`) for a stale handle or an
    /// already detached session. When the store [is full](Self::is_full) the session is
    /// not kept (the newest goes, never an earlier one): it is forgotten, reported by
    /// [`poll_expired`](Self::poll_expired), and `false` is returned.
    pub fn detach(&mut self, session: SessionHandle, now: Instant) -> bool {
        self.detach_inner(session, now) == Detached::Kept
    }

    fn detach_inner(&mut self, session: SessionHandle, now: Instant) -> Detached {
        if self.window.is_zero() {
            return match self.remove(session) {
                true => Detached::Forgotten,
                false => Detached::Ignored,
            };
        }
        let Some(entry) = self.sessions.get_mut(&session.id) else {
            return Detached::Ignored;
        };
        if entry.generation != session.generation || entry.detached_until.is_some() {
            return Detached::Ignored;
        }
        // A window that ends later than the clock can represent (spec/protocol.md §5) is
        // treated like a full store: the session is forgotten, never kept without end.
        let deadline = now.checked_add(self.window);
        if self.expiry.len() >= self.max_detached || deadline.is_none() {
            // spec/protocol.md §9.1: a full store keeps what it holds.
            self.sessions.remove(&session.id);
            self.expired.push_back(session.id);
            return Detached::Forgotten;
        }
        let Some(deadline) = deadline else {
            return Detached::Forgotten;
        };
        entry.detached_until = Some(deadline);
        self.expiry.insert((deadline, session.id));
        Detached::Kept
    }

    /// The session ended for good (an orderly close): forget it. Ignored (returns `false`)
    /// for a stale handle.
    pub fn remove(&mut self, session: SessionHandle) -> bool {
        match self.sessions.get(&session.id) {
            Some(entry) if entry.generation == session.generation => {
                if let Some(deadline) = entry.detached_until {
                    self.expiry.remove(&(deadline, session.id));
                }
                self.sessions.remove(&session.id);
                true
            }
            _ => false,
        }
    }

    /// The next expiry deadline of a detached session.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.expiry.first().map(|&(deadline, _)| deadline)
    }

    /// Expires the detached sessions whose deadline is at or before `now` (a spurious call
    /// is a no-op). Costs O(log n) per expired session, nothing per session still held.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(deadline, id)) = self.expiry.first() {
            if deadline > now {
                break;
            }
            self.expiry.pop_first();
            self.sessions.remove(&id);
            self.expired.push_back(id);
        }
    }

    /// Ids of sessions that expired (or, failing while the store was full, were not kept)
    /// and can no longer be resumed.
    pub fn poll_expired(&mut self) -> Option<Uuid> {
        self.expired.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter_rng() -> impl FnMut(&mut [u8]) {
        let mut n = 0u8;
        move |buf: &mut [u8]| {
            for b in buf {
                n = n.wrapping_add(1);
                *b = n;
            }
        }
    }

    /// A seeded generator with a long period (the counter repeats after 256 bytes).
    fn seeded_rng(mut state: u64) -> impl FnMut(&mut [u8]) {
        move |buf: &mut [u8]| {
            for b in buf {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *b = state as u8;
            }
        }
    }

    #[test]
    fn ids_are_v4_and_tokens_separate() {
        let mut rng = counter_rng();
        let a = Admission::fresh(&mut rng).unwrap();
        assert_eq!(a.id().get_version_num(), 4);
        assert_ne!(&a.token.as_bytes()[..], &a.id().as_bytes()[..]);
        assert_eq!(a.resume_window(), Duration::ZERO);
    }

    #[test]
    fn resume_is_single_use_and_checks_the_token() {
        let t0 = Instant::now();
        let mut rng = counter_rng();
        let mut store = SessionStore::new(Duration::from_secs(30));
        let a = store
            .admit(None, Bytes::from_static(b"1"), &mut rng, t0)
            .unwrap();
        let ticket = Resume {
            connection_id: a.id(),
            token: a.token,
        };
        // Wrong token: a fresh session.
        let forged = Resume {
            token: ResumeToken::from_bytes([0; 16]),
            ..ticket
        };
        let b = store
            .admit(Some(&forged), Bytes::new(), &mut rng, t0)
            .unwrap();
        assert!(!b.is_resumed());
        assert_ne!(b.id(), a.id());
        // Right token while the first connection is live: resumed, replacing it.
        let c = store
            .admit(Some(&ticket), Bytes::from_static(b"2"), &mut rng, t0)
            .unwrap();
        assert!(c.is_resumed() && c.replaces_live_connection());
        assert_eq!(
            c.replaces(),
            Some(a.session()),
            "names the live connection's hold"
        );
        assert_eq!(c.id(), a.id());
        assert_eq!(store.metadata(&a.id()).map(|m| &m[..]), Some(&b"2"[..]));
        // The old connection's handle is stale now.
        assert!(!store.detach(a.session(), t0));
        assert!(!store.remove(a.session()));
        // The token was rotated: the old one no longer works.
        let d = store
            .admit(Some(&ticket), Bytes::new(), &mut rng, t0)
            .unwrap();
        assert!(!d.is_resumed());
        assert_eq!(store.len(), 3);
    }

    #[test]
    fn detached_sessions_expire_in_deadline_order() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut rng = counter_rng();
        let mut store = SessionStore::new(s(30)).with_max_detached(2);
        let a = store.admit(None, Bytes::new(), &mut rng, t0).unwrap();
        let b = store.admit(None, Bytes::new(), &mut rng, t0).unwrap();
        let c = store.admit(None, Bytes::new(), &mut rng, t0).unwrap();
        assert!(store.detach(b.session(), t0 + s(1)));
        assert!(!store.detach(b.session(), t0 + s(2)), "already detached");
        assert!(store.detach(a.session(), t0 + s(2)));
        assert_eq!(store.poll_timeout(), Some(t0 + s(31)));
        // The store is full: the third failing session is not kept, the earlier ones are.
        assert!(!store.detach(c.session(), t0 + s(3)));
        assert_eq!(store.poll_expired(), Some(c.id()));
        assert_eq!(store.detached_len(), 2);
        store.handle_timeout(t0 + s(30)); // spurious: nothing due
        assert_eq!(store.poll_expired(), None);
        store.handle_timeout(t0 + s(31));
        assert_eq!(store.poll_expired(), Some(b.id()));
        assert_eq!(store.poll_timeout(), Some(t0 + s(32)));
        // Expired but not yet collected: resuming it gives a fresh session.
        let ticket = Resume {
            connection_id: a.id(),
            token: a.token,
        };
        let d = store
            .admit(Some(&ticket), Bytes::new(), &mut rng, t0 + s(33))
            .unwrap();
        assert!(!d.is_resumed());
        assert_eq!(store.poll_expired(), Some(a.id()));
        assert_eq!(store.poll_timeout(), None);
        assert!(store.remove(d.session()));
        assert!(store.is_empty());
    }

    /// Issue 9 item 8: the deadline comes out of `poll_timeout`, and the timer alone
    /// expires the session: no other handshake is needed.
    #[test]
    fn a_detached_session_expires_on_time_without_another_handshake() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut rng = counter_rng();
        let mut store = SessionStore::new(ms(500));
        let a = store.admit(None, Bytes::new(), &mut rng, t0).unwrap();
        assert_eq!(store.poll_timeout(), None, "a live session has no deadline");
        assert!(store.detach(a.session(), t0 + ms(100)));
        let deadline = store.poll_timeout().unwrap();
        assert_eq!(deadline, t0 + ms(600));
        store.handle_timeout(deadline - ms(1));
        assert_eq!(store.poll_expired(), None);
        assert_eq!(store.detached_len(), 1);
        store.handle_timeout(deadline);
        assert_eq!(store.poll_expired(), Some(a.id()));
        assert_eq!(store.poll_expired(), None);
        assert_eq!(store.poll_timeout(), None);
        assert!(store.is_empty());
    }

    /// Issue 9 item 8: strangers' throwaway handshakes beyond the cap do not evict an
    /// earlier detached session; the new sessions are refused instead.
    #[test]
    fn a_full_store_refuses_new_sessions_and_keeps_the_earlier_ones() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut rng = seeded_rng(0x9e37_79b9_7f4a_7c15);
        let mut store = SessionStore::new(Duration::from_secs(30)).with_max_detached(8);
        let real = store
            .admit(None, Bytes::from_static(b"{\"me\":1}"), &mut rng, t0)
            .unwrap();
        assert!(store.detach(real.session(), t0));
        let (mut kept, mut refused) = (0, 0);
        // Strangers that are live when the store fills up, then fail.
        let live: Vec<_> = (0..4)
            .map(|_| store.admit(None, Bytes::new(), &mut rng, t0).unwrap())
            .collect();
        for i in 0..100u64 {
            let now = t0 + ms(i);
            match store.admit(None, Bytes::new(), &mut rng, now) {
                Ok(throwaway) => {
                    if store.detach(throwaway.session(), now) {
                        kept += 1;
                    }
                }
                Err(StoreError::Full(n)) => {
                    assert_eq!(n, 8);
                    refused += 1;
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!((kept, refused), (7, 93));
        assert!(store.is_full());
        for stranger in &live {
            assert!(!store.detach(stranger.session(), t0 + ms(200)), "not kept");
        }
        assert_eq!(store.detached_len(), 8);
        // The real client comes back within its window: resumed, same id.
        let ticket = Resume {
            connection_id: real.id(),
            token: real.token,
        };
        let back = store
            .admit(Some(&ticket), Bytes::new(), &mut rng, t0 + ms(29_000))
            .unwrap();
        assert!(back.is_resumed());
        assert_eq!(back.id(), real.id());
        // It left the detached set, so there is room for one new session again.
        assert!(!store.is_full());
        assert!(store
            .admit(None, Bytes::new(), &mut rng, t0 + ms(29_000))
            .is_ok());
    }

    #[test]
    fn the_store_keeps_a_compact_copy_of_the_metadata() {
        let mut rng = counter_rng();
        let mut store = SessionStore::new(Duration::from_secs(30));
        let message = Bytes::from(vec![b'x'; 64 * 1024]);
        let metadata = message.slice(100..110);
        let a = store
            .admit(None, metadata.clone(), &mut rng, Instant::now())
            .unwrap();
        let held = store.metadata(&a.id()).unwrap();
        assert_eq!(held, &metadata);
        assert_ne!(held.as_ptr(), metadata.as_ptr(), "a copy, not a view");
    }

    #[test]
    fn a_repeating_random_source_is_an_error_not_a_loop() {
        let mut rng = |buf: &mut [u8]| buf.fill(1);
        let mut store = SessionStore::new(Duration::from_secs(1));
        let t0 = Instant::now();
        store.admit(None, Bytes::new(), &mut rng, t0).unwrap();
        assert_eq!(
            store.admit(None, Bytes::new(), &mut rng, t0),
            Err(StoreError::IdsExhausted)
        );
    }

    /// A source that fails, like an operating system's CSPRNG that cannot be read.
    struct Broken;

    impl RandomSource for Broken {
        fn fill(&mut self, _: &mut [u8]) -> Result<(), RandomError> {
            Err(RandomError("entropy source unavailable".into()))
        }
    }

    #[test]
    fn a_failing_source_is_an_error_not_a_panic_and_changes_nothing() {
        let mut store = SessionStore::new(Duration::from_secs(30));
        let t0 = Instant::now();
        assert!(matches!(Admission::fresh(&mut Broken), Err(RandomError(_))));
        assert!(matches!(
            store.admit(None, Bytes::new(), &mut Broken, t0),
            Err(StoreError::Random(_))
        ));
        // A resume with a valid token needs a new token: failing leaves the session as it was.
        let mut rng = counter_rng();
        let first = store.admit(None, Bytes::new(), &mut rng, t0).unwrap();
        let ticket = Resume {
            connection_id: first.id(),
            token: first.token,
        };
        store.detach(first.session(), t0);
        assert!(store
            .admit(Some(&ticket), Bytes::new(), &mut Broken, t0)
            .is_err());
        let again = store
            .admit(Some(&ticket), Bytes::new(), &mut rng, t0)
            .unwrap();
        assert!(again.is_resumed(), "the old token still resumes");
    }
}
