//! The HTTP proxy rules of the gateway (RFC 9110, RFC 3986), in both directions: which
//! header fields belong to one hop, the origin-form of a request target, and dot-segment
//! removal so that no request leaves an upstream's base path.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::Uri;

use super::GatewayError;

/// The fields that describe one transport hop (RFC 9110 §7.6.1, §11.7), besides those a
/// `Connection` field names. `Proxy-Authenticate` and `Proxy-Authorization` are included:
/// the tunnel does no proxy authentication, and proxy credentials must not travel on to
/// an origin server. [`present_hops`] gives each its bit in this order (`Connection`
/// first, `TE` at [`TE_BIT`]).
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
];

/// Removes the hop-by-hop fields from a message a gateway forwards (RFC 9110 §7.6.1):
/// every field named in a `Connection` field, then `Connection`, `Keep-Alive`,
/// `Proxy-Connection`, `TE`, `Transfer-Encoding`, `Upgrade`, `Proxy-Authenticate` and
/// `Proxy-Authorization`. Tokens of `Connection` that are not field names are ignored.
///
/// ```
/// use http::HeaderMap;
/// let mut headers = HeaderMap::new();
/// headers.insert("connection", "keep-alive, X-Trace".parse().unwrap());
/// headers.insert("keep-alive", "timeout=5".parse().unwrap());
/// headers.insert("x-trace", "1".parse().unwrap());
/// headers.insert("accept", "*/*".parse().unwrap());
/// tether_tokio::gateway::strip_hop_by_hop(&mut headers);
/// assert_eq!(headers.len(), 1);
/// assert_eq!(headers["accept"], "*/*");
/// ```
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    strip_present(headers, present_hops(headers));
}

