//! [`Upstream`]: the local web server a gateway forwards to, reached over a small pool of
//! HTTP/1 connections (upstream_pool.rs), with its base path kept and every failure turned
//! into one short response.

use std::borrow::Cow;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http::header::{self, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Extensions, Method, Request, Response, Uri, Version};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use tether_proto::streams::TIMEOUT_HEADER;

use crate::gateway::upstream_pool::{Pool, PoolError};
use crate::rest::{box_body, BoxError};

use super::proxy::{remove_dot_segments, strip_hop_by_hop, strip_request_hops};
use super::GatewayError;

/// The body of the responses an [`Upstream`] returns: the upstream's, streaming, or a
/// short error text.
pub type UpstreamBody = UnsyncBoxBody<Bytes, BoxError>;

/// Why an upstream URL is not usable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamUrlError {
    /// Not a URL.
    #[error("invalid upstream URL: {0}")]
    Invalid(#[from] http::uri::InvalidUri),
    /// Not `http://HOST[:PORT][/BASE-PATH]`.
    #[error("the upstream URL must look like http://HOST[:PORT][/BASE-PATH]: {0}")]
    Unsupported(&'static str),
}

/// A [`tower::Service`] that sends every request on to an HTTP server and returns its
/// response: give it to [`Client::serve`](crate::client::Client::serve) or
/// [`Server::serve`](crate::server::Server::serve) to put a local web server within the
/// peer's reach.
///
/// - The URL is `http://HOST[:PORT][/BASE-PATH]`; the base path is put in front of each
///   request's path, and the query is kept: with `http://127.0.0.1:8080/api`, a request
///   for `/v1/items?page=2` goes to `http://127.0.0.1:8080/api/v1/items?page=2`. Dot
///   segments of the path (`/../x`, `/%2e%2e/x`) are removed first (RFC 3986 §5.2.4), so
///   no request leaves the base path; one hidden behind an encoded slash or a backslash
///   (`/..%2fx`) is refused with 400.
/// - `Host` is the URL's; the hop-by-hop fields ([`strip_hop_by_hop`]) and
///   `tether-timeout` are removed from the request, the hop-by-hop fields from the
///   response. Status, other fields and both bodies pass through, streaming.
/// - Failures are answered with one-line `text/plain` bodies: 502 when the server cannot
///   be reached (connection refused, name not resolved) or fails mid-answer, 504 when its
///   response head does not arrive within the [timeout](Self::with_timeout) (30 s by
///   default), 503 when no connection to it became free within that time, 501 for
///   CONNECT.
/// - Connections to the server are kept alive and reused, and bounded (at most
///   [`DEFAULT_MAX_CONNECTIONS`](Self::DEFAULT_MAX_CONNECTIONS), or
///   [`with_max_connections`](Self::with_max_connections)) across every stream and Tether
///   connection this `Upstream` (and its clones) serves: requests beyond the bound wait
///   for a free connection.
///
/// ```no_run
/// # fn f(client: &tether_tokio::client::Client) -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use tether_tokio::gateway::Upstream;
/// let upstream = Upstream::new("http://127.0.0.1:8080/api")?.with_timeout(Some(Duration::from_secs(60)));
/// client.serve(upstream);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Upstream {
    inner: Arc<UpstreamInner>,
    timeout: Option<Duration>,
}

struct UpstreamInner {
    url: String,
    authority: Authority,
    host: HeaderValue,
    /// The base path without its trailing `/` (empty for the root).
    base: String,
    pool: Arc<Pool>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("url", &self.inner.url)
            .field("timeout", &self.timeout)
            .field("max_connections", &self.inner.pool.max_connections())
            .finish_non_exhaustive()
    }
}

/// Default time for an upstream's response head.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);

