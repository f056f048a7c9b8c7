"""A fault-injecting HTTP reverse proxy, put between `serve` and a storage emulator.

Each request is forwarded to the upstream unless a fault is drawn for it, at a set rate:
  delay          forwarded late (50-400 ms)
  drop_before    the connection is closed before forwarding: nothing happened upstream
  drop_after     forwarded, then the connection is closed: it happened, the client never hears
  error_500      answered 500 InternalError without forwarding
  error_503      answered 503 SlowDown without forwarding
  late_500       forwarded, then answered 500: it happened, the client is told it failed
The last two kinds of ambiguity (applied but reported lost or failed) are what exactly-once must survive.

    python bench/faulty_proxy.py --upstream http://127.0.0.1:5000 --rate 0.1 --port 0
"""

from __future__ import annotations

import argparse
import http.client
import random
import socket
import struct
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

FAULT_KINDS = ("delay", "drop_before", "drop_after", "error_500", "error_503", "late_500")
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade",
              "content-length"}
_S3_ERROR = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>%s</Code><Message>%s</Message>'
             b"<RequestId>faulty-proxy</RequestId></Error>")


class FaultPlan:
    """Which fault, if any, each request gets: a seeded draw at `rate`, counted by kind."""

    def __init__(self, rate: float, kinds: tuple[str, ...] = FAULT_KINDS, seed: int | None = None) -> None:
        unknown = set(kinds) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; choose from {', '.join(FAULT_KINDS)}")
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"the fault rate must be between 0 and 1, not {rate}")
        self.rate = rate
        self.kinds = kinds
        self.enabled = True
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self.injected: Counter[str] = Counter()
        self.requests = 0

    def draw(self) -> str | None:
        with self._lock:
            self.requests += self.enabled  # the requests the fault rate applies to
            if not self.enabled or not self.kinds or self._random.random() >= self.rate:
                return None
            kind = self._random.choice(self.kinds)
            self.injected[kind] += 1
            return kind

    def delay(self) -> float:
        with self._lock:
            return self._random.uniform(0.05, 0.4)

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self.injected.values())


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FaultyProxy

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the proxy reports counts, not lines."""

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _drop(self) -> None:
        """Close the connection abruptly (RST), as a network failure would."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in HOP_BY_HOP:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status: int, code: str) -> None:
        body = _S3_ERROR % (code.encode(), b"injected by faulty_proxy")
        self._send(status, [("Content-Type", "application/xml")], body)

    def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        upstream = self.server.upstream
        conn = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=30)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            headers["Content-Length"] = str(len(body))
            conn.request(self.command, self.path, body=body if body or self.command in ("PUT", "POST") else None,
                         headers=headers)
            response = conn.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            conn.close()

    def _handle(self) -> None:
        body = self._read_body()
        fault = self.server.plan.draw()
        if fault == "drop_before":
            return self._drop()
        if fault == "error_500":
            return self._error(500, "InternalError")
        if fault == "error_503":
            return self._error(503, "SlowDown")
        if fault == "delay":
            time.sleep(self.server.plan.delay())
        try:
            status, headers, payload = self._forward(body)
        except OSError:
            return self._error(502, "BadGateway")
        if fault == "drop_after":
            return self._drop()
        if fault == "late_500":
            return self._error(500, "InternalError")
        self._send(status, headers, payload)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = _handle


class FaultyProxy(ThreadingHTTPServer):
    """The proxy server; `start()` serves on a thread, `stop()` shuts it down."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, upstream: str, plan: FaultPlan, host: str = "127.0.0.1", port: int = 0) -> None:
        self.upstream = urlsplit(upstream)
        if self.upstream.scheme != "http" or not self.upstream.hostname or not self.upstream.port:
            raise ValueError(f"the upstream must be http://host:port, not {upstream!r}")
        self.plan = plan
        self._thread: threading.Thread | None = None
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FaultyProxy:
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        return self

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that went away mid-answer (or a dropped connection) is expected here, not news."""

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--upstream", required=True, help="http://host:port of the emulator")
    parser.add_argument("--rate", type=float, default=0.1, help="share of requests given a fault (0..1)")
    parser.add_argument("--kinds", default=",".join(FAULT_KINDS), help="comma-separated fault kinds")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    plan = FaultPlan(args.rate, tuple(k for k in args.kinds.split(",") if k), seed=args.seed)
    proxy = FaultyProxy(args.upstream, plan, args.host, args.port)
    print(f"faulty proxy on {proxy.url} -> {args.upstream}, fault rate {args.rate}", flush=True)
    try:
        proxy.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        proxy.server_close()
        print(f"requests {plan.requests}, faults {dict(plan.injected)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
