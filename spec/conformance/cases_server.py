"""Cases where the implementation under test is the server (the runner is its client)."""
import socket
import struct
import time
import uuid

import tether_wire as tw
from tether_wire import case, Violation, Skip


# ---- §2 transport ---------------------------------------------------------------------

@case("upgrade_selects_tether_v1", ["2.1-2"], "server")
def upgrade_selects_tether_v1(ctx):
    """An upgrade offering another name and tether.v1 is answered 101 selecting tether.v1."""
    host, port, path, _ = ctx.server()
    conn, status, fields, sock = tw.ws_connect(host, port, path, ("x-other", "tether.v1"))
    ctx.conns.append(sock)
    if status != 101:
        raise Violation(f"upgrade answered {status}")
    if fields.get("sec-websocket-protocol") != "tether.v1":
        raise Violation(f"selected {fields.get('sec-websocket-protocol')!r}, not tether.v1")


@case("upgrade_without_tether_v1_is_refused", ["2.1-4"], "server")
def upgrade_without_tether_v1_is_refused(ctx):
    """No Sec-WebSocket-Protocol, or only other names: 400, Connection: close, TCP closed."""
    host, port, path, _ = ctx.server()
    for protocols in ((), ("chat", "tether.v2")):
        conn, status, fields, sock = tw.ws_connect(host, port, path, protocols)
        ctx.conns.append(sock)
        if status != 400:
            raise Violation(f"offering {protocols or 'nothing'}: answered {status}, not 400")
        if "close" not in fields.get("connection", "").lower():
            raise Violation(f"offering {protocols or 'nothing'}: no Connection: close")
        sock.settimeout(ctx.args.timeout)
        try:
            while sock.recv(65536):
                pass
        except socket.timeout:
            raise Violation("the TCP connection stays open after the 400") from None
        except ConnectionResetError:
            pass


@case("text_message_closes_1003", ["2.3"], "server")
def text_message_closes_1003(ctx):
    """A text message, before or after the handshake, closes with 1003."""
    ws = ctx.ws()
    ws.send(tw.OP_TEXT, b"hello")
    tw.Peer(ws).expect_close(1003, what="for a text message before HELLO ")
    peer = ctx.dial()
    peer.ws.send(tw.OP_TEXT, b"{}")
    peer.expect_close(1003, what="for a text message when established ")


@case("websocket_fault_gets_a_close_frame", ["2.3-1", "2.3"], "server")
def websocket_fault_gets_a_close_frame(ctx):
    """A frame with RSV1 set (no extension) closes with a 1002 Close frame before the TCP
    connection ends."""
    peer = ctx.dial()
    peer.ws.send(tw.OP_BINARY, tw.frame(tw.PING, 0, 0, b"x"), rsv=4)
    peer.expect_close(1002, what="for RSV1 ")


@case("oversized_message_close_survives_unread_input", ["2.3-2", "3.1-3"], "server")
def oversized_message_close_survives_unread_input(ctx):
    """A message announcing 64 MiB (over 8 + max_frame_payload) closes with 1009; the
    Close frame reaches the client although it keeps sending (no TCP reset destroys it)."""
    peer = ctx.dial()
    ws = peer.ws
    header = ws.encode_frame(tw.OP_BINARY, b"", length=64 * 2**20)
    # a masked frame's key follows the length; the payload below is masked garbage
    ws.send_raw(header)
    chunk = bytes(65536)
    sent = 0
    ws.sock.settimeout(0.2)
    try:
        while sent < 1 << 20:
            sent += ws.sock.send(chunk)
    except (socket.timeout, BlockingIOError, BrokenPipeError, ConnectionResetError):
        pass
    peer.expect_close(1009, what=f"after announcing 64 MiB and sending {sent} bytes ")


# ---- §3 framing, §7 handshake ---------------------------------------------------------

@case("welcome_is_well_formed", ["7.4-2", "7.4-3", "3.6-1", "3.1-1", "3.1-2", "3.2-1",
                                 "3.4.2-1", "7.3"], "server")
def welcome_is_well_formed(ctx):
    """WELCOME: version 1, a UUID v4 id, a token that is not the id, settings in order and
    range, heartbeat timeout present and above a non-zero interval, receive limits
    announced."""
    peer = ctx.dial()
    w = peer.welcome
    if w["version"] != 1:
        raise Violation(f"WELCOME version {w['version']} (the HELLO offered 1)")
    u = uuid.UUID(bytes=w["id"])
    if u.version != 4 or u.variant != uuid.RFC_4122:
        raise Violation(f"connection id {u} is not a UUID v4 (§7.3)")
    if w["token"] == w["id"] or w["token"] == bytes(16):
        raise Violation("the resume token is the id or zero [3.4.2-1]")
    s = w["settings"]
    interval = s.get(tw.S["HEARTBEAT_INTERVAL_MS"], 0)
    if interval:
        timeout = s.get(tw.S["HEARTBEAT_TIMEOUT_MS"])
        if timeout is None or timeout <= interval:
            raise Violation(f"heartbeat interval {interval} ms with timeout {timeout} [7.4-3]")
    missing = [n for n in ("MAX_FRAME_PAYLOAD", "MAX_CONCURRENT_STREAMS",
                           "INITIAL_STREAM_WINDOW", "INITIAL_CONNECTION_WINDOW")
               if tw.S[n] not in s]
    if missing:
        raise Violation(f"WELCOME does not announce {', '.join(missing)} [7.4-2]")


@case("hello_errors_close_with_their_codes", ["7.3", "7.6", "3.3-1", "3.4.3-1"], "server")
def hello_errors_close_with_their_codes(ctx):
    """No version in common → 4001; metadata that is not JSON → 4004; 0 versions → 4000;
    a duplicate setting → 4000; ACK before HELLO → 4000; ACK with a payload → 4000; an
    unknown frame type when established → 4000."""
    def first(msg, code, what):
        ws = ctx.ws()
        ws.send_binary(msg)
        tw.Peer(ws).expect_close(code, what=what)

    first(tw.hello((7, 9)), 4001, "for HELLO offering versions 7 and 9 ")
    first(tw.hello((1,), metadata=b"{not json"), 4004, "for metadata that is not JSON ")
    first(tw.hello((1,), count=0), 4000, "for a HELLO listing 0 versions ")
    first(tw.hello((1,), settings=[(4, 65536), (4, 65536)]), 4000,
          "for a duplicate setting ")
    first(tw.frame(tw.ACK), 4000, "for ACK before HELLO ")
    peer = ctx.dial(ack=False)
    peer.send(tw.frame(tw.ACK, 0, 0, b"x"))
    peer.expect_close(4000, what="for an ACK with a payload ")
    peer = ctx.dial()
    peer.send(tw.frame(0x0B, 0, 0))
    peer.expect_close(4000, what="for frame type 0x0b ")


