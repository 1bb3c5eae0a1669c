#!/usr/bin/env python3
"""Writes spec/vectors/streams.json: scripted exchanges with one stream layer (§10).

Written from spec/protocol.md alone, independently of the Rust code. Run:
python3 spec/vectors/gen_streams.py
"""
import json
import pathlib
import struct

HEADERS, DATA, RESET, WINDOW_UPDATE, GOAWAY = 4, 5, 6, 7, 8
END_STREAM, RESPONSE, TRAILERS = 0x01, 0x02, 0x04
CODES = dict(NO_ERROR=0, PROTOCOL_ERROR=1, INTERNAL_ERROR=2, FLOW_CONTROL_ERROR=3,
             REFUSED_STREAM=4, CANCEL=5, TIMEOUT=6, HEAD_TOO_LARGE=7, BODY_TOO_LARGE=8,
             STREAM_CLOSED=9, ENHANCE_YOUR_CALM=10)


def frame(ty, flags, sid, payload=b""):
    return (struct.pack(">BBHI", ty, flags, 0, sid) + payload).hex()


def request(sid, method="GET", target="/", fields=(), end=True):
    text = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{n}: {v}\r\n" for n, v in fields) + "\r\n"
    return frame(HEADERS, END_STREAM if end else 0, sid, text.encode())


def response(sid, status, reason, fields=(), end=True):
    text = f"HTTP/1.1 {status} {reason}\r\n" + "".join(f"{n}: {v}\r\n" for n, v in fields) + "\r\n"
    return frame(HEADERS, RESPONSE | (END_STREAM if end else 0), sid, text.encode())


def trailers(sid, fields):
    text = "".join(f"{n}: {v}\r\n" for n, v in fields) + "\r\n"
    return frame(HEADERS, TRAILERS | END_STREAM, sid, text.encode())


def data(sid, payload, end=False):
    return frame(DATA, END_STREAM if end else 0, sid, payload)


def reset(sid, code):
    return frame(RESET, 0, sid, struct.pack(">I", CODES[code]))


def window_update(sid, inc):
    return frame(WINDOW_UPDATE, 0, sid, struct.pack(">I", inc))


def goaway(last, code, reason=b""):
    return frame(GOAWAY, 0, 0, struct.pack(">II", last, CODES[code]) + reason)


DEFAULT = {"max_concurrent_streams": 128, "initial_stream_window": 262144,
           "initial_connection_window": 1048576, "max_body_size": None,
           "peer_max_frame_payload": 65536, "peer_max_concurrent_streams": 128,
           "peer_initial_stream_window": 262144, "peer_initial_connection_window": 1048576,
           "stall_timeout_ms": 30000,
           "max_churn": 200, "churn_min_lifetime_ms": 100}


def script(name, role, steps, doc, **config):
    c = dict(DEFAULT)
    c.update(config)
    return {"name": name, "doc": doc, "role": role, "config": c, "steps": steps}


def step(action, send=(), events=(), close=None):
    s = dict(action)
    s["send"] = list(send)
    s["events"] = list(events)
    if close is not None:
        s["close"] = close
    return s


def recv(hexframe):
    return {"recv": hexframe}


S = []
S.append(script("request_then_response", "server", [
    step(recv(request(1, "GET", "/status")), events=[["request", 1, "GET", "/status", True]]),
    step({"respond": [1, 204, True]}, send=[response(1, 204, "No Content")],
         events=[["closed", 1, "finished"]]),
], "§10.1, §10.2: a request opens a stream; the final response with END_STREAM finishes it"))
S.append(script("request_body_and_response_body", "server", [
    step(recv(request(1, "POST", "/items", [("content-length", "3")], end=False)),
         events=[["request", 1, "POST", "/items", False]]),
    step(recv(data(1, b"abc", end=True)), events=[["data", 1, 3, True]]),
    step({"respond": [1, 200, False]}, send=[response(1, 200, "OK", end=False)]),
    step({"send_data": [1, "6f6b", True]}, send=[data(1, b"ok", end=True)],
         events=[["closed", 1, "finished"]]),
], "§10.2, §10.4"))
S.append(script("refused_over_concurrency_limit", "server", [
    step(recv(request(1)), events=[["request", 1, "GET", "/", True]]),
    step(recv(request(3)), send=[reset(3, "REFUSED_STREAM")]),
], "§10.1: over MAX_CONCURRENT_STREAMS the stream is refused, safe to retry",
    max_concurrent_streams=1))
