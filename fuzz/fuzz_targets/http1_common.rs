//! A lenient HTTP/1 request-head splitter for the runtime targets: the fuzzer's bytes as
//! a request line and header lines (`\n` or `\r\n`), so that seeds stay readable. Lines
//! that `http` would not accept as a name or value are skipped: hyper refuses those
//! before the runtime sees them.

use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Uri, Version};

#[allow(dead_code)] // gateway_http reads only the target and the headers
/// The request a server would hand to the runtime for `head`, if its request line is
/// `METHOD TARGET VERSION` (`VERSION` `HTTP/1.0` or anything else meaning HTTP/1.1).
pub fn request(head: &[u8]) -> Option<Request<()>> {
    let mut lines = lines(head);
    let first = lines.next()?;
    let mut parts = first.splitn(3, |b| *b == b' ');
    let method = Method::from_bytes(parts.next()?).ok()?;
    let uri = Uri::try_from(parts.next()?).ok()?;
    let version = match parts.next() {
        Some(b"HTTP/1.0") => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .version(version)
        .body(())
        .ok()?;
    *request.headers_mut() = headers(lines);
    Some(request)
}

/// Header lines `name: value` (value trimmed of spaces and tabs); others are skipped.
pub fn headers<'a>(lines: impl Iterator<Item = &'a [u8]>) -> HeaderMap {
    let mut map = HeaderMap::new();
    for line in lines {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let value = value.trim_ascii();
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            map.append(name, value);
        }
    }
    map
}

/// `data` split at `\n`, each line without its `\r`.
pub fn lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    data.split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
}
