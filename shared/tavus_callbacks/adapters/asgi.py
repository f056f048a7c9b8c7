"""`tavus-callbacks serve`: the pipeline as a small ASGI app run by `uvicorn.run`, each request handed to a
thread of its worker's pool; a body over the limit is refused from its Content-Length, and every body has a deadline.
Derived work runs from the change feed (feed.py): the SQLite store's own, read by the serving process, or, with a
cloud store, each worker's in-memory feed of what it stored."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qsl

import orjson
import uvicorn

from tavus_callbacks.auth import is_authorized
from tavus_callbacks.feed import ChangeFeed, FeedWorker, MemoryFeed
from tavus_callbacks.http import Outcome, Request, Response
from tavus_callbacks.inspector.app import ASGIApp, InspectorApp, mount
from tavus_callbacks.inspector.reading import Reader
from tavus_callbacks.logs import access_text, configure_logging, redact, utc_stamp
from tavus_callbacks.pipeline import Pipeline, internal_error, too_large
from tavus_callbacks.settings import Settings

log = logging.getLogger("tavus_callbacks.adapters.asgi")
access_log = logging.getLogger("tavus_callbacks.access")

MAX_CONNECTIONS = 1000  # per worker process: beyond it, uvicorn answers 503
DISCARD_BYTES = 64 * 1024  # of a chunked body over the limit, read and dropped so the 413 is not reset away

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ServeOptions:
    """How `serve` runs: where it listens, how many processes and threads, and its bounds."""

    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    threads: int = 8
    read_timeout: float = 10.0
    log_level: str = "info"
    log_format: str = "json"  # or "text": one readable line per request, for a person at a terminal

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"


class _Gone(Exception):
    """The client hung up before its body arrived: nobody to answer."""


class CallbackApp:
    """ASGI app around a Pipeline: scope -> Request, Response -> ASGI messages, one access line each."""

    def __init__(self, pipeline: Pipeline, read_timeout: float, threads: int, stored: MemoryFeed | None = None,
                 log_format: str = "json") -> None:
        self.pipeline = pipeline
        self.stored = stored  # where the keys of new events go, when the store has no change feed of its own
        self.read_timeout = read_timeout
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="tavus-callbacks")
        self.access = AccessLog(pipeline.settings.tokens, text=log_format == "text") \
            if access_log.isEnabledFor(logging.INFO) else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        started = time.perf_counter()
        try:
            response, read = await self.answer(scope, receive)
        except _Gone:
            return
        except Exception:
            log.exception("unexpected error answering a request")
            response, read = internal_error(), False
        headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response.headers.items()]
        headers.append((b"content-length", str(len(response.body)).encode()))
        if not read:  # the rest of an unread body would be taken for the next request: end the connection
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": response.body})
        outcome = response.outcome
        # a duplicate too: its first create may have succeeded in the bucket while its answer was lost
        if self.stored is not None and outcome is not None and outcome.key:
            self.stored.add(outcome.key)
        if self.access is not None:
            self.access.write(scope, response, started)

    async def answer(self, scope: Scope, receive: Receive) -> tuple[Response, bool]:
        """The pipeline's answer, and whether the whole body was read (only when it may be one we would accept)."""
        head = Request(method=scope["method"], path=scope["path"] or "/",
                       query=dict(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)),
                       headers=_headers(scope))
        if head.method != "POST":
            return self.pipeline.handle(head), True
        limit = self.pipeline.settings.max_body_bytes
        length = _content_length(head.headers)
        if length is not None and length > limit:  # not read
            return self._over_limit(head, limit), False
        try:
            async with asyncio.timeout(self.read_timeout):  # the whole body, not each read
                body = await _read_body(receive, limit)
        except TimeoutError:
            return Response.json(408, {"error": f"the body did not arrive within {self.read_timeout:g} s"},
                                 outcome=Outcome("timeout")), False
        if body is None:
            return self._over_limit(head, limit), False
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, self.pipeline.handle, replace(head, body=body)), True

    def _over_limit(self, head: Request, limit: int) -> Response:
        """413 to a sender we know; to a stranger, what the pipeline answers (401)."""
        return too_large(limit) if is_authorized(head, self.pipeline.settings.tokens) else self.pipeline.handle(head)


