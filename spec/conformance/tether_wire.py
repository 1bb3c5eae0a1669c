"""Tether on the wire, for the conformance runner: RFC 6455 framing, Tether frames
(spec/protocol.md §3), settings (§3.6), HTTP heads (§4), an HTTP origin and process helpers.

Written from spec/protocol.md and RFC 6455 alone, with the Python standard library only.
The WebSocket layer is our own on purpose: the runner must be able to do what a correct
library never does (withhold Pongs, send an unmasked frame, set RSV1, announce a 64 MiB
message and stop), and must see exactly what the peer sends (every Ping, the Close code,
whether the TCP connection ends with FIN or RST).
"""
import base64
import hashlib
import http.server
import os
import shlex
import signal
import socket
import socketserver
import struct
import subprocess
import threading
import time
import uuid

# --- Tether constants (spec/protocol.md §3.3, §3.6, §6) -------------------------------

HELLO, WELCOME, ACK, HEADERS, DATA, RESET, WINDOW_UPDATE, GOAWAY, PING, PONG = range(1, 11)
TYPE_NAMES = {1: "HELLO", 2: "WELCOME", 3: "ACK", 4: "HEADERS", 5: "DATA", 6: "RESET",
              7: "WINDOW_UPDATE", 8: "GOAWAY", 9: "PING", 10: "PONG"}
# flags
END_STREAM, RESPONSE, TRAILERS = 0x01, 0x02, 0x04
RESUME_FLAG = RESUMED_FLAG = 0x01
DEFINED_FLAGS = {HELLO: 0x01, WELCOME: 0x01, ACK: 0, HEADERS: 0x07, DATA: 0x01, RESET: 0,
                 WINDOW_UPDATE: 0, GOAWAY: 0, PING: 0, PONG: 0}

S = dict(HEARTBEAT_INTERVAL_MS=1, HEARTBEAT_TIMEOUT_MS=2, HEARTBEAT_CARRIER=3,
         MAX_FRAME_PAYLOAD=4, MAX_HEAD_SIZE=5, MAX_HEADER_COUNT=6, MAX_CONCURRENT_STREAMS=7,
         INITIAL_STREAM_WINDOW=8, INITIAL_CONNECTION_WINDOW=9, RESUME_WINDOW_MS=10)
SETTING_RANGES = {1: (0, 86_400_000), 2: (1, 86_400_000), 3: (0, 1), 4: (1024, 16_777_216),
                  5: (256, 16_777_216), 6: (1, 1024), 7: (0, 2**31 - 1), 8: (0, 2**31 - 1),
                  9: (0, 2**31 - 1), 10: (0, 86_400_000)}
# defaults of §5, §10.3, §10.8 for absent receive limits
DEFAULTS = {4: 65_536, 5: 16_384, 6: 100, 7: 128, 8: 262_144, 9: 1_048_576}

R = dict(NO_ERROR=0, PROTOCOL_ERROR=1, INTERNAL_ERROR=2, FLOW_CONTROL_ERROR=3,
         REFUSED_STREAM=4, CANCEL=5, TIMEOUT=6, HEAD_TOO_LARGE=7, BODY_TOO_LARGE=8,
         STREAM_CLOSED=9, ENHANCE_YOUR_CALM=10)
RESET_NAMES = {v: k for k, v in R.items()}

CONNECTION_SPECIFIC = {"connection", "keep-alive", "proxy-connection", "transfer-encoding",
                       "upgrade"}

# IANA HTTP Status Code Registry reason phrases (RFC 9110 §15), for §4.2
REASONS = {100: "Continue", 101: "Switching Protocols", 102: "Processing", 103: "Early Hints",
           200: "OK", 201: "Created", 202: "Accepted", 203: "Non-Authoritative Information",
           204: "No Content", 205: "Reset Content", 206: "Partial Content",
           207: "Multi-Status", 208: "Already Reported", 226: "IM Used",
           300: "Multiple Choices", 301: "Moved Permanently", 302: "Found",
           303: "See Other", 304: "Not Modified", 305: "Use Proxy", 307: "Temporary Redirect",
           308: "Permanent Redirect", 400: "Bad Request", 401: "Unauthorized",
           402: "Payment Required", 403: "Forbidden", 404: "Not Found",
           405: "Method Not Allowed", 406: "Not Acceptable",
           407: "Proxy Authentication Required", 408: "Request Timeout", 409: "Conflict",
           410: "Gone", 411: "Length Required", 412: "Precondition Failed",
           413: "Content Too Large", 414: "URI Too Long", 415: "Unsupported Media Type",
           416: "Range Not Satisfiable", 417: "Expectation Failed", 421: "Misdirected Request",
           422: "Unprocessable Content", 423: "Locked", 424: "Failed Dependency",
           425: "Too Early", 426: "Upgrade Required", 428: "Precondition Required",
           429: "Too Many Requests", 431: "Request Header Fields Too Large",
           451: "Unavailable For Legal Reasons", 500: "Internal Server Error",
           501: "Not Implemented", 502: "Bad Gateway", 503: "Service Unavailable",
           504: "Gateway Timeout", 505: "HTTP Version Not Supported",
           506: "Variant Also Negotiates", 507: "Insufficient Storage", 508: "Loop Detected",
           510: "Not Extended", 511: "Network Authentication Required"}


