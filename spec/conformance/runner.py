#!/usr/bin/env python3
"""Tether conformance runner: tests a running implementation over the wire, by the
requirement ids of spec/protocol.md (see spec/conformance/README.md).

  runner.py server --cmd 'my-server --listen {addr} --upstream {upstream} --gateway {gateway}'
  runner.py server --url ws://127.0.0.1:9000/        (a server already running; fewer cases)
  runner.py client --cmd 'my-client {url} --upstream {upstream} --gateway {gateway}'

Prints one line per requirement id (PASS, FAIL or SKIP, then the cases that checked it) and
a closing `N passed, N failed, N skipped` line; exits 1 on any failure. Python 3.8+,
standard library only.
"""
import argparse
import os
import sys
import tempfile
import time
import traceback
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tether_wire as tw  # noqa: E402

# What the runner announces: the defaults of spec/protocol.md §5, §8.4 and §10, explicitly.
LIMITS = {"MAX_FRAME_PAYLOAD": 65_536, "MAX_HEAD_SIZE": 16_384, "MAX_HEADER_COUNT": 100,
          "MAX_CONCURRENT_STREAMS": 128, "INITIAL_STREAM_WINDOW": 262_144,
          "INITIAL_CONNECTION_WINDOW": 1_048_576}
CLIENT_SETTINGS = dict(LIMITS, HEARTBEAT_INTERVAL_MS=10_000, HEARTBEAT_TIMEOUT_MS=30_000,
                       HEARTBEAT_CARRIER=0)
SERVER_SETTINGS = dict(LIMITS, HEARTBEAT_INTERVAL_MS=0, HEARTBEAT_CARRIER=0,
                       RESUME_WINDOW_MS=30_000)


