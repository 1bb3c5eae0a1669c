//! The `gateway_http` fuzz target's checks, shared with the unit test in
//! runtime-tokio/src/fuzzing.rs (which replays the committed corpus): what the gateway
//! decides itself on the HTTP/1.1 requests it forwards (runtime-tokio/src/gateway/proxy.rs
//! and upstream.rs; hyper parses the bytes): the upstream URL of a request target, the
//! origin-form a server's gateway forwards, and hop-by-hop field removal. Never a panic; no
//! accepted target leaves the upstream's base path for an upstream that decodes `%2e`,
//! `%2f`, `%5c` once and splits on `/` or `\`; no hop-by-hop field survives.
//!
//! Input: one byte choosing the upstream's base path, then the request target on the
//! first line and header lines after it (`http1_common.rs`).

use http::header::{self, HeaderName};
use http::Uri;
use tether_tokio::fuzzing::{origin_form, strip_request_hops, upstream_target};
use tether_tokio::gateway::Upstream;

const BASES: [&str; 4] = ["", "/api", "/a/b", "/x%2e"];

/// Percent-decoding (once) of every `%XX`, as a lenient upstream might do.
fn decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// Whether `path` (below the base) climbs above its start for such an upstream.
fn climbs(path: &str) -> bool {
    let decoded = decode(path);
    let mut depth: i64 = 0;
    for segment in decoded.split(|b| *b == b'/' || *b == b'\\') {
        match segment {
            b"" | b"." => {}
            b".." => {
                depth -= 1;
                if depth < 0 {
                    return true;
                }
            }
            _ => depth += 1,
        }
    }
    false
}

const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
];

/// One input: a byte choosing the base path, then the target and header lines.
pub fn run(data: &[u8]) {
    let Some((&choice, rest)) = data.split_first() else {
        return;
    };
    let base = BASES[usize::from(choice) % BASES.len()];
    let mut lines = super::http1_common::lines(rest);
    let Some(target) = lines.next() else { return };
    let mut headers = super::http1_common::headers(lines);

    if let Ok(target) = Uri::try_from(target) {
        let upstream = Upstream::new(&format!("http://127.0.0.1:8080{base}")).expect("valid base");
        if let Ok(uri) = upstream_target(&upstream, &target) {
            assert_eq!(uri.authority().map(|a| a.as_str()), Some("127.0.0.1:8080"));
            let path = uri.path();
            let below = path
                .strip_prefix(base)
                .unwrap_or_else(|| panic!("{path:?} left {base:?}"));
            assert!(below.starts_with('/'), "{path:?} left {base:?}");
            assert!(
                !climbs(below),
                "{target} became {uri}, which climbs out of {base:?}"
            );
            assert_eq!(uri.query(), target.query());
        }
        if let Ok(origin) = origin_form(&target) {
            assert!(origin.path().starts_with('/'), "{origin}");
            assert!(
                origin.authority().is_none() && origin.scheme().is_none(),
                "{origin}"
            );
        }
    }

    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    strip_request_hops(&mut headers);
    for name in HOP_BY_HOP
        .iter()
        .map(|n| HeaderName::from_static(n))
        .chain(named)
    {
        if name == header::TE {
            // Only `TE: trailers` survives (spec/protocol.md §4.3).
            let values: Vec<_> = headers.get_all(&name).iter().collect();
            assert!(values.is_empty() || values == ["trailers"], "{values:?}");
        } else {
            assert!(!headers.contains_key(&name), "{name} survived");
        }
    }
}