CASES = []


def case(name, ids, role, needs=()):
    """Registers a conformance case: `role` is the role of the implementation under test
    ('server' or 'client'); `ids` the requirement ids of spec/protocol.md (or bare section
    numbers, for normative rules without a MUST/SHOULD sentence) it checks; `needs` what it
    cannot run without ('cmd': the runner starts the target itself)."""
    def register(fn):
        CASES.append({"name": name, "ids": list(ids), "role": role, "needs": set(needs),
                      "fn": fn, "doc": (fn.__doc__ or "").strip()})
        return fn
    return register


class Violation(Exception):
    """The implementation under test broke a rule: the case fails with this message."""


class Skip(Exception):
    """The case cannot run against this target (a missing placeholder, a setting)."""


# --- Tether frames ---------------------------------------------------------------------

class Frame:
    __slots__ = ("type", "flags", "reserved", "sid", "payload")

    def __init__(self, type_, flags, reserved, sid, payload):
        self.type, self.flags, self.reserved, self.sid, self.payload = (
            type_, flags, reserved, sid, payload)

    def __repr__(self):
        name = TYPE_NAMES.get(self.type, hex(self.type))
        body = self.payload[:40]
        return f"{name}(sid={self.sid}, flags={self.flags:#x}, {len(self.payload)} B {body!r})"

    @property
    def code(self):
        """RESET's error code (§3.4.6)."""
        return struct.unpack(">I", self.payload)[0]

    @property
    def increment(self):
        """WINDOW_UPDATE's increment (§3.4.7), reserved bit ignored."""
        return struct.unpack(">I", self.payload)[0] & 0x7FFF_FFFF


def frame(type_, flags=0, sid=0, payload=b"", reserved=0):
    return struct.pack(">BBHI", type_, flags, reserved, sid) + bytes(payload)


def decode(message):
    """Splits one binary message into a Frame; raises Violation when it cannot be one."""
    if len(message) < 8:
        raise Violation(f"binary message of {len(message)} bytes: shorter than a frame header")
    type_, flags, reserved, sid = struct.unpack(">BBHI", message[:8])
    return Frame(type_, flags, reserved, sid, bytes(message[8:]))


def check_sent_frame(f):
    """What every frame a correct endpoint sends satisfies (§3.1, §3.2, §3.3)."""
    if f.type not in TYPE_NAMES:
        raise Violation(f"sent a frame of undefined type {f.type:#x} [3.3-1]")
    if f.reserved != 0:
        raise Violation(f"sent {f!r} with reserved bits {f.reserved:#x} [3.1-2]")
    if f.flags & ~DEFINED_FLAGS[f.type]:
        raise Violation(f"sent {f!r} with undefined flags [3.1-1]")
    conn_frame = f.type in (HELLO, WELCOME, ACK, GOAWAY, PING, PONG)
    if conn_frame and f.sid != 0 or f.type in (HEADERS, DATA, RESET) and f.sid == 0:
        raise Violation(f"sent {f!r} on the wrong stream [3.2-1]")
    if f.type in (RESET, WINDOW_UPDATE) and len(f.payload) != 4:
        raise Violation(f"sent {f!r} with a payload of {len(f.payload)} bytes (§3.4.6-7)")
    if f.type == WINDOW_UPDATE and f.increment == 0:
        raise Violation("sent a WINDOW_UPDATE with increment 0 (§3.4.7)")
    if f.type == HEADERS and f.flags & TRAILERS and not f.flags & END_STREAM:
        raise Violation("sent trailers without END_STREAM [3.4.4-1]")


