#!/usr/bin/env bash
# The CLI tunnel against rathole (issue 11), in one run, with tools we did not write: nginx
# as the upstream, wrk as the load generator, and five ways to reach nginx:
#   tether:  wrk -> tether server --gateway -> (one WebSocket) -> tether client --upstream -> nginx
#   tether-tcp: wrk -> tether server --tcp-gateway -> (the same WebSocket, one CONNECT stream
#            per TCP connection, spec §10.9) -> tether client --tcp-upstream -> nginx
#   rathole: wrk -> rathole server service port -> (TCP data channel) -> rathole client -> nginx
#   floor:   wrk -> ws_relay_floor gateway -> (one WebSocket, one visitor at a time, no
#            header: benches/src/bin/ws_relay_floor.rs) -> ws_relay_floor upstream -> nginx
#   direct:  wrk -> nginx (the ceiling: no tunnel)
# `floor` is the least a TCP tunnel over tokio-tungstenite (configured with Tether's read
# and write buffers) can do per byte: how close a tunnel on this WebSocket stack can come
# to rathole at one connection, and what of the gap is Tether's own work. It serves one
# visitor at a time, so it is measured only in the case small_c1.
# Cases: a 60-byte file at 64 connections and at 1 connection, and a 1 MiB file at 1 and at 8
# connections. Each round runs every case against every target (floor: small_c1 only),
# Tether and rathole alternating which goes first; the table gives medians over ROUNDS
# rounds. Before the rounds, one response of each size is fetched through each tunnel with
# curl and its sha256 compared: a tunnel that does not answer correctly exits 1. The last
# line printed is one JSON object with the ratios (Tether / rathole; `mib1_vs_rathole` is
# the 1 MiB case at 8 connections; `floor_small_c1_vs_rathole` and `tcp_small_c1_vs_floor`)
# and the absolute medians. Exits 1 when wrk counted an error.
#
#   bash benches/tunnel_vs_rathole.sh                 # 5 rounds of 10 s runs, about 13 min
#   ROUNDS=3 DURATION=5 bash benches/tunnel_vs_rathole.sh
#   STRACE=1 bash benches/tunnel_vs_rathole.sh        # then also CPU time, context switches
#                                                     # and syscalls per request (strace -c)
#
# Needs: nginx (/usr/sbin/nginx), wrk (`apt-get install -y wrk`, tried here when missing),
# curl, python3, sha256sum; cargo to install rathole, without its TLS, Noise and WebSocket
# transports (`--no-default-features --features server,client`: plain TCP only), into
# TOOLS (default target/bench-tools; skipped when the binary is there, or give RATHOLE_BIN).
# `tether` is built in release unless TETHER_BIN is given, `ws_relay_floor` unless FLOOR_BIN
# is given. Only loopback addresses are used.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-10} # seconds per wrk run
STRACE=${STRACE:-0}      # 1: after the rounds, CPU and syscalls per request (small, 1 connection)
TOOLS=${TOOLS:-target/bench-tools}
RATHOLE=${RATHOLE_BIN:-$TOOLS/bin/rathole}
NGINX=${NGINX:-/usr/sbin/nginx}

say() { echo "tunnel_vs_rathole: $*" >&2; }

if [ -z "${TETHER_BIN:-}" ]; then
  cargo build --release -q -p tether-tokio --bin tether
  TETHER=target/release/tether
else
  TETHER=$TETHER_BIN
fi
if [ -z "${FLOOR_BIN:-}" ]; then
  cargo build --release -q -p tether-benches --bin ws_relay_floor
  FLOOR=target/release/ws_relay_floor
else
  FLOOR=$FLOOR_BIN
fi
if [ ! -x "$RATHOLE" ]; then
  say "installing rathole into $TOOLS (plain TCP: --no-default-features --features server,client)"
  cargo install rathole --locked --no-default-features --features server,client --root "$TOOLS" ||
    cargo install rathole --no-default-features --features server,client --root "$TOOLS"
