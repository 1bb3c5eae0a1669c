#!/usr/bin/env bash
# Checks proto/examples/blocking_client.rs (a Tether client with no tokio) against a real
# `tether server`, both ways, on loopback:
#
#   1. request mode: `tether server --upstream` forwards GET /hello to a python HTTP server;
#      the example prints 200 and the file's bytes, and exits 0. It exits non-zero with a
#      clear message when nothing listens, when the endpoint does not speak WebSocket, and
#      (against a fake WebSocket server) when the HELLO is rejected with close code 4003,
#      when tether.v1 is not selected, when the handshake times out (10 s), and when the
#      request's stream is reset.
#   2. --serve: `tether server --gateway` carries curl's requests to the example, which
#      answers 200 with the path; a 2 MiB POST body (beyond the stream and connection
#      windows) still gets its answer (the example discards it; the machine releases); the
#      connection survives longer than the heartbeat timeout (1 s probes, 3 s timeout).
#   3. the server is stopped (SIGTERM: close 1001) and then killed (SIGKILL: transport
#      lost), each time restarted on the same ports: the example reconnects with back-off
#      and answers through the gateway again.
#
# Usage: proto/examples/blocking_client_check.sh [TETHER_BIN] [EXAMPLE_BIN]
# (defaults: target/debug/tether and target/debug/examples/blocking_client; build them with
# `cargo build -p tether-tokio --bin tether -p tether-proto --example blocking_client`).
# Needs python3 and curl. Every wait is bounded; every process started here is stopped on
# exit. Ports are picked below 32768 (outside Linux's ephemeral range).
set -euo pipefail
cd "$(dirname "$0")/../.."
tether=${1:-target/debug/tether}
client=${2:-target/debug/examples/blocking_client}
for bin in "$tether" "$client"; do
  [ -x "$bin" ] || { echo "missing $bin: build it first" >&2; exit 2; }