def settings_list(defaults, over):
    """(id, value) pairs in increasing id order from settings by name: `over` replaces or
    (with None) removes entries of `defaults`."""
    s = dict(defaults)
    s.update(over)
    return [(S[k], v) for k, v in sorted(s.items(), key=lambda kv: S[kv[0]]) if v is not None]


def settings_block(pairs):
    """pairs: dict or list of (id or name, value); order kept as given."""
    items = list(pairs.items()) if isinstance(pairs, dict) else list(pairs)
    out = struct.pack(">H", len(items))
    for ident, value in items:
        out += struct.pack(">HI", S.get(ident, ident) if isinstance(ident, str) else ident, value)
    return out


def parse_settings(buf, at):
    """Returns (list of (id, value) in wire order, next offset)."""
    if len(buf) < at + 2:
        raise Violation("settings block truncated")
    (count,) = struct.unpack_from(">H", buf, at)
    at += 2
    if count > 64:
        raise Violation(f"settings block announces {count} entries (at most 64, §3.6)")
    if len(buf) < at + 6 * count:
        raise Violation("settings block truncated")
    pairs = [struct.unpack_from(">HI", buf, at + 6 * i) for i in range(count)]
    return pairs, at + 6 * count


def check_settings(pairs, who):
    ids = [i for i, _ in pairs]
    if len(set(ids)) != len(ids):
        raise Violation(f"{who} lists a setting twice [3.6-1]")
    if ids != sorted(ids):
        raise Violation(f"{who} lists settings out of increasing order {ids} [3.6-1]")
    for ident, value in pairs:
        lo, hi = SETTING_RANGES.get(ident, (0, 2**32 - 1))
        if not lo <= value <= hi:
            raise Violation(f"{who}: setting {ident} = {value} is outside {lo}..{hi} (§3.6)")
    return dict(pairs)


def hello(versions=(1,), settings=(), metadata=b"", resume=None, count=None):
    p = struct.pack(">B", len(versions) if count is None else count)
    p += b"".join(struct.pack(">H", v) for v in versions)
    flags = 0
    if resume is not None:
        flags = RESUME_FLAG
        p += resume[0] + resume[1]
    return frame(HELLO, flags, 0, p + settings_block(settings) + metadata)


def parse_hello(f):
    p = f.payload
    if not p:
        raise Violation("HELLO without a version count")
    n = p[0]
    if not 1 <= n <= 16 or len(p) < 1 + 2 * n:
        raise Violation(f"HELLO lists {n} versions (1 to 16, §3.4.1)")
    versions = [struct.unpack_from(">H", p, 1 + 2 * i)[0] for i in range(n)]
    at = 1 + 2 * n
    resume = None
    if f.flags & RESUME_FLAG:
        if len(p) < at + 32:
            raise Violation("HELLO with RESUME too short for an id and a token")
        resume = (p[at:at + 16], p[at + 16:at + 32])
        at += 32
    pairs, at = parse_settings(p, at)
    return {"versions": versions, "resume": resume, "pairs": pairs,
            "settings": check_settings(pairs, "HELLO"), "metadata": p[at:]}


def welcome(version=1, conn_id=None, token=None, settings=(), resumed=False, extra=b""):
    conn_id = conn_id or uuid.uuid4().bytes
    token = token or os.urandom(16)
    p = struct.pack(">H", version) + conn_id + token + settings_block(settings) + extra
    return frame(WELCOME, RESUMED_FLAG if resumed else 0, 0, p)


def parse_welcome(f):
    p = f.payload
    if len(p) < 34:
        raise Violation(f"WELCOME of {len(p)} bytes: truncated (§3.4.2)")
    (version,) = struct.unpack_from(">H", p, 0)
    pairs, at = parse_settings(p, 34)
    if at != len(p):
        raise Violation("WELCOME has bytes after its settings block (§3.4.2)")
    return {"version": version, "id": p[2:18], "token": p[18:34], "pairs": pairs,
            "settings": check_settings(pairs, "WELCOME"), "resumed": bool(f.flags & 1)}


def u32(v):
    return struct.pack(">I", v)


def reset(sid, code):
    return frame(RESET, 0, sid, u32(code))


def window_update(sid, increment):
    return frame(WINDOW_UPDATE, 0, sid, u32(increment))


def goaway(last, code=0, reason=b""):
    return frame(GOAWAY, 0, 0, u32(last) + u32(code) + reason)


# --- HTTP heads (§4) -----------------------------------------------------------------

