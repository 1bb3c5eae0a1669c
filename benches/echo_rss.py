#!/usr/bin/env python3
"""Memory of `tether echo-server` under clients that send large messages and never read.

Usage: python3 benches/echo_rss.py TETHER_BINARY CLIENTS [extra echo-server flags...]

Starts the echo server on a free loopback port, opens CLIENTS raw WebSocket connections and
has each send up to three 16 MiB binary messages (one frame each) without ever reading what
comes back. Samples the server's RSS every 50 ms for 8 s (peak), then once more 4 s later,
and counts the clients the server closed with 1013 (read at the end, from what the socket
holds). Issue 9, item 9; numbers in benches/RESULTS.md.
"""
import socket
import struct
import subprocess
import sys
import time

binary, clients = sys.argv[1], int(sys.argv[2])
server = subprocess.Popen(
    [binary, "echo-server", "--listen", "127.0.0.1:0"] + sys.argv[3:],
    stdout=subprocess.PIPE,
    text=True,
)
host, port = server.stdout.readline().strip().split("ws://")[1].rstrip("/").split(":")
port = int(port)


def rss_mib():
    with open(f"/proc/{server.pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return 0.0


baseline = rss_mib()
SIZE = 16 * 1024 * 1024 - 64
message = bytes([0x82, 0x80 | 127]) + struct.pack(">Q", SIZE) + bytes(4) + b"x" * SIZE
socks = []
for _ in range(clients):
    s = socket.create_connection((host, port))
    s.sendall(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    s.setblocking(False)
    socks.append(s)

pending = [memoryview(message) for _ in socks]
sent = [0] * clients
peak = baseline
end = time.time() + 8
next_sample = 0.0
while time.time() < end:
    progress = False
    for i, s in enumerate(socks):
        if pending[i] is None:
            continue
        try:
            n = s.send(pending[i][: 1 << 20])
            pending[i] = pending[i][n:]
            progress |= n > 0
            if not pending[i]:
                sent[i] += 1
                pending[i] = memoryview(message) if sent[i] < 3 else None
        except BlockingIOError:
            pass
        except OSError:
            pending[i] = None
    if time.time() >= next_sample:
        peak = max(peak, rss_mib())
        next_sample = time.time() + 0.05
    if not progress:
        time.sleep(0.01)
time.sleep(4)
late = rss_mib()

closed_1013 = 0
for s in socks:
    data = b""
    try:
        while True:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            data += chunk
    except (BlockingIOError, OSError):
        pass
    # A close frame from the server: 0x88, length, then the code.
    at = data.find(b"\x88")
    if at >= 0 and len(data) >= at + 4 and data[at + 2 : at + 4] == struct.pack(">H", 1013):
        closed_1013 += 1
alive = server.poll() is None
server.terminate()
server.wait()
print(
    f"clients={clients} baseline={baseline:.0f}MiB peak_8s={peak:.0f}MiB "
    f"per_client={(peak - baseline) / clients:.1f}MiB at_12s={late:.0f}MiB "
    f"closed_1013={closed_1013} alive={alive}"
)