S.append(script("stream_id_going_backwards", "server", [
    step(recv(request(5)), events=[["request", 5, "GET", "/", True]]),
    step(recv(request(3)), send=[reset(3, "STREAM_CLOSED")]),
], "§10.1: a request on an id at or below the highest used is for a closed stream"))
S.append(script("data_on_idle_stream", "server", [
    step(recv(data(1, b"x")), close=4000),
], "§10.1: DATA on a stream never opened closes the connection"))
S.append(script("window_update_on_idle_stream", "server", [
    step(recv(window_update(1, 100)), close=4000),
], "§10.1: WINDOW_UPDATE on a peer id never opened closes the connection, like DATA"))
S.append(script("window_update_on_own_idle_stream", "client", [
    step(recv(window_update(1, 100)), close=4000),
], "§10.1: WINDOW_UPDATE on an id of the receiver's parity that it never opened"))
S.append(script("zero_window_update_on_idle_stream", "server", [
    step(recv(window_update(1, 0)), close=4000),
], "§3.5, §10.1: a stream-level decode error on a stream never opened (other than a HEADERS "
   "opening a peer stream) closes the connection, as the well-formed frame would"))
S.append(script("zero_window_update_on_closed_stream", "server", [
    step(recv(request(1)), events=[["request", 1, "GET", "/", True]]),
    step({"respond": [1, 204, True]}, send=[response(1, 204, "No Content")],
         events=[["closed", 1, "finished"]]),
    step(recv(window_update(1, 100))),
    step(recv(window_update(1, 0)), send=[reset(1, "PROTOCOL_ERROR")]),
], "§3.5, §10.2: a late WINDOW_UPDATE on a closed stream is ignored, but one with increment 0 is "
   "a decode error and resets the stream even though it is closed"))
S.append(script("conflicting_flags_on_new_stream", "server", [
    step(recv(frame(HEADERS, TRAILERS, 1, b"GET / HTTP/1.1\r\n\r\n")),
         send=[reset(1, "PROTOCOL_ERROR")]),
    step(recv(request(1)), send=[reset(1, "STREAM_CLOSED")]),
    step(recv(request(3)), events=[["request", 3, "GET", "/", True]]),
], "§3.5, §10.1: HEADERS with conflicting flags on a new peer id resets that stream (the "
   "connection stays up) and uses up the id"))
S.append(script("conflicting_flags_on_own_idle_stream", "client", [
    step(recv(frame(HEADERS, RESPONSE | TRAILERS | END_STREAM, 1, b"\r\n")), close=4000),
], "§3.5, §10.1: a HEADERS with a stream-level decode error on an id of the receiver's parity "
   "that it never opened closes the connection"))
S.append(script("request_on_own_parity", "server", [
    step(recv(request(2)), close=4000),
], "§10.1: a server never receives a request on an even id"))
S.append(script("response_on_idle_stream", "client", [
    step(recv(response(2, 200, "OK")), close=4000),
], "§10.1: a peer stream must open with a request head"))
S.append(script("stream_window_exceeded", "server", [
    step(recv(request(1, "POST", end=False)), events=[["request", 1, "POST", "/", False]]),
    step(recv(data(1, b"12345")), send=[reset(1, "FLOW_CONTROL_ERROR")],
         events=[["closed", 1, "reset", CODES["FLOW_CONTROL_ERROR"], "local"]]),
], "§10.3: DATA beyond the stream window resets that stream", initial_stream_window=4))
S.append(script("connection_window_exceeded", "server", [
    step(recv(request(1, "POST", end=False)), events=[["request", 1, "POST", "/", False]]),
    step(recv(data(1, b"123456789")), close=4006),
], "§10.3: DATA beyond the connection window closes with 4006", initial_connection_window=8))
S.append(script("window_update_after_consumption", "server", [
    step(recv(request(1, "POST", end=False)), events=[["request", 1, "POST", "/", False]]),
    step(recv(data(1, b"abcd")), events=[["data", 1, 4, False]]),
    step({"release": [1, 3]}),
    step({"release": [1, 1]}, send=[window_update(1, 4)]),
    step(recv(data(1, b"efgh")), events=[["data", 1, 4, False]]),
    step({"release": [1, 4]}, send=[window_update(1, 4), window_update(0, 8)]),
], "§10.3: credit goes back as bytes are consumed, once half a window is due",
    initial_stream_window=8, initial_connection_window=16))