/// Time to establish a TCP connection to the upstream.
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl Upstream {
    /// Default bound on the connections to the upstream server (issue 9 item 5: one
    /// connection per stream exhausted file descriptors).
    pub const DEFAULT_MAX_CONNECTIONS: usize = 128;

    /// An upstream at `url` (`http://HOST[:PORT][/BASE-PATH]`; no query, no user info).
    /// Must be called within a tokio runtime only when requests are made.
    ///
    /// ```
    /// use tether_tokio::gateway::Upstream;
    /// assert!(Upstream::new("http://127.0.0.1:8080/api").is_ok());
    /// assert!(Upstream::new("https://example.com/").is_err()); // http:// only
    /// assert!(Upstream::new("http://example.com/?q=1").is_err());
    /// ```
    pub fn new(url: &str) -> Result<Upstream, UpstreamUrlError> {
        let uri: Uri = url.parse()?;
        if uri.scheme() != Some(&Scheme::HTTP) {
            return Err(UpstreamUrlError::Unsupported("only http:// is supported"));
        }
        let authority = uri
            .authority()
            .cloned()
            .ok_or(UpstreamUrlError::Unsupported("no host"))?;
        if authority.as_str().contains('@') {
            return Err(UpstreamUrlError::Unsupported("user info is not supported"));
        }
        if authority.host().is_empty() {
            return Err(UpstreamUrlError::Unsupported("no host"));
        }
        if uri.query().is_some() {
            return Err(UpstreamUrlError::Unsupported("no query allowed"));
        }
        let host = HeaderValue::from_str(authority.as_str())
            .map_err(|_| UpstreamUrlError::Unsupported("invalid host"))?;
        let base = uri.path().trim_end_matches('/').to_owned();
        let pool = Self::pool(&authority, Self::DEFAULT_MAX_CONNECTIONS);
        Ok(Upstream {
            inner: Arc::new(UpstreamInner {
                url: format!("http://{authority}{base}/"),
                authority,
                host,
                base,
                pool,
            }),
            timeout: Some(UPSTREAM_TIMEOUT),
        })
    }

    fn pool(authority: &Authority, max: usize) -> Arc<Pool> {
        let addr = format!(
            "{}:{}",
            authority.host(),
            authority.port_u16().unwrap_or(80)
        );
        Pool::new(addr, max, UPSTREAM_CONNECT_TIMEOUT)
    }

    /// The same upstream with its own pool of at most `max` connections (at least 1),
    /// shared by its clones. A request that finds them all in use waits for one until its
    /// [timeout](Self::with_timeout), then gets 503.
    ///
    /// ```
    /// use tether_tokio::gateway::Upstream;
    /// let upstream = Upstream::new("http://127.0.0.1:8080")?.with_max_connections(16);
    /// # Ok::<(), tether_tokio::gateway::UpstreamUrlError>(())
    /// ```
    pub fn with_max_connections(mut self, max: usize) -> Self {
        let inner = &self.inner;
        self.inner = Arc::new(UpstreamInner {
            url: inner.url.clone(),
            authority: inner.authority.clone(),
            host: inner.host.clone(),
            base: inner.base.clone(),
            pool: Self::pool(&inner.authority, max),
        });
        self
    }

    /// The same upstream with another time limit for the response head (`None`: none).
    /// The body may take longer: the caller's own timeout limits the whole exchange.
    pub fn with_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// The upstream URL, normalised (`http://HOST[:PORT][/BASE-PATH]/`).
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// The URL a request for `target` goes to ([`target_path`](Self::target_path) on this
    /// upstream), as the fuzz target `gateway_http` checks it.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn target_uri(&self, target: &Uri) -> Result<Uri, GatewayError> {
        let path = self.target_path(target)?;
        Uri::builder()
            .scheme(Scheme::HTTP)
            .authority(self.inner.authority.clone())
            .path_and_query(path)
            .build()
            .map_err(|_| GatewayError::UnsupportedTarget(target.to_string()))
    }

    /// The path and query a request for `target` goes to, what the request line carries:
    /// the base path, then the target's path with its dot segments removed
    /// ([`remove_dot_segments`]: no request leaves the base path) and its query.
    fn target_path(&self, target: &Uri) -> Result<PathAndQuery, GatewayError> {
        let pq = match target.path_and_query() {
            Some(pq) if pq.as_str().starts_with('/') => pq,
            None if target.authority().is_some() && target.scheme().is_some() => {
                &PathAndQuery::from_static("/")
            }
            _ => return Err(GatewayError::UnsupportedTarget(target.to_string())),
        };
        // A path without `.`, `%` or `\` has no dot segment, plain or encoded: it stays as
        // it is, and under the root the target's own path and query are the answer, with
        // nothing written out and parsed again (issue 11, benches/RESULTS.md, twenty-fourth
        // pass).
        let plain = !pq.path().bytes().any(|b| matches!(b, b'.' | b'%' | b'\\'));
        if plain && self.inner.base.is_empty() {
            return Ok(pq.clone());
        }
        let path = if plain {
            Cow::Borrowed(pq.path())
        } else {
            Cow::Owned(
                remove_dot_segments(pq.path())
                    .ok_or_else(|| GatewayError::HiddenDotSegment(pq.path().to_owned()))?,
            )
        };
        let query = pq.query().map_or(String::new(), |q| format!("?{q}"));
        PathAndQuery::try_from(format!("{}{path}{query}", self.inner.base))
            .map_err(|_| GatewayError::UnsupportedTarget(target.to_string()))
    }

    /// Sends one request upstream; failures become error responses.
    pub async fn proxy<B>(&self, request: Request<B>) -> Response<UpstreamBody>
    where
        B: http_body::Body + Send + 'static,
        B::Data: Buf + Send,
        B::Error: Into<BoxError>,
    {
        match self.try_proxy(request).await {
            Ok(response) => response,
            Err(e) => {
                tracing::debug!(error = %e, "upstream request failed");
                e.to_response::<Full<Bytes>>()
                    .map(|body| body.map_err(|never| match never {}).boxed_unsync())
            }
        }
    }

    async fn try_proxy<B>(
        &self,
        request: Request<B>,
    ) -> Result<Response<UpstreamBody>, GatewayError>
    where
        B: http_body::Body + Send + 'static,
        B::Data: Buf + Send,
        B::Error: Into<BoxError>,
    {
        let (mut parts, body) = request.into_parts();
        if parts.method == Method::CONNECT {
            return Err(GatewayError::UnsupportedMethod(parts.method));
        }
        // On the connection the request line carries the origin-form.
        parts.uri = Uri::from(self.target_path(&parts.uri)?);
        strip_request_hops(&mut parts.headers);
        parts.headers.remove(TIMEOUT_HEADER);
        parts.headers.insert(header::HOST, self.inner.host.clone());
        parts.version = Version::HTTP_11;
        parts.extensions = Extensions::new();
        // A timeout beyond what the clock can represent is none (never a panic).
        let deadline = self
            .timeout
            .and_then(|t| tokio::time::Instant::now().checked_add(t));
        let result = self
            .inner
            .pool
            .send(Request::from_parts(parts, box_body(body)), deadline)
            .await;
        let mut response = result.map_err(|e| {
            let url = self.inner.url.clone();
            match e {
                PoolError::Busy => GatewayError::UpstreamBusy {
                    url,
                    max_connections: self.inner.pool.max_connections(),
                },
                PoolError::TimedOut => GatewayError::UpstreamTimedOut {
                    url,
                    timeout: self.timeout.unwrap_or_default(),
                },
                PoolError::Connect(e) => GatewayError::UpstreamUnreachable {
                    url,
                    reason: error_chain(&e),
                },
                PoolError::Failed(e) => GatewayError::UpstreamFailed {
                    url,
                    reason: error_chain(&e),
                },
            }
        })?;
        strip_hop_by_hop(response.headers_mut());
        Ok(response.map(|body| body.map_err(BoxError::from).boxed_unsync()))
    }
}