class Context:
    """What a case gets: the target (started per case or shared), the runner's origin,
    options, and helpers to connect (server mode) or accept (client mode)."""

    def __init__(self, args, origin, log):
        self.args = args
        self.origin = origin
        self.log = log
        self.shared = None      # server mode: the long-running target
        self.targets = []       # processes to stop after the case
        self.listeners = []
        self.conns = []
        self.routes = None      # server mode: does the target answer the origin's routes?

    # ---- server mode: the target is a server -------------------------------------------

    def start_server(self):
        """A new server process (for cases that signal it or leave it changed)."""
        if not self.args.cmd:
            raise tw.Skip("needs --cmd (a server the runner starts itself)")
        port, gport = tw.free_port(), tw.free_port()
        values = {"addr": f"127.0.0.1:{port}", "port": port, "host": "127.0.0.1",
                  "url": f"ws://127.0.0.1:{port}/", "upstream": self.origin.url,
                  "gateway": f"127.0.0.1:{gport}", "gateway_port": gport}
        t = tw.Target(self.args.cmd, values, self.log)
        self.targets.append(t)
        tw.wait_port(port, proc=t.proc)
        if "{gateway}" in self.args.cmd:
            tw.wait_port(gport, proc=t.proc)
        return t

    def server(self):
        """(host, port, gateway port or None, Target or None) of the shared server."""
        if self.args.url:
            u = urllib.parse.urlparse(self.args.url)
            return u.hostname, u.port or 80, u.path or "/", None
        return "127.0.0.1", self.shared.values["port"], "/", self.shared

    def require_routes(self):
        """Skips the case unless the server answers the routes of README.md (GET /bytes/3
        gives the pattern); checked once per run."""
        if self.routes is None:
            try:
                peer = self.dial()
                peer.send(tw.frame(tw.HEADERS, tw.END_STREAM, 1,
                                   tw.request_head("GET", "/bytes/3")))
                status, _, body, _ = peer.read_response(1, checks=False)
                self.routes = (status, body) == (200, tw.pattern(3))
                peer.ws.send_close(1000)
                peer.ws.close_transport()
            except (tw.Violation, OSError, TimeoutError):
                self.routes = False
        if not self.routes:
            raise tw.Skip("the server does not answer the runner's routes (GET /bytes/3): "
                          "forward its requests to {upstream} (see README.md)")

    def gateway_port(self, target=None):
        target = target or self.shared
        if target is None or "{gateway}" not in self.args.cmd:
            raise tw.Skip("needs {gateway} in --cmd (requests from the server's side)")
        return target.values["gateway_port"]

    def ws(self, target=None, protocols=("tether.v1",), extra=()):
        """A WebSocket to the server (shared unless target given); no Tether frame sent."""
        if target is None:
            host, port, path, _ = self.server()
        else:
            host, port, path = "127.0.0.1", target.values["port"], "/"
        conn, status, fields, sock = tw.ws_connect(host, port, path, protocols, extra)
        self.conns.append(sock)
        if conn is None:
            raise tw.Violation(f"the upgrade was answered {status}, not 101")
        return conn

    def dial(self, settings=None, metadata=b"", resume=None, target=None, ack=True):
        """Connects and completes the handshake (HELLO, WELCOME, ACK). Returns a Peer with
        `welcome` (parsed WELCOME) and `remote` (the server's settings)."""
        if settings is None:
            settings = self.client_settings()
        peer = tw.Peer(self.ws(target), settings)
        peer.send(tw.hello((1,), settings, metadata, resume))
        f = peer.expect(lambda f: True, "WELCOME", self.args.timeout)
        if f.type != tw.WELCOME:
            raise tw.Violation(f"expected WELCOME, got {f!r}")
        peer.welcome = tw.parse_welcome(f)
        peer.remote = peer.welcome["settings"]
        if ack:
            peer.send(tw.frame(tw.ACK))
        return peer

    @staticmethod
    def client_settings(**over):
        return tw.settings_list(CLIENT_SETTINGS, over)

    # ---- client mode: the target is a client -------------------------------------------

    def start_client(self, listener=None):
        """A listener for this case and the client process pointed at it."""
        listener = listener or self.listener()
        gport = tw.free_port()
        values = {"url": listener.url, "addr": f"127.0.0.1:{listener.port}",
                  "port": listener.port, "host": "127.0.0.1", "upstream": self.origin.url,
                  "gateway": f"127.0.0.1:{gport}", "gateway_port": gport}
        t = tw.Target(self.args.cmd, values, self.log)
        self.targets.append(t)
        return listener, t

    def listener(self):
        listener = tw.Listener()
        self.listeners.append(listener)
        return listener

    def client_gateway(self, target):
        if "{gateway}" not in self.args.cmd:
            raise tw.Skip("needs {gateway} in --cmd (requests from the client's side)")
        tw.wait_port(target.values["gateway_port"], proc=target.proc)
        return target.values["gateway_port"]

    def accept(self, listener, settings=None, version=1, resumed=False, timeout=None,
               conn_id=None, token=None, ack=True):
        """Accepts the client's next connection, reads its HELLO, sends WELCOME and reads
        the ACK. Returns a Peer with `hello`, `welcome` ({id, token}) and `request` (the
        upgrade request's fields)."""
        ws, start, fields = listener.accept(timeout or self.args.timeout)
        self.conns.append(ws.sock)
        if settings is None:
            settings = self.server_settings()
        peer = tw.Peer(ws, settings)
        peer.request = fields
        f = peer.expect(lambda f: True, "HELLO", self.args.timeout)
        if f.type != tw.HELLO:
            raise tw.Violation(f"the client's first frame is {f!r}, not HELLO (§7.1)")
        peer.hello = tw.parse_hello(f)
        peer.remote = peer.hello["settings"]
        conn_id = conn_id or tw.uuid.uuid4().bytes
        token = token or os.urandom(16)
        peer.welcome = {"id": conn_id, "token": token}
        peer.send(tw.welcome(version, conn_id, token, settings, resumed))
        if ack:
            f = peer.expect(lambda f: True, "ACK", self.args.timeout)
            if f.type != tw.ACK:
                raise tw.Violation(f"expected ACK after WELCOME, got {f!r}")
            if f.payload:
                raise tw.Violation("ACK with a payload [3.4.3-1]")
        return peer

    @staticmethod
    def server_settings(**over):
        return tw.settings_list(SERVER_SETTINGS, over)

    def cleanup(self):
        for sock in self.conns:
            try:
                sock.close()
            except OSError:
                pass
        for t in self.targets:
            t.stop()
        for listener in self.listeners:
            listener.close()
        self.targets, self.conns, self.listeners = [], [], []