@case("handshake_timeout_closes_4002", ["7.5"], "server")
def handshake_timeout_closes_4002(ctx):
    """A client that connects and says nothing is closed with 4002 after the handshake
    timeout (--handshake-timeout tells the runner the target's value)."""
    ws = ctx.ws()
    started = time.monotonic()
    limit = ctx.args.handshake_timeout
    tw.Peer(ws).expect_close(4002, timeout=limit + 5, what="for a silent client ")
    took = time.monotonic() - started
    if took < limit * 0.9:
        raise Violation(f"closed after {took:.2f} s, before the {limit:g} s timeout")


@case("ping_frames_and_websocket_pings_are_answered",
      ["3.4.9-1", "8.1-1", "8.1-2", "8.1-3"], "server")
def ping_frames_and_websocket_pings_are_answered(ctx):
    """Established: a PING frame gets a PONG frame with its payload; a WebSocket Ping
    gets exactly one Pong with its payload. Before ACK, a PING frame closes with 4000."""
    peer = ctx.dial()
    payload = bytes(range(125))
    peer.send(tw.frame(tw.PING, 0, 0, payload))
    pong = peer.expect(lambda f: f.type == tw.PONG, "PONG", heartbeat=True)
    if pong.payload != payload:
        raise Violation("PONG payload differs from the PING's [3.4.9-1]")
    peer.ws.send(tw.OP_PING, b"probe-1")
    pongs = []
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        try:
            m = peer.next(deadline - time.monotonic(), heartbeat=True)
        except TimeoutError:
            break
        if isinstance(m, tw.Msg) and m.kind == "pong":
            pongs.append(m.data)
    if pongs.count(b"probe-1") != 1:
        raise Violation(f"{pongs.count(b'probe-1')} Pongs for one Ping [8.1-1, 8.1-2]")
    peer = ctx.dial(ack=False)
    peer.send(tw.frame(tw.PING, 0, 0, b"early"))
    peer.expect_close(4000, what="for a PING frame before ACK [8.1-3] ")


def _server_heartbeat(peer):
    """(interval I, timeout T, the server's probe delay P = min(3I/2, (I + T)/2) of §8.2)
    from the WELCOME, in seconds; skips when the heartbeat is off or too slow to test."""
    s = peer.welcome["settings"]
    interval = s.get(tw.S["HEARTBEAT_INTERVAL_MS"], 0) / 1000
    timeout = s.get(tw.S["HEARTBEAT_TIMEOUT_MS"], 0) / 1000
    if not interval or interval > 5 or timeout > 10:
        raise Skip(f"heartbeat interval {interval:g} s / timeout {timeout:g} s: configure "
                   "the target with at most 5 s / 10 s")
    return interval, timeout, min(1.5 * interval, (interval + timeout) / 2)


@case("server_waits_its_probe_delay", ["8.2-2"], "server")
def server_waits_its_probe_delay(ctx):
    """With the WELCOME's interval I and timeout T, a server whose client has sent nothing
    since its ACK does not probe before its probe delay P = min(3I/2, (I + T)/2): not
    before (I + P)/2 (a server that probes after I, as in earlier revisions, fails this
    and only this)."""
    peer = ctx.dial()
    interval, _, delay = _server_heartbeat(peer)
    peer.ws.auto_pong = False
    peer.answer_ping_frames = False
    last_sent = time.monotonic()
    deadline = last_sent + delay + 1.5
    while True:
        try:
            got = peer.next(max(deadline - time.monotonic(), 0.001), heartbeat=True)
        except TimeoutError:
            raise Violation(f"no probe within {delay + 1.5:g} s [8.2-1]") from None
        if isinstance(got, tw.Frame) and got.type == tw.PING or \
                isinstance(got, tw.Msg) and got.kind == "ping":
            took = time.monotonic() - last_sent
            if took < (interval + delay) / 2:
                raise Violation(f"first probe {took:.2f} s after the last message, before "
                                f"the server's probe delay {delay:g} s (interval "
                                f"{interval:g} s)")
            peer.ws.close_transport()
            return
        if isinstance(got, tw.Msg):
            raise Violation(f"expected a probe, got {got!r}")


@case("heartbeat_probes_then_4005", ["8.2-1", "8.3"], "server")
def heartbeat_probes_then_4005(ctx):
    """With the WELCOME's interval I and timeout T (at most 5 s / 10 s to run), a server
    whose client sends nothing probes once it has heard nothing for its probe delay
    P = min(3I/2, (I + T)/2) (by P + 1.5 s), on the carrier it announced, sequence numbers
    from 0; a client that then answers nothing and sends nothing is closed with 4005 after
    the timeout T (not before T, by P + T + 1.5 s)."""
    peer = ctx.dial()
    interval, timeout, delay = _server_heartbeat(peer)
    carrier = peer.welcome["settings"].get(tw.S["HEARTBEAT_CARRIER"], 0)
    peer.ws.auto_pong = False
    peer.answer_ping_frames = False
    last_sent = time.monotonic()
    seqs = []
    while True:
        try:
            got = peer.next(delay + timeout + 2, heartbeat=True)
        except TimeoutError:
            raise Violation("neither probes nor a 4005 close from a server whose client "
                            "went silent") from None
        now = time.monotonic()
        if isinstance(got, tw.Frame) and got.type == tw.PING or \
                isinstance(got, tw.Msg) and got.kind == "ping":
            data = got.payload if isinstance(got, tw.Frame) else got.data
            kind = 1 if isinstance(got, tw.Frame) else 0
            if kind != carrier:
                raise Violation(f"probe on carrier {kind}, announced {carrier} (§8.1)")
            if len(data) < 8:
                raise Violation(f"probe payload of {len(data)} bytes, no sequence number "
                                "(§8.2)")
            seqs.append(struct.unpack(">Q", data[:8])[0])
            if not seqs[0] == 0 or seqs != sorted(set(seqs)):
                raise Violation(f"probe sequence numbers {seqs} (from 0, increasing, §8.2)")
            if len(seqs) == 1 and now - last_sent > delay + 1.5:
                raise Violation(f"first probe {now - last_sent:.2f} s after the last "
                                f"message, the server's probe delay {delay:g} s [8.2-1]")
            continue
        if isinstance(got, tw.Msg) and got.kind == "close":
            if got.code != 4005:
                raise Violation(f"closed with {got.code}, expected 4005 (§8.3)")
            silent = now - last_sent
            if silent < timeout * 0.9:
                raise Violation(f"declared dead after {silent:.2f} s, timeout {timeout:g} s")
            if silent > delay + timeout + 1.5:
                raise Violation(f"declared dead only after {silent:.2f} s (§8.3: by "
                                f"{delay + timeout:g} s)")
            if not seqs:
                raise Violation("closed 4005 without probing first [8.2-1]")
            return
        if isinstance(got, tw.Msg):
            raise Violation(f"expected probes and 4005, got {got!r}")