/// An error and its sources, on one line.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}

impl<B> tower::Service<Request<B>> for Upstream
where
    B: http_body::Body + Send + 'static,
    B::Data: Buf + Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<UpstreamBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<UpstreamBody>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let upstream = self.clone();
        Box::pin(async move { Ok(upstream.proxy(request).await) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_urls() {
        let up = Upstream::new("http://127.0.0.1:8080/api/").unwrap();
        assert_eq!(up.url(), "http://127.0.0.1:8080/api/");
        let t = |s: &str| up.target_uri(&s.parse().unwrap()).map(|u| u.to_string());
        assert_eq!(
            t("/v1/items?page=2&x=%20").unwrap(),
            "http://127.0.0.1:8080/api/v1/items?page=2&x=%20"
        );
        assert_eq!(t("/").unwrap(), "http://127.0.0.1:8080/api/");
        assert_eq!(
            t("http://elsewhere/x?y").unwrap(),
            "http://127.0.0.1:8080/api/x?y"
        );
        assert!(matches!(t("*"), Err(GatewayError::UnsupportedTarget(_))));
        assert!(matches!(
            t("example.com:443"),
            Err(GatewayError::UnsupportedTarget(_))
        ));

        let root = Upstream::new("http://localhost").unwrap();
        assert_eq!(root.url(), "http://localhost/");
        assert_eq!(root.inner.host, "localhost");
        assert_eq!(
            root.target_uri(&"/a/b?c=d".parse().unwrap())
                .unwrap()
                .to_string(),
            "http://localhost/a/b?c=d"
        );

        for bad in [
            "127.0.0.1:8080",
            "https://h/",
            "ftp://h/",
            "http://h/?q",
            "http://u:p@h/",
            "/path",
            "not a url",
        ] {
            assert!(Upstream::new(bad).is_err(), "{bad}");
        }
    }

    /// What goes on the request line is the origin-form of the URL the request goes to,
    /// whether the target's path is taken as it is or rewritten, under the root or a base.
    #[test]
    fn the_request_line_carries_the_origin_form_of_the_url() {
        let targets = [
            "/",
            "/small",
            "/a/b?c=d",
            "/a?",
            "/a//b/",
            "/a/../b",
            "/%2e%2e/x?y",
            "/a%20b",
            "/..%2fx",
            "/a\\b",
            "http://elsewhere/x?y",
            "http://elsewhere",
            "*",
            "h:443",
        ];
        for base in ["http://h", "http://h/api", "http://h:81/a/b/"] {
            let up = Upstream::new(base).unwrap();
            for target in targets {
                let target: Uri = target.parse().unwrap();
                let line = up.target_path(&target).map(Uri::from);
                let url = up.target_uri(&target);
                match (line, url) {
                    (Ok(line), Ok(url)) => {
                        assert_eq!(line, super::super::proxy::origin_form(&url).unwrap());
                        assert_eq!(line.path_and_query(), url.path_and_query(), "{target}");
                    }
                    (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
                    (a, b) => panic!("{target} under {base}: {a:?} and {b:?}"),
                }
            }
        }
    }

    #[test]
    fn no_request_leaves_the_base_path() {
        let up = Upstream::new("http://h/api").unwrap();
        let t = |s: &str| up.target_uri(&s.parse().unwrap()).map(|u| u.to_string());
        for (target, want) in [
            ("/../secret", "http://h/api/secret"),
            ("/%2e%2e/secret", "http://h/api/secret"),
            ("/%2E%2e/%2e/secret?x=/../y", "http://h/api/secret?x=/../y"),
            ("/a/b/../../../secret", "http://h/api/secret"),
            ("/a/./b/.", "http://h/api/a/b/"),
            ("/a/b/..", "http://h/api/a/"),
            ("/..", "http://h/api/"),
            ("/a//b", "http://h/api/a//b"),
            ("/a..b/...", "http://h/api/a..b/..."),
            ("/a%2fb", "http://h/api/a%2fb"),
            ("http://x/../secret", "http://h/api/secret"),
        ] {
            assert_eq!(t(target).unwrap(), want, "{target}");
        }
        for hidden in [
            "/..%2fsecret",
            "/%2e%2e%2Fsecret",
            "/a/..%5csecret",
            "/x%2f..%2f..%2fsecret",
        ] {
            assert!(
                matches!(
                    up.target_uri(&hidden.parse().unwrap()),
                    Err(GatewayError::HiddenDotSegment(_))
                ),
                "{hidden}"
            );
        }
        // A backslash is not valid in a URI, but the check does not rely on that.
        assert_eq!(remove_dot_segments("/a/..\\secret"), None);
        assert_eq!(remove_dot_segments("/a/b\\c").as_deref(), Some("/a/b\\c"));
    }
}