done

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  for log in "$work"/*.log; do echo "--- $log" >&2; tail -n 20 "$log" >&2; done
  exit 1
}

# A free loopback port in 20000-31999 (bound and released at once; nothing here reuses it).
free_port() {
  python3 -c '
import random, socket
for _ in range(200):
    port = random.randrange(20000, 32000)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        continue
    finally:
        s.close()
    print(port)
    break
else:
    raise SystemExit("no free port")'
}

# wait_for FILE PATTERN SECONDS: until FILE has a line matching PATTERN.
wait_for() {
  local deadline=$((SECONDS + $3))
  until grep -q -- "$2" "$1" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || fail "no '$2' in $1 after $3 s"
    sleep 0.1
  done
}

# count FILE PATTERN: lines of FILE matching PATTERN.
count() { grep -c -- "$2" "$1" 2>/dev/null || true; }

# through_gateway PATH [CURL ARGS...]: the body of a request through the gateway, which
# must be 200 and equal PATH.
through_gateway() {
  local path=$1 body
  shift
  body=$(curl -sS --max-time 20 -o - -w '\n%{http_code}' "$@" "http://127.0.0.1:$gw$path") ||
    fail "curl $path"
  [ "$body" = "$path"$'\n200' ] || fail "$path through the gateway gave: $body"
  echo "ok: gateway $path -> 200 $path"
}

up=$(free_port)
ws=$(free_port)
gw=$(free_port)
closed=$(free_port) # nothing listens there

# --- 1. request mode ---------------------------------------------------------------
mkdir "$work/www"
printf 'hello from upstream %s\nsecond line' "$RANDOM" >"$work/www/hello"
python3 -m http.server "$up" --bind 127.0.0.1 --directory "$work/www" >"$work/upstream.log" 2>&1 &
pids+=($!)
"$tether" server --listen "127.0.0.1:$ws" --upstream "http://127.0.0.1:$up" >"$work/server1.log" 2>&1 &
pids+=($!)
wait_for "$work/server1.log" '^listening' 10
deadline=$((SECONDS + 10))
until curl -s -o /dev/null "http://127.0.0.1:$up/hello"; do
  [ $SECONDS -lt $deadline ] || fail "the upstream HTTP server did not start"
  sleep 0.1
done

timeout 30 "$client" "ws://127.0.0.1:$ws/" /hello >"$work/out" 2>"$work/request.log" ||
  fail "request mode exited with $?"
{ printf '200\n'; cat "$work/www/hello"; } | cmp -s - "$work/out" ||
  fail "request mode printed: $(cat "$work/out")"
echo "ok: request mode GET /hello -> 200 and the upstream's bytes"

if timeout 30 "$client" "ws://127.0.0.1:$closed/" /hello >/dev/null 2>"$work/refused.log"; then
  fail "request mode exited 0 with nothing listening"
fi
grep -q '^error: cannot connect' "$work/refused.log" || fail "no clear message when refused"
echo "ok: request mode, nothing listening -> $(cat "$work/refused.log")"

if timeout 30 "$client" "ws://127.0.0.1:$up/" /hello >/dev/null 2>"$work/notws.log"; then
  fail "request mode exited 0 against a plain HTTP server"
fi
grep -q '^error: WebSocket upgrade' "$work/notws.log" || fail "no clear message for a non-WebSocket peer"
echo "ok: request mode, not a WebSocket server -> $(cat "$work/notws.log")"

kill "${pids[1]}" && wait "${pids[1]}" 2>/dev/null || true

# A fake WebSocket server for the failures the real one never shows. It upgrades (selecting
# tether.v1, except in mode nosub) and then: reject answers the HELLO with close 4003;
# silent never answers; reset completes the handshake with a WELCOME from
# spec/vectors/handshake.json and resets the first request's stream with CANCEL.
fake_ws=$(cat <<'EOF'
import base64, hashlib, socket, struct, sys
mode, port = sys.argv[1], int(sys.argv[2])
WELCOME = bytes.fromhex(
    "02000000000000000001101112131415461798191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f"
    "000a000100002710000200007530000300000000000400010000000500004000000600000064000700"
    "000080000800040000000900100000000a00000000")
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", port))
srv.listen(1)
print("ready", flush=True)
conn, _ = srv.accept()
conn.settimeout(30)
def read_exact(n):
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise SystemExit(0)
        data += chunk
    return data
def read_frame():  # (opcode, unmasked payload) of one client frame
    b0, b1 = read_exact(2)
    n = b1 & 0x7F
    if n >= 126:
        n = int.from_bytes(read_exact(2 if n == 126 else 8), "big")
    mask = read_exact(4)
    return b0 & 0x0F, bytes(c ^ mask[i % 4] for i, c in enumerate(read_exact(n)))
def send_frame(opcode, payload):
    n = len(payload)
    size = bytes([n]) if n < 126 else bytes([126]) + struct.pack("!H", n)
    conn.sendall(bytes([0x80 | opcode]) + size + payload)
req = b""
while b"\r\n\r\n" not in req:
    req += conn.recv(4096)
key = next(l.split(b":", 1)[1].strip() for l in req.split(b"\r\n")
           if l.lower().startswith(b"sec-websocket-key:"))
accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
sub = b"" if mode == "nosub" else b"Sec-WebSocket-Protocol: tether.v1\r\n"
conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
             b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n" + sub + b"\r\n")
if mode == "reject":
    read_frame()  # the HELLO
    send_frame(0x8, struct.pack("!H", 4003) + b"not you")
elif mode == "reset":
    read_frame()  # the HELLO
    send_frame(0x2, WELCOME)
    while True:  # the ACK, then the request's HEADERS (type 0x04)
        opcode, frame = read_frame()
        if opcode == 0x2 and frame[0] == 0x04:
            send_frame(0x2, bytes([0x06, 0, 0, 0]) + frame[4:8] + struct.pack("!I", 5))
            break
while True:  # until the client closes
    opcode, _ = read_frame()
    if opcode == 0x8:
        send_frame(0x8, b"")
        break
EOF
)
# expect_failure MODE SECONDS MESSAGE: the example fails against the fake server in MODE
# within SECONDS, saying MESSAGE.
expect_failure() {
  local port
  port=$(free_port)
  python3 -c "$fake_ws" "$1" "$port" >"$work/fake-$1.log" 2>&1 &
  pids+=($!)
  wait_for "$work/fake-$1.log" '^ready' 10
  if timeout "$2" "$client" "ws://127.0.0.1:$port/" /hello >/dev/null 2>"$work/$1.log"; then
    fail "request mode exited 0 against a server that does $1"
  fi
  grep -q -- "$3" "$work/$1.log" || fail "$1: no '$3' in: $(cat "$work/$1.log")"
  echo "ok: request mode, $1 -> $(tail -n 1 "$work/$1.log")"
}
expect_failure reject 20 '^error: connection failed: peer closed with 4003 REJECTED'
expect_failure nosub 20 '^error: the server did not select the tether.v1 subprotocol'
expect_failure silent 20 '^error: connection failed: handshake not complete after 10s'
expect_failure reset 20 '^error: the request was reset (CANCEL (stream cancelled), by Peer)'

# --- 2. --serve through the gateway ------------------------------------------------
start_server() { # start_server N: a gateway server on the fixed ports, logging to serverN.log
  "$tether" server --listen "127.0.0.1:$ws" --gateway "127.0.0.1:$gw" \
    --heartbeat-interval 1s --heartbeat-timeout 3s >"$work/server$1.log" 2>&1 &
  server=$!
  pids+=("$server")
  wait_for "$work/server$1.log" '^gateway' 10
}
start_server 2
"$client" "ws://127.0.0.1:$ws/" --serve 2>"$work/serve.log" &
pids+=($!)
wait_for "$work/server2.log" '^received' 20
through_gateway /some/path
body=$(curl -sS --max-time 20 "http://127.0.0.1:$gw/with/query?x=1")
[ "$body" = /with/query ] || fail "a query string: $body" # the body is the path alone
head -c $((2 * 1024 * 1024)) /dev/zero >"$work/upload"
through_gateway /upload/2MiB --data-binary "@$work/upload"
# Longer than the heartbeat timeout with no request: the heartbeat alone keeps it up.
sleep 4
through_gateway /after/heartbeat
[ "$(count "$work/serve.log" '^connected')" = 1 ] || fail "the example reconnected unexpectedly"
[ "$(count "$work/server2.log" '^failure\|^closed')" = 0 ] || fail "the connection ended"
echo "ok: one connection through 4 s of heartbeats (1 s interval, 3 s timeout)"

# --- 3. server restarts --------------------------------------------------------------
kill -TERM "$server" # graceful: the example sees close 1001 and reconnects
wait "$server" 2>/dev/null || true
start_server 3
wait_for "$work/server3.log" '^received' 30
through_gateway /after/restart
kill -KILL "$server" # abrupt: the transport is lost without a close frame
wait "$server" 2>/dev/null || true
start_server 4
wait_for "$work/server4.log" '^received' 30
through_gateway /after/kill
echo "ok: the example reconnected after SIGTERM and after SIGKILL of the server"
echo "--- example's log:"
cat "$work/serve.log"