# ---- §9 session resume -----------------------------------------------------------------

def _resume_window(peer):
    window = peer.welcome["settings"].get(tw.S["RESUME_WINDOW_MS"], 0)
    if window < 3000:
        raise Skip(f"RESUME_WINDOW_MS {window}: configure the target with at least 3 s")
    return window


def _resume(ctx, peer, token=None):
    """Dials again asking to resume peer's session (with its token unless given)."""
    return ctx.dial(resume=(peer.welcome["id"], token or peer.welcome["token"]))


@case("resume_after_a_lost_transport", ["3.4.2-1", "11-2", "9.1"], "server")
def resume_after_a_lost_transport(ctx):
    """A session whose connection was lost (no Close) is resumed with its id and token:
    RESUMED, same id, a new token. The id with a wrong token gets a fresh session and
    leaves the real one resumable; a spent token resumes nothing."""
    a = ctx.dial()
    _resume_window(a)
    a.ws.abort()
    time.sleep(0.2)
    b = _resume(ctx, a)
    if not b.welcome["resumed"] or b.welcome["id"] != a.welcome["id"]:
        raise Violation("a resume with the right id and token within the window was not "
                        "RESUMED with the same id (§9.1)")
    if b.welcome["token"] == a.welcome["token"]:
        raise Violation("the resumed WELCOME repeats the spent token (§9.1)")
    b.ws.abort()
    time.sleep(0.2)
    wrong = _resume(ctx, b, token=bytes(16))
    if wrong.welcome["resumed"] or wrong.welcome["id"] == b.welcome["id"]:
        raise Violation("the connection id with a wrong token took over the session "
                        "[3.4.2-1, 11-2]")
    spent = _resume(ctx, a)
    if spent.welcome["resumed"]:
        raise Violation("a spent token resumed the session (tokens are single-use, §9.1)")
    c = _resume(ctx, b)
    if not c.welcome["resumed"]:
        raise Violation("after a wrong-token attempt the real session was no longer "
                        "resumable (§9.1)")


@case("resume_while_live_replaces_the_old_connection", ["9.3-1", "9.3"], "server")
def resume_while_live_replaces_the_old_connection(ctx):
    """Resuming a session whose connection is still open: the new one is RESUMED, the old
    one closed with 4009; the old one's end does not end the session (it resumes again)."""
    a = ctx.dial()
    _resume_window(a)
    b = _resume(ctx, a)
    if not b.welcome["resumed"]:
        raise Violation("a valid resume of a live session was not RESUMED (§9.3)")
    a.expect_close(4009, what="on the replaced connection ")
    a.ws.close_transport()
    time.sleep(0.2)
    b.ws.abort()
    time.sleep(0.2)
    c = _resume(ctx, b)
    if not c.welcome["resumed"]:
        raise Violation("the replaced connection's end discarded the resumed session "
                        "[9.3-1]")


@case("orderly_or_fatal_ends_discard_the_session", ["9.1", "6.2-1"], "server")
def orderly_or_fatal_ends_discard_the_session(ctx):
    """A session closed with 1000 by its client, or failed with 4000 (no retry), is
    discarded: a resume with its token gets a fresh session."""
    a = ctx.dial()
    _resume_window(a)
    a.ws.send_close(1000)
    a.expect_close((1000,), what="answering the client's 1000 ")
    a.ws.close_transport()
    time.sleep(0.2)
    if _resume(ctx, a).welcome["resumed"]:
        raise Violation("a session closed with 1000 was resumed (§9.1: discarded)")
    b = ctx.dial()
    b.send(tw.frame(0x0B))
    b.expect_close(4000, what="for frame type 0x0b ")
    b.ws.close_transport()
    time.sleep(0.2)
    if _resume(ctx, b).welcome["resumed"]:
        raise Violation("a session failed with 4000 (no retry) was resumed (§9.1)")


# ---- §4, §10 streams ---------------------------------------------------------------------

@case("requests_are_answered_correctly",
      ["4.3-6", "4.3-1", "4.2-1", "4-1", "10.4-1", "3.1-1", "3.1-2", "3.2-1"], "server",
      needs=("routes",))
def requests_are_answered_correctly(ctx):
    """GET /bytes/100000 comes back whole (content-length agreeing), with lower-case field
    names, no connection-specific field, a canonical or empty reason; HEAD and a 204 end
    without DATA bytes; a POST body is echoed."""
    peer = ctx.dial()
    req = tw.Requests(peer, 1)
    status, fields, body, _ = req.get("/bytes/100000")
    if status != 200 or body != tw.pattern(100000):
        raise Violation(f"GET /bytes/100000: {status}, {len(body)} bytes, content "
                        f"{'right' if body == tw.pattern(len(body)) else 'wrong'}")
    cl = tw.field(fields, "content-length")
    if cl is not None and int(cl) != len(body):
        raise Violation(f"content-length {cl} with {len(body)} bytes [4.3-5]")
    status, fields, body, _ = peer.read_response(req.open("HEAD", "/bytes/1000"))
    if body:
        raise Violation(f"HEAD answered with {len(body)} DATA bytes [10.4-1]")
    status, fields, body, _ = req.get("/status/204")
    if status != 204 or body:
        raise Violation(f"/status/204: {status} with {len(body)} DATA bytes [10.4-1]")
    payload = bytes(range(256)) * 300
    sid = req.open("POST", "/echo", [("content-length", str(len(payload)))], payload)
    status, fields, body, _ = peer.read_response(sid)
    if body != payload:
        raise Violation(f"POST /echo returned {len(body)} bytes, not the {len(payload)} sent")