fi
if ! command -v wrk >/dev/null; then
  say "installing wrk with apt-get"
  apt-get install -y wrk >/dev/null || { apt-get update -qq && apt-get install -y wrk >/dev/null; }
fi
for tool in "$NGINX" wrk curl python3 sha256sum; do
  command -v "$tool" >/dev/null || { say "needs $tool"; exit 2; }
done
[ "$STRACE" = 1 ] && { command -v strace >/dev/null || { say "STRACE=1 needs strace"; exit 2; }; }

# shellcheck source=benches/lib.sh
. benches/lib.sh
read -r P_NGINX P_TLISTEN P_TGW P_RCTL P_RSVC P_TTCP P_FWS P_FGW < <(free_ports 8)

# The files: /small is 60 bytes, like rest_load's `GET /small`; /mib1 is 1 MiB of random bytes.
mkdir -p "$work/www"
printf '{"ok":true,"pad":"0123456789abcdef0123456789abcdef0123456"}\n' >"$work/www/small"
head -c 1048576 /dev/urandom >"$work/www/mib1"
start_nginx "$NGINX" "$P_NGINX" "$work/www"

# Tether: the server's gateway carries requests to the client, whose upstream is nginx.
"$TETHER" server --listen "127.0.0.1:$P_TLISTEN" --gateway "127.0.0.1:$P_TGW" \
  --tcp-gateway "127.0.0.1:$P_TTCP=127.0.0.1:$P_NGINX" >"$work/tether-server.log" 2>&1 &
pids+=($!)
tether_server=$!
wait_port "$P_TLISTEN"
"$TETHER" client "ws://127.0.0.1:$P_TLISTEN/" --upstream "http://127.0.0.1:$P_NGINX" \
  --tcp-upstream "127.0.0.1:$P_NGINX" >"$work/tether-client.log" 2>&1 &
pids+=($!)
tether_client=$!

# rathole: one TCP service; the server exposes it on P_RSVC, the client forwards to nginx.
token=$(head -c 16 /dev/urandom | sha256sum | cut -c1-32)
cat >"$work/rathole-server.toml" <<EOF
[server]
bind_addr = "127.0.0.1:$P_RCTL"
default_token = "$token"
[server.services.web]
bind_addr = "127.0.0.1:$P_RSVC"
EOF
cat >"$work/rathole-client.toml" <<EOF
[client]
remote_addr = "127.0.0.1:$P_RCTL"
default_token = "$token"
[client.services.web]
local_addr = "127.0.0.1:$P_NGINX"
EOF
"$RATHOLE" "$work/rathole-server.toml" >"$work/rathole-server.log" 2>&1 &
pids+=($!)
rathole_server=$!
wait_port "$P_RCTL"
"$RATHOLE" "$work/rathole-client.toml" >"$work/rathole-client.log" 2>&1 &
pids+=($!)
rathole_client=$!

# The floor: its gateway takes one WebSocket on P_FWS and visitors on P_FGW; its upstream
# dials that WebSocket and opens one connection to nginx per visitor.
"$FLOOR" gateway --listen "127.0.0.1:$P_FGW" --ws-listen "127.0.0.1:$P_FWS" >"$work/floor-gateway.log" 2>&1 &
pids+=($!)
floor_gateway=$!
wait_port "$P_FWS"
"$FLOOR" upstream --ws "ws://127.0.0.1:$P_FWS/" --connect "127.0.0.1:$P_NGINX" >"$work/floor-upstream.log" 2>&1 &
pids+=($!)
floor_upstream=$!
wait_port "$P_TGW"
wait_port "$P_TTCP"
wait_port "$P_RSVC"
wait_port "$P_FGW"