def request_head(method, target, fields=()):
    lines = [f"{method} {target} HTTP/1.1"] + [f"{n}: {v}" for n, v in fields]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def response_head(status, fields=(), reason=None):
    reason = REASONS.get(status, "") if reason is None else reason
    lines = [f"HTTP/1.1 {status} {reason}"] + [f"{n}: {v}" for n, v in fields]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def parse_head(payload, kind):
    """kind: 'request', 'response' or 'trailers'. Returns (start, fields) where start is
    (method, target) / (status, reason) / None and fields a list of (raw name, value)."""
    text = payload.decode("latin-1")
    if not text.endswith("\r\n\r\n") and text != "\r\n":
        raise Violation(f"{kind} head does not end with an empty line: {text[-20:]!r} [4-1]")
    if "\n" in text.replace("\r\n", ""):
        raise Violation(f"{kind} head holds a bare LF [4-2]")
    lines = text[:-4].split("\r\n") if text != "\r\n" else []
    start = None
    if kind != "trailers":
        first = lines.pop(0)
        parts = first.split(" ", 2)
        if kind == "request":
            if len(parts) != 3 or parts[2] != "HTTP/1.1":
                raise Violation(f"request line {first!r} [4.1-1]")
            start = (parts[0], parts[1])
        else:
            if parts[0] != "HTTP/1.1" or len(parts) < 2 or not parts[1].isdigit() \
                    or len(parts[1]) != 3:
                raise Violation(f"status line {first!r} (§4.2)")
            if len(parts) == 2 and first != f"HTTP/1.1 {parts[1]}":
                raise Violation(f"status line {first!r} (§4.2)")
            start = (int(parts[1]), parts[2] if len(parts) == 3 else None)
    fields = []
    for line in lines:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise Violation(f"field line {line!r} (§4)")
        fields.append((name, value.strip(" \t")))
    return start, fields


def check_sent_fields(fields, kind):
    for name, value in fields:
        low = name.lower()
        if name != low:
            raise Violation(f"{kind} field name {name!r} not in lower case [4.3-6]")
        if low in CONNECTION_SPECIFIC or low == "te" and value.lower() != "trailers":
            raise Violation(f"{kind} carries the connection-specific field {name!r} [4.3-1]")
        if kind == "trailers" and low == "content-length":
            raise Violation("trailers carry content-length (§4.4)")


def field(fields, name):
    values = [v for n, v in fields if n.lower() == name]
    return values[0] if values else None


# --- WebSocket (RFC 6455) --------------------------------------------------------------

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


def accept_key(key):
    return base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()


class Msg:
    """One thing received: kind is binary, text, ping, pong, close or eof ('reset' when
    the TCP connection was reset)."""
    __slots__ = ("kind", "data", "code", "reason", "at")

    def __init__(self, kind, data=b"", code=None, reason=""):
        self.kind, self.data, self.code, self.reason = kind, data, code, reason
        self.at = time.monotonic()

    def __repr__(self):
        if self.kind == "close":
            return f"Close({self.code}, {self.reason!r})"
        if self.kind == "binary" and len(self.data) >= 8:
            return repr(decode(self.data))
        return f"{self.kind}({self.data[:40]!r})"