S.append(script("connection_window_overflow", "server", [
    step(recv(window_update(0, 0x7FFFFFFF)), close=4006),
], "§10.3: a window above 2^31-1 closes with 4006"))
S.append(script("content_length_mismatch", "server", [
    step(recv(request(1, "PUT", "/", [("content-length", "2")], end=False)),
         events=[["request", 1, "PUT", "/", False]]),
    step(recv(data(1, b"abc")), send=[reset(1, "PROTOCOL_ERROR")],
         events=[["closed", 1, "reset", CODES["PROTOCOL_ERROR"], "local"]]),
], "§10.4"))
S.append(script("body_too_large", "server", [
    step(recv(request(1, "POST", end=False)), events=[["request", 1, "POST", "/", False]]),
    step(recv(data(1, b"abcdef")), send=[reset(1, "BODY_TOO_LARGE")],
         events=[["closed", 1, "reset", CODES["BODY_TOO_LARGE"], "local"]]),
], "§10.8: the optional body limit", max_body_size=5))
S.append(script("deadline_from_the_request", "server", [
    step(recv(request(1, "GET", "/slow", [("tether-timeout", "100")])),
         events=[["request", 1, "GET", "/slow", True]]),
    step({"advance_ms": 99}),
    step({"advance_ms": 1}, send=[reset(1, "TIMEOUT")], events=[["closed", 1, "timed_out"]]),
], "§10.6: the responder stops when the caller's deadline has passed"))
S.append(script("malformed_deadline", "server", [
    step(recv(request(1, "GET", "/", [("tether-timeout", "1.5s")])), send=[reset(1, "PROTOCOL_ERROR")]),
], "§10.6: tether-timeout is 1 to 10 digits"))
S.append(script("repeated_deadline", "server", [
    step(recv(request(1, "GET", "/", [("tether-timeout", "100"), ("tether-timeout", "100")])),
         send=[reset(1, "PROTOCOL_ERROR")]),
], "§10.6: more than one tether-timeout field is malformed, even when they agree"))
S.append(script("deadline_zero", "server", [
    step(recv(request(1, "GET", "/", [("tether-timeout", "0")])),
         events=[["request", 1, "GET", "/", True]]),
    step({"advance_ms": 0}, send=[reset(1, "TIMEOUT")], events=[["closed", 1, "timed_out"]]),
], "§10.6: tether-timeout 0 is valid and has passed on arrival"))
S.append(script("deadline_leading_zeros", "server", [
    step(recv(request(1, "GET", "/", [("tether-timeout", "0000000005")])),
         events=[["request", 1, "GET", "/", True]]),
    step({"advance_ms": 4}),
    step({"advance_ms": 1}, send=[reset(1, "TIMEOUT")], events=[["closed", 1, "timed_out"]]),
], "§10.6: leading zeros are allowed: 0000000005 is 5 ms"))
S.append(script("goaway_refuses_later_streams", "server", [
    step(recv(request(1)), events=[["request", 1, "GET", "/", True]]),
    step({"go_away": "NO_ERROR"}, send=[goaway(1, "NO_ERROR")]),
    step(recv(request(3)), send=[reset(3, "REFUSED_STREAM")]),
    step({"respond": [1, 200, True]}, send=[response(1, 200, "OK")], events=[["closed", 1, "finished"]]),
], "§10.7"))
S.append(script("peer_cancels", "server", [
    step(recv(request(1, "POST", end=False)), events=[["request", 1, "POST", "/", False]]),
    step(recv(reset(1, "CANCEL")), events=[["closed", 1, "reset", CODES["CANCEL"], "peer"]]),
    step(recv(data(1, b"late"))),
], "§10.2, §10.5: frames in flight after a reset are expected and ignored"))
S.append(script("client_request_refused", "client", [
    step({"open": ["GET", "/", True, None]}, send=[request(1)]),
    step(recv(reset(1, "REFUSED_STREAM")), events=[["closed", 1, "refused"]]),
], "§10.5: REFUSED_STREAM means safe to retry"))
S.append(script("late_response_after_reset", "client", [
    step({"open": ["GET", "/", True, None]}, send=[request(1)]),
    step(recv(reset(1, "CANCEL")), events=[["closed", 1, "reset", CODES["CANCEL"], "peer"]]),
    step(recv(response(1, 200, "OK", end=False))),
    step(recv(data(1, b"late", end=True))),
], "§10.2: a head or DATA in flight on a closed stream the receiver opened is ignored"))
S.append(script("reset_no_error_after_complete_response", "client", [
    step({"open": ["POST", "/upload", False, None]}, send=[request(1, "POST", "/upload", end=False)]),
    step(recv(response(1, 200, "OK")), events=[["response", 1, 200, True]]),
    step(recv(reset(1, "NO_ERROR")), events=[["closed", 1, "finished"]]),
], "§10.2: RESET NO_ERROR after the complete response ends the exchange as finished; the "
   "rest of the request body is not sent"))
