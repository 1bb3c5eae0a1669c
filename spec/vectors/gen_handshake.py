#!/usr/bin/env python3
"""Generates handshake.json: scripted handshake exchanges (spec/protocol.md §7.8).

Written from the spec text alone (frame layouts of protocol.md §3.4, settings §3.6, the
lifecycle rules of §7), independently of the Rust implementation, which loads the file in
proto/tests/lifecycle/vectors.rs. Run: python3 gen_handshake.py > handshake.json
"""
import json
import struct

HELLO, WELCOME, ACK, PING, PONG = 0x01, 0x02, 0x03, 0x09, 0x0A
SETTING_IDS = {
    "heartbeat_interval_ms": 0x01,
    "heartbeat_timeout_ms": 0x02,
    "heartbeat_carrier": 0x03,
    "max_frame_payload": 0x04,
    "max_head_size": 0x05,
    "max_header_count": 0x06,
    "max_concurrent_streams": 0x07,
    "initial_stream_window": 0x08,
    "initial_connection_window": 0x09,
    "resume_window_ms": 0x0A,
}


def header(ty, flags=0, stream=0):
    return struct.pack(">BBHI", ty, flags, 0, stream)


def settings(values):
    entries = sorted((SETTING_IDS[k], v) for k, v in values.items())
    out = struct.pack(">H", len(entries))
    for ident, value in entries:
        out += struct.pack(">HI", ident, value)
    return out


def hello(versions, s, metadata=b"", resume=None):
    body = struct.pack(">B", len(versions)) + b"".join(struct.pack(">H", v) for v in versions)
    flags = 0
    if resume:
        flags = 0x01
        body += resume[0] + resume[1]
    return header(HELLO, flags) + body + settings(s) + metadata


def welcome(version, conn_id, token, s, resumed=False):
    return header(WELCOME, 0x01 if resumed else 0) + struct.pack(">H", version) + conn_id + token + settings(s)


def uuid_v4(random16):
    b = bytearray(random16)
    b[6] = (b[6] & 0x0F) | 0x40  # version 4 (RFC 9562 §5.4)
    b[8] = (b[8] & 0x3F) | 0x80  # variant 10
    return bytes(b)


def binary(b):
    return {"binary": b.hex()}


RANDOM = bytes(range(0x10, 0x30))  # 32 bytes: id then token
ID = uuid_v4(RANDOM[:16])
TOKEN = RANDOM[16:]
OTHER_ID = uuid_v4(bytes([0xAB] * 16))

CONFIG = {
    "versions": [1],
    "handshake_timeout_ms": 10000,
    "heartbeat_interval_ms": 10000,
    "heartbeat_timeout_ms": 30000,
    "heartbeat_carrier": 0,
    "max_frame_payload": 65536,
    "max_head_size": 16384,
    "max_header_count": 100,
    "max_metadata_size": 8192,
    "max_concurrent_streams": 128,
    "initial_stream_window": 262144,
    "initial_connection_window": 1048576,
}
ANNOUNCED = {k: CONFIG[k] for k in SETTING_IDS if k in CONFIG}
SERVER_ANNOUNCED = dict(ANNOUNCED, resume_window_ms=0)
META = b'{"user":"ada"}'
CLIENT_HELLO = hello([1], ANNOUNCED, META)
GOOD_WELCOME = welcome(1, ID, TOKEN, SERVER_ANNOUNCED)
ACK_FRAME = header(ACK)


def cfg(**over):
    c = dict(CONFIG)
    c.update(over)
    return c


def server(name, steps, config=None, doc=""):
    return {"name": name, "doc": doc, "role": "server", "config": config or CONFIG,
            "random": RANDOM.hex(), "steps": steps}


def client(name, steps, config=None, doc="", resume=None, metadata=META):
    s = {"name": name, "doc": doc, "role": "client", "config": config or CONFIG,
         "metadata": metadata.decode(), "steps": steps}
    if resume:
        s["resume"] = {"connection_id": resume[0].hex(), "token": resume[1].hex()}
    return s


def recv(msg, send=(), state=None, events=(), close=None):
    step = {"recv": msg, "send": list(send), "events": list(events)}
    if state:
        step["state"] = state
    if close is not None:
        step["close"] = close
        step["state"] = "Closed"
    return step


def advance(ms, send=(), state=None, events=(), close=None):
    step = recv(None, send, state, events, close)
    del step["recv"]
    step["advance_ms"] = ms
    return step


