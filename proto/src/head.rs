//! HTTP heads on the wire (spec/protocol.md §4).
//!
//! A request head is an HTTP/1.1 request line plus header lines, a response head an
//! HTTP/1.1 status line plus header lines, trailers are header lines alone; each ends
//! with an empty line and nothing follows it. Bodies never travel here: they go in DATA
//! frames. Parsing uses `httparse` over the frame payload and produces `http` types whose
//! URI and header values are slices of the received `Bytes` (no copy).

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Uri};

use std::mem::MaybeUninit;

use crate::Limits;

/// The request header that carries the caller's deadline, in whole milliseconds remaining
/// when the request was sent (spec/protocol.md §10.6). [`RequestHead`] carries it as
/// [`RequestHead::timeout_ms`], not among its header fields.
pub const TIMEOUT_HEADER: &str = "tether-timeout";

/// [`TIMEOUT_HEADER`] as a header name, made once: looked up by a `&str`, the name would
/// be parsed on every request.
pub(crate) const TIMEOUT_NAME: HeaderName = HeaderName::from_static(TIMEOUT_HEADER);

/// The largest `tether-timeout` value, 10 digits (about 115 days; spec/protocol.md §10.6).
pub const MAX_TIMEOUT_MS: u64 = 9_999_999_999;

/// The head of a request: method, target and header fields (spec/protocol.md §4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// The request method.
    pub method: Method,
    /// The request target: origin-form (`/p?q`), absolute-form (`http://h/p`),
    /// authority-form (`h:443`, CONNECT only) or `*`.
    pub uri: Uri,
    /// Header fields; connection-specific fields are never carried (§4.3).
    pub headers: HeaderMap,
    /// The requester's deadline in milliseconds: the `tether-timeout` field (§10.6), kept
    /// out of `headers`. [`decode`](Self::decode) takes a valid one out of the fields;
    /// [`encode`](Self::encode) writes it after them, cut to [`MAX_TIMEOUT_MS`]. A head
    /// that has one here and another in `headers` is malformed (a repeated field).
    pub timeout_ms: Option<u64>,
}

/// The head of a response: status and header fields (spec/protocol.md §4.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// The status code (100..=999).
    pub status: StatusCode,
    /// Header fields; connection-specific fields are never carried (§4.3).
    pub headers: HeaderMap,
}

impl RequestHead {
    /// A head with no header fields.
    pub fn new(method: Method, uri: Uri) -> Self {
        RequestHead {
            method,
            uri,
            headers: HeaderMap::new(),
            timeout_ms: None,
        }
    }

    /// Takes method, URI and headers from `http` request parts (version and extensions are
    /// not carried). A `tether-timeout` field stays among the headers, sent as it is.
    pub fn from_parts(parts: http::request::Parts) -> Self {
        RequestHead {
            method: parts.method,
            uri: parts.uri,
            headers: parts.headers,
            timeout_ms: None,
        }
    }

    /// Builds an `http::Request` with this head and `body`; the version is HTTP/1.1. The
    /// deadline ([`timeout_ms`](Self::timeout_ms)) is not among its headers.
    pub fn into_request<B>(self, body: B) -> http::Request<B> {
        let mut req = http::Request::new(body);
        *req.method_mut() = self.method;
        *req.uri_mut() = self.uri;
        *req.headers_mut() = self.headers;
        req
    }

    /// The size of the encoded head: exactly what [`encode`](Self::encode) writes.
    pub fn encoded_size(&self) -> EncodedSize {
        let target = RequestTarget::of(&self.uri);
        let mut size = encoded_fields(&self.headers, false);
        size.bytes += self.method.as_str().len() + 1 + target.len() + " HTTP/1.1\r\n".len();
        if let Some(ms) = self.timeout_ms {
            size.bytes += timeout_field_len(ms);
            size.fields += 1;
        }
        size
    }

    /// Appends the encoded head to `dst`, dropping connection-specific fields (§4.3).
    pub fn encode(&self, dst: &mut BytesMut) {
        let target = RequestTarget::of(&self.uri);
        let len = self.method.as_str().len() + target.len() + " HTTP/1.1\r\n".len() + 1;
        let timeout = self.timeout_ms.map_or(0, timeout_field_len);
        dst.reserve(len + headers_len(&self.headers) + timeout + 2);
        dst.put_slice(self.method.as_str().as_bytes());
        dst.put_u8(b' ');
        target.write(dst);
        dst.put_slice(b" HTTP/1.1\r\n");
        encode_fields(&self.headers, dst, false);
        if let Some(ms) = self.timeout_ms {
            put_timeout_field(ms, dst);
        }
        dst.put_slice(b"\r\n");
    }

    /// Whether the method and the request-target it is written with follow
    /// spec/protocol.md §4.1 (a target the peer would refuse with `invalid_uri`: `*` with
    /// another method than OPTIONS, `host:port` without CONNECT, a byte such as `\\` or
    /// `"`). A sender checks this before sending.
    pub fn check_target(&self) -> Result<(), HeadError> {
        let target = RequestTarget::of(&self.uri);
        match target {
            // Written as is: checked where it lies, without a copy.
            RequestTarget::Authority(s) | RequestTarget::Path(s) => {
                check_target(&self.method, s.as_bytes())
            }
            RequestTarget::Absolute(_) => {
                let mut buf = BytesMut::with_capacity(target.len());
                target.write(&mut buf);
                check_target(&self.method, &buf)
            }
        }
    }