S.append(script("reset_no_error_before_response", "client", [
    step({"open": ["POST", "/upload", False, None]}, send=[request(1, "POST", "/upload", end=False)]),
    step(recv(reset(1, "NO_ERROR")), events=[["closed", 1, "reset", CODES["NO_ERROR"], "peer"]]),
], "§10.2: RESET NO_ERROR before the response is complete is an ordinary reset"))
S.append(script("client_goaway_refuses_in_flight", "client", [
    step({"open": ["GET", "/a", True, None]}, send=[request(1, "GET", "/a")]),
    step({"open": ["GET", "/b", True, None]}, send=[request(3, "GET", "/b")]),
    step(recv(goaway(1, "NO_ERROR")), events=[["closed", 3, "refused"], ["goaway", 1, 0]]),
    step(recv(response(1, 200, "OK")), events=[["response", 1, 200, True], ["closed", 1, "finished"]]),
], "§10.7: streams above the last stream id are refused; the others complete"))
S.append(script("client_deadline", "client", [
    step({"open": ["GET", "/slow", True, 250]},
         send=[request(1, "GET", "/slow", [("tether-timeout", "250")])]),
    step({"advance_ms": 250}, send=[reset(1, "TIMEOUT")], events=[["closed", 1, "timed_out"]]),
], "§10.6: the requester sends its deadline and resets at it"))
S.append(script("client_deadline_beyond_the_header", "client", [
    step({"open": ["GET", "/slow", True, 10 ** 12]},
         send=[request(1, "GET", "/slow", [("tether-timeout", "9999999999")])]),
    step({"advance_ms": 9999999999 - 1}),
    step({"advance_ms": 1}, send=[reset(1, "TIMEOUT")], events=[["closed", 1, "timed_out"]]),
], "§10.6: a longer timeout is sent as 9999999999 and the requester resets at that deadline too"))
S.append(script("client_data_respects_both_windows", "client", [
    step({"open": ["POST", "/a", False, None]}, send=[request(1, "POST", "/a", end=False)]),
    step({"open": ["POST", "/b", False, None]}, send=[request(3, "POST", "/b", end=False)]),
    # Stream window 6, frames of 4: 4 + 2, then stream 1 waits for its window.
    step({"send_data": [1, "0101010101010101", True]}, send=[data(1, b"\x01" * 4), data(1, b"\x01" * 2)]),
    # Connection window 10 - 6 = 4 left: one frame of stream 3, then everything waits.
    step({"send_data": [3, "0303030303030303", True]}, send=[data(3, b"\x03" * 4)]),
    step(recv(window_update(0, 4)), send=[data(3, b"\x03" * 2)]),
    step(recv(window_update(1, 4)), send=[data(1, b"\x01" * 2, end=True)]),
    # Stream 3 gets window but the connection has none left.
    step(recv(window_update(3, 4))),
    step(recv(window_update(0, 10)), send=[data(3, b"\x03" * 2, end=True)]),
], "§10.3: DATA in frames of at most the peer's MAX_FRAME_PAYLOAD, within the stream's and the connection's windows",
    peer_max_frame_payload=4, peer_initial_stream_window=6, peer_initial_connection_window=10))