@case("a_frame_of_max_frame_payload_is_accepted", ["3.1-3", "7.4-2"], "server", needs=("routes",))
def a_frame_of_max_frame_payload_is_accepted(ctx):
    """The announced MAX_FRAME_PAYLOAD is the limit enforced: a DATA frame of exactly that
    size is accepted (its bytes echoed), one byte more closes with 1009."""
    peer = ctx.dial()
    limit = peer.limit("MAX_FRAME_PAYLOAD")
    window = min(peer.limit("INITIAL_STREAM_WINDOW"), peer.limit("INITIAL_CONNECTION_WINDOW"))
    if limit > window or limit > 4 << 20:
        raise Skip(f"MAX_FRAME_PAYLOAD {limit} above the window {window} or 4 MiB")
    payload = tw.pattern(limit)
    sid = tw.Requests(peer, 1).open("POST", "/echo", [("content-length", str(limit))],
                                    payload)
    status, _, body, _ = peer.read_response(sid)
    if body != payload:
        raise Violation(f"a DATA frame of MAX_FRAME_PAYLOAD ({limit}) bytes was not "
                        "carried whole")
    peer.send(tw.frame(tw.DATA, 0, 3, bytes(limit + 1)))
    peer.expect_close(1009, what=f"for a payload of {limit + 1} bytes ")


HEAD_ERRORS = [
    ("bare LF", b"GET / HTTP/1.1\nhost: x\r\n\r\n", "4-2"),
    ("HTTP/1.0", b"GET / HTTP/1.0\r\n\r\n", "4.1-1"),
    ("GET *", b"GET * HTTP/1.1\r\n\r\n", "4.1-2"),
    ("CONNECT /", b"CONNECT / HTTP/1.1\r\n\r\n", "4.1-2"),
    ("a fragment", b"GET /a#b HTTP/1.1\r\n\r\n", "4.1-2"),
    ("an empty line first", b"\r\nGET / HTTP/1.1\r\n\r\n", "4-1"),
    ("bytes after the head", b"GET / HTTP/1.1\r\n\r\nbody", "4-1"),
    ("transfer-encoding", b"GET / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n", "4.3-1"),
    ("connection", b"GET / HTTP/1.1\r\nconnection: close\r\n\r\n", "4.3-1"),
    ("te: gzip", b"GET / HTTP/1.1\r\nte: gzip\r\n\r\n", "4.3-1"),
    ("content-length list", b"POST /echo HTTP/1.1\r\ncontent-length: 5, 5\r\n\r\n", "4.3-3"),
    ("content-length sign", b"POST /echo HTTP/1.1\r\ncontent-length: +5\r\n\r\n", "4.3-3"),
    ("content-lengths disagree",
     b"POST /echo HTTP/1.1\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n", "4.3-4"),
    ("tether-timeout abc", b"GET / HTTP/1.1\r\ntether-timeout: abc\r\n\r\n", "10.6"),
    ("tether-timeout twice",
     b"GET / HTTP/1.1\r\ntether-timeout: 5000\r\ntether-timeout: 5000\r\n\r\n", "10.6"),
]


@case("malformed_heads_reset_the_stream",
      ["4-1", "4-2", "4.1-1", "4.1-2", "4.3-1", "4.3-3", "4.3-4", "4.5", "10.6"], "server",
      needs=("routes",))
def malformed_heads_reset_the_stream(ctx):
    """Each malformed request head resets its stream with PROTOCOL_ERROR and leaves the
    connection up (a good request afterwards is answered)."""
    peer = ctx.dial()
    req = tw.Requests(peer, 1)
    for what, head, rid in HEAD_ERRORS:
        sid = req.open(None, None, raw_head=head)
        try:
            peer.expect_reset(sid, tw.R["PROTOCOL_ERROR"])
        except Violation as e:
            raise Violation(f"{what}: {e} [{rid}]") from None
    status, _, body, _ = req.get("/bytes/10")
    if status != 200:
        raise Violation(f"a good request after the malformed ones got {status}")
    # leading zeros and TE: Trailers in any case are fine (§4.3)
    sid = req.open(None, None, raw_head=b"POST /echo HTTP/1.1\r\ncontent-length: 005\r\n"
                   b"te: Trailers\r\n\r\n", flags=0)
    peer.send(tw.frame(tw.DATA, tw.END_STREAM, sid, b"hello"))
    if peer.read_response(sid)[2] != b"hello":
        raise Violation("content-length 005 with 5 bytes and TE: Trailers were refused (§4.3)")


@case("conflicting_flags_use_up_the_stream_id", ["3.4.4-1", "3.5", "10.1"], "server")
def conflicting_flags_use_up_the_stream_id(ctx):
    """HEADERS with RESPONSE|TRAILERS on a new id: RESET PROTOCOL_ERROR, the id is used up
    (a request on it gets STREAM_CLOSED); TRAILERS without END_STREAM: the same."""
    peer = ctx.dial()
    head = tw.request_head("GET", "/bytes/1")
    peer.send(tw.frame(tw.HEADERS, tw.RESPONSE | tw.TRAILERS | tw.END_STREAM, 1, head))
    peer.expect_reset(1, tw.R["PROTOCOL_ERROR"])
    peer.send(tw.frame(tw.HEADERS, tw.END_STREAM, 1, head))
    peer.expect_reset(1, tw.R["STREAM_CLOSED"])
    peer.send(tw.frame(tw.HEADERS, tw.TRAILERS, 3, b"\r\n"))
    peer.expect_reset(3, tw.R["PROTOCOL_ERROR"])


@case("head_limits_reset_with_head_too_large", ["5", "3.5"], "server", needs=("routes",))
def head_limits_reset_with_head_too_large(ctx):
    """A head over the announced MAX_HEAD_SIZE, or with more fields than MAX_HEADER_COUNT,
    resets the stream with HEAD_TOO_LARGE; the connection stays up."""
    peer = ctx.dial()
    req = tw.Requests(peer, 1)
    size = min(peer.limit("MAX_HEAD_SIZE"), peer.limit("MAX_FRAME_PAYLOAD"))
    count = peer.limit("MAX_HEADER_COUNT")
    if size < peer.limit("MAX_FRAME_PAYLOAD"):
        sid = req.open("GET", "/", [("x-big", "a" * size)])
        peer.expect_reset(sid, tw.R["HEAD_TOO_LARGE"])
    fields = [(f"x-{i}", "1") for i in range(count + 1)]
    if len(tw.request_head("GET", "/", fields)) <= size:
        sid = req.open("GET", "/", fields)
        peer.expect_reset(sid, tw.R["HEAD_TOO_LARGE"])
    if req.get("/bytes/1")[0] != 200:
        raise Violation("the connection did not stay usable after HEAD_TOO_LARGE")


