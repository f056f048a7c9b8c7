"""A team's webhook endpoint for the tests and benchmarks: a real HTTP server on a free loopback port that verifies
every request with the `standardwebhooks` library (never with this project's code) and records it.

- `WebhookReceiver(secret)`: `start()`, `stop()` (the port refuses connections until `start()` again),
  `answer(500, 500)` to answer the next requests with those statuses (then 200), `refuse(503)` to answer every
  request so until `accept()`, `deliveries` (every request, verified or not), `delivered()` (the verified ones
  answered 2xx), `wait_for(n)`.
- `webhook_receiver` (function): `webhook_receiver()` or `webhook_receiver(secret=...)` makes a started one,
  stopped when the test ends.
- `new_secret()`: a fresh `whsec_` secret.
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import standardwebhooks

from support.servers import free_port


def new_secret() -> str:
    """A fresh Standard Webhooks secret: `whsec_` + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@dataclass(frozen=True)
class Delivery:
    """One request as the receiver saw it, and what it answered."""

    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool
    status: int
    at: float  # time.time() when it arrived

    @property
    def id(self) -> str:
        return self.headers.get("webhook-id", "")

    @property
    def document(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.body)
        return value


class WebhookReceiver:
    """An endpoint that verifies each request with `standardwebhooks.Webhook(secret).verify`, answers 401 to one
    that does not verify, and otherwise the next scripted status (200 once the script is used up)."""

    def __init__(self, secret: str | None = None, port: int | None = None) -> None:
        self.secret = secret or new_secret()
        self.port = port or free_port()
        self.deliveries: list[Delivery] = []
        self._script: deque[int] = deque()
        self._refusing: int | None = None
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Its base URL, e.g. http://127.0.0.1:PORT/hook."""
        return f"http://127.0.0.1:{self.port}/hook"

    def answer(self, *statuses: int) -> None:
        """Answer the next requests (that verify) with these statuses, in order, then 200 again."""
        with self._lock:
            self._script.extend(statuses)

    def next_status(self) -> int:
        """What to answer a request that verifies while not refusing (called under the lock): the script's next
        status, else 200."""
        return self._script.popleft() if self._script else 200

    def refuse(self, status: int = 503) -> None:
        """Answer every request that verifies with `status` until `accept()`."""
        with self._lock:
            self._refusing = status

    def accept(self) -> None:
        """Answer 200 again: no refusal, no script."""
        with self._lock:
            self._refusing = None
            self._script.clear()

    def start(self) -> WebhookReceiver:
        verifier = standardwebhooks.Webhook(self.secret)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a real framework's server does

            def setup(self) -> None:
                super().setup()
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # headers, then body
                with receiver._lock:
                    receiver._connections.add(self.connection)

            def finish(self) -> None:
                with receiver._lock:
                    receiver._connections.discard(self.connection)
                super().finish()

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    verifier.verify(body, headers)
                    verified = True
                except standardwebhooks.WebhookVerificationError:
                    verified = False
                with receiver._lock:
                    if not verified:
                        status = 401
                    elif receiver._refusing is not None:
                        status = receiver._refusing
                    else:
                        status = receiver.next_status()
                    receiver.deliveries.append(Delivery(self.path, headers, body, verified, status, time.time()))
                answer = b'{"ok":true}' if status < 300 else b'{"error":"scripted failure"}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and close the kept-alive connections, as a process that goes down does (connections
        are refused until `start()`); what it recorded stays."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            with self._lock:
                for connection in self._connections:
                    with contextlib.suppress(OSError):
                        connection.shutdown(socket.SHUT_RDWR)
            assert self._thread is not None
            self._thread.join(timeout=10)
            self._server = self._thread = None

    def delivered(self) -> list[Delivery]:
        """The requests that verified and were answered 2xx, in arrival order."""
        with self._lock:
            return [d for d in self.deliveries if d.verified and 200 <= d.status < 300]

    def wait_for(self, count: int, timeout: float = 20.0) -> list[Delivery]:
        """`delivered()` once it holds at least `count` distinct webhook-ids (or the time is up)."""
        deadline = time.monotonic() + timeout
        while len({d.id for d in self.delivered()}) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.delivered()


@contextlib.contextmanager
def receiving(secret: str | None = None) -> Iterator[WebhookReceiver]:
    """A started receiver for the block, stopped after it."""
    receiver = WebhookReceiver(secret).start()
    try:
        yield receiver
    finally:
        receiver.stop()


@pytest.fixture
def webhook_receiver() -> Iterator[Callable[..., WebhookReceiver]]:
    """Make started receivers with `webhook_receiver(secret=None)`; all are stopped when the test ends."""
    with contextlib.ExitStack() as stack:
        yield lambda secret=None: stack.enter_context(receiving(secret))
