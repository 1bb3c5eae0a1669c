#!/usr/bin/env python3
"""Builds the committed seed corpora from spec/vectors/frames.json.

frame_decode gets every vector message; http_head gets the payload of every HEADERS
vector (the head text alone); ws_read gets a few WebSocket streams (large binary frames
both sides, control frames, a fragmented message, frames tungstenite refuses). Run:
python3 fuzz/seed_corpus.py
"""
import json
import pathlib

root = pathlib.Path(__file__).resolve().parent
doc = json.loads((root.parent / "spec/vectors/frames.json").read_text())
targets = {"frame_decode": {}, "http_head": {}, "ws_read": {}}
for v in doc["valid"] + doc["invalid"]:
    msg = bytes.fromhex(v["hex"])
    targets["frame_decode"][v["name"]] = msg
    if len(msg) >= 8 and msg[0] == 0x04:
        targets["http_head"][v["name"]] = msg[8:]


def ws_frame(first, payload, key=None):
    """One WebSocket frame (RFC 6455 §5.2), masked with `key` if given."""
    n = len(payload)
    m = 0x80 if key else 0
    if n < 126:
        head = bytes([first, m | n])
    elif n <= 0xFFFF:
        head = bytes([first, m | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([first, m | 127]) + n.to_bytes(8, "big")
    if key:
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        head += key
    return head + payload


def body(n):
    return bytes((i * 7) % 251 for i in range(n))


K = bytes([1, 2, 3, 4])
close = bytes([0x03, 0xE8])
# Byte 0: bit 0 the side (0 server), bits 1-3 the socket's largest read; byte 1 the number
# of bursts, then their size bytes; then the stream (runtime-tokio/src/fuzzing.rs).
targets["ws_read"] = {
    "server-large-frames": bytes([3 << 1, 0]) + ws_frame(0x82, body(20000), K)
    + ws_frame(0x89, b"p", K) + ws_frame(0x82, body(100), K) + ws_frame(0x82, body(17000), K)
    + ws_frame(0x88, close, K),
    "client-large-frames": bytes([1 | 7 << 1, 3, 8, 4, 14]) + ws_frame(0x82, body(40000))
    + ws_frame(0x82, body(17000)) + ws_frame(0x81, b"text") + ws_frame(0x88, close),
    "server-fragmented": bytes([6 << 1, 2, 2, 12]) + ws_frame(0x82, body(2000), K)
    + ws_frame(0x02, body(300), K) + ws_frame(0x89, b"", K) + ws_frame(0x80, body(300), K)
    + ws_frame(0x82, body(16400), K),
    "server-refused-after-large": bytes([4 << 1, 0]) + ws_frame(0x82, body(30000), K)
    + ws_frame(0xC2, body(20000), K),
    "client-masked-from-server": bytes([1 | 3 << 1, 0]) + ws_frame(0x82, body(5000))
    + ws_frame(0x82, body(20000), K),
}
for target, seeds in targets.items():
    d = root / "corpus" / target
    d.mkdir(parents=True, exist_ok=True)
    for old in d.glob("seed-*"):
        old.unlink()
    for name, data in seeds.items():
        (d / f"seed-{name}").write_bytes(data)
    print(f"{d}: {len(seeds)} seeds")