@case("content_length_must_match_the_body", ["4.3-5", "10.4"], "server", needs=("routes",))
def content_length_must_match_the_body(ctx):
    """content-length 10 with 5 bytes then END_STREAM, or with 11 bytes: RESET
    PROTOCOL_ERROR; END_STREAM on the head with content-length 3: the same."""
    peer = ctx.dial()
    req = tw.Requests(peer, 1)
    sid = req.open("POST", "/echo", [("content-length", "10")], b"12345")
    peer.expect_reset(sid, tw.R["PROTOCOL_ERROR"])
    sid = req.open("POST", "/echo", [("content-length", "10")], b"12345678901")
    peer.expect_reset(sid, tw.R["PROTOCOL_ERROR"])
    sid = req.open("POST", "/echo", [("content-length", "3")])
    peer.expect_reset(sid, tw.R["PROTOCOL_ERROR"])


@case("frames_on_streams_never_opened_close_4000", ["10.1", "10.2"], "server")
def frames_on_streams_never_opened_close_4000(ctx):
    """DATA, RESET or WINDOW_UPDATE on a stream never opened (either parity), or a response
    head on one, closes with 4000."""
    for what, f in [("DATA on 7", tw.frame(tw.DATA, 0, 7, b"x")),
                    ("RESET on 9", tw.reset(9, 5)),
                    ("WINDOW_UPDATE on 2", tw.window_update(2, 100)),
                    ("a response head on 4",
                     tw.frame(tw.HEADERS, tw.RESPONSE, 4, tw.response_head(200)))]:
        peer = ctx.dial()
        peer.send(f)
        peer.expect_close(4000, what=f"for {what} ")


@case("old_and_reused_ids_get_stream_closed", ["10.1", "10.2", "3.2-2"], "server",
      needs=("routes",))
def old_and_reused_ids_get_stream_closed(ctx):
    """A request on an id below the highest used (5 after 7) or on a finished stream gets
    RESET STREAM_CLOSED; late WINDOW_UPDATE and RESET on a closed stream are ignored."""
    peer = ctx.dial()
    head = tw.request_head("GET", "/bytes/5")
    peer.send(tw.frame(tw.HEADERS, tw.END_STREAM, 7, head))
    peer.read_response(7)
    peer.send(tw.frame(tw.HEADERS, tw.END_STREAM, 5, head))
    peer.expect_reset(5, tw.R["STREAM_CLOSED"])
    peer.send(tw.window_update(7, 100), tw.reset(7, tw.R["CANCEL"]))
    peer.send(tw.frame(tw.HEADERS, tw.END_STREAM, 9, head))
    status, _, body, _ = peer.read_response(9)
    if status != 200:
        raise Violation("the connection broke after late frames on a closed stream")


@case("zero_window_increments", ["3.5", "3.4.7"], "server", needs=("routes",))
def zero_window_increments(ctx):
    """WINDOW_UPDATE with increment 0 on an open stream resets it with PROTOCOL_ERROR; on
    stream 0 it closes with 4000."""
    peer = ctx.dial()
    sid = tw.Requests(peer, 1).open("GET", "/delay/2000")
    peer.send(tw.window_update(sid, 0))
    peer.expect_reset(sid, tw.R["PROTOCOL_ERROR"])
    peer.send(tw.window_update(0, 0))
    peer.expect_close(4000, what="for WINDOW_UPDATE(0, 0) ")


@case("windows_never_exceed_2_31", ["10.3-3"], "server", needs=("routes",))
def windows_never_exceed_2_31(ctx):
    """A WINDOW_UPDATE that takes a stream window above 2^31-1 resets it with
    FLOW_CONTROL_ERROR; one that does so to the connection window closes with 4006."""
    peer = ctx.dial()
    sid = tw.Requests(peer, 1).open("GET", "/delay/2000")
    peer.send(tw.window_update(sid, 2**31 - 1))
    peer.expect_reset(sid, tw.R["FLOW_CONTROL_ERROR"])
    peer.send(tw.window_update(0, 2**31 - 1))
    peer.expect_close(4006, what="for a connection window above 2^31-1 ")


@case("the_server_sends_within_the_clients_windows",
      ["10.3-1", "7.4-1", "10.3-5"], "server", needs=("routes",))
def the_server_sends_within_the_clients_windows(ctx):
    """The client announces stream window 4096, connection window 6000, frames of at most
    1024 bytes; two 50,000-byte downloads: without credit the server sends at most 4096
    per stream and 6000 in all, in frames of at most 1024; a PING frame meanwhile is
    answered at once; granted credit, both bodies arrive whole."""
    settings = ctx.client_settings(INITIAL_STREAM_WINDOW=4096,
                                   INITIAL_CONNECTION_WINDOW=6000, MAX_FRAME_PAYLOAD=1024)
    peer = ctx.dial(settings=settings)
    req = tw.Requests(peer, 1)
    sids = [req.open("GET", "/bytes/50000"), req.open("GET", "/bytes/50000")]
    got = {sid: bytearray() for sid in sids}
    heads = set()
    end = time.monotonic() + 1.5
    while time.monotonic() < end:
        try:
            f = peer.next(end - time.monotonic())
        except TimeoutError:
            break
        if not isinstance(f, tw.Frame):
            raise Violation(f"the connection ended: {f!r}")
        if f.type == tw.HEADERS:
            heads.add(f.sid)
        elif f.type == tw.DATA:
            if len(f.payload) > 1024:
                raise Violation(f"a DATA frame of {len(f.payload)} bytes, MAX_FRAME_PAYLOAD "
                                "1024 [7.4-1]")
            got[f.sid] += f.payload
            if len(got[f.sid]) > 4096:
                raise Violation(f"{len(got[f.sid])} bytes on stream {f.sid} with a window "
                                "of 4096 [10.3-1]")
            if sum(map(len, got.values())) > 6000:
                raise Violation("more than the connection window of 6000 bytes [10.3-1]")
        elif f.type == tw.RESET:
            raise Violation(f"stream {f.sid} reset: {f!r}")
    if not any(got.values()):
        raise Violation("no DATA at all within 1.5 s of two requests")
    sent = time.monotonic()
    peer.send(tw.frame(tw.PING, 0, 0, b"during-data"))
    pong = peer.expect(lambda f: f.type == tw.PONG, "PONG",
                       2.0, heartbeat=True)
    if time.monotonic() - sent > 1.0 or pong.payload != b"during-data":
        raise Violation("the PONG waited behind data [10.3-5]")
    # grant what was consumed, as a receiver does, and read both bodies to the end
    for sid, data in got.items():
        if data:
            peer.send(tw.window_update(sid, len(data)))
    total = sum(map(len, got.values()))
    if total:
        peer.send(tw.window_update(0, total))
    done = set()
    deadline = time.monotonic() + ctx.args.timeout
    while done != set(sids):
        f = peer.expect(lambda f: f.sid in sids, "the rest of the bodies",
                        max(deadline - time.monotonic(), 0.001))
        if f.type == tw.DATA:
            if len(f.payload) > 1024:
                raise Violation(f"a DATA frame of {len(f.payload)} bytes [7.4-1]")
            got[f.sid] += f.payload
            if f.payload:
                peer.send(tw.window_update(f.sid, len(f.payload)),
                          tw.window_update(0, len(f.payload)))
            if f.flags & tw.END_STREAM:
                done.add(f.sid)
        elif f.type == tw.RESET:
            raise Violation(f"stream {f.sid} reset: {f!r}")
        elif f.type == tw.HEADERS and f.flags & tw.END_STREAM:
            done.add(f.sid)
    for sid in sids:
        if bytes(got[sid]) != tw.pattern(50000):
            raise Violation(f"stream {sid}: {len(got[sid])} bytes, not the body sent")