scripts = [
    server("server_accepts", [
        recv(binary(CLIENT_HELLO), state="AwaitingDecision", events=["hello_received"]),
        {"accept": True, "send": [binary(GOOD_WELCOME)], "events": [], "state": "AwaitingAck"},
        recv(binary(ACK_FRAME), state="Established", events=["received"]),
    ], doc="§7.1, §7.3: HELLO, decision, WELCOME with a v4 id and a separate token, ACK"),
    server("server_picks_highest_common_version", [
        recv(binary(hello([1, 3, 2], {}, b"")), state="AwaitingDecision", events=["hello_received"]),
        {"accept": True, "send": [binary(welcome(2, ID, TOKEN, SERVER_ANNOUNCED))], "events": [],
         "state": "AwaitingAck"},
    ], config=cfg(versions=[2, 1]), doc="§7.3 step 2: highest in common, whatever the order"),
    server("server_no_common_version", [
        recv(binary(hello([7, 9], {}, b"")), events=["failure"], close=4001),
    ], doc="§7.3 step 2"),
    server("server_rejects", [
        recv(binary(CLIENT_HELLO), state="AwaitingDecision", events=["hello_received"]),
        {"reject": 4003, "send": [], "events": ["closed"], "close": 4003, "state": "Closed"},
    ], doc="§7.3 step 3"),
    server("server_text_message", [
        recv({"text": "{}"}, events=["failure"], close=1003),
    ], doc="§7.6"),
    server("server_ack_before_hello", [
        recv(binary(ACK_FRAME), events=["failure"], close=4000),
    ], doc="§7.2: ACK is not accepted in AwaitingHello"),
    server("server_frame_during_decision", [
        recv(binary(CLIENT_HELLO), state="AwaitingDecision", events=["hello_received"]),
        recv(binary(header(PING) + b"x"), events=["failure"], close=4000),
    ], doc="§7.2: nothing is accepted in AwaitingDecision; PING frames only once established"),
    server("server_metadata_not_json", [
        recv(binary(hello([1], {}, b"{user")), events=["failure"], close=4004),
    ], doc="§3.4.1, §7.6"),
    server("server_metadata_invalid_utf8", [
        recv(binary(hello([1], {}, b'{"user":"\xff\xfe"}')), events=["failure"], close=4004),
    ], doc="§3.4.1: bytes that are not UTF-8 inside a JSON string"),
    server("server_metadata_too_deep", [
        recv(binary(hello([1], {}, b"[" * 65 + b"]" * 65)), events=["failure"], close=4004),
    ], doc="§3.4.1: arrays nested 65 deep, one more than allowed"),
    server("server_metadata_too_large", [
        recv(binary(hello([1], {}, b'"' + b"a" * 62 + b'"')), events=["failure"], close=4004),
    ], config=cfg(max_metadata_size=63), doc="§3.4.1, §7.6: 64 bytes over a limit of 63"),
    server("server_truncated_hello", [
        recv(binary(header(HELLO) + b"\x01\x00"), events=["failure"], close=4000),
    ], doc="§3.5 truncated_payload"),
    server("server_handshake_timeout", [
        advance(9999, state="AwaitingHello"),
        advance(1, events=["failure"], close=4002),
    ], doc="§7.5: a client that says nothing; an early timer call does nothing"),
    server("server_handshake_timeout_while_deciding", [
        recv(binary(CLIENT_HELLO), state="AwaitingDecision", events=["hello_received"]),
        advance(10000, events=["failure"], close=4002),
    ], doc="§7.5: the timer runs during the decision"),
    server("server_second_hello", [
        recv(binary(CLIENT_HELLO), state="AwaitingDecision", events=["hello_received"]),
        {"accept": True, "send": [binary(GOOD_WELCOME)], "events": [], "state": "AwaitingAck"},
        recv(binary(ACK_FRAME), state="Established", events=["received"]),
        recv(binary(CLIENT_HELLO), events=["failure"], close=4000),
    ], doc="§7.6: handshake frames are unexpected once established"),
    client("client_completes", [
        {"start": True, "send": [binary(CLIENT_HELLO)], "events": [], "state": "AwaitingWelcome"},
        recv(binary(GOOD_WELCOME), send=[binary(ACK_FRAME)], state="Established", events=["established"]),
    ], doc="§7.1: the client is established once it has sent ACK"),
    client("client_answers_ping_frames", [
        {"start": True, "send": [binary(CLIENT_HELLO)], "events": [], "state": "AwaitingWelcome"},
        recv(binary(GOOD_WELCOME), send=[binary(ACK_FRAME)], state="Established", events=["established"]),
        recv(binary(header(PING) + b"probe"), send=[binary(header(PONG) + b"probe")], state="Established",
             events=["ping_received"]),
    ], doc="§8.1: a PING frame is answered with a PONG frame, same payload"),
    client("client_resumes", [
        {"start": True, "send": [binary(hello([1], ANNOUNCED, META, (OTHER_ID, bytes(16))))], "events": [],
         "state": "AwaitingWelcome"},
        recv(binary(welcome(1, OTHER_ID, TOKEN, dict(SERVER_ANNOUNCED, resume_window_ms=30000), resumed=True)),
             send=[binary(ACK_FRAME)], state="Established", events=["established"]),
    ], resume=(OTHER_ID, bytes(16)), doc="§9.2: HELLO with RESUME; WELCOME with RESUMED and the same id"),
    client("client_unsolicited_resume", [
        {"start": True, "send": [binary(CLIENT_HELLO)], "events": [], "state": "AwaitingWelcome"},
        recv(binary(welcome(1, ID, TOKEN, SERVER_ANNOUNCED, resumed=True)), events=["failure"], close=4000),
    ], doc="§7.4: RESUMED without a resume request"),
    client("client_version_not_offered", [
        {"start": True, "send": [binary(CLIENT_HELLO)], "events": [], "state": "AwaitingWelcome"},
        recv(binary(welcome(2, ID, TOKEN, SERVER_ANNOUNCED)), events=["failure"], close=4001),
    ], doc="§7.4"),
    client("client_heartbeat_timeout_not_after_interval", [
        {"start": True, "send": [binary(CLIENT_HELLO)], "events": [], "state": "AwaitingWelcome"},
        recv(binary(welcome(1, ID, TOKEN, dict(SERVER_ANNOUNCED, heartbeat_timeout_ms=10000))),
             events=["failure"], close=4000),
    ], doc="§7.4: the timeout must exceed the interval"),
    client("client_ack_instead_of_welcome", [
        {"start": True, "send": [binary(CLIENT_HELLO)], "events": [], "state": "AwaitingWelcome"},
        recv(binary(ACK_FRAME), events=["failure"], close=4000),
    ], doc="§7.2"),
    client("client_rejected", [
        {"start": True, "send": [binary(CLIENT_HELLO)], "events": [], "state": "AwaitingWelcome"},
        recv({"close": 4003}, events=["failure"], close=4003),
    ], doc="§7.7: a close frame with an error code is a failure; the client sends nothing"),
    client("client_handshake_timeout", [
        {"start": True, "send": [binary(CLIENT_HELLO)], "events": [], "state": "AwaitingWelcome"},
        advance(10000, events=["failure"], close=4002),
    ], doc="§7.5"),
]

