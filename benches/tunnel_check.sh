#!/usr/bin/env bash
# The CLI tunnel as a user first runs it, with tools we did not write: `tether server` and
# `tether client` as processes, `python3 -m http.server` (and nginx, when installed) as the
# upstream, curl as the caller. Each direction through the tunnel (server gateway to client
# upstream, and client gateway to server upstream), RUNS downloads of a SIZE_MIB file, every
# one checked by sha256 and timed; and a POST of the same size echoed back by a small python
# upstream. Every case runs twice: through the HTTP tunnel (`--gateway` / `--upstream`,
# labelled "http") and through the raw TCP tunnel (`--tcp-gateway` / `--tcp-upstream`,
# labelled "tcp": one CONNECT stream per TCP connection, spec §10.9), where curl speaks
# plain HTTP to the gateway port just as it would to the upstream itself.
# Reports every incomplete, wrong or slow (under MIN_MIBS MiB/s) transfer and exits 1 if
# there was one.
#
#   bash benches/tunnel_check.sh            # 64 MiB, 20 runs each way, >= 100 MiB/s
#   RUNS=3 SIZE_MIB=16 bash benches/tunnel_check.sh
#
# Needs: a release build of `tether` (built here if missing), python3, curl; nginx optional
# (`apt-get install nginx-light`). Only loopback addresses are used.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-20}
SIZE_MIB=${SIZE_MIB:-64}
MIN_MIBS=${MIN_MIBS:-100}
BASE=${BASE_PORT:-21100} # below the ephemeral range, so no outgoing connection holds one
TETHER=${TETHER:-target/release/tether}

[ -x "$TETHER" ] || cargo build --release -q -p tether-tokio --bin tether
case $("$TETHER" server --help) in
  *--tcp-gateway*) ;;
  *) echo "tunnel_check: $TETHER has no --tcp-gateway; rebuild it (cargo build --release -p tether-tokio --bin tether)" >&2; exit 2 ;;
esac
for tool in python3 curl sha256sum; do
  command -v "$tool" >/dev/null || { echo "tunnel_check: needs $tool" >&2; exit 2; }
done

# shellcheck source=benches/lib.sh
. benches/lib.sh

mkdir -p "$work/www"
head -c "$((SIZE_MIB << 20))" /dev/urandom >"$work/www/file"
want=$(sha256sum <"$work/www/file" | cut -d' ' -f1)
chmod -R a+rX "$work" # nginx's workers run unprivileged

# python3 -m http.server for GET; a few lines of http.server for POST echo.
(cd "$work/www" && exec python3 -m http.server "$((BASE + 1))" --bind 127.0.0.1 >/dev/null 2>&1) &
pids+=($!)
cat >"$work/echo.py" <<'EOF'
import http.server, sys
class Echo(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        n = int(self.headers["Content-Length"])
        self.send_response(200)
        self.send_header("Content-Length", str(n))
        self.end_headers()
        left = n
        while left:
            chunk = self.rfile.read(min(left, 1 << 16))
            if not chunk:
                break
            self.wfile.write(chunk)
            left -= len(chunk)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Echo).serve_forever()
EOF
python3 "$work/echo.py" "$((BASE + 2))" &
pids+=($!)

wait_port "$((BASE + 1))"
wait_port "$((BASE + 2))"
upstreams=("python:$((BASE + 1))")
if command -v nginx >/dev/null; then
  start_nginx nginx "$((BASE + 3))" "$work/www"
  upstreams+=("nginx:$((BASE + 3))")
else
  echo "tunnel_check: nginx not installed, python upstream only"
fi