    /// Parses a request head that fills `src` exactly (spec/protocol.md §4.1).
    pub fn decode(src: &Bytes, limits: &Limits) -> Result<Self, HeadError> {
        check_size(src, limits)?;
        check_crlf(src)?;
        check_start(src)?;
        let max = usize::from(limits.max_header_count);
        // Uninitialised slots: nothing is written for fields the head does not have.
        let mut stack = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; STACK_FIELDS];
        let mut heap = Vec::new();
        let slots = if max <= STACK_FIELDS {
            &mut stack[..max]
        } else {
            heap.resize_with(max, MaybeUninit::uninit);
            &mut heap[..]
        };
        let mut req = httparse::Request::new(&mut []);
        let n =
            complete(req.parse_with_uninit_headers(src, slots)).map_err(|e| too_many(e, limits))?;
        if n != src.len() {
            return Err(HeadError::TrailingBytes);
        }
        if req.version != Some(1) {
            return Err(HeadError::UnsupportedVersion);
        }
        let method = req.method.unwrap_or_default();
        let method = Method::from_bytes(method.as_bytes()).map_err(|_| HeadError::InvalidMethod)?;
        let path = req.path.unwrap_or_default();
        check_target(&method, path.as_bytes())?;
        let uri = Uri::from_maybe_shared(src.slice_ref(path.as_bytes()))
            .map_err(|_| HeadError::InvalidUri)?;
        let mut timeout_ms = None;
        let headers = collect_fields(src, req.headers, Some(&mut timeout_ms))?;
        Ok(RequestHead {
            method,
            uri,
            headers,
            timeout_ms,
        })
    }
}

impl ResponseHead {
    /// A head with no header fields.
    pub fn new(status: StatusCode) -> Self {
        ResponseHead {
            status,
            headers: HeaderMap::new(),
        }
    }

    /// Takes status and headers from `http` response parts.
    pub fn from_parts(parts: http::response::Parts) -> Self {
        ResponseHead {
            status: parts.status,
            headers: parts.headers,
        }
    }

    /// Builds an `http::Response` with this head and `body`; the version is HTTP/1.1.
    pub fn into_response<B>(self, body: B) -> http::Response<B> {
        let mut res = http::Response::new(body);
        *res.status_mut() = self.status;
        *res.headers_mut() = self.headers;
        res
    }

    /// The size of the encoded head: exactly what [`encode`](Self::encode) writes.
    pub fn encoded_size(&self) -> EncodedSize {
        let reason = self.status.canonical_reason().unwrap_or("");
        let mut size = encoded_fields(&self.headers, false);
        size.bytes += "HTTP/1.1 000 \r\n".len() + reason.len();
        size
    }

    /// Appends the encoded head to `dst`, dropping connection-specific fields (§4.3).
    /// The reason phrase is the canonical one, or empty for an unregistered status.
    pub fn encode(&self, dst: &mut BytesMut) {
        let reason = self.status.canonical_reason().unwrap_or("");
        dst.reserve("HTTP/1.1 000 \r\n".len() + reason.len() + headers_len(&self.headers) + 2);
        dst.put_slice(b"HTTP/1.1 ");
        dst.put_slice(self.status.as_str().as_bytes());
        dst.put_u8(b' ');
        dst.put_slice(reason.as_bytes());
        dst.put_slice(b"\r\n");
        encode_fields(&self.headers, dst, false);
        dst.put_slice(b"\r\n");
    }

    /// Parses a response head that fills `src` exactly (spec/protocol.md §4.2).
    pub fn decode(src: &Bytes, limits: &Limits) -> Result<Self, HeadError> {
        check_size(src, limits)?;
        check_crlf(src)?;
        check_start(src)?;
        with_header_buf(limits, |buf| {
            let mut res = httparse::Response::new(buf);
            let n = complete(res.parse(src))?;
            if n != src.len() {
                return Err(HeadError::TrailingBytes);
            }
            if res.version != Some(1) {
                return Err(HeadError::UnsupportedVersion);
            }
            let status = StatusCode::from_u16(res.code.unwrap_or_default())
                .map_err(|_| HeadError::InvalidStatus)?;
            let headers = collect_fields(src, res.headers, None)?;
            Ok(ResponseHead { status, headers })
        })
    }
}

/// Appends trailer fields to `dst` (spec/protocol.md §4.4).
pub fn encode_trailers(trailers: &HeaderMap, dst: &mut BytesMut) {
    dst.reserve(headers_len(trailers) + 2);
    encode_fields(trailers, dst, true);
    dst.put_slice(b"\r\n");
}

/// Parses trailer fields that fill `src` exactly (spec/protocol.md §4.4).
pub fn decode_trailers(src: &Bytes, limits: &Limits) -> Result<HeaderMap, HeadError> {
    check_size(src, limits)?;
    check_crlf(src)?;
    with_header_buf(limits, |buf| {
        let (n, fields) = complete(httparse::parse_headers(src, buf))?;
        if n != src.len() {
            return Err(HeadError::TrailingBytes);
        }
        let trailers = collect_fields(src, fields, None)?;
        // Framing is settled before trailers arrive: content-length has no place there
        // (spec/protocol.md §4.4).
        if trailers.contains_key(header::CONTENT_LENGTH) {
            return Err(HeadError::InvalidContentLength);
        }
        Ok(trailers)
    })
}

/// Why an HTTP head was rejected (spec/protocol.md §4.5). The stream it came on is reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeadError {
    /// The encoded head is larger than `max_head_size`.
    #[error("head of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Its size.
        len: usize,
        /// The limit.
        max: u32,
    },
    /// The head has more fields than `max_header_count`.
    #[error("head has more than {max} header fields")]
    TooManyHeaders {
        /// The limit.
        max: u16,
    },
    /// The head does not end with an empty line.
    #[error("head is incomplete (no empty line ends it)")]
    Incomplete,
    /// Bytes follow the empty line that ends the head.
    #[error("bytes follow the end of the head")]
    TrailingBytes,
    /// The start line or a field line is not valid HTTP/1.1 syntax.
    #[error("invalid HTTP/1.1 syntax: {0}")]
    Syntax(httparse::Error),
    /// The version in the start line is not `HTTP/1.1`.
    #[error("the start line's version is not HTTP/1.1")]
    UnsupportedVersion,
    /// The method is not a valid token.
    #[error("invalid method")]
    InvalidMethod,
    /// The request target is not a valid URI.
    #[error("invalid request target")]
    InvalidUri,
    /// The status code is outside 100..=999.
    #[error("invalid status code")]
    InvalidStatus,
    /// A field name or value is not valid per RFC 9110 §5.
    #[error("invalid header field")]
    InvalidHeader,
    /// A connection-specific field (§4.3) is present.
    #[error("connection-specific header field present")]
    ConnectionSpecificHeader,
    /// `content-length` is not one decimal number (repeated values must agree).
    #[error("invalid content-length")]
    InvalidContentLength,
    /// A request's `tether-timeout` is not 1 to 10 digits, or the field is repeated
    /// (spec/protocol.md §10.6).
    #[error("invalid tether-timeout")]
    InvalidTimeout,
}

