#!/usr/bin/env bash
# One large body over a long path: loopback with a delay, as a device on the far side of
# the world sees it. `delay_proxy` (benches/src/bin/delay_proxy.rs) holds every byte of the
# Tether connection DELAY_MS each way (round trip 2 x DELAY_MS) with at most
# IN_FLIGHT_KIB on the way per direction. Through it, curl fetches a SIZE_MIB file:
#
#   tether grown:  curl -> server --tcp-gateway -> [delay] -> client --tcp-upstream -> upstream
#                  with the default windows, which grow (spec/protocol.md §10.3.1)
#   tether fixed:  the same with --max-window 256KiB on both ends: windows keep their initial
#                  size (256 KiB per stream, 1 MiB per connection), as before §10.3.1
#   http1 direct:  curl -> [delay] -> upstream, one TCP connection over the same path
#
# The body crosses the path from the client to the server, so the server's receive windows
# are the ones that matter. Each mode runs RUNS times, alternating; every body is checked
# with sha256; the median rate of each mode is printed, and one JSON line at the end.
#
# Needs: release builds of `tether` and `delay_proxy` (built here if missing), python3,
# curl; nginx is the upstream when installed, else `python3 -m http.server`.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
SIZE_MIB=${SIZE_MIB:-64}
DELAY_MS=${DELAY_MS:-10}
IN_FLIGHT_KIB=${IN_FLIGHT_KIB:-16384}
BASE=${BASE_PORT:-21300}
TETHER=${TETHER:-target/release/tether}
PROXY=${PROXY:-target/release/delay_proxy}

[ -x "$TETHER" ] || cargo build --release -q -p tether-tokio --bin tether
[ -x "$PROXY" ] || cargo build --release -q -p tether-benches --bin delay_proxy
case $("$TETHER" server --help) in
  *--max-window*) ;;
  *) echo "long_path: $TETHER has no --max-window; rebuild it" >&2; exit 2 ;;
esac
for tool in python3 curl sha256sum; do
  command -v "$tool" >/dev/null || { echo "long_path: needs $tool" >&2; exit 2; }
done

# shellcheck source=benches/lib.sh
. benches/lib.sh

mkdir -p "$work/www"
head -c "$((SIZE_MIB << 20))" /dev/urandom >"$work/www/file"
want=$(sha256sum <"$work/www/file" | cut -d' ' -f1)
chmod -R a+rX "$work"
up=$((BASE + 1))
if command -v nginx >/dev/null; then
  start_nginx nginx "$up" "$work/www"
  upstream=nginx
else
  (cd "$work/www" && exec python3 -m http.server "$up" --bind 127.0.0.1 >/dev/null 2>&1) &
  pids+=($!)
  wait_port "$up"
  upstream=python
fi

delay=(--delay-ms "$DELAY_MS" --in-flight-kib "$IN_FLIGHT_KIB")
# http1 direct: curl -> proxy -> upstream.
"$PROXY" --listen "127.0.0.1:$((BASE + 2))" --target "127.0.0.1:$up" "${delay[@]}" &
pids+=($!)
wait_port "$((BASE + 2))"

# One server/client pair per Tether mode; the client dials the server through a proxy.
port=$((BASE + 10))
declare -A gateway
for mode in grown fixed; do
  listen=$port relay=$((port + 1)) gw=$((port + 2)); port=$((port + 3))
  extra=()
  [ "$mode" = fixed ] && extra=(--max-window 256KiB)
  "$TETHER" server --listen "127.0.0.1:$listen" --tcp-gateway "127.0.0.1:$gw=127.0.0.1:$up" \
    "${extra[@]}" >/dev/null 2>&1 &
  pids+=($!)
  wait_port "$listen"
  "$PROXY" --listen "127.0.0.1:$relay" --target "127.0.0.1:$listen" "${delay[@]}" &
  pids+=($!)
  wait_port "$relay"
  "$TETHER" client "ws://127.0.0.1:$relay/" --tcp-upstream "127.0.0.1:$up" "${extra[@]}" \
    >/dev/null 2>&1 &
  pids+=($!)
  wait_port "$gw"
  gateway[$mode]=$gw
  # The client connects after the gateway listens: wait until a fetch goes through.
  for _ in $(seq 100); do
    curl -s -o /dev/null --max-time 5 "http://127.0.0.1:$gw/file" -r 0-0 && break
    sleep 0.2
  done
done
gateway[direct]=$((BASE + 2))

declare -A rates
echo "long_path: ${SIZE_MIB} MiB, round trip $((2 * DELAY_MS)) ms, at most ${IN_FLIGHT_KIB} KiB in flight, upstream $upstream"
for run in $(seq "$RUNS"); do
  for mode in grown fixed direct; do
    out=$(curl -s --max-time 600 -o "$work/got" -w '%{http_code} %{size_download} %{time_total}' \
      "http://127.0.0.1:${gateway[$mode]}/file")
    read -r code size secs <<<"$out"
    got=$(sha256sum <"$work/got" | cut -d' ' -f1)
    if [ "$code" != 200 ] || [ "$got" != "$want" ]; then
      echo "long_path: $mode run $run: HTTP $code, $size bytes, body $( [ "$got" = "$want" ] && echo intact || echo DIFFERENT)" >&2
      exit 1
    fi
    mibs=$(python3 -c "print(f'{$size / 1048576 / $secs:.1f}')")
    echo "  run $run $mode: $mibs MiB/s (${secs}s)"
    rates[$mode]="${rates[$mode]:-} $mibs"
  done
done
python3 - "${rates[grown]}" "${rates[fixed]}" "${rates[direct]}" "$DELAY_MS" "$SIZE_MIB" <<'PY'
import json, statistics, sys
grown, fixed, direct = ([float(x) for x in a.split()] for a in sys.argv[1:4])
m = {k: statistics.median(v) for k, v in (("grown", grown), ("fixed", fixed), ("direct", direct))}
print(f"medians: tether grown {m['grown']:.1f} MiB/s, tether fixed {m['fixed']:.1f}, http1 direct {m['direct']:.1f}")
print(f"grown / fixed {m['grown'] / m['fixed']:.2f}x, grown / http1 {m['grown'] / m['direct']:.2f}x")
print(json.dumps({"rtt_ms": 2 * int(sys.argv[4]), "size_mib": int(sys.argv[5]),
                  "grown_mibps": m["grown"], "fixed_mibps": m["fixed"], "http1_mibps": m["direct"],
                  "grown_vs_fixed": m["grown"] / m["fixed"], "grown_vs_http1": m["grown"] / m["direct"]}))
PY
