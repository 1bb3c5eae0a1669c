//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`, off by default): the
//! checks this crate applies itself to bytes a peer controls, reachable without sockets.
//! HTTP/1 parsing is hyper's and WebSocket framing tungstenite's; what is fuzzed here is
//! what the runtime decides on their output. Not a stable API.

use http::{HeaderMap, Request, StatusCode, Uri};

use crate::gateway::{GatewayError, Upstream};
use crate::transport::upgrade::AllowedOrigins;

/// The server's WebSocket upgrade checks (method, origin, version, subprotocol, key; RFC
/// 6455 §4.2.1, spec/protocol.md §2.1) on a request head: the `Sec-WebSocket-Accept`
/// value it would answer with, or the status it would reject with.
pub fn upgrade_check<B>(
    request: &Request<B>,
    origins: &AllowedOrigins,
    subprotocol: Option<&'static str>,
) -> Result<String, StatusCode> {
    crate::transport::upgrade::check(request, origins, subprotocol).map_err(|(status, _)| status)
}

/// The URL an [`Upstream`] would send a request for `target` to (base path kept, dot
/// segments removed, RFC 3986 §5.2.4), or why the gateway refuses the target.
pub fn upstream_target(upstream: &Upstream, target: &Uri) -> Result<Uri, GatewayError> {
    upstream.target_uri(target)
}

/// The origin-form a server's gateway forwards for `target` (RFC 9112 §3.2).
pub fn origin_form(target: &Uri) -> Result<Uri, GatewayError> {
    crate::gateway::proxy::origin_form(target)
}

/// The hop-by-hop field removal the gateway applies to a request it forwards (RFC 9110
/// §7.6.1; `TE: trailers` kept, spec/protocol.md §4.3).
pub fn strip_request_hops(headers: &mut HeaderMap) {
    crate::gateway::proxy::strip_request_hops(headers)
}
