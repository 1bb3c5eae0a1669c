#!/usr/bin/env python3
"""Writes spec/vectors/frames.json from the byte layouts of spec/protocol.md §3-§4.

This is a second, independent encoder: it builds every message with `struct` straight
from the spec's diagrams, so the Rust codec's tests check against the spec rather than
against the Rust code's own output. Run it after editing: python3 spec/vectors/gen_frames.py
"""
import json
import pathlib
import struct

HEADER = ">BBHI"  # type, flags, reserved, stream id (spec §3.1)
T = dict(HELLO=1, WELCOME=2, ACK=3, HEADERS=4, DATA=5, RESET=6, WINDOW_UPDATE=7,
         GOAWAY=8, PING=9, PONG=10)
SETTING = dict(HEARTBEAT_INTERVAL_MS=1, HEARTBEAT_TIMEOUT_MS=2, HEARTBEAT_CARRIER=3,
               MAX_FRAME_PAYLOAD=4, MAX_HEAD_SIZE=5, MAX_HEADER_COUNT=6,
               MAX_CONCURRENT_STREAMS=7, INITIAL_STREAM_WINDOW=8,
               INITIAL_CONNECTION_WINDOW=9, RESUME_WINDOW_MS=10)
RESET_CODES = dict(NO_ERROR=0, PROTOCOL_ERROR=1, INTERNAL_ERROR=2, FLOW_CONTROL_ERROR=3,
                   REFUSED_STREAM=4, CANCEL=5, TIMEOUT=6, HEAD_TOO_LARGE=7,
                   BODY_TOO_LARGE=8, STREAM_CLOSED=9, ENHANCE_YOUR_CALM=10)
CONN_ID = "6f1c2a3e-8b4d-4e5f-9a0b-1c2d3e4f5a6b"
TOKEN = bytes(range(0xa0, 0xb0))


def frame(ty, flags, sid, payload=b"", reserved=0):
    return struct.pack(HEADER, T[ty] if isinstance(ty, str) else ty, flags, reserved, sid) + payload


def settings(pairs):
    out = struct.pack(">H", len(pairs))
    for ident, value in pairs:
        out += struct.pack(">HI", SETTING.get(ident, ident) if isinstance(ident, str) else ident, value)
    return out


def uuid_bytes(u):
    return bytes.fromhex(u.replace("-", ""))


def hello(versions, resume=None, sets=(), metadata=b"", count=None):
    p = struct.pack(">B", len(versions) if count is None else count)
    p += b"".join(struct.pack(">H", v) for v in versions)
    flags = 0
    if resume is not None:
        flags = 0x01
        p += uuid_bytes(resume[0]) + resume[1]
    return flags, p + settings(sets) + metadata


def welcome(version, sets=(), extra=b""):
    return struct.pack(">H", version) + uuid_bytes(CONN_ID) + TOKEN + settings(sets) + extra


def head(text):
    return text.encode("latin-1")


valid = []
invalid = []


def ok(name, msg, fields, reencoded=None, note=None):
    v = {"name": name, "hex": msg.hex(), "frame": fields}
    if reencoded is not None:
        v["reencoded"] = reencoded.hex()
    if note:
        v["note"] = note
    valid.append(v)


def bad(name, msg, error, reaction, limits=None, note=None):
    v = {"name": name, "hex": msg.hex(), "error": error, "reaction": reaction}
    if limits:
        v["limits"] = limits
    if note:
        v["note"] = note
    invalid.append(v)


def close(code):
    return {"close": code}


def reset(sid, code):
    return {"reset": {"stream_id": sid, "code": RESET_CODES[code]}}


def sets_json(pairs):
    return {k: v for k, v in pairs}


# ---- HELLO (§3.4.1)
f, p = hello([1])
ok("hello_minimal", frame("HELLO", f, 0, p),
   {"type": "HELLO", "versions": [1], "resume": None, "settings": {}, "metadata": ""})
s = [("HEARTBEAT_INTERVAL_MS", 15000), ("HEARTBEAT_TIMEOUT_MS", 45000)]
md = b'{"device":"sensor-7","fw":"1.2.3"}'
f, p = hello([2, 1], sets=s, metadata=md)
ok("hello_metadata_and_settings", frame("HELLO", f, 0, p),
   {"type": "HELLO", "versions": [2, 1], "resume": None, "settings": sets_json(s),
    "metadata": md.decode()})