S.append(script("client_trailers", "client", [
    step({"open": ["GET", "/rpc", True, None]}, send=[request(1, "GET", "/rpc")]),
    step(recv(response(1, 200, "OK", end=False)), events=[["response", 1, 200, False]]),
    step(recv(trailers(1, [("grpc-status", "0")])), events=[["trailers", 1], ["closed", 1, "finished"]]),
], "§4.4: trailers end the direction"))

S.append(script("client_responses_without_content", "client", [
    step({"open": ["HEAD", "/file", True, None]}, send=[request(1, "HEAD", "/file")]),
    step(recv(response(1, 200, "OK", [("content-length", "1234")])),
         events=[["response", 1, 200, True], ["closed", 1, "finished"]]),
    step({"open": ["GET", "/file", True, None]}, send=[request(3, "GET", "/file")]),
    step(recv(response(3, 304, "Not Modified", [("content-length", "1234")])),
         events=[["response", 3, 304, True], ["closed", 3, "finished"]]),
    step({"open": ["HEAD", "/file", True, None]}, send=[request(5, "HEAD", "/file")]),
    step(recv(response(5, 200, "OK", [("content-length", "3")], end=False)),
         events=[["response", 5, 200, False]]),
    step(recv(data(5, b"abc", end=True)), send=[reset(5, "PROTOCOL_ERROR")],
         events=[["closed", 5, "reset", CODES["PROTOCOL_ERROR"], "local"]]),
], "§10.4: a response to HEAD, a 204 and a 304 have no content whatever their content-length"))

# §10.8 stall timeout: DATA queued toward a peer that grants no credit for it.
S.append(script("stalled_stream_is_reset", "server", [
    step(recv(request(1, "GET", "/big")), events=[["request", 1, "GET", "/big", True]]),
    step({"respond": [1, 200, False]}, send=[response(1, 200, "OK", end=False)]),
    # No window at all: the bytes stay queued.
    step({"send_data": [1, "61626364", False]}),
    # Never before the stall timeout...
    step({"advance_ms": 999}),
    # ...and at the latest twice the stall timeout after the data stopped moving.
    step({"advance_ms": 1001}, send=[reset(1, "ENHANCE_YOUR_CALM")],
         events=[["closed", 1, "reset", CODES["ENHANCE_YOUR_CALM"], "local"]]),
], "§10.8: DATA queued toward the peer that none of is sent for the stall timeout resets the stream",
    peer_initial_stream_window=0, peer_initial_connection_window=0, stall_timeout_ms=1000))
S.append(script("waiting_with_nothing_queued_is_not_stalled", "server", [
    step(recv(request(1, "GET", "/poll")), events=[["request", 1, "GET", "/poll", True]]),
    step({"advance_ms": 10000}),
    step({"respond": [1, 200, False]}, send=[response(1, 200, "OK", end=False)]),
    step({"advance_ms": 10000}),
    step({"send_data": [1, "6f6b", True]}, send=[data(1, b"ok", end=True)],
         events=[["closed", 1, "finished"]]),
], "§10.8: a long poll or an idle event stream has nothing queued and is never stalled",
    stall_timeout_ms=1000))
# §10.9 CONNECT streams: a byte tunnel in both directions, half-closed one way at a time.
S.append(script("connect_tunnel_carries_bytes_both_ways", "server", [
    step(recv(request(1, "CONNECT", "db.internal:5432", end=False)),
         events=[["request", 1, "CONNECT", "db.internal:5432", False]]),
    # The requester's first bytes may come before the answer.
    step(recv(data(1, b"ping")), events=[["data", 1, 4, False]]),
    step({"respond": [1, 200, False]}, send=[response(1, 200, "OK", end=False)]),
    step({"send_data": [1, "706f6e67", False]}, send=[data(1, b"pong")]),
    # The requester half-closes; the destination's direction stays open.
    step(recv(data(1, b"bye", end=True)), events=[["data", 1, 3, True]]),
    step({"send_data": [1, "6c617374", False]}, send=[data(1, b"last")]),
    step({"send_data": [1, "", True]}, send=[data(1, b"", end=True)],
         events=[["closed", 1, "finished"]]),
], "§10.9: the request's and the response's DATA are the two directions of the tunnel; "
   "bytes may precede the 2xx; END_STREAM is a half-close and the stream finishes when "
   "both directions have ended"))