class AccessLog:
    """Each request's access line, in the JSON shape of every other line, written to stderr in one call
    (the logging machinery costs as much as storing a small event); the path is redacted like any line."""

    def __init__(self, tokens: Iterable[str] = (), fd: int = 2, text: bool = False) -> None:
        self.tokens = tuple(tokens)
        self.fd = fd
        self.text = text
        self.pid = os.getpid()

    def write(self, scope: Scope, response: Response, started: float) -> None:
        path, outcome = redact(str(scope["path"] or "/")[:200], self.tokens), response.outcome
        client = scope.get("client")
        line: dict[str, Any] = {
            "time": utc_stamp(time.time()), "level": "info", "logger": access_log.name, "pid": self.pid,
            "message": f"{scope['method']} {path} {response.status}", "method": scope["method"], "path": path,
            "status": response.status, "ms": round((time.perf_counter() - started) * 1000, 2),
            "remote": client[0] if client else None}
        if outcome is not None:
            line["result"] = outcome.result
            for name, value in (("event_id", outcome.event_id), ("type", outcome.event_type),
                                ("conversation_id", outcome.conversation_id)):
                if value:
                    line[name] = value
        data = f"{access_text(line)}\n".encode() if self.text else orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE)
        with contextlib.suppress(OSError):  # a closed or full stderr must not fail the request
            os.write(self.fd, data)


def _headers(scope: Scope) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in scope["headers"]:
        key, text = name.decode("latin-1").lower(), value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return headers


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The body, or None once it runs over `limit` bytes; up to DISCARD_BYTES more are read and dropped so the
    kernel does not reset the connection (and the 413 with it) over unread data."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Gone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit + DISCARD_BYTES:
            return None
        if size <= limit:
            chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks) if size <= limit else None


def _content_length(headers: Mapping[str, str]) -> int | None:
    try:
        return max(int(headers.get("content-length") or ""), 0)
    except ValueError:
        return None


_WORKER_ENV = "TAVUS_SERVE_WORKER"  # the settings and options `serve` hands its worker processes


def worker_app() -> ASGIApp:
    """One worker process's app, with its own Pipeline; with a cloud store, also its own in-memory feed; and
    the inspector at /_/."""
    handed = orjson.loads(os.environ[_WORKER_ENV])
    settings = Settings(**{**handed["settings"], "tokens": tuple(handed["settings"]["tokens"])})
    options = ServeOptions(**handed["options"])
    configure_logging(options.log_level, settings.tokens, options.log_format)
    pipeline = Pipeline(settings)
    stored = None
    if not isinstance(pipeline.store, ChangeFeed):
        stored = MemoryFeed()
        atexit.register(FeedWorker(pipeline, stored).start().stop)  # a graceful stop derives what is left
    inspector = InspectorApp(Reader(pipeline.store, pipeline.layout), settings.tokens, options.host, options.port,
                             read_only=False)
    return mount(CallbackApp(pipeline, read_timeout=options.read_timeout, threads=options.threads, stored=stored,
                             log_format=options.log_format), inspector)


def serve(settings: Settings, options: ServeOptions) -> None:
    """Run uvicorn with `options.workers` processes until stopped (SIGINT / SIGTERM: graceful), and the SQLite
    store's change feed in this process.

    uvicorn starts each worker afresh and takes its app by name, so the settings reach the workers through
    the one variable they inherit.
    """
    pipeline = Pipeline(settings)
    feed = FeedWorker(pipeline, pipeline.store).start() if isinstance(pipeline.store, ChangeFeed) else None
    try:
        _run_uvicorn(settings, options)
    finally:
        if feed is not None:
            feed.stop()
        pipeline.close()


def _run_uvicorn(settings: Settings, options: ServeOptions) -> None:
    os.environ[_WORKER_ENV] = orjson.dumps({"settings": settings, "options": options}).decode()
    # uvloop's libuv otherwise accepts every waiting connection in the worker that wakes first: spread them
    os.environ.setdefault("UV_TCP_SINGLE_ACCEPT", "1")
    uvicorn.run(
        f"{__name__}:worker_app", factory=True, host=options.host, port=options.port, workers=options.workers,
        lifespan="off", access_log=False, log_config=None, log_level=options.log_level, server_header=False,
        proxy_headers=False, limit_concurrency=MAX_CONNECTIONS, timeout_keep_alive=5,
        timeout_graceful_shutdown=10, h11_max_incomplete_event_size=16 * 1024, backlog=2048,
    )