f, p = hello([1], resume=(CONN_ID, TOKEN), metadata=b"null")
ok("hello_resume", frame("HELLO", f, 0, p),
   {"type": "HELLO", "versions": [1], "resume": {"connection_id": CONN_ID, "token": TOKEN.hex()},
    "settings": {}, "metadata": "null"})
# §3.4.1: the deepest nesting allowed (64), a surrogate pair, a number that underflows.
for name, md in [("hello_metadata_depth_64", b"[" * 64 + b"]" * 64),
                 ("hello_metadata_surrogate_pair", b'"\\ud83d\\ude00"'),
                 ("hello_metadata_number_underflow", b'{"t":1e-99999}')]:
    f, p = hello([1], metadata=md)
    ok(name, frame("HELLO", f, 0, p),
       {"type": "HELLO", "versions": [1], "resume": None, "settings": {}, "metadata": md.decode()})
f, p = hello([1], sets=[(0x7f00, 9), ("RESUME_WINDOW_MS", 30000)])
f2, p2 = hello([1], sets=[("RESUME_WINDOW_MS", 30000)])
ok("hello_unknown_setting_skipped", frame("HELLO", f, 0, p),
   {"type": "HELLO", "versions": [1], "resume": None, "settings": {"RESUME_WINDOW_MS": 30000},
    "metadata": ""}, reencoded=frame("HELLO", f2, 0, p2),
   note="setting 0x7f00 is unknown to v1 and is skipped")
# ---- WELCOME (§3.4.2)
s = [("HEARTBEAT_INTERVAL_MS", 15000), ("HEARTBEAT_TIMEOUT_MS", 45000), ("HEARTBEAT_CARRIER", 0),
     ("MAX_FRAME_PAYLOAD", 65536), ("MAX_HEAD_SIZE", 16384), ("MAX_HEADER_COUNT", 100),
     ("MAX_CONCURRENT_STREAMS", 256), ("INITIAL_STREAM_WINDOW", 262144),
     ("INITIAL_CONNECTION_WINDOW", 1048576), ("RESUME_WINDOW_MS", 30000)]
ok("welcome_all_settings", frame("WELCOME", 0, 0, welcome(1, s)),
   {"type": "WELCOME", "version": 1, "connection_id": CONN_ID, "resume_token": TOKEN.hex(),
    "resumed": False, "settings": sets_json(s)})
ok("welcome_resumed", frame("WELCOME", 1, 0, welcome(1)),
   {"type": "WELCOME", "version": 1, "connection_id": CONN_ID, "resume_token": TOKEN.hex(),
    "resumed": True, "settings": {}})
# ---- ACK (§3.4.3)
ok("ack", frame("ACK", 0, 0), {"type": "ACK"})
# ---- HEADERS (§3.4.4, §4)
def req(method, uri, headers):
    return {"method": method, "uri": uri, "headers": headers}