fail=0
# One pair of tether processes per way, direction and upstream:
#   http server-gateway: curl -> server --gateway -> client --upstream -> upstream
#   http client-gateway: curl -> client --gateway -> server --upstream -> upstream
#   tcp server-gateway:  curl -> server --tcp-gateway -> client --tcp-upstream -> upstream
#   tcp client-gateway:  curl -> client --tcp-gateway -> server --tcp-upstream -> upstream
port=$((BASE + 10))
for up in "${upstreams[@]}"; do
  name=${up%%:*}
  upport=${up##*:}
  for direction in server-gateway client-gateway; do
    for kind in get post; do
      [ "$kind" = post ] && [ "$name" != python ] && continue
      if [ "$kind" = get ]; then dest="127.0.0.1:$upport"; else dest="127.0.0.1:$((BASE + 2))"; fi
      for way in http tcp; do
        listen=$port gw=$((port + 1)); port=$((port + 2))
        if [ "$way" = http ]; then
          gateway=(--gateway "127.0.0.1:$gw")
          upstream=(--upstream "http://$dest")
          # curl waits up to 1 s for a `100 Continue` before sending a large body; the HTTP
          # gateway answers it.
          expect=()
        else
          gateway=(--tcp-gateway "127.0.0.1:$gw=$dest")
          upstream=(--tcp-upstream "$dest")
          # Through raw TCP the upstream answers `Expect: 100-continue`, and http.server at
          # HTTP/1.0 never does: curl would wait out its 1 s timeout, as it would straight
          # to the echo server. Send the body at once.
          expect=(-H 'Expect:')
        fi
        if [ "$direction" = server-gateway ]; then
          "$TETHER" server --listen "127.0.0.1:$listen" "${gateway[@]}" >/dev/null 2>&1 &
          pids+=($!)
          wait_port "$listen"
          "$TETHER" client "ws://127.0.0.1:$listen/" "${upstream[@]}" >/dev/null 2>&1 &
          pids+=($!)
        else
          "$TETHER" server --listen "127.0.0.1:$listen" "${upstream[@]}" >/dev/null 2>&1 &
          pids+=($!)
          wait_port "$listen"
          "$TETHER" client "ws://127.0.0.1:$listen/" "${gateway[@]}" >/dev/null 2>&1 &
          pids+=($!)
        fi
        wait_port "$gw"
        # The client connects after its gateway listens: wait until a request goes through
        # (until then the HTTP gateway answers 503 and the TCP gateway closes: code 000).
        for _ in $(seq 100); do
          code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$gw/nothing-here" || true)
          [ "$code" != 503 ] && [ "$code" != 000 ] && break
          sleep 0.1
        done
        slowest=0
        total=0
        for run in $(seq "$RUNS"); do
          if [ "$kind" = get ]; then
            out=$(curl -s --max-time 60 -o "$work/got" -w '%{http_code} %{size_download} %{time_total}' "http://127.0.0.1:$gw/file") || true
          else
            out=$(curl -s --max-time 60 -o "$work/got" -w '%{http_code} %{size_download} %{time_total}' "${expect[@]}" \
              -H 'Content-Type: application/octet-stream' --data-binary "@$work/www/file" "http://127.0.0.1:$gw/echo") || true
          fi
          read -r status size secs <<<"${out:-000 0 0}"
          got=$(sha256sum <"$work/got" | cut -d' ' -f1)
          mibs=$(python3 -c "print(f'{$size / 1048576 / max($secs, 1e-9):.0f}')")
          if [ "$status" != 200 ] || [ "$got" != "$want" ] || [ "$mibs" -lt "$MIN_MIBS" ]; then
            echo "FAIL $name $way $direction $kind run $run: status $status, $size bytes in ${secs}s ($mibs MiB/s), sha256 ${got:0:12} (want ${want:0:12})"
            fail=1
          fi
          total=$((total + mibs))
          if [ "$slowest" = 0 ] || [ "$mibs" -lt "$slowest" ]; then slowest=$mibs; fi
        done
        echo "$name $way $direction $kind: $RUNS x $SIZE_MIB MiB, sha256 checked, mean $((total / RUNS)) MiB/s, slowest $slowest MiB/s"
        # Stop this pair before the next one.
        kill "${pids[-1]}" "${pids[-2]}" 2>/dev/null || true
        wait "${pids[-1]}" "${pids[-2]}" 2>/dev/null || true
        unset 'pids[-1]' 'pids[-1]'
      done
    done
  done
done
exit $fail