impl HeadError {
    /// The stable name used in spec/vectors (e.g. `"head_too_large"`).
    pub const fn name(&self) -> &'static str {
        match self {
            HeadError::TooLarge { .. } => "head_too_large",
            HeadError::TooManyHeaders { .. } => "too_many_headers",
            HeadError::Incomplete => "head_incomplete",
            HeadError::TrailingBytes => "head_trailing_bytes",
            HeadError::Syntax(_) => "head_syntax",
            HeadError::UnsupportedVersion => "head_version",
            HeadError::InvalidMethod => "invalid_method",
            HeadError::InvalidUri => "invalid_uri",
            HeadError::InvalidStatus => "invalid_status",
            HeadError::InvalidHeader => "invalid_header",
            HeadError::ConnectionSpecificHeader => "connection_specific_header",
            HeadError::InvalidContentLength => "invalid_content_length",
            HeadError::InvalidTimeout => "invalid_timeout",
        }
    }

    /// The RESET code the receiver sends on the stream (spec/protocol.md §4.5).
    pub const fn reset_code(&self) -> crate::ResetCode {
        match self {
            HeadError::TooLarge { .. } | HeadError::TooManyHeaders { .. } => {
                crate::ResetCode::HEAD_TOO_LARGE
            }
            _ => crate::ResetCode::PROTOCOL_ERROR,
        }
    }
}

/// Header fields that belong to one transport hop and are never carried (§4.3).
/// `te` is allowed with the sole value `trailers`.
fn is_connection_specific(name: &HeaderName) -> bool {
    name == header::CONNECTION
        || name == header::TRANSFER_ENCODING
        || name == header::UPGRADE
        || name == "keep-alive"
        || name == "proxy-connection"
}

fn is_dropped_on_encode(name: &HeaderName, value: &HeaderValue, all: Option<&HeaderMap>) -> bool {
    is_connection_specific(name)
        || (name == header::TE && !value.as_bytes().eq_ignore_ascii_case(b"trailers"))
        || all.is_some_and(|all| is_nominated(name, all))
}

/// Whether `name` is listed in a `Connection` field (RFC 9110 §7.6.1).
fn is_nominated(name: &HeaderName, headers: &HeaderMap) -> bool {
    headers.get_all(header::CONNECTION).iter().any(|v| {
        v.as_bytes().split(|&b| b == b',').any(|t| {
            t.trim_ascii()
                .eq_ignore_ascii_case(name.as_str().as_bytes())
        })
    })
}

fn headers_len(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum()
}

/// The size and number of the fields [`encode_fields`] writes (the final empty line
/// included in the size).
fn encoded_fields(headers: &HeaderMap, trailers: bool) -> EncodedSize {
    let nominating = headers.contains_key(header::CONNECTION).then_some(headers);
    let mut size = EncodedSize {
        bytes: 2,
        fields: 0,
    };
    for (name, value) in headers {
        if is_dropped_on_encode(name, value, nominating)
            || (trailers && name == header::CONTENT_LENGTH)
        {
            continue;
        }
        size.bytes += name.as_str().len() + value.len() + 4;
        size.fields += 1;
    }
    size
}

/// What an encoded head takes: its bytes and its field lines, to check against the
/// receiver's `max_head_size` and `max_header_count` before sending (§4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodedSize {
    /// Bytes of the encoded head.
    pub bytes: usize,
    /// Field lines in it.
    pub fields: usize,
}

impl EncodedSize {
    /// Whether a receiver with `limits` accepts a head of this size.
    pub fn fits(&self, limits: &Limits) -> bool {
        self.bytes <= limits.max_head_size as usize
            && self.fields <= usize::from(limits.max_header_count)
    }
}

/// The size of `trailers` once encoded.
pub fn trailers_encoded_size(trailers: &HeaderMap) -> EncodedSize {
    encoded_fields(trailers, true)
}

/// Writes the field lines of `headers`; the empty line that ends a head is the caller's.
fn encode_fields(headers: &HeaderMap, dst: &mut BytesMut, trailers: bool) {
    // A `Connection` field is itself dropped; the fields it nominates are dropped too.
    let nominating = headers.contains_key(header::CONNECTION).then_some(headers);
    for (name, value) in headers {
        if is_dropped_on_encode(name, value, nominating)
            || (trailers && name == header::CONTENT_LENGTH)
        {
            continue;
        }
        dst.put_slice(name.as_str().as_bytes());
        dst.put_slice(b": ");
        dst.put_slice(value.as_bytes());
        dst.put_slice(b"\r\n");
    }
}

/// The bytes of the `tether-timeout` field line [`put_timeout_field`] writes.
fn timeout_field_len(ms: u64) -> usize {
    let digits = ms
        .min(MAX_TIMEOUT_MS)
        .checked_ilog10()
        .map_or(1, |d| d as usize + 1);
    TIMEOUT_HEADER.len() + ": ".len() + digits + 2
}