def request_text(method, target, headers):
    return head(f"{method} {target} HTTP/1.1\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers) + "\r\n")


hs = [["host", "device.local"], ["accept", "application/json"]]
ok("headers_get_end_stream", frame("HEADERS", 0x01, 1, request_text("GET", "/status?verbose=1", hs)),
   {"type": "HEADERS", "stream_id": 1, "end_stream": True, "request": req("GET", "/status?verbose=1", hs)})
hs = [["content-type", "application/json"], ["content-length", "13"]]
ok("headers_post_with_body_to_follow", frame("HEADERS", 0, 2, request_text("POST", "/api/v1/items", hs)),
   {"type": "HEADERS", "stream_id": 2, "end_stream": False, "request": req("POST", "/api/v1/items", hs)})
ok("headers_absolute_form", frame("HEADERS", 1, 3, request_text("GET", "http://upstream:8080/x", [])),
   {"type": "HEADERS", "stream_id": 3, "end_stream": True, "request": req("GET", "http://upstream:8080/x", [])})
ok("headers_authority_form", frame("HEADERS", 0, 5, request_text("CONNECT", "db.internal:5432", [])),
   {"type": "HEADERS", "stream_id": 5, "end_stream": False, "request": req("CONNECT", "db.internal:5432", [])})
ok("headers_asterisk_form", frame("HEADERS", 1, 7, request_text("OPTIONS", "*", [])),
   {"type": "HEADERS", "stream_id": 7, "end_stream": True, "request": req("OPTIONS", "*", [])})
hs = [["set-cookie", "a=1"], ["set-cookie", "b=2"], ["x-trace", "t"]]
ok("headers_repeated_fields", frame("HEADERS", 1, 9, request_text("GET", "/", hs)),
   {"type": "HEADERS", "stream_id": 9, "end_stream": True, "request": req("GET", "/", hs)})
hs = [["x-latin1", "caf\u00e9"]]
ok("headers_obs_text_value", frame("HEADERS", 1, 11, request_text("GET", "/", hs)),
   {"type": "HEADERS", "stream_id": 11, "end_stream": True,
    "request": req("GET", "/", [["x-latin1", {"hex": "636166e9"}]])},
   note="field values may hold obs-text (RFC 9110 §5.5); shown as hex")
hs = [["te", "trailers"]]
ok("headers_te_trailers_allowed", frame("HEADERS", 0, 13, request_text("POST", "/rpc", hs)),
   {"type": "HEADERS", "stream_id": 13, "end_stream": False, "request": req("POST", "/rpc", hs)})

hs = [["content-length", "007"], ["te", "Trailers"]]
ok("headers_content_length_leading_zeros_te_any_case", frame("HEADERS", 0, 15, request_text("POST", "/", hs)),
   {"type": "HEADERS", "stream_id": 15, "end_stream": False, "request": req("POST", "/", hs)},
   note="content-length 007 is 7 (§4.3); TE's value is compared case-insensitively")
ok("headers_target_carried_as_is", frame("HEADERS", 1, 17, request_text("GET", "/a%zz/{b}|^[c]?q={x}|^", [])),
   {"type": "HEADERS", "stream_id": 17, "end_stream": True, "request": req("GET", "/a%zz/{b}|^[c]?q={x}|^", [])},
   note="§4.1: targets are neither decoded nor normalised; % need not start an escape")
# §10.6: a request's tether-timeout is its deadline, shown as 'timeout_ms' and not among its
# headers; written after the other fields, without leading zeros.
ok("headers_deadline", frame("HEADERS", 1, 19, request_text("GET", "/slow", [["Tether-Timeout", "0000000005"], ["x-trace", "t"]])),
   {"type": "HEADERS", "stream_id": 19, "end_stream": True,
    "request": dict(req("GET", "/slow", [["x-trace", "t"]]), timeout_ms=5)},
   reencoded=frame("HEADERS", 1, 19, request_text("GET", "/slow", [["x-trace", "t"], ["tether-timeout", "5"]])),
   note="§10.6: the deadline field, in any case, is the request's 'timeout_ms', not one of its headers")


def resp(status, headers):
    return {"status": status, "headers": headers}


hs = [["content-type", "text/plain"], ["content-length", "2"]]
ok("headers_response_200", frame("HEADERS", 0x02, 1, head("HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\n")),
   {"type": "HEADERS", "stream_id": 1, "end_stream": False, "response": resp(200, hs)})
ok("headers_response_no_reason_no_space", frame("HEADERS", 0x03, 4, head("HTTP/1.1 200\r\n\r\n")),
   {"type": "HEADERS", "stream_id": 4, "end_stream": True, "response": resp(200, [])},
   reencoded=frame("HEADERS", 0x03, 4, head("HTTP/1.1 200 OK\r\n\r\n")),
   note="§4.2: the SP after the status code may be missing; a sender writes it")
ok("headers_response_204_end_stream", frame("HEADERS", 0x03, 2, head("HTTP/1.1 204 No Content\r\n\r\n")),
   {"type": "HEADERS", "stream_id": 2, "end_stream": True, "response": resp(204, [])})
ok("headers_response_unregistered_status", frame("HEADERS", 0x03, 1, head("HTTP/1.1 599 \r\n\r\n")),
   {"type": "HEADERS", "stream_id": 1, "end_stream": True, "response": resp(599, [])})
ok("headers_response_reason_ignored", frame("HEADERS", 0x03, 1, head("HTTP/1.1 200 Fine Thanks\r\n\r\n")),
   {"type": "HEADERS", "stream_id": 1, "end_stream": True, "response": resp(200, [])},
   reencoded=frame("HEADERS", 0x03, 1, head("HTTP/1.1 200 OK\r\n\r\n")),
   note="the reason phrase is ignored on receipt; senders write the canonical one")
ok("headers_response_100_continue", frame("HEADERS", 0x02, 1, head("HTTP/1.1 100 Continue\r\n\r\n")),
   {"type": "HEADERS", "stream_id": 1, "end_stream": False, "response": resp(100, [])})
ok("headers_trailers", frame("HEADERS", 0x05, 1, head("grpc-status: 0\r\ngrpc-message: ok\r\n\r\n")),
   {"type": "HEADERS", "stream_id": 1, "end_stream": True,
    "trailers": [["grpc-status", "0"], ["grpc-message", "ok"]]})
ok("headers_empty_trailers", frame("HEADERS", 0x05, 4, head("\r\n")),
   {"type": "HEADERS", "stream_id": 4, "end_stream": True, "trailers": []})
# ---- DATA (§3.4.5)
ok("data_empty_end_stream", frame("DATA", 1, 1), {"type": "DATA", "stream_id": 1, "end_stream": True, "payload": ""})
ok("data_text", frame("DATA", 0, 2, b'{"ok":true}\n'),
   {"type": "DATA", "stream_id": 2, "end_stream": False, "payload": b'{"ok":true}\n'.hex()})
ok("data_every_byte_value", frame("DATA", 1, 3, bytes(range(256))),
   {"type": "DATA", "stream_id": 3, "end_stream": True, "payload": bytes(range(256)).hex()})
ok("data_max_stream_id", frame("DATA", 0, 0xFFFFFFFF, b"x"),
   {"type": "DATA", "stream_id": 0xFFFFFFFF, "end_stream": False, "payload": "78"})
ok("data_unknown_flags_ignored", frame("DATA", 0xF1, 1, b"hi"),
   {"type": "DATA", "stream_id": 1, "end_stream": True, "payload": "6869"},
   reencoded=frame("DATA", 0x01, 1, b"hi"), note="flags v1 does not define are ignored")
ok("data_reserved_field_ignored", frame("DATA", 0, 1, b"hi", reserved=0xABCD),
   {"type": "DATA", "stream_id": 1, "end_stream": False, "payload": "6869"},
   reencoded=frame("DATA", 0, 1, b"hi"), note="the reserved 16 bits are ignored on receipt, sent as zero")
# ---- RESET (§3.4.6)
ok("reset_cancel", frame("RESET", 0, 3, struct.pack(">I", 5)),
   {"type": "RESET", "stream_id": 3, "code": 5, "code_name": "CANCEL"})
ok("reset_refused", frame("RESET", 0, 4, struct.pack(">I", 4)),
   {"type": "RESET", "stream_id": 4, "code": 4, "code_name": "REFUSED_STREAM"})
ok("reset_unknown_code_kept", frame("RESET", 0, 1, struct.pack(">I", 0x1234)),
   {"type": "RESET", "stream_id": 1, "code": 0x1234, "code_name": None},
   note="an unknown code is kept as a number and treated as INTERNAL_ERROR (§6.1)")
# ---- WINDOW_UPDATE (§3.4.7)
ok("window_update_connection", frame("WINDOW_UPDATE", 0, 0, struct.pack(">I", 65536)),
   {"type": "WINDOW_UPDATE", "stream_id": 0, "increment": 65536})
ok("window_update_max", frame("WINDOW_UPDATE", 0, 1, struct.pack(">I", 0x7FFFFFFF)),
   {"type": "WINDOW_UPDATE", "stream_id": 1, "increment": 0x7FFFFFFF})
ok("window_update_reserved_bit_ignored", frame("WINDOW_UPDATE", 0, 1, struct.pack(">I", 0x80000010)),
   {"type": "WINDOW_UPDATE", "stream_id": 1, "increment": 16},
   reencoded=frame("WINDOW_UPDATE", 0, 1, struct.pack(">I", 16)))
# ---- GOAWAY (§3.4.8)
ok("goaway_graceful", frame("GOAWAY", 0, 0, struct.pack(">II", 7, 0) + b"server restarting"),
   {"type": "GOAWAY", "last_stream_id": 7, "code": 0, "reason": "server restarting"})
ok("goaway_no_reason", frame("GOAWAY", 0, 0, struct.pack(">II", 0, 1)),
   {"type": "GOAWAY", "last_stream_id": 0, "code": 1, "reason": ""})
ok("goaway_utf8_reason", frame("GOAWAY", 0, 0, struct.pack(">II", 2, 10) + "zu viel \u2013 langsamer".encode()),
   {"type": "GOAWAY", "last_stream_id": 2, "code": 10, "reason": "zu viel \u2013 langsamer"})
# ---- PING / PONG (§3.4.9)
ok("ping_sequence", frame("PING", 0, 0, struct.pack(">Q", 42)),
   {"type": "PING", "payload": struct.pack(">Q", 42).hex()})
ok("ping_empty", frame("PING", 0, 0), {"type": "PING", "payload": ""})
ok("pong_125_bytes", frame("PONG", 0, 0, bytes(125)), {"type": "PONG", "payload": bytes(125).hex()})

# ---- invalid (§3.5)
bad("empty_message", b"", "truncated_header", close(4000))
bad("seven_bytes", frame("DATA", 0, 1)[:7], "truncated_header", close(4000))
bad("type_zero", frame(0, 0, 0), "unknown_type", close(4000))
bad("type_0x0b", frame(0x0B, 0, 0), "unknown_type", close(4000))
bad("type_0xff", frame(0xFF, 0, 1, b"xx"), "unknown_type", close(4000))
bad("payload_over_limit", frame("DATA", 0, 1, bytes(1025)), "payload_too_large", close(1009),
    limits={"max_frame_payload": 1024})
bad("data_on_stream_zero", frame("DATA", 0, 0, b"x"), "stream_id_zero", close(4000))
bad("headers_on_stream_zero", frame("HEADERS", 1, 0, request_text("GET", "/", [])), "stream_id_zero", close(4000))
bad("reset_on_stream_zero", frame("RESET", 0, 0, struct.pack(">I", 5)), "stream_id_zero", close(4000))
bad("ping_on_stream_3", frame("PING", 0, 3), "stream_id_not_zero", close(4000))
bad("hello_on_stream_1", frame("HELLO", 0, 1, hello([1])[1]), "stream_id_not_zero", close(4000))
bad("goaway_on_stream_1", frame("GOAWAY", 0, 1, struct.pack(">II", 0, 0)), "stream_id_not_zero", close(4000))
bad("ack_with_payload", frame("ACK", 0, 0, b"\x00"), "bad_length", close(4000))
bad("reset_three_bytes", frame("RESET", 0, 1, b"\x00\x00\x05"), "bad_length", close(4000))
bad("reset_five_bytes", frame("RESET", 0, 1, b"\x00\x00\x00\x05\x00"), "bad_length", close(4000))
bad("window_update_short", frame("WINDOW_UPDATE", 0, 1, b"\x00\x01"), "bad_length", close(4000))
bad("window_update_zero_connection", frame("WINDOW_UPDATE", 0, 0, struct.pack(">I", 0)),
    "zero_window_increment", close(4000))
bad("window_update_zero_stream", frame("WINDOW_UPDATE", 0, 5, struct.pack(">I", 0x80000000)),
    "zero_window_increment", reset(5, "PROTOCOL_ERROR"), note="only the reserved bit is set: the increment is 0")
bad("goaway_truncated", frame("GOAWAY", 0, 0, b"\x00\x00\x00\x01\x00\x00\x00"), "truncated_payload", close(4000))
bad("goaway_reason_not_utf8", frame("GOAWAY", 0, 0, struct.pack(">II", 0, 0) + b"\xff\xfe"), "invalid_reason", close(4000))
bad("ping_126_bytes", frame("PING", 0, 0, bytes(126)), "bad_length", close(4000))
bad("pong_126_bytes", frame("PONG", 0, 0, bytes(126)), "bad_length", close(4000))
bad("hello_no_versions", frame("HELLO", 0, 0, hello([], count=0)[1]), "bad_version_count", close(4000))
bad("hello_17_versions", frame("HELLO", 0, 0, hello(list(range(1, 18)))[1]), "bad_version_count", close(4000))
bad("hello_versions_truncated", frame("HELLO", 0, 0, b"\x02\x00\x01\x00"), "truncated_payload", close(4000))
f, p = hello([1], resume=(CONN_ID, TOKEN))
bad("hello_resume_token_truncated", frame("HELLO", f, 0, p[:3 + 16 + 8]), "truncated_payload", close(4000))
bad("hello_metadata_not_json", frame("HELLO", 0, 0, hello([1], metadata=b'{"a":')[1]), "metadata_not_json", close(4004))
bad("hello_metadata_two_values", frame("HELLO", 0, 0, hello([1], metadata=b'1 2')[1]), "metadata_not_json", close(4004))
# §3.4.1: what RFC 8259 leaves open, Tether refuses.
for name, md in [("hello_metadata_invalid_utf8_in_string", b'"\xff\xfe"'),
                 ("hello_metadata_lone_surrogate", b'"\\ud800"'),
                 ("hello_metadata_number_overflow", b'1e99999'),
                 ("hello_metadata_depth_65", b"[" * 65 + b"]" * 65),
                 ("hello_metadata_byte_order_mark", b'\xef\xbb\xbf{}'),
                 ("hello_metadata_nan", b'NaN')]:
    bad(name, frame("HELLO", 0, 0, hello([1], metadata=md)[1]), "metadata_not_json", close(4004))
bad("hello_metadata_too_large", frame("HELLO", 0, 0, hello([1], metadata=b'"' + b"a" * 30 + b'"')[1]),
    "metadata_too_large", close(4004), limits={"max_metadata_size": 16})
bad("hello_duplicate_setting", frame("HELLO", 0, 0, hello([1], sets=[("HEARTBEAT_TIMEOUT_MS", 1), ("HEARTBEAT_TIMEOUT_MS", 2)])[1]),
    "duplicate_setting", close(4000))
bad("hello_setting_out_of_range", frame("HELLO", 0, 0, hello([1], sets=[("HEARTBEAT_CARRIER", 2)])[1]),
    "invalid_setting", close(4000))
bad("hello_too_many_settings", frame("HELLO", 0, 0, b"\x01\x00\x01\x00\x41"), "too_many_settings", close(4000),
    note="a settings block holds at most 64 entries")
bad("welcome_trailing_bytes", frame("WELCOME", 0, 0, welcome(1, extra=b"\x00")), "trailing_bytes", close(4000))
bad("welcome_truncated", frame("WELCOME", 0, 0, welcome(1)[:20]), "truncated_payload", close(4000))
bad("welcome_max_frame_payload_too_small", frame("WELCOME", 0, 0, welcome(1, [("MAX_FRAME_PAYLOAD", 512)])),
    "invalid_setting", close(4000))
bad("headers_bad_request_line", frame("HEADERS", 1, 1, head("GET/HTTP/1.1\r\n\r\n")), "head_syntax", reset(1, "PROTOCOL_ERROR"))
bad("headers_http_1_0", frame("HEADERS", 1, 3, head("GET / HTTP/1.0\r\n\r\n")), "head_version", reset(3, "PROTOCOL_ERROR"))
bad("headers_incomplete", frame("HEADERS", 1, 1, head("GET / HTTP/1.1\r\nhost: a\r\n")), "head_incomplete", reset(1, "PROTOCOL_ERROR"))
bad("headers_body_inside", frame("HEADERS", 0, 1, head("POST / HTTP/1.1\r\n\r\nbody")), "head_trailing_bytes", reset(1, "PROTOCOL_ERROR"))
bad("headers_too_many_fields", frame("HEADERS", 1, 1, request_text("GET", "/", [[f"x-{i}", "v"] for i in range(5)])),
    "too_many_headers", reset(1, "HEAD_TOO_LARGE"), limits={"max_header_count": 4})
bad("headers_head_too_large", frame("HEADERS", 1, 1, request_text("GET", "/" + "a" * 300, [])),
    "head_too_large", reset(1, "HEAD_TOO_LARGE"), limits={"max_head_size": 256})
bad("headers_transfer_encoding", frame("HEADERS", 0, 1, request_text("POST", "/", [["transfer-encoding", "chunked"]])),
    "connection_specific_header", reset(1, "PROTOCOL_ERROR"))
bad("headers_connection_field", frame("HEADERS", 0, 1, request_text("GET", "/", [["connection", "keep-alive"]])),
    "connection_specific_header", reset(1, "PROTOCOL_ERROR"))
bad("headers_te_not_trailers", frame("HEADERS", 0, 1, request_text("GET", "/", [["te", "gzip"]])),
    "connection_specific_header", reset(1, "PROTOCOL_ERROR"))
bad("headers_bad_content_length", frame("HEADERS", 0, 1, request_text("POST", "/", [["content-length", "-1"]])),
    "invalid_content_length", reset(1, "PROTOCOL_ERROR"))
bad("headers_conflicting_content_length", frame("HEADERS", 0, 1, request_text("POST", "/", [["content-length", "1"], ["content-length", "2"]])),
    "invalid_content_length", reset(1, "PROTOCOL_ERROR"))
bad("headers_bad_uri", frame("HEADERS", 1, 1, request_text("GET", "http://[::1/", [])), "invalid_uri", reset(1, "PROTOCOL_ERROR"))
bad("headers_response_flag_on_request", frame("HEADERS", 0x02, 1, request_text("GET", "/", [])), "head_syntax", reset(1, "PROTOCOL_ERROR"))
bad("headers_status_below_100", frame("HEADERS", 0x02, 1, head("HTTP/1.1 099 Low\r\n\r\n")), "invalid_status", reset(1, "PROTOCOL_ERROR"))
bad("headers_trailers_without_end_stream", frame("HEADERS", 0x04, 1, head("\r\n")), "conflicting_flags", reset(1, "PROTOCOL_ERROR"))
bad("headers_response_and_trailers", frame("HEADERS", 0x07, 1, head("\r\n")), "conflicting_flags", reset(1, "PROTOCOL_ERROR"))
# §4: every line ends in CRLF; a bare LF anywhere is malformed.
bad("headers_bare_lf_request_line", frame("HEADERS", 1, 1, head("GET / HTTP/1.1\nhost: a\r\n\r\n")),
    "head_syntax", reset(1, "PROTOCOL_ERROR"))
bad("headers_bare_lf_field_line", frame("HEADERS", 1, 1, head("GET / HTTP/1.1\r\nhost: a\n\r\n")),
    "head_syntax", reset(1, "PROTOCOL_ERROR"))
bad("headers_bare_lf_empty_line", frame("HEADERS", 1, 1, head("GET / HTTP/1.1\r\nhost: a\r\n\n")),
    "head_syntax", reset(1, "PROTOCOL_ERROR"))
bad("headers_bare_lf_response", frame("HEADERS", 0x03, 2, head("HTTP/1.1 200 OK\nx: 1\n\n")),
    "head_syntax", reset(2, "PROTOCOL_ERROR"))
bad("headers_bare_lf_trailers", frame("HEADERS", 0x05, 1, head("x: 1\n\n")),
    "head_syntax", reset(1, "PROTOCOL_ERROR"))
bad("headers_garbage", frame("HEADERS", 0, 9, bytes([0xff, 0x00, 0x13, 0x37]) * 4), "head_syntax", reset(9, "PROTOCOL_ERROR"))
# §4.5: the order of head checks; the first broken rule names the error.
bad("headers_leading_empty_line", frame("HEADERS", 1, 1, head("\r\nGET / HTTP/1.1\r\n\r\n")),
    "head_syntax", reset(1, "PROTOCOL_ERROR"), note="nothing precedes the start line (§4)")
bad("headers_http_2_0", frame("HEADERS", 1, 1, head("GET / HTTP/2.0\r\n\r\n")), "head_syntax",
    reset(1, "PROTOCOL_ERROR"), note="only HTTP/1.0 is head_version; any other version text is head_syntax (§4.5)")
bad("headers_truncated_but_well_formed_so_far", frame("HEADERS", 1, 1, head("GET /a HTTP/1.1\r\nx-a: 1")),
    "head_incomplete", reset(1, "PROTOCOL_ERROR"))
# §4.1: request-targets.
bad("headers_asterisk_with_get", frame("HEADERS", 1, 1, request_text("GET", "*", [])), "invalid_uri", reset(1, "PROTOCOL_ERROR"))
bad("headers_authority_with_get", frame("HEADERS", 1, 1, request_text("GET", "db.internal:5432", [])),
    "invalid_uri", reset(1, "PROTOCOL_ERROR"))
bad("headers_connect_origin_form", frame("HEADERS", 1, 1, request_text("CONNECT", "/", [])),
    "invalid_uri", reset(1, "PROTOCOL_ERROR"))
bad("headers_connect_without_port", frame("HEADERS", 1, 1, request_text("CONNECT", "db.internal", [])),
    "invalid_uri", reset(1, "PROTOCOL_ERROR"))
bad("headers_relative_target", frame("HEADERS", 1, 1, request_text("GET", "a/b", [])),
    "invalid_uri", reset(1, "PROTOCOL_ERROR"))
bad("headers_target_fragment", frame("HEADERS", 1, 1, request_text("GET", "/a#b", [])),
    "invalid_uri", reset(1, "PROTOCOL_ERROR"))
for ch in ['"', "<", ">", "\\", "`"]:
    bad(f"headers_target_byte_{ord(ch):02x}", frame("HEADERS", 1, 1, request_text("GET", "/a" + ch, [])),
        "invalid_uri", reset(1, "PROTOCOL_ERROR"))
bad("headers_target_non_ascii", frame("HEADERS", 1, 1, head("GET /caf\u00e9 HTTP/1.1\r\n\r\n")),
    "head_syntax", reset(1, "PROTOCOL_ERROR"), note="bytes outside 0x21-0x7e end the target: a start-line error")
# §4.3: content-length.
bad("headers_content_length_list", frame("HEADERS", 0, 1, request_text("POST", "/", [["content-length", "5, 5"]])),
    "invalid_content_length", reset(1, "PROTOCOL_ERROR"))
# §10.6: a request's tether-timeout is 1 to 10 digits, once.
bad("headers_deadline_not_digits", frame("HEADERS", 1, 1, request_text("GET", "/", [["tether-timeout", "1.5s"]])),
    "invalid_timeout", reset(1, "PROTOCOL_ERROR"))
bad("headers_deadline_eleven_digits", frame("HEADERS", 1, 1, request_text("GET", "/", [["tether-timeout", "10000000000"]])),
    "invalid_timeout", reset(1, "PROTOCOL_ERROR"))
bad("headers_deadline_repeated", frame("HEADERS", 1, 1, request_text("GET", "/", [["tether-timeout", "100"], ["tether-timeout", "100"]])),
    "invalid_timeout", reset(1, "PROTOCOL_ERROR"), note="even when the values agree")
bad("headers_content_length_in_trailers", frame("HEADERS", 0x05, 1, head("content-length: 3\r\n\r\n")),
    "invalid_content_length", reset(1, "PROTOCOL_ERROR"), note="trailers never carry content-length (§4.4)")

defaults = {"max_frame_payload": 65536, "max_head_size": 16384, "max_header_count": 100,
            "max_metadata_size": 8192}
doc = {
    "description": "Tether v1 frame vectors (spec/protocol.md §3-§5). Each valid vector: decoding "
                   "'hex' gives 'frame'; encoding 'frame' gives 'reencoded' if present, else 'hex'. "
                   "A request's tether-timeout field (§10.6) is its 'timeout_ms', not one of its "
                   "'headers'; encoded, it comes after them. "
                   "Each invalid vector: decoding 'hex' with the default limits overridden by "
                   "'limits' fails with 'error' (FrameError name) and the receiver's 'reaction'.",
    "generated_by": "spec/vectors/gen_frames.py",
    "default_limits": defaults,
    "valid": valid,
    "invalid": invalid,
}
out = pathlib.Path(__file__).with_name("frames.json")
out.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
print(f"{out}: {len(valid)} valid, {len(invalid)} invalid")