def main():
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("role", choices=["server", "client"],
                    help="the role of the implementation under test")
    ap.add_argument("--cmd", help="command line of the implementation, with placeholders "
                    "{addr} {port} {url} {upstream} {gateway} (see README.md)")
    ap.add_argument("--url", help="server mode: a server already running (cases that must "
                    "start, signal or configure it are skipped)")
    ap.add_argument("--handshake-timeout", type=float, default=10.0,
                    help="the target's handshake timeout in seconds (default 10)")
    ap.add_argument("--origin-port", type=int, default=0,
                    help="port of the runner's HTTP origin ({upstream}); default: any free "
                    "one. With --url, start the server forwarding to http://127.0.0.1:PORT")
    ap.add_argument("--timeout", type=float, default=10.0,
                    help="how long to wait for an expected answer (default 10 s)")
    ap.add_argument("--case", action="append", default=[],
                    help="run only this case (repeatable); see --list")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    ap.add_argument("--log", help="file for the target's stdout/stderr (default: a temp file)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print each case's result")
    args = ap.parse_args()

    import cases_client  # noqa: F401  (registers the cases)
    import cases_server  # noqa: F401

    cases = [c for c in tw.CASES if c["role"] == args.role]
    if args.list:
        for c in cases:
            print(f"{c['name']:40} {' '.join(c['ids'])}\n    {c['doc'].splitlines()[0]}")
        return 0
    if args.role == "client" and not args.cmd:
        ap.error("client mode needs --cmd")
    if args.role == "server" and not (args.cmd or args.url):
        ap.error("server mode needs --cmd or --url")
    if args.case:
        unknown = set(args.case) - {c["name"] for c in cases}
        if unknown:
            ap.error(f"no such case: {', '.join(sorted(unknown))}")
        cases = [c for c in cases if c["name"] in args.case]

    log = open(args.log, "w") if args.log else tempfile.NamedTemporaryFile(
        "w", prefix="tether-conformance-", suffix=".log", delete=False)
    origin = tw.Origin(args.origin_port)
    ctx = Context(args, origin, log)
    results = {}   # id -> list of (case, status, detail)
    try:
        if args.role == "server" and args.cmd:
            ctx.shared = ctx.start_server()
            ctx.targets.remove(ctx.shared)
        for c in cases:
            started = time.monotonic()
            try:
                if "cmd" in c["needs"] and not args.cmd:
                    raise tw.Skip("needs --cmd")
                if "routes" in c["needs"] and args.role == "server":
                    ctx.require_routes()
                c["fn"](ctx)
                status, detail = "PASS", ""
            except tw.Skip as e:
                status, detail = "SKIP", str(e)
            except tw.Violation as e:
                status, detail = "FAIL", str(e)
            except Exception as e:  # a crash of the runner or an unexpected transport error
                status = "FAIL"
                detail = f"{type(e).__name__}: {e}"
                if args.verbose:
                    traceback.print_exc()
            finally:
                ctx.cleanup()
            took = time.monotonic() - started
            if args.verbose or status == "FAIL":
                tail = f": {detail}" if detail else ""
                print(f"  case {c['name']}: {status} ({took:.1f} s){tail}", file=sys.stderr)
            for rid in c["ids"]:
                results.setdefault(rid, []).append((c["name"], status, detail))
    finally:
        if ctx.shared:
            ctx.shared.stop()
        origin.close()
        log.close()

    passed = failed = skipped = 0
    for rid in sorted(results, key=id_key):
        rows = results[rid]
        statuses = {s for _, s, _ in rows}
        status = "FAIL" if "FAIL" in statuses else "PASS" if "PASS" in statuses else "SKIP"
        names = ", ".join(n for n, s, _ in rows if s == status)
        why = "; ".join(f"{n}: {d}" for n, s, d in rows if s == status and d)
        print(f"{status} {rid:8} {names}{'  -- ' + why if why else ''}")
        passed += status == "PASS"
        failed += status == "FAIL"
        skipped += status == "SKIP"
    print(f"{passed} passed, {failed} failed, {skipped} skipped (target output: {log.name})")
    return 1 if failed else 0


def id_key(rid):
    """Sorts 2.1-1 < 3.4.9-1 < 10.1 < 10.3-1 numerically."""
    sec, _, n = rid.partition("-")
    return [int(x) for x in sec.split(".")] + [int(n) if n else 0]


if __name__ == "__main__":
    sys.exit(main())
