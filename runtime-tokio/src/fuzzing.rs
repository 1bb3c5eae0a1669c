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

/// A WebSocket byte stream read by a Tether connection (its socket's `ReadAhead` reads
/// binary frames whole, `transport/read_ahead.rs`) and by tungstenite alone: `Err` names
/// the first difference in the messages, the end or the error. Input: byte 0 bit 0 the
/// side that reads (0 the server, 1 the client), bits 1 to 3 the socket's largest read;
/// byte 1 the number of bursts the bytes arrive in (modulo 32), then a byte per burst
/// choosing its size; then the bytes.
pub fn ws_read(data: &[u8]) -> Result<(), String> {
    crate::transport::read_ahead::differential::compare(data)
}

// The runtime targets' own checks, shared with fuzz/fuzz_targets/ (paths relative to src/).
#[cfg(test)]
#[allow(unreachable_pub)]
#[path = "../../fuzz/fuzz_targets/gateway_http_common.rs"]
mod gateway_http_common;
#[cfg(test)]
#[allow(unreachable_pub)]
#[path = "../../fuzz/fuzz_targets/http1_common.rs"]
mod http1_common;
#[cfg(test)]
#[allow(unreachable_pub)]
#[path = "../../fuzz/fuzz_targets/ws_upgrade_common.rs"]
mod ws_upgrade_common;

/// Replays the committed corpora of the runtime fuzz targets (`fuzz/corpus/ws_upgrade/`,
/// `fuzz/corpus/gateway_http/`, `fuzz/corpus/ws_read/`: seeds, regressions and the minimised corpus a run grew)
/// through the targets' own checks, so every corpus file, and every future finding
/// committed there, is a regression test of `cargo test --workspace`.
#[cfg(test)]
mod tests {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::path::Path;

    /// Runs `check` on every file of `fuzz/corpus/<target>` (at least `min`) and fails with
    /// the names of the inputs whose check panicked.
    fn replay(target: &str, min: usize, check: fn(&[u8])) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/corpus")
            .join(target);
        let mut inputs: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| {
                let path = entry.expect("directory entry").path();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read(&path).expect("corpus file"))
            })
            .collect();
        inputs.sort();
        assert!(
            inputs.len() >= min,
            "{target}: {} files, the corpus is missing",
            inputs.len()
        );
        let failed: Vec<_> = inputs
            .iter()
            .filter(|(_, data)| catch_unwind(AssertUnwindSafe(|| check(data))).is_err())
            .map(|(name, _)| name.as_str())
            .collect();
        assert!(
            failed.is_empty(),
            "{target}: {failed:?} break the target's checks"
        );
    }

    #[test]
    fn ws_upgrade_corpus() {
        replay("ws_upgrade", 7, super::ws_upgrade_common::run);
    }

    #[test]
    fn ws_read_corpus() {
        replay("ws_read", 4, |data| {
            if let Err(e) = super::ws_read(data) {
                panic!("{e}")
            }
        });
    }

    #[test]
    fn gateway_http_corpus() {
        replay("gateway_http", 9, super::gateway_http_common::run);
    }
}