DESCRIPTION = (
    "Scripted handshakes against one endpoint (spec/protocol.md §7.8). Each script creates a "
    "`role` endpoint at time 0 with `config` (the settings it announces are exactly the config "
    "keys that are settings, plus resume_window_ms = 0 for a server without sessions), and for "
    "a client `metadata` and an optional `resume` (hex id and token). Steps run in order; each "
    "does one thing: `start` (client: it sent its HELLO), `recv` (deliver a message: "
    "{binary: hex}, {text: str} or {close: code}), `advance_ms` (move the clock forward and fire "
    "due timers), `accept` (server: accept the pending HELLO with a new session whose id is the "
    "first 16 bytes of `random` with the UUID v4 bits set and whose token is the next 16), or "
    "`reject` (server: reject with that code). After the step the endpoint must have sent "
    "exactly `send` (binary messages as hex; close frames are not listed there), be in `state` "
    "when given (names of §7.2), have reported `events` (names of §7.8: hello_received, "
    "received, resumed, established, ping_received, pong_received, closed, failure; no script "
    "here resumes a session on the server, which takes a session store), and when `close` is "
    "present have sent a "
    "close frame with that code (or, for a received close, have ended with that code). "
    "Close reasons are not compared."
)

print(json.dumps({"description": DESCRIPTION, "scripts": scripts}, indent=1))
