//! The `ws_upgrade` fuzz target's checks, shared with the unit test in
//! runtime-tokio/src/fuzzing.rs (which replays the committed corpus): the server's
//! WebSocket upgrade checks (runtime-tokio/src/transport/upgrade.rs) on arbitrary request
//! heads never panic, an accepted request satisfies every RFC 6455 §4.2.1 condition
//! (checked here independently), and a refused one gets 405, 403, 400 or 426 for the first
//! condition it breaks.
//!
//! Input: one policy byte (bits 0-1: origins Any, SameHost, List; bit 2: require the
//! `tether.v1` subprotocol), then the request head as text (`http1_common.rs`).

use http::header::{self, HeaderMap};
use http::{Method, StatusCode, Version};
use tether_tokio::fuzzing::upgrade_check;
use tether_tokio::transport::upgrade::AllowedOrigins;

fn tokens<'a>(
    headers: &'a HeaderMap,
    name: header::HeaderName,
) -> impl Iterator<Item = String> + 'a {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
}

fn base64_key(key: &[u8]) -> bool {
    key.len() == 24
        && key.ends_with(b"==")
        && key[..22]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
}

/// One input: a policy byte, then the request head.
pub fn run(data: &[u8]) {
    let Some((&policy, head)) = data.split_first() else {
        return;
    };
    let origins = match policy & 3 {
        0 => AllowedOrigins::Any,
        1 => AllowedOrigins::SameHost,
        _ => AllowedOrigins::List(vec![
            "http://a.example".into(),
            "https://B.example:8443".into(),
        ]),
    };
    let subprotocol = (policy & 4 != 0).then_some("tether.v1");
    let Some(request) = super::http1_common::request(head) else {
        return;
    };
    let headers = request.headers();
    let outcome = upgrade_check(&request, &origins, subprotocol);
    // The first broken condition decides the status (upgrade.rs `check`).
    let expected = if request.method() != Method::GET {
        Some(StatusCode::METHOD_NOT_ALLOWED)
    } else if !origins.allows(headers) {
        Some(StatusCode::FORBIDDEN)
    } else if request.version() < Version::HTTP_11
        || !tokens(headers, header::UPGRADE).any(|t| t == "websocket")
        || !tokens(headers, header::CONNECTION).any(|t| t == "upgrade")
    {
        Some(StatusCode::BAD_REQUEST)
    } else if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(|v| v.as_bytes())
        != Some(b"13")
    {
        Some(StatusCode::UPGRADE_REQUIRED)
    } else if subprotocol.is_some()
        && !tokens(headers, header::SEC_WEBSOCKET_PROTOCOL).any(|t| t == "tether.v1")
    {
        Some(StatusCode::BAD_REQUEST)
    } else {
        let keys: Vec<_> = headers.get_all(header::SEC_WEBSOCKET_KEY).iter().collect();
        if keys.len() == 1 && base64_key(keys[0].as_bytes()) {
            None
        } else {
            Some(StatusCode::BAD_REQUEST)
        }
    };
    match (outcome, expected) {
        (Ok(accept), None) => {
            // base64 of a SHA-1 digest (RFC 6455 §4.2.2 item 5.4).
            assert_eq!(accept.len(), 28, "{accept:?}");
            assert!(accept.ends_with('='), "{accept:?}");
        }
        (Err(status), Some(want)) => assert_eq!(status, want, "{request:?}"),
        (got, want) => panic!("upgrade check gave {got:?}, expected {want:?} for {request:?}"),
    }
}