/// Writes the `tether-timeout` field line (§10.6), cut to [`MAX_TIMEOUT_MS`].
fn put_timeout_field(ms: u64, dst: &mut BytesMut) {
    dst.put_slice(TIMEOUT_HEADER.as_bytes());
    dst.put_slice(b": ");
    dst.put_slice(
        itoa::Buffer::new()
            .format(ms.min(MAX_TIMEOUT_MS))
            .as_bytes(),
    );
    dst.put_slice(b"\r\n");
}

/// Parses a `tether-timeout` value: 1 to 10 decimal digits of milliseconds; leading zeros
/// allowed, `0` valid (spec/protocol.md §10.6).
fn parse_timeout(v: &[u8]) -> Result<u64, HeadError> {
    if v.is_empty() || v.len() > 10 || !v.iter().all(u8::is_ascii_digit) {
        return Err(HeadError::InvalidTimeout);
    }
    Ok(v.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

/// How a URI is written as a request target.
enum RequestTarget<'a> {
    Absolute(&'a Uri),
    Authority(&'a str),
    Path(&'a str),
}

impl<'a> RequestTarget<'a> {
    fn of(uri: &'a Uri) -> Self {
        match (uri.scheme(), uri.authority(), uri.path_and_query()) {
            (Some(_), _, _) => RequestTarget::Absolute(uri),
            (None, Some(a), _) => RequestTarget::Authority(a.as_str()),
            (None, None, Some(pq)) => RequestTarget::Path(pq.as_str()),
            (None, None, None) => RequestTarget::Path("/"),
        }
    }

    fn len(&self) -> usize {
        match self {
            // scheme "://" authority path-and-query
            RequestTarget::Absolute(u) => {
                u.scheme_str().map_or(0, str::len)
                    + 3
                    + u.authority().map_or(0, |a| a.as_str().len())
                    + u.path_and_query().map_or(1, |p| p.as_str().len())
            }
            RequestTarget::Authority(s) | RequestTarget::Path(s) => s.len(),
        }
    }

    fn write(&self, dst: &mut BytesMut) {
        match self {
            RequestTarget::Absolute(u) => {
                dst.put_slice(u.scheme_str().unwrap_or("http").as_bytes());
                dst.put_slice(b"://");
                if let Some(a) = u.authority() {
                    dst.put_slice(a.as_str().as_bytes());
                }
                dst.put_slice(u.path_and_query().map_or("/", |p| p.as_str()).as_bytes());
            }
            RequestTarget::Authority(s) | RequestTarget::Path(s) => dst.put_slice(s.as_bytes()),
        }
    }
}

fn check_size(src: &Bytes, limits: &Limits) -> Result<(), HeadError> {
    if src.len() > limits.max_head_size as usize {
        return Err(HeadError::TooLarge {
            len: src.len(),
            max: limits.max_head_size,
        });
    }
    Ok(())
}

/// Every line of a head ends in CRLF (spec/protocol.md §4). httparse, like RFC 9112 §2.2
/// allows a recipient to, also accepts a bare LF; Tether does not, so that what one
/// receiver forwards no other reads differently.
///
/// Every byte is looked at, without stopping at the first bare LF: the loop has no branch
/// and the compiler does it 16 bytes at a time (a `windows(2).any(..)` took about 3
/// instructions a byte, 400 a small request for its two heads, benches/RESULTS.md,
/// twenty-second pass). A head is at most `max_head_size` bytes.
fn check_crlf(src: &[u8]) -> Result<(), HeadError> {
    let after = src.get(1..).unwrap_or_default();
    let bare = src.first() == Some(&b'\n')
        || after.iter().zip(src).fold(false, |bare, (&b, &prev)| {
            bare | ((b == b'\n') & (prev != b'\r'))
        });
    if bare {
        return Err(HeadError::Syntax(httparse::Error::NewLine));
    }
    Ok(())
}

/// A request or response head begins with its start line: httparse, like RFC 9112 §2.2
/// allows, skips empty lines before it; Tether does not (spec/protocol.md §4).
fn check_start(src: &[u8]) -> Result<(), HeadError> {
    if src.starts_with(b"\r\n") {
        return Err(HeadError::Syntax(httparse::Error::NewLine));
    }
    Ok(())
}

/// The request-target rules of spec/protocol.md §4.1 that the URI parser does not check
/// itself: the bytes allowed, no fragment, and which forms go with which methods.
fn check_target(method: &Method, target: &[u8]) -> Result<(), HeadError> {
    let allowed =
        |b: &u8| matches!(b, 0x21..=0x7e) && !matches!(b, b'"' | b'#' | b'<' | b'>' | b'\\' | b'`');
    if target.is_empty() || !target.iter().all(allowed) {
        return Err(HeadError::InvalidUri);
    }
    let asterisk = target == b"*";
    let origin = target[0] == b'/';
    let absolute = !origin && target.windows(3).any(|w| w == b"://");
    // authority-form is host ":" port (RFC 9112 §3.2.3).
    let authority = !asterisk
        && !origin
        && !absolute
        && target.rsplit(|&b| b == b':').next().is_some_and(|port| {
            !port.is_empty() && port.len() < target.len() && port.iter().all(u8::is_ascii_digit)
        });
    let fits = if *method == Method::CONNECT {
        authority
    } else if *method == Method::OPTIONS {
        !authority
    } else {
        origin || absolute
    };
    // Anything else (a relative path, a bare host) is no request-target at all.
    let fits = fits && (asterisk || origin || absolute || authority);
    if fits {
        Ok(())
    } else {
        Err(HeadError::InvalidUri)
    }
}

/// Field slots kept on the stack up to this count; larger limits take one allocation.
const STACK_FIELDS: usize = 128;
/// Slots tried first where httparse needs initialised slots (responses, trailers): most
/// heads have far fewer fields, and initialising 128 slots costs more than parsing.
const FIRST_TRY_FIELDS: usize = 32;

fn with_header_buf<'b, T>(
    limits: &Limits,
    f: impl Fn(&mut [httparse::Header<'b>]) -> Result<T, HeadError>,
) -> Result<T, HeadError> {
    let max = usize::from(limits.max_header_count);
    let first = max.min(FIRST_TRY_FIELDS);
    let mut buf = [httparse::EMPTY_HEADER; FIRST_TRY_FIELDS];
    let result = match f(&mut buf[..first]) {
        Err(HeadError::Syntax(httparse::Error::TooManyHeaders)) if max > first => {
            let mut buf = vec![httparse::EMPTY_HEADER; max];
            f(&mut buf)
        }
        other => other,
    };
    result.map_err(|e| too_many(e, limits))
}

fn too_many(e: HeadError, limits: &Limits) -> HeadError {
    match e {
        HeadError::Syntax(httparse::Error::TooManyHeaders) => HeadError::TooManyHeaders {
            max: limits.max_header_count,
        },
        e => e,
    }
}

fn complete<T>(r: Result<httparse::Status<T>, httparse::Error>) -> Result<T, HeadError> {
    match r {
        Ok(httparse::Status::Complete(t)) => Ok(t),
        Ok(httparse::Status::Partial) => Err(HeadError::Incomplete),
        Err(e) => Err(HeadError::Syntax(e)),
    }
}

/// The header map of a head's fields. With `timeout` (a request head), the `tether-timeout`
/// field is not put in the map but parsed into it (spec/protocol.md §10.6).
fn collect_fields(
    src: &Bytes,
    fields: &[httparse::Header<'_>],
    mut timeout: Option<&mut Option<u64>>,
) -> Result<HeaderMap, HeadError> {
    // Written in lower case by every sender we know: that compare is the cheap one.
    let is_timeout = |f: &httparse::Header<'_>| {
        f.name == TIMEOUT_HEADER || f.name.eq_ignore_ascii_case(TIMEOUT_HEADER)
    };
    let kept = match timeout {
        Some(_) => fields.iter().filter(|f| !is_timeout(f)).count(),
        None => fields.len(),
    };
    // Nothing is allocated for a head whose only field is its deadline.
    let mut map = HeaderMap::with_capacity(kept);
    let mut content_length = None;
    for field in fields {
        if let Some(slot) = timeout.as_deref_mut() {
            if is_timeout(field) {
                // Two deadlines are one too many: hops that pick different ones disagree.
                if slot.is_some() {
                    return Err(HeadError::InvalidTimeout);
                }
                *slot = Some(parse_timeout(field.value)?);
                continue;
            }
        }
        let name =
            HeaderName::from_bytes(field.name.as_bytes()).map_err(|_| HeadError::InvalidHeader)?;
        let value = HeaderValue::from_maybe_shared(src.slice_ref(field.value))
            .map_err(|_| HeadError::InvalidHeader)?;
        if is_connection_specific(&name)
            || (name == header::TE && !value.as_bytes().eq_ignore_ascii_case(b"trailers"))
        {
            return Err(HeadError::ConnectionSpecificHeader);
        }
        if name == header::CONTENT_LENGTH {
            let n = parse_content_length(value.as_bytes())?;
            if content_length.is_some_and(|m| m != n) {
                return Err(HeadError::InvalidContentLength);
            }
            content_length = Some(n);
        }
        map.append(name, value);
    }
    Ok(map)
}

fn parse_content_length(v: &[u8]) -> Result<u64, HeadError> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return Err(HeadError::InvalidContentLength);
    }
    Ok(v.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

/// The value of a head's `content-length`, if it has a valid one.
pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    parse_content_length(headers.get(header::CONTENT_LENGTH)?.as_bytes()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits::default()
    }

    fn req(raw: &'static [u8]) -> Result<RequestHead, HeadError> {
        RequestHead::decode(&Bytes::from_static(raw), &limits())
    }

    fn res(raw: &'static [u8]) -> Result<ResponseHead, HeadError> {
        ResponseHead::decode(&Bytes::from_static(raw), &limits())
    }

    #[test]
    fn request_round_trip_is_zero_copy() {
        let raw = Bytes::from_static(b"GET /a?b=c HTTP/1.1\r\nhost: x\r\nx-y: 1\r\nx-y: 2\r\n\r\n");
        let head = RequestHead::decode(&raw, &limits()).unwrap();
        assert_eq!(head.method, Method::GET);
        assert_eq!(head.uri, "/a?b=c");
        assert_eq!(head.headers.get_all("x-y").iter().count(), 2);
        // The value points into the received buffer.
        let v = head.headers.get("host").unwrap().as_bytes().as_ptr();
        assert!(raw.as_ptr_range().contains(&v));
        let mut out = BytesMut::new();
        head.encode(&mut out);
        assert_eq!(&out[..], &raw[..]);
    }

    #[test]
    fn targets_of_every_form_round_trip() {
        for (method, target) in [
            (Method::GET, "/"),
            (Method::OPTIONS, "*"),
            (Method::GET, "http://h:1/p?q"),
            (Method::CONNECT, "h.example:443"),
            (Method::GET, "/%20?x=%2F"),
        ] {
            let head = RequestHead::new(method, target.parse().unwrap());
            let mut out = BytesMut::new();
            head.encode(&mut out);
            assert_eq!(
                RequestHead::decode(&out.freeze(), &limits()).unwrap(),
                head,
                "{target}"
            );
        }
    }

    #[test]
    fn response_reason_is_canonical_or_empty() {
        let mut out = BytesMut::new();
        ResponseHead::new(StatusCode::NOT_FOUND).encode(&mut out);
        assert_eq!(&out[..], b"HTTP/1.1 404 Not Found\r\n\r\n");
        out.clear();
        let odd = ResponseHead::new(StatusCode::from_u16(599).unwrap());
        odd.encode(&mut out);
        assert_eq!(&out[..], b"HTTP/1.1 599 \r\n\r\n");
        assert_eq!(ResponseHead::decode(&out.freeze(), &limits()).unwrap(), odd);
        // Receivers ignore whatever reason is sent.
        assert_eq!(res(b"HTTP/1.1 200 Whatever\r\n\r\n").unwrap().status, 200);
    }

    #[test]
    fn connection_specific_fields_are_dropped_on_encode() {
        let mut head = RequestHead::new(Method::GET, Uri::from_static("/"));
        for (n, v) in [
            ("connection", "close, x-hop"),
            ("x-hop", "1"),
            ("keep-alive", "5"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("te", "gzip"),
            ("x-kept", "1"),
        ] {
            head.headers
                .append(HeaderName::from_static(n), HeaderValue::from_static(v));
        }
        let mut out = BytesMut::new();
        head.encode(&mut out);
        assert_eq!(&out[..], b"GET / HTTP/1.1\r\nx-kept: 1\r\n\r\n");
    }

    #[test]
    fn request_targets_follow_section_4_1() {
        // Bytes the URI parser accepts but §4.1 does not, a fragment it would drop, and
        // forms that do not go with the method: invalid_uri.
        for raw in [
            &b"GET /a\"b HTTP/1.1\r\n\r\n"[..],
            b"GET /a\\b HTTP/1.1\r\n\r\n",
            b"GET /a#frag HTTP/1.1\r\n\r\n",
            b"GET /?q=#b HTTP/1.1\r\n\r\n",
            b"GET * HTTP/1.1\r\n\r\n",
            b"GET h.example:443 HTTP/1.1\r\n\r\n",
            b"OPTIONS h.example:443 HTTP/1.1\r\n\r\n",
            b"CONNECT / HTTP/1.1\r\n\r\n",
            b"CONNECT h.example HTTP/1.1\r\n\r\n",
            b"CONNECT http://h/ HTTP/1.1\r\n\r\n",
            b"GET h.example HTTP/1.1\r\n\r\n",
        ] {
            let raw = Bytes::from_static(raw);
            assert_eq!(
                RequestHead::decode(&raw, &limits()),
                Err(HeadError::InvalidUri),
                "{raw:?}"
            );
        }
        // Carried as they are: percent signs are not decoded, and the characters browsers
        // leave unescaped in paths and queries pass.
        for raw in [
            &b"GET /a%zz HTTP/1.1\r\n\r\n"[..],
            b"GET /a{b}|^[]?q={x}|^ HTTP/1.1\r\n\r\n",
            b"OPTIONS * HTTP/1.1\r\n\r\n",
            b"OPTIONS /x HTTP/1.1\r\n\r\n",
            b"CONNECT h.example:443 HTTP/1.1\r\n\r\n",
            b"CONNECT [::1]:443 HTTP/1.1\r\n\r\n",
        ] {
            let raw = Bytes::from_static(raw);
            assert!(RequestHead::decode(&raw, &limits()).is_ok(), "{raw:?}");
        }
    }

    #[test]
    fn senders_check_targets_as_receivers_do() {
        let head = |m: Method, t: &'static str| RequestHead::new(m, Uri::from_static(t));
        assert_eq!(head(Method::OPTIONS, "*").check_target(), Ok(()));
        assert_eq!(head(Method::CONNECT, "h:443").check_target(), Ok(()));
        assert_eq!(head(Method::GET, "/a?b={c}").check_target(), Ok(()));
        for bad in [
            head(Method::GET, "*"),
            head(Method::GET, "h:443"),
            head(Method::CONNECT, "/"),
            head(Method::GET, "/a\\b"),
        ] {
            assert_eq!(bad.check_target(), Err(HeadError::InvalidUri), "{bad:?}");
        }
    }

    #[test]
    fn start_line_comes_first_and_versions_are_named() {
        let newline = HeadError::Syntax(httparse::Error::NewLine);
        assert_eq!(req(b"\r\nGET / HTTP/1.1\r\n\r\n"), Err(newline));
        assert_eq!(res(b"\r\nHTTP/1.1 200 OK\r\n\r\n"), Err(newline));
        // HTTP/1.0 is a version Tether does not carry; anything else where the version
        // belongs is not HTTP/1.x syntax at all (§4.5).
        assert_eq!(
            req(b"GET / HTTP/1.0\r\n\r\n"),
            Err(HeadError::UnsupportedVersion)
        );
        assert_eq!(
            res(b"HTTP/1.0 200 OK\r\n\r\n"),
            Err(HeadError::UnsupportedVersion)
        );
        let version = HeadError::Syntax(httparse::Error::Version);
        assert_eq!(req(b"GET / HTTP/2.0\r\n\r\n"), Err(version));
        assert_eq!(req(b"GET / http/1.1\r\n\r\n"), Err(version));
        assert_eq!(res(b"HTTP/2 200 OK\r\n\r\n"), Err(version));
        // The SP after the status code may be missing (§4.2).
        assert_eq!(res(b"HTTP/1.1 204\r\n\r\n").unwrap().status, 204);
    }

    #[test]
    fn content_length_is_not_a_trailer() {
        assert_eq!(
            decode_trailers(&Bytes::from_static(b"content-length: 3\r\n\r\n"), &limits()),
            Err(HeadError::InvalidContentLength)
        );
        let mut t = HeaderMap::new();
        t.insert(header::CONTENT_LENGTH, HeaderValue::from_static("3"));
        t.insert("x-sum", HeaderValue::from_static("1"));
        let mut out = BytesMut::new();
        encode_trailers(&t, &mut out);
        assert_eq!(&out[..], b"x-sum: 1\r\n\r\n");
        assert_eq!(trailers_encoded_size(&t).bytes, out.len());
    }

    #[test]
    fn te_trailers_is_carried() {
        let h = req(b"POST / HTTP/1.1\r\nte: trailers\r\n\r\n").unwrap();
        assert_eq!(h.headers["te"], "trailers");
        assert_eq!(
            req(b"POST / HTTP/1.1\r\nte: gzip\r\n\r\n"),
            Err(HeadError::ConnectionSpecificHeader)
        );
    }

    /// The check looks at every byte without stopping: it agrees with the rule read
    /// plainly (an LF first, or after anything but CR) on every string of CR, LF and one
    /// other byte up to 9 bytes long, and on bare LFs at each place of a 64-byte line.
    #[test]
    fn the_crlf_check_finds_every_bare_lf() {
        let plain = |src: &[u8]| {
            src.iter()
                .enumerate()
                .any(|(i, &b)| b == b'\n' && (i == 0 || src[i - 1] != b'\r'))
        };
        let alphabet = [b'\r', b'\n', b'a'];
        for len in 0..=9u32 {
            for mut n in 0..3usize.pow(len) {
                let src: Vec<u8> = (0..len)
                    .map(|_| {
                        let b = alphabet[n % 3];
                        n /= 3;
                        b
                    })
                    .collect();
                assert_eq!(check_crlf(&src).is_err(), plain(&src), "{src:?}");
            }
        }
        let mut line = [b'x'; 64];
        assert!(check_crlf(&line).is_ok());
        for i in 0..64 {
            line[i] = b'\n';
            assert!(check_crlf(&line).is_err(), "bare LF at {i}");
            if i > 0 {
                line[i - 1] = b'\r';
                assert!(check_crlf(&line).is_ok(), "CRLF at {i}");
                line[i - 1] = b'x';
            }
            line[i] = b'x';
        }
    }

    #[test]
    fn bare_lf_line_endings_are_refused() {
        // spec/protocol.md §4: CRLF only; httparse alone accepts each of these.
        let bare = HeadError::Syntax(httparse::Error::NewLine);
        for raw in [
            &b"GET / HTTP/1.1\n\n"[..],
            b"GET /a HTTP/1.1\r\nhost: x\n\r\n",
            b"GET /a HTTP/1.1\r\nhost: x\r\n\n",
            b"GET /a HTTP/1.1\nhost: x\r\n\r\n",
        ] {
            let src = Bytes::from_static(raw);
            assert_eq!(RequestHead::decode(&src, &limits()), Err(bare), "{raw:?}");
        }
        let src = Bytes::from_static(b"HTTP/1.1 200 OK\r\nx: 1\n\r\n");
        assert_eq!(ResponseHead::decode(&src, &limits()), Err(bare));
        for raw in [&b"\n"[..], b"x: 1\n\r\n"] {
            let src = Bytes::from_static(raw);
            assert_eq!(decode_trailers(&src, &limits()), Err(bare), "{raw:?}");
        }
        assert!(req(b"GET /a HTTP/1.1\r\nhost: x\r\n\r\n").is_ok());
    }

    #[test]
    fn garbage_is_rejected_with_a_named_error() {
        let cases: &[(&[u8], HeadError)] = &[
            (b"", HeadError::Incomplete),
            (b"GET / HTTP/1.1\r\n", HeadError::Incomplete),
            (b"GET / HTTP/1.1\r\n\r\nextra", HeadError::TrailingBytes),
            (b"GET / HTTP/1.0\r\n\r\n", HeadError::UnsupportedVersion),
            (
                b"G(T / HTTP/1.1\r\n\r\n",
                HeadError::Syntax(httparse::Error::Token),
            ),
            (
                b"GET /\x7f HTTP/1.1\r\n\r\n",
                HeadError::Syntax(httparse::Error::Token),
            ),
            (b"GET http://[::1 HTTP/1.1\r\n\r\n", HeadError::InvalidUri),
            (
                b"GET / HTTP/1.1\r\nconnection: close\r\n\r\n",
                HeadError::ConnectionSpecificHeader,
            ),
            (
                b"GET / HTTP/1.1\r\nbad name: v\r\n\r\n",
                HeadError::Syntax(httparse::Error::HeaderName),
            ),
            (
                b"GET / HTTP/1.1\r\ncontent-length: 1x\r\n\r\n",
                HeadError::InvalidContentLength,
            ),
            (
                b"GET / HTTP/1.1\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
                HeadError::InvalidContentLength,
            ),
            (
                b"\xff\xfe\x00garbage",
                HeadError::Syntax(httparse::Error::Token),
            ),
        ];
        for (raw, want) in cases {
            let got = RequestHead::decode(&Bytes::from_static(raw), &limits());
            assert_eq!(
                got.as_ref().err(),
                Some(want),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
        assert!(res(b"HTTP/1.1 99 Low\r\n\r\n").is_err());
        assert!(res(b"GET / HTTP/1.1\r\n\r\n").is_err());
        assert_eq!(
            decode_trailers(&Bytes::from_static(b"x: 1\r\n"), &limits()),
            Err(HeadError::Incomplete)
        );
    }

    #[test]
    fn size_limit_is_checked_before_parsing() {
        let l = Limits {
            max_head_size: 256,
            ..limits()
        };
        let big = Bytes::from(vec![b'a'; 257]);
        assert_eq!(
            RequestHead::decode(&big, &l),
            Err(HeadError::TooLarge { len: 257, max: 256 })
        );
    }

    #[test]
    fn header_count_limit() {
        let mut raw = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..5 {
            raw.extend_from_slice(format!("x-{i}: v\r\n").as_bytes());
        }
        raw.extend_from_slice(b"\r\n");
        let raw = Bytes::from(raw);
        let l = Limits {
            max_header_count: 4,
            ..limits()
        };
        assert_eq!(
            RequestHead::decode(&raw, &l),
            Err(HeadError::TooManyHeaders { max: 4 })
        );
        let l = Limits {
            max_header_count: 5,
            ..limits()
        };
        assert!(RequestHead::decode(&raw, &l).is_ok());
        // Above the stack buffer the limit still holds.
        let l = Limits {
            max_header_count: 200,
            ..limits()
        };
        assert!(RequestHead::decode(&raw, &l).is_ok());
    }

    #[test]
    fn heads_with_more_fields_than_the_first_try_still_parse() {
        let mut head = ResponseHead::new(StatusCode::OK);
        for i in 0..(FIRST_TRY_FIELDS + 8) {
            head.headers.append(
                HeaderName::from_bytes(format!("x-{i}").as_bytes()).unwrap(),
                HeaderValue::from(i),
            );
        }
        let mut out = BytesMut::new();
        head.encode(&mut out);
        let out = out.freeze();
        assert_eq!(ResponseHead::decode(&out, &limits()).unwrap(), head);
        let l = Limits {
            max_header_count: 33,
            ..limits()
        };
        assert_eq!(
            ResponseHead::decode(&out, &l),
            Err(HeadError::TooManyHeaders { max: 33 })
        );
        let mut trailers = BytesMut::new();
        encode_trailers(&head.headers, &mut trailers);
        assert_eq!(
            decode_trailers(&trailers.freeze(), &limits()).unwrap(),
            head.headers
        );
    }

    #[test]
    fn trailers_round_trip() {
        let mut t = HeaderMap::new();
        t.insert("grpc-status", HeaderValue::from_static("0"));
        let mut out = BytesMut::new();
        encode_trailers(&t, &mut out);
        assert_eq!(&out[..], b"grpc-status: 0\r\n\r\n");
        assert_eq!(decode_trailers(&out.freeze(), &limits()).unwrap(), t);
        assert!(decode_trailers(&Bytes::from_static(b"\r\n"), &limits())
            .unwrap()
            .is_empty());
    }

    /// spec/protocol.md §4.3 [4.3-6]: names are sent in lower case, also those that
    /// arrived in mixed case (a gateway forwarding HTTP/1.1 fields).
    #[test]
    fn field_names_are_sent_in_lower_case() {
        let lim = limits();
        let h = req(b"GET / HTTP/1.1\r\nX-Mixed-Case: 1\r\nHOST: a\r\n\r\n").unwrap();
        let mut out = BytesMut::new();
        h.encode(&mut out);
        assert_eq!(
            &out[..],
            b"GET / HTTP/1.1\r\nx-mixed-case: 1\r\nhost: a\r\n\r\n"
        );

        let mut r = ResponseHead::new(StatusCode::OK);
        r.headers.insert(
            HeaderName::from_bytes(b"Content-Type").unwrap(),
            HeaderValue::from_static("text/plain"),
        );
        let mut out = BytesMut::new();
        r.encode(&mut out);
        assert_eq!(
            &out[..],
            b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\n"
        );

        let t = decode_trailers(&Bytes::from_static(b"Grpc-Status: 0\r\n\r\n"), &lim).unwrap();
        let mut out = BytesMut::new();
        encode_trailers(&t, &mut out);
        assert_eq!(&out[..], b"grpc-status: 0\r\n\r\n");
    }

    #[test]
    fn content_length_helper() {
        let h = req(b"PUT / HTTP/1.1\r\ncontent-length: 42\r\n\r\n").unwrap();
        assert_eq!(content_length(&h.headers), Some(42));
    }

    /// spec/protocol.md §10.6: the deadline field of a request is the head's `timeout_ms`,
    /// in any case of its name, never one of its headers; what is not 1 to 10 digits, or a
    /// second one, is `invalid_timeout`.
    #[test]
    fn a_request_deadline_is_taken_out_of_the_fields() {
        let h = req(b"GET / HTTP/1.1\r\nTether-Timeout: 0000000005\r\nx: 1\r\n\r\n").unwrap();
        assert_eq!(h.timeout_ms, Some(5));
        assert_eq!(h.headers.len(), 1);
        assert!(!h.headers.contains_key(TIMEOUT_HEADER));
        // Only the deadline: no map is allocated.
        let h = req(b"GET / HTTP/1.1\r\ntether-timeout: 0\r\n\r\n").unwrap();
        assert_eq!((h.timeout_ms, h.headers.capacity()), (Some(0), 0));
        for bad in [
            &b"GET / HTTP/1.1\r\ntether-timeout: 1.5s\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\ntether-timeout: \r\n\r\n",
            b"GET / HTTP/1.1\r\ntether-timeout: 12345678901\r\n\r\n",
            b"GET / HTTP/1.1\r\ntether-timeout: -1\r\n\r\n",
            b"GET / HTTP/1.1\r\ntether-timeout: 100\r\nTETHER-TIMEOUT: 100\r\n\r\n",
        ] {
            assert_eq!(req(bad).err(), Some(HeadError::InvalidTimeout), "{bad:?}");
        }
        // In a response or trailers it is an ordinary field.
        let r = res(b"HTTP/1.1 200 OK\r\ntether-timeout: soon\r\n\r\n").unwrap();
        assert_eq!(r.headers[TIMEOUT_HEADER], "soon");
    }

    #[test]
    fn a_request_deadline_is_written_after_the_fields_and_counted() {
        let mut h = RequestHead::new(Method::GET, Uri::from_static("/"));
        h.headers.insert("x", HeaderValue::from_static("1"));
        for (ms, text) in [
            (0, &b"tether-timeout: 0"[..]),
            (5, b"tether-timeout: 5"),
            (10, b"tether-timeout: 10"),
            (MAX_TIMEOUT_MS, b"tether-timeout: 9999999999"),
            (u64::MAX, b"tether-timeout: 9999999999"),
        ] {
            h.timeout_ms = Some(ms);
            let mut out = BytesMut::new();
            h.encode(&mut out);
            let want = [&b"GET / HTTP/1.1\r\nx: 1\r\n"[..], text, b"\r\n\r\n"].concat();
            assert_eq!(&out[..], &want[..]);
            assert_eq!(
                h.encoded_size(),
                EncodedSize {
                    bytes: out.len(),
                    fields: 2
                }
            );
            let back = RequestHead::decode(&out.freeze(), &limits()).unwrap();
            assert_eq!(back.timeout_ms, Some(ms.min(MAX_TIMEOUT_MS)));
        }
    }
}