# One response of each size through each way, compared byte for byte (sha256). A tunnel
# whose client has not connected yet answers 503 (Tether) or closes (rathole): retry a while.
fetch_ok() { # url file
  local want got code
  want=$(sha256sum <"$work/www/$2" | cut -d' ' -f1)
  for _ in $(seq 100); do
    code=$(curl -s --max-time 10 -o "$work/got" -w '%{http_code}' "$1/$2" || true)
    if [ "$code" = 200 ]; then
      got=$(sha256sum <"$work/got" | cut -d' ' -f1)
      [ "$got" = "$want" ] && return 0
      say "$1/$2: 200 but sha256 ${got:0:12}, want ${want:0:12}"
      return 1
    fi
    sleep 0.1
  done
  say "$1/$2: no 200 (last status $code)"
  return 1
}
show_logs() { for log in "$work"/*.log "$work/nginx/error.log"; do say "--- $log"; tail -5 "$log" >&2 || true; done; }
declare -A URL=(
  [tether]="http://127.0.0.1:$P_TGW"
  [tether-tcp]="http://127.0.0.1:$P_TTCP"
  [rathole]="http://127.0.0.1:$P_RSVC"
  [floor]="http://127.0.0.1:$P_FGW"
  [direct]="http://127.0.0.1:$P_NGINX"
)
for target in direct tether tether-tcp rathole floor; do
  for file in small mib1; do
    fetch_ok "${URL[$target]}" "$file" || {
      show_logs
      exit 1
    }
  done
done
say "sha256 of /small and /mib1 checked through tether, tether-tcp, rathole, floor and direct"

# wrk prints one machine-readable line at the end: requests, bytes, duration (us), the
# error counts, latency p50 and p99 (us).
cat >"$work/report.lua" <<'EOF'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %.0f %.0f\n", summary.requests, summary.bytes,
    summary.duration, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
EOF

# case: name, file, connections, wrk threads
CASES=("small_c64 small 64 2" "small_c1 small 1 1" "mib1_c1 mib1 1 1" "mib1_c8 mib1 8 2")
run_wrk() { # case target round seconds -> appends to results
  local name file conns threads line
  read -r name file conns threads <<<"$1"
  # The floor serves one visitor at a time: it is measured at small_c1 only.
  [ "$2" = floor ] && [ "$name" != small_c1 ] && return 0
  line=$(wrk -t"$threads" -c"$conns" -d"${4}s" --timeout 10s -s "$work/report.lua" "${URL[$2]}/$file" | grep '^RESULT') || {
    say "wrk failed: $1 $2"
    show_logs
    return 1
  }
  echo "$name $2 $3 ${line#RESULT }" >>"$work/results"
}

load() { cut -d' ' -f1-3 /proc/loadavg; }
{
  echo "# date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "# nproc: $(nproc); load average before: $(load)"
  echo "# tether: $("$TETHER" --version 2>&1 | head -1)"
  echo "# floor: $FLOOR ($(stat -c '%y' "$FLOOR" | cut -d. -f1))"
  echo "# rathole: $("$RATHOLE" --version 2>&1 | awk '/Build Version|cargo Features|cargo Profile/ { $1 = $1; printf "%s; ", $0 }')"
  echo "# nginx: $("$NGINX" -v 2>&1 | head -1)"
  echo "# wrk: $(wrk -v 2>&1 | head -1)"
  echo "# rounds: $ROUNDS x ${DURATION}s per case and target"
} | tee "$work/meta" >&2

# Warm-up: a short run of each case each way (connections, pools, page cache).
for c in "${CASES[@]}"; do
  for target in tether tether-tcp floor rathole direct; do run_wrk "$c" "$target" 0 2; done
done
: >"$work/results"
for round in $(seq "$ROUNDS"); do
  if [ $((round % 2)) = 1 ]; then order=(tether tether-tcp floor rathole direct); else order=(rathole floor tether-tcp tether direct); fi
  for c in "${CASES[@]}"; do
    for target in "${order[@]}"; do run_wrk "$c" "$target" "$round" "$DURATION"; done
  done
  say "round $round/$ROUNDS done, load average $(load)"
done
echo "# load average after: $(load)" | tee -a "$work/meta" >&2

# Where the time goes, small file at 1 connection, for each tunnel's two processes: CPU
# time and context switches per request (from /proc, no tracer), then syscalls per request
# under strace -c -f (which slows them: read only its counts, not its rates).
user_ticks() { awk '{ print $14 }' "/proc/$1/stat"; }
sys_ticks() { awk '{ print $15 }' "/proc/$1/stat"; }
procs_of() { # target -> "server:PID client:PID"
  case $1 in
    rathole) echo "server:$rathole_server client:$rathole_client" ;;
    floor) echo "server:$floor_gateway client:$floor_upstream" ;;
    *) echo "server:$tether_server client:$tether_client" ;;
  esac
}
ctx_switches() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/ctxt_switches/ { n += $2 } END { print n }'; }
if [ "$STRACE" = 1 ]; then
  hz=$(getconf CLK_TCK)
  for target in tether tether-tcp rathole floor; do
    procs=$(procs_of "$target")
    declare -A u0=() s0=() c0=()
    for p in $procs; do u0[$p]=$(user_ticks "${p##*:}"); s0[$p]=$(sys_ticks "${p##*:}"); c0[$p]=$(ctx_switches "${p##*:}"); done
    line=$(wrk -t1 -c1 -d5s -s "$work/report.lua" "${URL[$target]}/small" | grep '^RESULT')
    read -r _ reqs _ <<<"$line"
    for p in $procs; do
      python3 -c "import sys; u, s, c, r, hz = map(int, sys.argv[1:]); us = lambda t: t / hz * 1e6 / r; print(f'== cpu $target ${p%%:*}: {us(u + s):.1f} us CPU ({us(u):.1f} user + {us(s):.1f} system) and {c / r:.2f} context switches per request ({r} requests, small, 1 connection)')" \
        "$(($(user_ticks "${p##*:}") - ${u0[$p]}))" "$(($(sys_ticks "${p##*:}") - ${s0[$p]}))" \
        "$(($(ctx_switches "${p##*:}") - ${c0[$p]}))" "$reqs" "$hz"
    done
  done
  for target in tether tether-tcp rathole floor; do
    procs=$(procs_of "$target")
    spids=()
    for p in $procs; do
      strace -c -f -o "$work/strace-$target-${p%%:*}" -p "${p##*:}" 2>/dev/null &
      spids+=($!)
    done
    sleep 1
    line=$(wrk -t1 -c1 -d5s -s "$work/report.lua" "${URL[$target]}/small" | grep '^RESULT')
    kill -INT "${spids[@]}" 2>/dev/null || true
    wait "${spids[@]}" 2>/dev/null || true
    read -r _ reqs _ <<<"$line"
    for p in $procs; do
      f="$work/strace-$target-${p%%:*}"
      echo "== strace $target ${p%%:*}: $reqs requests (small, 1 connection)"
      python3 - "$f" "$reqs" <<'EOF'
import sys
path, reqs = sys.argv[1], int(sys.argv[2])
rows = []
for line in open(path):
    parts = line.split()
    if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] not in ("total",):
        calls = int(parts[3])
        rows.append((calls, parts[-1]))
rows.sort(reverse=True)
total = sum(c for c, _ in rows)
print(f"   {total / max(reqs, 1):6.2f} syscalls per request in all")
for calls, name in rows[:8]:
    print(f"   {calls / max(reqs, 1):6.2f} {name}")
EOF
    done
  done
fi

python3 - "$work/results" "$work/meta" <<'EOF'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    case, target, rnd, reqs, nbytes, dur_us, errs, p50, p99 = line.split()
    rows.setdefault((case, target), []).append(
        dict(rps=int(reqs) / (int(dur_us) / 1e6), errs=int(errs), p50=float(p50), p99=float(p99),
             per_req=int(nbytes) / max(int(reqs), 1)))
size = {"small": 60, "mib1": 1 << 20}
cases = ["small_c64", "small_c1", "mib1_c1", "mib1_c8"]
med = {}
print()
print("| case | way | median req/s | median MiB/s (body) | min–max req/s | median p50 / p99 latency | errors |")
print("|---|---|---|---|---|---|---|")
for case in cases:
    body = size[case.split("_")[0]]
    for target in ["tether", "tether-tcp", "rathole", "floor", "direct"]:
        rs = rows.get((case, target), [])
        if not rs:
            continue
        rps = statistics.median(r["rps"] for r in rs)
        med[(case, target)] = rps
        p50 = statistics.median(r["p50"] for r in rs)
        p99 = statistics.median(r["p99"] for r in rs)
        errs = sum(r["errs"] for r in rs)
        short = [r for r in rs if r["per_req"] < body]
        if short:
            errs += len(short)  # a response shorter than the body cannot be right
        print(f"| {case} | {target} | {rps:,.0f} | {rps * body / 1048576:,.1f} | "
              f"{min(r['rps'] for r in rs):,.0f}–{max(r['rps'] for r in rs):,.0f} | "
              f"{p50 / 1000:.2f} / {p99 / 1000:.2f} ms | {errs} |")
print()
print("| case | way | way / rathole (of the medians) | the rounds' own way / rathole: median, min–max | way / direct | rathole / direct |")
print("|---|---|---|---|---|---|")
out = {}
for case in cases:
    for way, prefix in (("tether", ""), ("tether-tcp", "tcp_")):
        t, r, d = (med.get((case, w)) for w in (way, "rathole", "direct"))
        per_round = [a["rps"] / b["rps"] for a, b in zip(rows[(case, way)], rows[(case, "rathole")])]
        print(f"| {case} | {way} | **{t / r:.2f}×** | {statistics.median(per_round):.2f}×, "
              f"{min(per_round):.2f}–{max(per_round):.2f}× | {t / d:.2f}× | {r / d:.2f}× |")
        # mib1 (the goal) is the 8-connection case; at 1 connection rathole's relayed sockets
        # keep Nagle on (it sets TCP_NODELAY only on its own channels), see RESULTS.md.
        key = {"small_c64": "small_c64", "small_c1": "small_c1", "mib1_c1": "mib1_c1", "mib1_c8": "mib1"}[case]
        out[f"{prefix}{key}_vs_rathole"] = round(t / r, 3)
    if case == "small_c1":  # the floor is measured in this case only
        f, r, d = (med[(case, w)] for w in ("floor", "rathole", "direct"))
        per_round = [a["rps"] / b["rps"] for a, b in zip(rows[(case, "floor")], rows[(case, "rathole")])]
        print(f"| {case} | floor | **{f / r:.2f}×** | {statistics.median(per_round):.2f}×, "
              f"{min(per_round):.2f}–{max(per_round):.2f}× | {f / d:.2f}× | {r / d:.2f}× |")
        out["floor_small_c1_vs_rathole"] = round(f / r, 3)
# Tether's tunnels against the floor (small_c1).
case = "small_c1"
f = med[(case, "floor")]
print()
print("| case | way | way / floor (of the medians) | the rounds' own way / floor: median, min–max |")
print("|---|---|---|---|")
for way in ("tether", "tether-tcp"):
    t = med[(case, way)]
    per_round = [a["rps"] / b["rps"] for a, b in zip(rows[(case, way)], rows[(case, "floor")])]
    print(f"| {case} | {way} | **{t / f:.2f}×** | {statistics.median(per_round):.2f}×, "
          f"{min(per_round):.2f}–{max(per_round):.2f}× |")
out["tcp_small_c1_vs_floor"] = round(med[(case, "tether-tcp")] / f, 3)
for case in cases:
    body = size[case.split("_")[0]]
    for w in ("tether", "tether-tcp", "rathole", "direct"):
        if case.startswith("small"):
            out[f"{case}_{w.replace('-', '_')}_rps"] = round(med[(case, w)])
        else:
            out[f"{case}_{w.replace('-', '_')}_mibs"] = round(med[(case, w)] * body / 1048576, 1)
out["floor_small_c1_rps"] = round(f)
print()
print(json.dumps(out))
bad = sum(r["errs"] for rs in rows.values() for r in rs)
if bad:
    print(f"tunnel_vs_rathole: {bad} wrk errors (connect, read, write, status or timeout)", file=sys.stderr)
    sys.exit(1)
EOF