@case("concurrency_limit_refuses_the_stream_over_it", ["10.1", "10.8"], "server",
      needs=("routes",))
def concurrency_limit_refuses_the_stream_over_it(ctx):
    """With MAX_CONCURRENT_STREAMS streams open, one more is refused with REFUSED_STREAM;
    the others are answered."""
    peer = ctx.dial()
    limit = peer.limit("MAX_CONCURRENT_STREAMS")
    if limit > 512:
        raise Skip(f"MAX_CONCURRENT_STREAMS {limit} (runs with at most 512)")
    req = tw.Requests(peer, 1)
    head = tw.request_head("GET", "/delay/1500")
    sids = []
    for _ in range(limit + 1):
        sids.append(req.next_id)
        req.next_id += 2
    peer.send(*[tw.frame(tw.HEADERS, tw.END_STREAM, sid, head) for sid in sids])
    refused = peer.expect(lambda f: f.type == tw.RESET, "a REFUSED_STREAM", 5.0)
    if refused.sid != sids[-1] or refused.code != tw.R["REFUSED_STREAM"]:
        raise Violation(f"expected RESET REFUSED_STREAM on stream {sids[-1]}, got {refused!r}"
                        f" ({tw.RESET_NAMES.get(refused.code)})")


@case("deadlines_reset_with_timeout", ["10.6-1", "10.6"], "server", needs=("routes",))
def deadlines_reset_with_timeout(ctx):
    """A request with tether-timeout: 300 to a handler that takes 3 s is reset with TIMEOUT
    by the server, not before 300 ms, well before 3 s; tether-timeout: 0 is valid and
    resets at once."""
    peer = ctx.dial()
    req = tw.Requests(peer, 1)
    started = time.monotonic()
    sid = req.open("GET", "/delay/3000", [("tether-timeout", "300")])
    peer.expect_reset(sid, tw.R["TIMEOUT"], timeout=2.5)
    took = time.monotonic() - started
    if took < 0.25:
        raise Violation(f"reset after {took * 1000:.0f} ms, before the 300 ms deadline")
    sid = req.open("GET", "/delay/3000", [("tether-timeout", "0")])
    peer.expect_reset(sid, tw.R["TIMEOUT"], timeout=2.0)


# ---- cases that start their own server: shutdown, abuse --------------------------------

@case("shutdown_sends_goaway_drains_then_closes_1001", ["10.7", "10.7-1", "6.2"], "server",
      needs=("cmd", "routes"))
def shutdown_sends_goaway_drains_then_closes_1001(ctx):
    """SIGTERM with a request in flight: GOAWAY (last stream id = that stream, NO_ERROR),
    a new stream is refused with REFUSED_STREAM, the stream in flight completes, then the
    server closes with 1001 (it goes away for good)."""
    target = ctx.start_server()
    peer = ctx.dial(target=target)
    head = tw.request_head("GET", "/delay/1500")
    peer.send(tw.frame(tw.HEADERS, tw.END_STREAM, 1, head))
    time.sleep(0.3)
    target.signal()
    g = peer.expect(lambda f: f.type == tw.GOAWAY, "GOAWAY after SIGTERM", 5.0)
    last, code = struct.unpack(">II", g.payload[:8])
    if last != 1 or code != 0:
        raise Violation(f"GOAWAY last stream id {last}, code {code}; expected 1, NO_ERROR")
    peer.send(tw.frame(tw.HEADERS, tw.END_STREAM, 3, head))
    refused = peer.expect(lambda f: f.sid == 3, "a reset of stream 3", 5.0)
    if refused.type != tw.RESET or refused.code != tw.R["REFUSED_STREAM"]:
        raise Violation(f"a stream opened after GOAWAY got {refused!r}, not REFUSED_STREAM")
    status, _, body, _ = peer.read_response(1, timeout=5.0)
    if status != 200 or body != b"done":
        raise Violation(f"the stream in flight ended {status} {body!r}, not completed")
    peer.expect_close(1001, timeout=5.0, what="after the drain ")


@case("rapid_reset_is_closed_then_the_address_cools_down",
      ["10.8", "10.8-3", "10.8-4", "11-4"], "server", needs=("cmd", "routes"))
def rapid_reset_is_closed_then_the_address_cools_down(ctx):
    """Opening and cancelling streams at once, in a loop (HTTP/2 rapid reset), is closed
    with 4007 after about 200 of them; the address is then refused with 429, Retry-After
    and Connection: close before the upgrade."""
    target = ctx.start_server()
    peer = ctx.dial(target=target)
    head = tw.request_head("GET", "/delay/1000")
    closed = None
    for i in range(400):
        sid = 2 * i + 1
        try:
            peer.send(tw.frame(tw.HEADERS, tw.END_STREAM, sid, head), tw.reset(sid, 5))
        except OSError:
            break
    try:
        closed = peer.expect_close(4007, timeout=5.0, what="for 400 rapid resets ")
    except Violation:
        raise
    conn, status, fields, sock = tw.ws_connect("127.0.0.1", target.values["port"])
    ctx.conns.append(sock)
    if status != 429:
        raise Violation(f"a new connection right after the 4007 got {status}, not 429 "
                        "[10.8-4]")
    retry = fields.get("retry-after", "")
    if not retry.isdigit() or int(retry) < 1:
        raise Violation(f"429 with Retry-After {retry!r} (whole seconds, at least 1) [10.8-4]")
    if "close" not in fields.get("connection", "").lower():
        raise Violation("429 without Connection: close [10.8-4]")
    return closed