class WsConn:
    """One WebSocket connection after its opening handshake. `is_client` decides masking.
    Pings are answered with Pongs (once each) unless `auto_pong` is False; every Ping
    received is also kept in `pings` with the time it arrived."""

    def __init__(self, sock, is_client, leftover=b""):
        self.sock, self.is_client, self.buf = sock, is_client, bytearray(leftover)
        self.parts, self.first_op = [], None  # a fragmented message across control frames
        self.auto_pong = True
        self.pings = []
        self.closed_sent = False
        self.lock = threading.Lock()

    # sending
    def send_raw(self, data):
        with self.lock:
            self.sock.sendall(data)

    def encode_frame(self, opcode, payload, fin=True, rsv=0, masked=None, length=None):
        masked = self.is_client if masked is None else masked
        n = len(payload) if length is None else length
        b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
        if n < 126:
            head = struct.pack(">BB", b0, (0x80 if masked else 0) | n)
        elif n < 65536:
            head = struct.pack(">BBH", b0, (0x80 if masked else 0) | 126, n)
        else:
            head = struct.pack(">BBQ", b0, (0x80 if masked else 0) | 127, n)
        if masked:
            key = os.urandom(4)
            body = bytes(b ^ key[i % 4] for i, b in enumerate(payload)) if len(payload) < 4096 \
                else _mask(payload, key)
            return head + key + body
        return head + bytes(payload)

    def send(self, opcode, payload=b"", **kw):
        self.send_raw(self.encode_frame(opcode, payload, **kw))

    def send_binary(self, data):
        self.send(OP_BINARY, data)

    def send_frames(self, frames):
        self.send_raw(b"".join(self.encode_frame(OP_BINARY, f) for f in frames))

    def send_close(self, code=1000, reason=b""):
        self.closed_sent = True
        self.send(OP_CLOSE, struct.pack(">H", code) + reason)

    # receiving
    def _fill(self, n, deadline):
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(max(65536, n - len(self.buf)))
            except socket.timeout:
                raise TimeoutError
            except ConnectionResetError:
                return "reset"
            if not chunk:
                return "eof"
            self.buf += chunk
        return None

    def _frame(self, deadline):
        end = self._fill(2, deadline)
        if end:
            return end
        b0, b1 = self.buf[0], self.buf[1]
        n, at = b1 & 0x7F, 2
        if n == 126:
            end = self._fill(4, deadline)
            if end:
                return end
            n, at = struct.unpack_from(">H", self.buf, 2)[0], 4
        elif n == 127:
            end = self._fill(10, deadline)
            if end:
                return end
            n, at = struct.unpack_from(">Q", self.buf, 2)[0], 10
        masked = b1 & 0x80
        if masked and self.is_client:
            raise Violation("the server sent a masked frame (RFC 6455 §5.1)")
        if not masked and not self.is_client:
            raise Violation("the client sent an unmasked frame (RFC 6455 §5.1)")
        key_len = 4 if masked else 0
        if n > 64 * 2**20:
            raise Violation(f"peer announces a {n}-byte WebSocket frame")
        end = self._fill(at + key_len + n, deadline)
        if end:
            return end
        payload = bytes(self.buf[at + key_len:at + key_len + n])
        if masked:
            payload = _mask(payload, bytes(self.buf[at:at + 4]))
        del self.buf[:at + key_len + n]
        if b0 & 0x70:
            raise Violation("peer set an RSV bit without an extension (RFC 6455 §5.2)")
        return (bool(b0 & 0x80), b0 & 0x0F, payload)

    def recv(self, timeout=5.0):
        """The next message (fragments joined); Msg('eof'/'reset') at the end; raises
        TimeoutError when nothing whole arrives in time."""
        deadline = time.monotonic() + timeout
        while True:
            got = self._frame(deadline)
            if got in ("eof", "reset"):
                return Msg(got)
            fin, op, payload = got
            if op == OP_PING:
                self.pings.append((time.monotonic(), payload))
                if self.auto_pong and not self.closed_sent:
                    self.send(OP_PONG, payload)
                return Msg("ping", payload)
            if op == OP_PONG:
                return Msg("pong", payload)
            if op == OP_CLOSE:
                code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else 1005
                return Msg("close", payload, code, payload[2:].decode("utf-8", "replace"))
            if op in (OP_TEXT, OP_BINARY):
                self.first_op, self.parts = op, [payload]
            elif op == OP_CONT:
                self.parts.append(payload)
            else:
                raise Violation(f"unknown WebSocket opcode {op:#x} (RFC 6455 §5.2)")
            if fin:
                data, self.parts = b"".join(self.parts), []
                return Msg("text" if self.first_op == OP_TEXT else "binary", data)

    def close_transport(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def abort(self):
        """Ends the TCP connection without a Close frame (a lost transport)."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close_transport()


def _mask(payload, key):
    n = len(payload)
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big")


def read_http_head(sock, deadline):
    """Reads an HTTP/1.1 head; returns (start line, {lower name: value}, leftover bytes)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        sock.settimeout(left)
        try:
            chunk = sock.recv(4096)
        except socket.timeout:
            raise TimeoutError
        if not chunk:
            raise ConnectionError(f"connection closed after {len(buf)} bytes of a head")
        buf += chunk
        if len(buf) > 65536:
            raise Violation("HTTP head over 64 KiB")
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    fields = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        fields.setdefault(name.strip().lower(), value.strip())
    return lines[0], fields, rest


def ws_connect(host, port, path="/", protocols=("tether.v1",), extra=(), timeout=5.0):
    """Dials and upgrades. Returns (WsConn or None, status code, fields, sock)."""
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Upgrade: websocket",
             "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
    if protocols:
        lines.append("Sec-WebSocket-Protocol: " + ", ".join(protocols))
    lines += [f"{n}: {v}" for n, v in extra]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    start, fields, rest = read_http_head(sock, time.monotonic() + timeout)
    status = int(start.split(" ")[1])
    if status != 101:
        return None, status, fields, sock
    if fields.get("sec-websocket-accept") != accept_key(key):
        raise Violation("wrong Sec-WebSocket-Accept (RFC 6455 §4.2.2)")
    return WsConn(sock, True, rest), status, fields, sock


class Listener:
    """A TCP listener for the runner acting as server; `accept` upgrades one connection."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.url = f"ws://127.0.0.1:{self.port}/"

    def accept_tcp(self, timeout):
        self.sock.settimeout(timeout)
        try:
            conn, _ = self.sock.accept()
        except socket.timeout:
            raise TimeoutError
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def accept(self, timeout=10.0, subprotocol="tether.v1", status=101, extra=()):
        """Accepts and answers one upgrade. Returns (WsConn or None, request start line,
        request fields). With status other than 101 the request is refused and None
        returned; subprotocol None selects none."""
        conn = self.accept_tcp(timeout)
        start, fields, rest = read_http_head(conn, time.monotonic() + timeout)
        if status != 101:
            lines = [f"HTTP/1.1 {status} {REASONS.get(status, '')}", "Connection: close",
                     "Content-Length: 0"] + [f"{n}: {v}" for n, v in extra]
            conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
            conn.close()
            return None, start, fields
        key = fields.get("sec-websocket-key", "")
        lines = ["HTTP/1.1 101 Switching Protocols", "Upgrade: websocket",
                 "Connection: Upgrade", f"Sec-WebSocket-Accept: {accept_key(key)}"]
        if subprotocol:
            lines.append(f"Sec-WebSocket-Protocol: {subprotocol}")
        conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        return WsConn(conn, False, rest), start, fields

    def close(self):
        self.sock.close()


# --- Tether endpoint helpers -----------------------------------------------------------

class Peer:
    """The runner's side of one Tether connection: frames in and out, with the bookkeeping
    a case needs (peer settings, windows granted to us, heartbeat answers)."""

    def __init__(self, ws, local_settings=None):
        self.ws = ws
        self.local = dict(local_settings or {})
        self.remote = {}
        self.answer_ping_frames = True
        self.ping_frames = []   # (time, payload) of PING frames received
        self.log = []           # every Msg received, for failure reports

    def send(self, *frames):
        self.ws.send_frames(frames)

    def sync(self, timeout=5.0):
        """A PING frame round trip: once its PONG is back, the peer has processed every
        frame sent before it (the ACK, say)."""
        token = os.urandom(8)
        self.send(frame(PING, 0, 0, token))
        self.expect(lambda f: f.type == PONG and f.payload == token, "the PONG of a sync",
                    timeout, heartbeat=True)

    def limit(self, name):
        """The peer's announced receive limit (absent: the default of §5/§10)."""
        ident = S[name]
        return self.remote.get(ident, DEFAULTS.get(ident))

    def next(self, timeout=5.0, heartbeat=False):
        """The next Tether frame, or a Msg for close/eof/text. Probes are answered and
        skipped unless heartbeat=True (then returned as Msg('ping') / Frame PING)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            m = self.ws.recv(left)
            self.log.append(m)
            if m.kind == "binary":
                f = decode(m.data)
                check_sent_frame(f)
                if f.type == PING:
                    self.ping_frames.append((m.at, f.payload))
                    if self.answer_ping_frames and not self.ws.closed_sent:
                        self.send(frame(PONG, 0, 0, f.payload))
                    if heartbeat:
                        return f
                    continue
                if f.type == PONG and not heartbeat:
                    continue
                return f
            if m.kind in ("ping", "pong") and not heartbeat:
                continue
            return m

    def expect(self, pred, what, timeout=5.0, heartbeat=False):
        """Reads until a frame satisfies pred; anything that ends the connection first,
        or the timeout, is a violation."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                got = self.next(max(left, 0.001), heartbeat)
            except TimeoutError:
                raise Violation(f"waited {timeout:g} s for {what}; got nothing") from None
            if isinstance(got, Frame) and pred(got):
                return got
            if isinstance(got, Msg) and got.kind in ("close", "eof", "reset"):
                raise Violation(f"expected {what}, the connection ended: {got!r}")

    def expect_close(self, codes, timeout=5.0, what=""):
        """Reads until a Close frame; its code must be in codes. Frames before it are
        allowed (a GOAWAY, probes, in-flight responses)."""
        codes = (codes,) if isinstance(codes, int) else tuple(codes)
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            left = deadline - time.monotonic()
            try:
                got = self.next(max(left, 0.001))
            except TimeoutError:
                raise Violation(f"expected Close {codes} {what}within {timeout:g} s; "
                                f"got {seen[-3:]}") from None
            except Violation as e:
                raise Violation(f"expected Close {codes} {what}: {e}") from None
            if isinstance(got, Msg):
                if got.kind == "close":
                    if got.code not in codes:
                        raise Violation(f"expected Close {codes} {what}; got Close {got.code} "
                                        f"{got.reason!r}")
                    if not self.ws.closed_sent:
                        try:
                            self.ws.send_close(got.code)
                        except OSError:
                            pass
                    return got
                if got.kind in ("eof", "reset"):
                    raise Violation(f"expected Close {codes} {what}; the TCP connection ended "
                                    f"({got.kind}) without a Close frame [2.3-1]")
            seen.append(got)

    def expect_reset(self, sid, codes, timeout=5.0):
        codes = (codes,) if isinstance(codes, int) else tuple(codes)
        f = self.expect(lambda f: f.sid == sid and f.type in (RESET, HEADERS, DATA)
                        and (f.type == RESET or f.flags & END_STREAM),
                        f"RESET on stream {sid}", timeout)
        if f.type != RESET:
            raise Violation(f"expected RESET {[RESET_NAMES.get(c) for c in codes]} on "
                            f"stream {sid}; the stream ended normally: {f!r}")
        if f.code not in codes:
            raise Violation(f"expected RESET {[RESET_NAMES.get(c) for c in codes]} on stream "
                            f"{sid}; got {RESET_NAMES.get(f.code, f.code)}")
        return f

    def read_response(self, sid, timeout=10.0, grant=True, checks=True):
        """Reads the response of stream sid: (status, fields, body, trailers). Grants
        window for the bytes read (stream and connection) unless grant=False. Frames of
        other streams are ignored."""
        deadline = time.monotonic() + timeout
        status, fields, body, trailers = None, None, bytearray(), None
        while True:
            left = deadline - time.monotonic()
            f = self.expect(lambda f: f.sid == sid, f"the response on stream {sid}",
                            max(left, 0.001))
            if f.type == RESET:
                raise Violation(f"stream {sid} reset with {RESET_NAMES.get(f.code, f.code)} "
                                f"instead of answered")
            if f.type == HEADERS:
                if not f.flags & RESPONSE and not f.flags & TRAILERS:
                    raise Violation(f"request head on stream {sid} it opened")
                if f.flags & TRAILERS:
                    _, trailers = parse_head(f.payload, "trailers")
                    if checks:
                        check_sent_fields(trailers, "trailers")
                    return status, fields, bytes(body), trailers
                (code, reason), flds = parse_head(f.payload, "response")
                if checks:
                    check_sent_fields(flds, "response")
                if code == 101:
                    raise Violation("a 101 response was sent [4.2-3]")
                if 100 <= code < 200:
                    if f.flags & END_STREAM:
                        raise Violation("a 1xx head carries END_STREAM [10.2-1]")
                    continue
                if status is not None:
                    raise Violation("a second final response head")
                status, fields = code, flds
                if checks and reason not in (REASONS.get(code, ""), "", None):
                    raise Violation(f"reason phrase {reason!r} for {code} [4.2-1]")
                if f.flags & END_STREAM:
                    return status, fields, bytes(body), None
            elif f.type == DATA:
                if status is None:
                    raise Violation("DATA before the response head (§10.2)")
                body += f.payload
                if grant and f.payload:
                    self.send(window_update(sid, len(f.payload)),
                              window_update(0, len(f.payload)))
                if f.flags & END_STREAM:
                    return status, fields, bytes(body), None


class Requests:
    """Opens streams on a peer: 1, 3, 5, … for the runner as client (first_id 1), 2, 4,
    6, … as server (first_id 2). A body is split into DATA frames of the peer's
    MAX_FRAME_PAYLOAD."""

    def __init__(self, peer, first_id):
        self.peer, self.next_id = peer, first_id

    def open(self, method, target, fields=(), body=None, end=True, raw_head=None, flags=None):
        sid = self.next_id
        self.next_id += 2
        head = raw_head if raw_head is not None else request_head(method, target, fields)
        if flags is None:
            flags = END_STREAM if end and not body else 0
        frames = [frame(HEADERS, flags, sid, head)]
        if body:
            size = self.peer.limit("MAX_FRAME_PAYLOAD")
            chunks = [body[i:i + size] for i in range(0, len(body), size)]
            for i, chunk in enumerate(chunks):
                last = end and i == len(chunks) - 1
                frames.append(frame(DATA, END_STREAM if last else 0, sid, chunk))
        self.peer.send(*frames)
        return sid

    def get(self, target, fields=()):
        return self.peer.read_response(self.open("GET", target, fields))


# --- the HTTP origin the runner hosts (the target's upstream) -----------------------

class Origin:
    """An HTTP/1.1 server in a thread. Routes: GET|HEAD /bytes/N (N bytes, content-length),
    POST|PUT /echo (the body back), GET /delay/MS (200 after MS ms), GET /status/N (status N,
    no body), anything else: 200 with the method and target as the body. Every request is
    recorded in `requests` as (method, target, {lower name: value}, body)."""

    def __init__(self, port=0):
        origin = self
        self.requests = []

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _body(self):
                n = int(self.headers.get("content-length") or 0)
                if self.headers.get("transfer-encoding", "").lower() == "chunked":
                    out = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        if size == 0:
                            self.rfile.readline()
                            return out
                        out += self.rfile.read(size)
                        self.rfile.readline()
                return self.rfile.read(n) if n else b""

            def _answer(self, status, body=b"", fields=(), send_body=True):
                self.send_response(status)
                for n, v in fields:
                    self.send_header(n, v)
                if status not in (204, 304):
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if send_body and status not in (204, 304) and body:
                    self.wfile.write(body)

            def _route(self, send_body=True):
                body = self._body() if self.command in ("POST", "PUT") else b""
                origin.requests.append((self.command, self.path,
                                        {k.lower(): v for k, v in self.headers.items()}, body))
                parts = self.path.split("?")[0].split("/")
                try:
                    if parts[1] == "bytes":
                        n = int(parts[2])
                        return self._answer(200, pattern(n), send_body=send_body)
                    if parts[1] == "echo":
                        return self._answer(200, body)
                    if parts[1] == "delay":
                        time.sleep(int(parts[2]) / 1000)
                        return self._answer(200, b"done")
                    if parts[1] == "status":
                        return self._answer(int(parts[2]))
                except (IndexError, ValueError):
                    pass
                return self._answer(200, f"{self.command} {self.path}".encode())

            do_GET = do_POST = do_PUT = do_DELETE = do_OPTIONS = do_PATCH = _route

            def do_HEAD(self):
                self._route(send_body=False)

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True

            def handle_error(self, request, client_address):
                pass  # a caller that went away (a reset stream, a timeout) is expected

        self.server = Server(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def pattern(n):
    """n bytes of a pattern that shows a lost, repeated or reordered chunk."""
    block = bytes(range(251))
    return (block * (n // 251 + 1))[:n]


def http_request(port, method, target, fields=(), body=b"", timeout=10.0, read=True):
    """A plain HTTP/1.1 request on a new TCP connection (to a gateway). Returns (status,
    {lower name: value}, body) or, with read=False, the socket."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    lines = [f"{method} {target} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    lines += [f"{n}: {v}" for n, v in fields]
    if body or method in ("POST", "PUT"):
        lines.append(f"Content-Length: {len(body)}")
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    if not read:
        return sock
    try:
        start, flds, rest = read_http_head(sock, time.monotonic() + timeout)
        status = int(start.split(" ")[1])
        n = int(flds.get("content-length", "0"))
        while len(rest) < n:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
        return status, flds, rest[:n]
    finally:
        sock.close()


# --- the implementation under test, as a process ---------------------------------------

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, timeout=15.0, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise Violation(f"the target exited with {proc.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise Violation(f"nothing listens on 127.0.0.1:{port} after {timeout:g} s")


class Target:
    """The command under test with its placeholders filled: {addr} ({host}:{port}), {port},
    {url} (ws://…/), {upstream} (the runner's Origin), {gateway} ({host}:{port} of a free
    port) and {gateway_port}."""

    def __init__(self, template, values, log):
        self.values = values
        self.argv = [a.format(**values) for a in shlex.split(template)]
        self.log = log
        self.proc = subprocess.Popen(self.argv, stdout=log, stderr=log,
                                     start_new_session=True)

    def signal(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)

    def wait(self, timeout):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self):
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
            if self.wait(3) is None:
                self.signal(signal.SIGKILL)
                self.wait(3)