S.append(script("connect_half_close_keeps_the_other_direction", "client", [
    step({"open": ["CONNECT", "db.internal:5432", False, None]},
         send=[request(1, "CONNECT", "db.internal:5432", end=False)]),
    step(recv(response(1, 200, "OK", end=False)), events=[["response", 1, 200, False]]),
    # The destination half-closes first...
    step(recv(data(1, b"done", end=True)), events=[["data", 1, 4, True]]),
    # ...and the requester still sends, then ends its direction.
    step({"send_data": [1, "6d6f7265", False]}, send=[data(1, b"more")]),
    step({"send_data": [1, "", True]}, send=[data(1, b"", end=True)],
         events=[["closed", 1, "finished"]]),
], "§10.9: after the destination's half-close the requester's direction stays open"))
S.append(script("slow_but_moving_is_not_stalled", "server", [
    step(recv(request(1, "GET", "/slow")), events=[["request", 1, "GET", "/slow", True]]),
    step({"respond": [1, 200, False]}, send=[response(1, 200, "OK", end=False)]),
    step({"send_data": [1, "616263646566", False]}, send=[data(1, b"ab")]),
    step({"advance_ms": 900}),
    step(recv(window_update(1, 2)), send=[data(1, b"cd")]),
    step({"advance_ms": 900}),
    # The queue is empty: the stream takes data again (it had none of the peer's credit
    # left since the first send_data, §10.3).
    step(recv(window_update(1, 2)), send=[data(1, b"ef")], events=[["writable", 1]]),
    step({"advance_ms": 5000}),
], "§10.8: queued DATA that keeps moving, however slowly, is not stalled",
    peer_initial_stream_window=2, stall_timeout_ms=1000))
# §10.8 stream churn: max_churn events per 10 s (default 200); the next one closes with 4007.
# Minimum lifetime 100 ms. The scripts use a limit of 8 to stay short.
MAX_CHURN = 8


def rapid_reset():
    steps = []
    for i in range(MAX_CHURN + 1):
        sid = 2 * i + 1
        steps.append(step(recv(request(sid, "POST", end=False)), events=[["request", sid, "POST", "/", False]]))
        if i < MAX_CHURN:
            steps.append(step(recv(reset(sid, "CANCEL")), events=[["closed", sid, "reset", CODES["CANCEL"], "peer"]]))
        else:
            steps.append(step(recv(reset(sid, "CANCEL")), close=4007))
    return steps


S.append(script("churn_rapid_reset", "server", rapid_reset(),
                "§10.8 rule 3: streams the peer cancels at once are churn; past the limit (8 here, 200 by "
                "default) in 10 s the connection closes with 4007", max_churn=MAX_CHURN))


def errors_whatever_the_age():
    n = MAX_CHURN + 1
    steps = [step(recv(request(2 * i + 1, "PUT", "/", [("content-length", "1")], end=False)),
                  events=[["request", 2 * i + 1, "PUT", "/", False]]) for i in range(n)]
    steps.append(step({"advance_ms": 1000}))
    for i in range(n):
        sid = 2 * i + 1
        if i < MAX_CHURN:
            steps.append(step(recv(data(sid, b"xy")), send=[reset(sid, "PROTOCOL_ERROR")],
                              events=[["closed", sid, "reset", CODES["PROTOCOL_ERROR"], "local"]]))
        else:
            steps.append(step(recv(data(sid, b"xy")), close=4007))
    return steps


S.append(script("churn_resets_for_peer_errors", "server", errors_whatever_the_age(),
                "§10.8 rule 2 (MadeYouReset): each RESET sent because of the peer's error is churn, "
                "however old the stream", max_churn=MAX_CHURN))


def cancel_after_min_lifetime():
    steps = []
    sid = 1
    for _ in range(3):
        first = sid
        for _ in range(4):
            steps.append(step(recv(request(sid, "POST", end=False)), events=[["request", sid, "POST", "/", False]]))
            sid += 2
        steps.append(step({"advance_ms": 100}))
        for c in range(first, sid, 2):
            steps.append(step(recv(reset(c, "CANCEL")), events=[["closed", c, "reset", CODES["CANCEL"], "peer"]]))
    return steps