@case("probe_floods_are_closed_4007", ["8.5"], "server", needs=("cmd",))
def probe_floods_are_closed_4007(ctx):
    """More than 1,000 probes (PING frames and WebSocket Pings together) within 10 s close
    the connection with 4007."""
    target = ctx.start_server()
    peer = ctx.dial(target=target)
    msgs = []
    for i in range(1100):
        if i % 2:
            msgs.append(peer.ws.encode_frame(tw.OP_PING, b"p"))
        else:
            msgs.append(peer.ws.encode_frame(tw.OP_BINARY, tw.frame(tw.PING, 0, 0, b"p")))
    try:
        peer.ws.send_raw(b"".join(msgs))
    except OSError:
        pass
    peer.expect_close(4007, timeout=5.0, what="for 1,100 probes at once ")


# ---- requests the server sends (its gateway) -------------------------------------------

def _serve_one(peer, answer=b"ok", status=200, read_body=True):
    """Reads a request head (and body) the server opened; answers it. Returns (sid, start,
    fields, body)."""
    f = peer.expect(lambda f: f.type == tw.HEADERS, "a request from the server", 10.0)
    if f.sid % 2:
        raise Violation(f"the server opened stream {f.sid}, an odd (client) id [3.2-2]")
    start, fields = tw.parse_head(f.payload, "request")
    body = bytearray()
    if read_body and not f.flags & tw.END_STREAM:
        while True:
            d = peer.expect(lambda d: d.sid == f.sid, "the request body", 10.0)
            if d.type == tw.DATA:
                body += d.payload
                if d.payload:
                    peer.send(tw.window_update(f.sid, len(d.payload)),
                              tw.window_update(0, len(d.payload)))
                if d.flags & tw.END_STREAM:
                    break
            elif d.type == tw.RESET:
                raise Violation(f"the server reset its request: {d!r}")
            elif d.type == tw.HEADERS and d.flags & tw.END_STREAM:
                break
    peer.send(tw.frame(tw.HEADERS, tw.RESPONSE, f.sid,
                       tw.response_head(status, [("content-length", str(len(answer)))])),
              tw.frame(tw.DATA, tw.END_STREAM, f.sid, answer))
    return f.sid, start, fields, bytes(body)


def _call(port, results, *args, **kw):
    try:
        results.append(tw.http_request(port, *args, **kw))
    except Exception as e:  # reported by the case
        results.append(e)


def _in_thread(fn, *args, **kw):
    import threading
    t = threading.Thread(target=fn, args=args, kwargs=kw, daemon=True)
    t.start()
    return t


@case("requests_from_the_server_are_well_formed",
      ["3.2-2", "4.3-2", "4.3-6", "4.1-3", "4.3-1"], "server", needs=("cmd",))
def requests_from_the_server_are_well_formed(ctx):
    """Through the server's gateway, an HTTP/1.1 request with hop-by-hop fields reaches
    the runner on an even stream id (increasing across requests), names in lower case,
    without Connection, Keep-Alive or the fields Connection names; the answer gets back."""
    port = ctx.gateway_port()
    peer = ctx.dial()
    peer.sync()
    ids = []
    for n in range(2):
        results = []
        t = _in_thread(_call, port, results, "GET", f"/hop/{n}?q=1",
                       [("Connection", "x-hop"), ("X-Hop", "1"),
                        ("Keep-Alive", "timeout=5"), ("X-Keep", "yes")])
        sid, start, fields, _ = _serve_one(peer, answer=b"ok")
        t.join(10)
        ids.append(sid)
        tw.check_sent_fields(fields, "request")
        names = {n.lower() for n, _ in fields}
        if names & {"x-hop", "keep-alive", "connection"}:
            raise Violation(f"forwarded hop-by-hop fields {names & {'x-hop', 'keep-alive'}} "
                            "[4.3-2]")
        if "x-keep" not in names:
            raise Violation("the end-to-end field X-Keep was not forwarded")
        if not start[1].startswith("/hop/"):
            raise Violation(f"request target {start[1]!r}")
        if not results or isinstance(results[0], Exception) or results[0][0] != 200 \
                or results[0][2] != b"ok":
            raise Violation(f"the HTTP caller got {results}")
    if ids[1] <= ids[0]:
        raise Violation(f"stream ids {ids} do not increase [3.2-2]")


@case("requests_from_the_server_respect_the_clients_limits",
      ["5-1", "10.3-1", "7.4-1"], "server", needs=("cmd",))
def requests_from_the_server_respect_the_clients_limits(ctx):
    """The runner announces MAX_HEAD_SIZE 256, windows 4096/6000 and frames of 1024: a
    gateway request with a 400-byte field never reaches it as a head over 256 bytes; a
    50,000-byte POST arrives within the granted credit, then whole."""
    port = ctx.gateway_port()
    settings = ctx.client_settings(MAX_HEAD_SIZE=256, INITIAL_STREAM_WINDOW=4096,
                                   INITIAL_CONNECTION_WINDOW=6000, MAX_FRAME_PAYLOAD=1024)
    peer = ctx.dial(settings=settings)
    peer.sync()
    results = []
    t = _in_thread(_call, port, results, "GET", "/big", [("X-Big", "b" * 400)])
    t.join(10)
    try:
        f = peer.next(0.5)
        if isinstance(f, tw.Frame) and f.type == tw.HEADERS and len(f.payload) > 256:
            raise Violation(f"a head of {len(f.payload)} bytes to a peer whose limit is 256 "
                            "[5-1]")
    except TimeoutError:
        pass
    if not results or isinstance(results[0], Exception) or results[0][0] < 400:
        raise Violation(f"the caller of an oversized request got {results}, not an error")
    body = tw.pattern(50000)
    results = []
    t = _in_thread(_call, port, results, "POST", "/upload", body=body)
    f = peer.expect(lambda f: f.type == tw.HEADERS, "the POST's head", 10.0)
    sid = f.sid
    got = bytearray()
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        try:
            d = peer.next(end - time.monotonic())
        except TimeoutError:
            break
        if isinstance(d, tw.Frame) and d.type == tw.DATA and d.sid == sid:
            if len(d.payload) > 1024:
                raise Violation(f"a DATA frame of {len(d.payload)} bytes, limit 1024 [7.4-1]")
            got += d.payload
            if len(got) > 4096:
                raise Violation(f"{len(got)} body bytes with a window of 4096 [10.3-1]")
    if not got:
        raise Violation("no request body within 1 s")
    peer.send(tw.window_update(sid, len(got)), tw.window_update(0, len(got)))
    while True:
        d = peer.expect(lambda d: d.sid == sid, "the rest of the body", 10.0)
        if d.type == tw.DATA:
            if len(d.payload) > 1024:
                raise Violation(f"a DATA frame of {len(d.payload)} bytes [7.4-1]")
            got += d.payload
            if d.payload:
                peer.send(tw.window_update(sid, len(d.payload)),
                          tw.window_update(0, len(d.payload)))
            if d.flags & tw.END_STREAM:
                break
        elif d.type == tw.RESET:
            raise Violation(f"the server reset its request: {d!r}")
    if bytes(got) != body:
        raise Violation(f"{len(got)} body bytes arrived, not the 50,000 sent")
    peer.send(tw.frame(tw.HEADERS, tw.RESPONSE | tw.END_STREAM, sid, tw.response_head(204)))
    t.join(10)
    if not results or isinstance(results[0], Exception) or results[0][0] != 204:
        raise Violation(f"the HTTP caller got {results}")


