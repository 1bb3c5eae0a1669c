//! Server-side sessions and their resumption (spec/protocol.md §9).

use bytes::Bytes;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};
use uuid::Uuid;

use crate::{RandomError, RandomSource};
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
    pub(super) replaces_live: bool,
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
            replaces_live: false,
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

    /// Whether a connection of this session was still open: the embedder closes it with
    /// SESSION_REPLACED (spec/protocol.md §9.3).
    pub fn replaces_live_connection(&self) -> bool {
        self.replaces_live
    }

    /// How long the session stays resumable after its connection fails (announced as
    /// RESUME_WINDOW_MS).
    pub fn resume_window(&self) -> Duration {
        self.resume_window
    }
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
/// come out of [`poll_timeout`](SessionStore::poll_timeout).
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

/// Why the store could not admit a connection (the server rejects it with 4008).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The random source produced only connection ids already in use.
    #[error("random source produced only connection ids already in use")]
    IdsExhausted,
    /// The random source failed.
    #[error(transparent)]
    Random(#[from] RandomError),
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

    /// Bounds the number of detached sessions; past it, the one closest to expiry is
    /// dropped first.
    pub fn with_max_detached(mut self, max: usize) -> Self {
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

    /// The metadata of a session, from its latest accepted HELLO.
    pub fn metadata(&self, id: &Uuid) -> Option<&Bytes> {
        self.sessions.get(id).map(|e| &e.metadata)
    }

    /// Decides the identity of a connection whose HELLO the embedder accepts
    /// (spec/protocol.md §9.1). A `resume` naming a held session with the right token
    /// resumes it, with a new token; anything else (unknown id, wrong token, expired)
    /// gets a new session: never another client's.
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
                replaces_live: false,
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
        let replaces_live = match entry.detached_until.take() {
            Some(deadline) => {
                self.expiry.remove(&(deadline, id));
                false
            }
            None => true,
        };
        entry.token = token;
        entry.generation = generation;
        entry.metadata = metadata.clone();
        Ok(Some(Admission {
            handle: SessionHandle { id, generation },
            token,
            resumed: true,
            replaces_live,
            resume_window: self.window,
            heartbeat: None,
        }))
    }

    fn bump(&mut self) -> u64 {
        let g = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1);
        g
    }

    /// The session's connection failed: keep the session resumable until `now` plus the
    /// window. Ignored (returns `false`) for a stale handle or an already detached session.
    pub fn detach(&mut self, session: SessionHandle, now: Instant) -> bool {
        if self.window.is_zero() {
            return self.remove(session);
        }
        let Some(entry) = self.sessions.get_mut(&session.id) else {
            return false;
        };
        if entry.generation != session.generation || entry.detached_until.is_some() {
            return false;
        }
        let deadline = now + self.window;
        entry.detached_until = Some(deadline);
        self.expiry.insert((deadline, session.id));
        while self.expiry.len() > self.max_detached {
            if let Some((_, id)) = self.expiry.pop_first() {
                self.sessions.remove(&id);
                self.expired.push_back(id);
            }
        }
        true
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

    /// Expires the detached sessions whose deadline is at or before `now`.
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

    /// Ids of sessions that expired (or were evicted) and can no longer be resumed.
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
        // A third detached session evicts the one closest to expiry.
        assert!(store.detach(c.session(), t0 + s(3)));
        assert_eq!(store.poll_expired(), Some(b.id()));
        assert_eq!(store.detached_len(), 2);
        store.handle_timeout(t0 + s(31)); // spurious: nothing due
        assert_eq!(store.poll_expired(), None);
        store.handle_timeout(t0 + s(32));
        assert_eq!(store.poll_expired(), Some(a.id()));
        // Expired but not yet collected: resuming it gives a fresh session.
        let ticket = Resume {
            connection_id: c.id(),
            token: c.token,
        };
        let d = store
            .admit(Some(&ticket), Bytes::new(), &mut rng, t0 + s(33))
            .unwrap();
        assert!(!d.is_resumed());
        assert_eq!(store.poll_expired(), Some(c.id()));
        assert_eq!(store.poll_timeout(), None);
        assert!(store.remove(d.session()));
        assert!(store.is_empty());
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
