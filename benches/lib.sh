# shellcheck shell=bash
# What the load scripts under benches/ share: a scratch directory removed at exit, the
# processes they start killed at exit, free loopback ports, the wait for a listener, and
# nginx serving a directory. Sourced after `set -euo pipefail`: it sets `work` and `pids`
# and installs the EXIT trap.

work=$(mktemp -d)
pids=()
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# free_ports N: N distinct free loopback ports on one line (bound together, then released).
free_ports() {
  python3 -c '
import socket, sys
ss = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])' "$1"
}

# wait_port PORT: returns once something accepts on 127.0.0.1:PORT (fails after 10 s).
wait_port() {
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "${0##*/}: nothing listens on port $1" >&2
  return 1
}

# start_nginx BINARY PORT ROOT: nginx (one worker, keep-alive connections never closed by
# request count) serving ROOT on 127.0.0.1:PORT until the script exits.
start_nginx() {
  local nginx=$1 port=$2 root=$3
  mkdir -p "$work/nginx"
  chmod -R a+rX "$work" # when run as root, nginx's worker runs as nobody
  cat >"$work/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 1000000; # no reconnects mid-run, through any tunnel
  client_body_temp_path $work/nginx;
  proxy_temp_path $work/nginx;
  fastcgi_temp_path $work/nginx;
  uwsgi_temp_path $work/nginx;
  scgi_temp_path $work/nginx;
  default_type application/octet-stream;
  server { listen 127.0.0.1:$port; root $root; }
}
CONF
  "$nginx" -c "$work/nginx/nginx.conf" -p "$work/nginx" 2>>"$work/nginx/error.log" &
  pids+=($!)
  wait_port "$port"
}