@case("extension_points_are_ignored", ["2.2", "3.1-1", "3.1-2", "6.1-1"], "server",
      needs=("routes",))
def extension_points_are_ignored(ctx):
    """An unknown setting id in HELLO is skipped; unknown flags and reserved header bits are
    ignored; a RESET with an unknown code ends its stream like INTERNAL_ERROR, nothing
    more: the connection stays up throughout."""
    settings = ctx.client_settings() + [(0x7F00, 12345)]
    peer = ctx.dial(settings=settings)
    head = tw.request_head("POST", "/echo", [("content-length", "4")])
    peer.send(tw.frame(tw.HEADERS, 0x80, 1, head, reserved=0xBEEF),
              tw.frame(tw.DATA, 0x01 | 0xF0, 1, b"abcd", reserved=0x1234))
    status, _, body, _ = peer.read_response(1)
    if status != 200 or body != b"abcd":
        raise Violation(f"a request with unknown flags and reserved bits got {status} "
                        f"{body!r} [3.1-1, 3.1-2]")
    peer.send(tw.frame(tw.HEADERS, tw.END_STREAM, 3, tw.request_head("GET", "/delay/1000")),
              tw.reset(3, 0xDEAD))
    peer.sync()
    peer.send(tw.frame(tw.HEADERS, tw.END_STREAM, 5, tw.request_head("GET", "/bytes/3")))
    if peer.read_response(5)[2] != tw.pattern(3):
        raise Violation("the connection did not survive a RESET with an unknown code [6.1-1]")


@case("window_updates_are_batched", ["10.3-2"], "server", needs=("routes",))
def window_updates_are_batched(ctx):
    """A 256 KiB request body sent in 1 KiB frames is credited back in a few WINDOW_UPDATEs
    (at least a quarter window each), not one per frame."""
    peer = ctx.dial()
    window = min(peer.limit("INITIAL_STREAM_WINDOW"), peer.limit("INITIAL_CONNECTION_WINDOW"))
    size = min(window, 256 * 1024)
    if size < 16 * 1024:
        raise Skip(f"windows of {window} bytes")
    body = tw.pattern(size)
    frames = [tw.frame(tw.HEADERS, 0, 1, tw.request_head(
        "POST", "/echo", [("content-length", str(size))]))]
    frames += [tw.frame(tw.DATA, tw.END_STREAM if i + 1024 >= size else 0, 1,
                        body[i:i + 1024]) for i in range(0, size, 1024)]
    peer.send(*frames)
    updates = []
    received = bytearray()
    while True:
        f = peer.expect(lambda f: f.sid in (0, 1), "the echo", 10.0)
        if f.type == tw.WINDOW_UPDATE:
            updates.append(f.increment)
        elif f.type == tw.DATA:
            received += f.payload
            if f.payload:
                peer.send(tw.window_update(1, len(f.payload)),
                          tw.window_update(0, len(f.payload)))
            if f.flags & tw.END_STREAM:
                break
        elif f.type == tw.RESET:
            raise Violation(f"the echo was reset: {f!r}")
    if bytes(received) != body:
        raise Violation("the echo differs from the body")
    small = [u for u in updates if u < 1024 * 4]
    if len(updates) > size // 1024 // 4 or small and len(small) > 2:
        raise Violation(f"{len(updates)} WINDOW_UPDATEs for {size // 1024} DATA frames "
                        f"(increments {updates[:8]}…) [10.3-2]")


@case("goaway_from_the_client_stops_new_streams", ["10.7"], "server", needs=("cmd",))
def goaway_from_the_client_stops_new_streams(ctx):
    """After the client's GOAWAY (last stream id 0) the server opens no new stream on that
    connection: a request through its gateway does not arrive as HEADERS (the server may
    close with 1000 once no stream is left); the client's own stream in flight completes."""
    port = ctx.gateway_port()
    peer = ctx.dial()
    peer.send(tw.frame(tw.HEADERS, tw.END_STREAM, 1, tw.request_head("GET", "/delay/800")))
    peer.sync()
    peer.send(tw.goaway(0, 0, b"conformance: going away"))
    peer.sync()
    results = []
    t = _in_thread(_call, port, results, "GET", "/after-goaway", timeout=5.0)
    status = None
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        try:
            f = peer.next(deadline - time.monotonic())
        except TimeoutError:
            break
        if isinstance(f, tw.Frame) and f.type == tw.HEADERS and not f.flags & tw.RESPONSE:
            raise Violation(f"the server opened stream {f.sid} after the client's GOAWAY "
                            "(§10.7)")
        if isinstance(f, tw.Frame) and f.sid == 1 and f.type == tw.HEADERS:
            status = tw.parse_head(f.payload, "response")[0][0]
        if isinstance(f, tw.Msg) and f.kind == "close":
            if f.code != 1000:
                raise Violation(f"closed with {f.code} after the client's GOAWAY")
            break
    if status is None:
        try:
            status = peer.read_response(1, timeout=3.0)[0]
        except Violation:
            pass
    if status != 200:
        raise Violation(f"the client's stream in flight did not complete (status {status})")
    t.join(6)