S.append(script("churn_cancel_at_the_concurrency_limit", "server", cancel_after_min_lifetime(),
                "§10.8: a peer that cancels at most MAX_CONCURRENT_STREAMS streams, none younger than "
                "100 ms, is not churning: 12 cancellations in 300 ms, over the limit of 8, and no close",
                max_concurrent_streams=4, max_churn=MAX_CHURN))


def short_deadlines():
    n = MAX_CHURN + 1
    steps = [step(recv(request(2 * i + 1, "GET", "/", [("tether-timeout", "99")])),
                  events=[["request", 2 * i + 1, "GET", "/", True]]) for i in range(n)]
    steps.append(step({"advance_ms": 99}, send=[reset(2 * i + 1, "TIMEOUT") for i in range(n)],
                      events=[["closed", 2 * i + 1, "timed_out"] for i in range(n)]))
    steps.append(step(recv(request(2 * n + 1)), close=4007))
    return steps


S.append(script("churn_deadline_below_min_lifetime", "server", short_deadlines(),
                "§10.8 rule 3: a deadline under 100 ms that passes throws the stream away young; "
                "past the limit the connection closes with 4007 on the next frame", max_churn=MAX_CHURN))


def stream_closed_replies():
    steps = [step(recv(request(1001)), events=[["request", 1001, "GET", "/", True]]),
             step({"respond": [1001, 204, True]}, send=[response(1001, 204, "No Content")],
                  events=[["closed", 1001, "finished"]])]
    for i in range(MAX_CHURN + 1):
        sid = 2 * i + 1
        if i < MAX_CHURN:
            steps.append(step(recv(request(sid)), send=[reset(sid, "STREAM_CLOSED")]))
        else:
            steps.append(step(recv(request(sid)), close=4007))
    return steps


S.append(script("churn_stream_closed_replies", "server", stream_closed_replies(),
                "§10.8 rule 2: a request head on a closed stream earns STREAM_CLOSED and is churn",
                max_churn=MAX_CHURN))

S.append(script("release_never_sends_a_zero_increment", "server", [
    step(recv(request(1, "POST", "/", end=False)), events=[["request", 1, "POST", "/", False]]),
    step(recv(data(1, b"x")), events=[["data", 1, 1, False]]),
    # Half of a window of 1 is 0, but an increment of 0 is an error (§3.4.7): nothing is due.
    step({"release": [1, 0]}),
    step({"release": [1, 1]}, send=[window_update(1, 1)]),
], "§3.4.7, §10.3: a WINDOW_UPDATE is sent only for a positive increment",
    initial_stream_window=1))

doc = {
    "description": (
        "Scripted exchanges with one stream layer (spec/protocol.md §10). Each script creates a "
        "`role` endpoint (client opens odd stream ids, server even) with `config`: its own "
        "max_concurrent_streams, initial_stream_window, initial_connection_window, max_body_size "
        "(null = none), stall_timeout_ms, and what the peer announced (peer_*). Other limits are the "
        "defaults of §10.8. "
        "(null = none), max_churn and churn_min_lifetime_ms (the stream churn limit per 10 s and the "
        "minimum lifetime), and what the peer announced (peer_*). Other limits are the defaults of §10.8. "
        "Steps run in order; each does one thing: `recv` (a frame as hex), `open` ([method, path, "
        "end_stream, timeout_ms or null]), `respond` ([stream, status, end_stream]), `send_data` "
        "([stream, hex, end_stream]), `release` ([stream, bytes consumed]), `go_away` (code name), or "
        "`advance_ms`. After the step the endpoint must have sent exactly `send` (frames as hex, in "
        "order) and reported exactly `events`: [request, id, method, path, end_stream], [response, "
        "id, status, end_stream], [data, id, length, end_stream], [trailers, id], [writable, id] (the stream takes body data again after "
        "it had no room for more, §10.3), [goaway, "
        "last_stream_id, code], [closed, id, finished|refused|timed_out|connection_lost], or [closed, "
        "id, reset, code, local|peer]. With `close`, the step instead makes the endpoint close the "
        "connection with that code."),
    "generated_by": "spec/vectors/gen_streams.py",
    "scripts": S,
}
out = pathlib.Path(__file__).with_name("streams.json")
out.write_text(json.dumps(doc, indent=1) + "\n")
print(f"{out}: {len(S)} scripts")
