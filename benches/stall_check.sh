#!/usr/bin/env bash
# Looks for lost wake-ups in the CLI tunnels: a connection task that sleeps while its
# WebSocket is readable stops every stream on the connection for seconds, until some other
# input wakes it (benches/RESULTS.md, "A stall seen on the way" and "Empty reads skipped").
# With tools we did not write: nginx as the upstream, wrk as the load generator.
#
#   wrk -> tether server --gateway / --tcp-gateway -> (one WebSocket) -> tether client
#          --upstream / --tcp-upstream -> nginx
#
# Each iteration runs wrk with 64 connections of small requests for 1 s, then 1 MiB bodies
# over 8 connections for 3 s through the HTTP tunnel and then through the TCP tunnel (the
# load under which the stall of the ninth pass showed in about one run in 25). A 1 MiB run
# that completes fewer than a tenth of the median requests of its tunnel is counted as a
# stall. Prints each tunnel's median and lowest 1 MiB run; exits 1 on a stall or a wrk error.
#
# Env: ITER (default 25), TETHER_BIN (default: built in release), NGINX (/usr/sbin/nginx).
# Needs nginx and wrk (`apt-get install -y wrk`).
set -euo pipefail
cd "$(dirname "$0")/.."

ITER=${ITER:-25}
NGINX=${NGINX:-/usr/sbin/nginx}
if [ -z "${TETHER_BIN:-}" ]; then
  cargo build --release -q -p tether-tokio --bin tether
  TETHER=target/release/tether
else
  TETHER=$TETHER_BIN
fi
for tool in "$NGINX" wrk; do
  command -v "$tool" >/dev/null || { echo "stall_check: $tool is missing" >&2; exit 2; }
done

# shellcheck source=benches/lib.sh
. benches/lib.sh
read -r P_NGINX P_LISTEN P_GW P_TCP < <(free_ports 4)

mkdir -p "$work/www"
printf '{"ok":true}\n' >"$work/www/small"
head -c 1048576 /dev/urandom >"$work/www/mib1"
start_nginx "$NGINX" "$P_NGINX" "$work/www"
"$TETHER" server --listen "127.0.0.1:$P_LISTEN" --gateway "127.0.0.1:$P_GW" \
  --tcp-gateway "127.0.0.1:$P_TCP=127.0.0.1:$P_NGINX" >"$work/server.log" 2>&1 &
pids+=($!)
wait_port "$P_LISTEN"
"$TETHER" client "ws://127.0.0.1:$P_LISTEN/" --upstream "http://127.0.0.1:$P_NGINX" \
  --tcp-upstream "127.0.0.1:$P_NGINX" >"$work/client.log" 2>&1 &
pids+=($!)
wait_port "$P_GW"
wait_port "$P_TCP"
sleep 0.5

errors=0
# `wrk` prints "N requests in ..." and, on errors, "Socket errors" / "Non-2xx".
run() {
  local out
  out=$(wrk "$@" 2>&1)
  if grep -qE "Socket errors|Non-2xx" <<<"$out"; then
    errors=$((errors + 1))
    echo "wrk $*: $(grep -E 'Socket errors|Non-2xx' <<<"$out")" >&2
  fi
  awk '/requests in/ {print $1}' <<<"$out"
}
: >"$work/http" && : >"$work/tcp"
for i in $(seq "$ITER"); do
  run -t1 -c64 -d1s "http://127.0.0.1:$P_GW/small" >/dev/null
  run -t2 -c8 -d3s "http://127.0.0.1:$P_GW/mib1" >>"$work/http"
  run -t1 -c64 -d1s "http://127.0.0.1:$P_TCP/small" >/dev/null
  run -t2 -c8 -d3s "http://127.0.0.1:$P_TCP/mib1" >>"$work/tcp"
done

stalls=0
for tunnel in http tcp; do
  sort -n "$work/$tunnel" >"$work/$tunnel.sorted"
  n=$(wc -l <"$work/$tunnel.sorted")
  median=$(sed -n "$(((n + 1) / 2))p" "$work/$tunnel.sorted")
  lowest=$(head -1 "$work/$tunnel.sorted")
  below=$(awk -v m="$median" '$1 * 10 < m' "$work/$tunnel.sorted" | wc -l)
  stalls=$((stalls + below))
  echo "$tunnel tunnel, 1 MiB x 8 connections, $n runs of 3 s: median $median requests, lowest $lowest, stalled $below"
done
echo "wrk errors: $errors"
[ "$stalls" -eq 0 ] && [ "$errors" -eq 0 ]