/// [`strip_hop_by_hop`] for a request, keeping `TE: trailers` when the client said it
/// accepts trailers (the one `TE` value a Tether head may carry, spec/protocol.md §4.3).
pub(crate) fn strip_request_hops(headers: &mut HeaderMap) {
    let present = present_hops(headers);
    let trailers = present & TE_BIT != 0
        && headers
            .get_all(header::TE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .any(|token| {
                let coding = token.split(';').next().unwrap_or("").trim();
                coding.eq_ignore_ascii_case("trailers")
            });
    strip_present(headers, present);
    if trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// The bit of [`HOP_BY_HOP`]'s `TE` in [`present_hops`].
const TE_BIT: u8 = 1 << 3;

/// Which of [`HOP_BY_HOP`] are in `headers`: bit `i` for the `i`th (`Connection` is bit
/// 0). One look at each field's name, compared with each of them (a standard name
/// compares as a number), where looking each of them up would hash it: most messages
/// carry none of them, or a `Connection` alone (issue 11, benches/RESULTS.md,
/// twenty-fourth pass).
fn present_hops(headers: &HeaderMap) -> u8 {
    headers.keys().fold(0, |present, name| {
        present
            | HOP_BY_HOP
                .iter()
                .position(|hop| hop == name)
                .map_or(0, |i| 1 << i)
    })
}

/// Removes the fields `Connection` names and the hop-by-hop fields `present` has a bit of
/// ([`present_hops`]).
fn strip_present(headers: &mut HeaderMap, present: u8) {
    if present & 1 != 0 {
        // The fields `Connection` names, looked up by their text: a name that is not a
        // field name finds nothing, and none is allocated.
        let mut values = headers.get_all(header::CONNECTION).iter();
        let first = values.next().cloned();
        let rest: Vec<HeaderValue> = values.cloned().collect();
        for value in first.iter().chain(&rest) {
            let Ok(value) = value.to_str() else { continue };
            for token in value.split(',') {
                headers.remove(token.trim());
            }
        }
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
}

/// The origin-form (`/path?query`) of a request target; absolute-form keeps its path and
/// query, and authority-form or `*` are refused.
/// Built from the path and query as text: an absolute-form target whose path is empty
/// (`http://h#x`) has a path-and-query whose `as_str` is `/` but which converts to a
/// `Uri` with an empty path (found by the fuzz target `gateway_http`).
pub(crate) fn origin_form(uri: &Uri) -> Result<Uri, GatewayError> {
    // Already the origin-form (what an HTTP/1.1 client sends): itself, not its text parsed
    // again.
    if uri.scheme().is_none()
        && uri.authority().is_none()
        && uri
            .path_and_query()
            .is_some_and(|pq| pq.path().starts_with('/'))
    {
        return Ok(uri.clone());
    }
    let refuse = || GatewayError::UnsupportedTarget(uri.to_string());
    let origin = match uri.path_and_query() {
        Some(pq) if pq.path().starts_with('/') => match pq.query() {
            Some(query) => format!("{}?{query}", pq.path()),
            None => pq.path().to_owned(),
        },
        None if uri.authority().is_some() && uri.scheme().is_some() => "/".to_owned(),
        _ => return Err(refuse()),
    };
    let origin: Uri = origin.parse().map_err(|_| refuse())?;
    if origin.path().starts_with('/') && origin.authority().is_none() {
        Ok(origin)
    } else {
        Err(refuse())
    }
}

/// RFC 3986 §5.2.4 on an absolute path, where a segment that is `.` or `..` once its
/// percent-encoded dots (`%2e`, RFC 3986 §6.2.2.2) are decoded counts as a dot segment:
/// the result never climbs above `/`. `None` for a segment that would be a dot segment to
/// an upstream that also splits on an encoded slash (`%2f`), a backslash or an encoded one
/// (`%5c`): such a path is refused rather than guessed at.
pub(super) fn remove_dot_segments(path: &str) -> Option<String> {
    let segments: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
    let last = segments.len().saturating_sub(1);
    let mut out: Vec<&str> = Vec::with_capacity(segments.len());
    for (i, segment) in segments.into_iter().enumerate() {
        let dots = decode_ci(segment, &[("%2e", ".")]);
        if dots == "." || dots == ".." {
            if dots == ".." {
                out.pop();
            }
            if i == last {
                out.push(""); // "/a/b/.." is "/a/", as in RFC 3986
            }
            continue;
        }
        let split = decode_ci(&dots, &[("%2f", "/"), ("%5c", "/")]).replace('\\', "/");
        if split.split('/').any(|part| part == "." || part == "..") {
            return None;
        }
        out.push(segment);
    }
    Some(format!("/{}", out.join("/")))
}

/// `s` with each of `pairs`' percent-encodings (matched ASCII case-insensitively) replaced.
fn decode_ci(s: &str, pairs: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    'outer: while !rest.is_empty() {
        for (encoded, decoded) in pairs {
            if rest.len() >= 3
                && rest.is_char_boundary(3)
                && rest[..3].eq_ignore_ascii_case(encoded)
            {
                out.push_str(decoded);
                rest = &rest[3..];
                continue 'outer;
            }
        }
        let mut chars = rest.chars();
        if let Some(c) = chars.next() {
            out.push(c);
        }
        rest = chars.as_str();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn hop_by_hop_fields_and_those_connection_names_go() {
        let mut h = headers(&[
            ("connection", "close, X-Foo"),
            ("connection", " x-bar ,,bad token"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("te", "gzip"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic xyz"),
            ("proxy-authenticate", "Basic"),
            ("x-foo", "1"),
            ("x-bar", "2"),
            ("x-baz", "3"),
            ("content-type", "text/plain"),
        ]);
        strip_hop_by_hop(&mut h);
        let mut left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        left.sort();
        assert_eq!(left, ["content-type", "x-baz"]);
    }

    #[test]
    fn each_hop_by_hop_field_has_its_bit() {
        for (i, name) in HOP_BY_HOP.iter().enumerate() {
            let mut map = HeaderMap::new();
            map.insert("x-foo", HeaderValue::from_static("1"));
            map.insert(name.clone(), HeaderValue::from_static("1"));
            assert_eq!(present_hops(&map), 1 << i, "{name}");
        }
        assert_eq!(HOP_BY_HOP[TE_BIT.trailing_zeros() as usize], header::TE);
        let mut map = HeaderMap::new();
        for name in ["x-foo", "content-type", "host", "connections", "t"] {
            map.insert(name, HeaderValue::from_static("1"));
        }
        assert_eq!(present_hops(&map), 0);
    }

    /// The removal as it was written before it looked at which fields are present: every
    /// field `Connection` names, then every hop-by-hop field, each removed by name.
    fn strip_by_name(headers: &mut HeaderMap) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
            .collect();
        for name in named.iter().chain(HOP_BY_HOP.iter()) {
            headers.remove(name);
        }
    }

    /// Every subset of eleven fields (hop-by-hop ones, fields a `Connection` value names,
    /// others), under each of several `Connection` values: the same fields are left as when
    /// each one was removed by name.
    #[test]
    fn the_same_fields_go_as_when_each_is_removed_by_name() {
        let fields = [
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("proxy-authenticate", "Basic"),
            ("proxy-authorization", "Basic eHl6"),
            ("x-foo", "1"),
            ("x-bar", "2"),
            ("content-type", "text/plain"),
            ("host", "example"),
        ];
        let connections: [&[&str]; 6] = [
            &[],
            &["keep-alive"],
            &["close, X-Foo"],
            &[" x-bar ,,bad token", "Content-Type"],
            &["upgrade, HOST , te"],
            &["x-\u{e9}t\u{e9}"],
        ];
        for connection in connections {
            for subset in 0u32..1 << fields.len() {
                let mut map = HeaderMap::new();
                for value in connection {
                    map.append(header::CONNECTION, HeaderValue::from_str(value).unwrap());
                }
                for (i, (name, value)) in fields.iter().enumerate() {
                    if subset & (1 << i) != 0 {
                        map.append(*name, HeaderValue::from_static(value));
                    }
                }
                map.append("x-foo", HeaderValue::from_static("again"));
                let mut expected = map.clone();
                strip_by_name(&mut expected);
                strip_hop_by_hop(&mut map);
                assert_eq!(map, expected, "{connection:?}, subset {subset:#b}");
            }
        }
    }

    #[test]
    fn te_trailers_survives_on_requests_only_as_trailers() {
        let mut h = headers(&[("te", "gzip, trailers;q=1"), ("connection", "TE")]);
        strip_request_hops(&mut h);
        assert_eq!(h.len(), 1);
        assert_eq!(h["te"], "trailers");
        let mut h = headers(&[("te", "deflate")]);
        strip_request_hops(&mut h);
        assert!(h.is_empty());
    }

    #[test]
    fn non_text_connection_values_are_ignored() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_bytes(b"x-a\xff").unwrap(),
        );
        h.insert("x-a", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn origin_forms() {
        let o = |s: &str| origin_form(&s.parse().unwrap()).map(|u| u.to_string());
        assert_eq!(o("/a?b").unwrap(), "/a?b");
        assert_eq!(o("http://h/a?b").unwrap(), "/a?b");
        assert_eq!(o("http://h").unwrap(), "/");
        assert!(o("*").is_err());
        assert!(o("h:443").is_err());
    }

    /// Found by the fuzz target `gateway_http` (fuzz/corpus/gateway_http/
    /// regression-fragment-origin-form): an absolute-form target with an empty path and a
    /// fragment became a `Uri` with an empty path, not `/`.
    #[test]
    fn origin_form_of_a_target_with_a_fragment_is_a_path() {
        let data =
            include_bytes!("../../../fuzz/corpus/gateway_http/regression-fragment-origin-form");
        let target: Uri = http::Uri::try_from(&data[1..]).unwrap();
        let origin = origin_form(&target).unwrap();
        assert!(origin.path().starts_with('/'), "{origin:?}");
        assert!(origin.authority().is_none(), "{origin:?}");
    }
}
