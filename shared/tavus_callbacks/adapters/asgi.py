"""`tavus-callbacks serve`: the pipeline as a small ASGI app run by `uvicorn.run`, each request handed to a
thread of its worker's pool. A request's head and its body each have a deadline; the token and the size are checked
from the head, so a stranger's body, or one over the limit, is never held in memory. Derived work runs from the
change feed (feed.py): the SQLite store's own, read by the serving process, or, with a cloud store, each worker's
in-memory feed of what it stored."""

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
from typing import Any, ClassVar
from urllib.parse import parse_qsl

import orjson
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from tavus_callbacks.auth import is_authorized
from tavus_callbacks.console import access_text, configure_logging
from tavus_callbacks.feed import ChangeFeed, FeedWorker, MemoryFeed
from tavus_callbacks.http import Outcome, Request, Response, answered_line
from tavus_callbacks.inspector.app import ASGIApp, InspectorApp, mount
from tavus_callbacks.inspector.reading import Reader
from tavus_callbacks.logs import redact, utc_stamp
from tavus_callbacks.pipeline import Pipeline, internal_error, too_large
from tavus_callbacks.settings import EndpointVariables, Flags, LoggingVariables, ServeVariables, Settings

log = logging.getLogger("tavus_callbacks.adapters.asgi")
access_log = logging.getLogger("tavus_callbacks.access")

MAX_CONNECTIONS = 8192  # per worker process: beyond it, uvicorn answers 503; an idle one costs a few KiB
MAX_DISCARDING = 64  # per worker: connections dropping an unread body at once; beyond it, closed at once
MAX_HEAD_BYTES = 16 * 1024  # a request line and headers still incomplete after this many bytes are refused (431)

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

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, flags: Flags | None = None) -> ServeOptions:
        """The options of TAVUS_HOST, TAVUS_PORT, TAVUS_WORKERS (default: one per CPU), TAVUS_THREADS,
        TAVUS_READ_TIMEOUT, TAVUS_LOG_LEVEL and TAVUS_LOG_FORMAT, each flag of `flags` over its variable."""
        listen, logs = ServeVariables.read(environ, flags), LoggingVariables.read(environ, flags)
        return cls(listen.host, listen.port, listen.workers or cpu_count(), listen.threads, listen.read_timeout,
                   logs.log_level, logs.log_format)

    def variables(self) -> dict[str, str]:
        """The TAVUS_* variables that give these options, for the worker processes."""
        return {**ServeVariables.model_construct(host=self.host, port=self.port, workers=self.workers,
                                                 threads=self.threads, read_timeout=self.read_timeout).variables(),
                **LoggingVariables.model_construct(log_level=self.log_level, log_format=self.log_format).variables()}

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"


class _Gone(Exception):
    """The client hung up before its body arrived: nobody to answer."""


class HeadDeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with a deadline and a size bound on each request's head.

    uvicorn times a connection out only between requests (`timeout_keep_alive`, armed after a response), and
    the app is called once a head is complete: a connection that sends nothing, or its headers a byte at a
    time, would be held for ever. Here each head must arrive within `head_timeout` of the connection (or of its
    first byte, for the next request on a kept-alive one), and be complete within MAX_HEAD_BYTES, or the
    connection is closed.
    """

    head_timeout: ClassVar[float] = 10.0  # set by the worker from --read-timeout
    _head_timer: asyncio.TimerHandle | None = None
    _head_bytes = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._head_timer is not None:  # still waiting for the end of a head
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES and not self.transport.is_closing():
                self._disarm()
                body = orjson.dumps({"error": f"the request head is larger than {MAX_HEAD_BYTES} bytes"})
                self.transport.write(b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json"
                                     b"\r\nconnection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
                self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._head_timer is None:  # the next request of a kept-alive connection: its head has a deadline too
            self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def _arm(self) -> None:
        self._head_bytes = 0
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_expired)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_expired(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.close()


class CallbackApp:
    """ASGI app around a Pipeline: scope -> Request, Response -> ASGI messages, one access line each."""

    def __init__(self, pipeline: Pipeline, read_timeout: float, threads: int, stored: MemoryFeed | None = None,
                 log_format: str = "json") -> None:
        self.pipeline = pipeline
        self.stored = stored  # where the keys of new events go, when the store has no change feed of its own
        self.read_timeout = read_timeout
        self.tokens = pipeline.settings.tokens
        self.discarding = 0
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
        if read:
            await send({"type": "http.response.start", "status": response.status, "headers": headers})
            await send({"type": "http.response.body", "body": response.body})
        else:  # a body left unread: the answer goes out whole at once, then what the client still sends is dropped
            headers.append((b"connection", b"close"))
            await send({"type": "http.response.start", "status": response.status, "headers": headers})
            if self.discarding < MAX_DISCARDING:  # beyond, memory first: the connection is closed at once
                await send({"type": "http.response.body", "body": response.body, "more_body": True})
                self.discarding += 1
                try:
                    await self._discard(receive)
                finally:
                    self.discarding -= 1
                response_end = b""
            else:
                response_end = response.body
            await send({"type": "http.response.body", "body": response_end})
        outcome = response.outcome
        # a duplicate too: its first create may have succeeded in the bucket while its answer was lost
        if self.stored is not None and outcome is not None and outcome.key:
            self.stored.add(outcome.key)
        if self.access is not None:
            self.access.write(scope, response, started)

    async def answer(self, scope: Scope, receive: Receive) -> tuple[Response, bool]:
        """The pipeline's answer, and whether the whole body was read: only a sender with a valid token, whose
        body is within the limit, has it read (into memory); anyone else is answered from the head."""
        head = Request(method=scope["method"], path=scope["path"] or "/", query=first_values(scope["query_string"]),
                       headers=_headers(scope))
        if head.method != "POST":
            return self.pipeline.handle(head), True  # uvicorn drops a body nobody reads, and keeps the connection
        if not is_authorized(head, self.tokens):
            return self.pipeline.handle(head), False  # 401, its body unread
        limit = self.pipeline.settings.max_body_bytes
        length = _content_length(head.headers)
        if length is not None and length > limit:
            return too_large(limit), False
        try:
            async with asyncio.timeout(self.read_timeout):  # the whole body, not each read
                body = await _read_body(receive, limit)
        except TimeoutError:
            return Response.json(408, {"error": f"the body did not arrive within {self.read_timeout:g} s"},
                                 outcome=Outcome("timeout")), False
        if body is None:
            return too_large(limit), False
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, self.pipeline.handle, replace(head, body=body)), True

    async def _discard(self, receive: Receive) -> None:
        """Read and drop the rest of a body (a buffer at a time) until it ends, the client goes, or the read
        timeout passes: closing a connection with unread data resets it, and the client could lose the answer."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.read_timeout):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect" or not message.get("more_body", False):
                        return


class AccessLog:
    """Each request's access line, in the JSON shape of every other line, written to stderr in one call
    (the logging machinery costs as much as storing a small event); the path is redacted like any line."""

    def __init__(self, tokens: Iterable[str] = (), fd: int = 2, text: bool = False) -> None:
        self.tokens = tuple(tokens)
        self.fd = fd
        self.text = text
        self.pid = os.getpid()

    def write(self, scope: Scope, response: Response, started: float) -> None:
        path = redact(str(scope["path"] or "/"), self.tokens)[:200]  # cut once redacted
        answered, client = answered_line(response.outcome, response.status), scope.get("client")
        fields = {("type" if k == "event_type" else k): v for k, v in answered.fields.items()}  # serve's name
        line: dict[str, Any] = {
            "time": utc_stamp(time.time()), "level": answered.severity.lower(), "logger": access_log.name,
            "pid": self.pid, "message": f"{answered.message}: {scope['method']} {path} {response.status}",
            "method": scope["method"], "path": path, **fields,
            "ms": round((time.perf_counter() - started) * 1000, 2), "remote": client[0] if client else None}
        data = f"{access_text(line)}\n".encode() if self.text else orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE)
        with contextlib.suppress(OSError):  # a closed or full stderr must not fail the request
            os.write(self.fd, data)


def first_values(query_string: bytes) -> dict[str, str]:
    """The query parameters, each with its first value: `?token=A&token=B` presents A, as on every platform."""
    query: dict[str, str] = {}
    for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        query.setdefault(name, value)
    return query


def _headers(scope: Scope) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in scope["headers"]:
        key, text = name.decode("latin-1").lower(), value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return headers


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The body, or None as soon as it runs over `limit` bytes (the rest is left unread)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Gone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _content_length(headers: Mapping[str, str]) -> int | None:
    try:
        return max(int(headers.get("content-length") or ""), 0)
    except ValueError:
        return None


def cpu_count() -> int:
    """The CPUs this process may run on."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def worker_app() -> ASGIApp:
    """One worker process's app, of the TAVUS_* variables `serve` set before starting it, with its own Pipeline;
    with a cloud store, also its own in-memory feed; and the inspector at /_/."""
    settings, options = Settings.from_env(), ServeOptions.from_env()
    configure_logging(options.log_level, settings.tokens, options.log_format)
    HeadDeadlineProtocol.head_timeout = options.read_timeout
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

    uvicorn starts each worker afresh and takes its app by name, so the settings reach the workers as the
    TAVUS_* variables they inherit, which every worker reads as any deployment does.
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
    os.environ.update(EndpointVariables.model_construct(
        callback_tokens=settings.tokens, store_url=settings.store_url, max_body_bytes=settings.max_body_bytes,
        forward_url=settings.forward_url).variables())
    os.environ.update(options.variables())
    # uvloop's libuv otherwise accepts every waiting connection in the worker that wakes first: spread them
    os.environ.setdefault("UV_TCP_SINGLE_ACCEPT", "1")
    _allow_open_files(MAX_CONNECTIONS * options.workers + 256)
    uvicorn.run(
        f"{__name__}:worker_app", factory=True, host=options.host, port=options.port, workers=options.workers,
        http=HeadDeadlineProtocol, lifespan="off", access_log=False, log_config=None, log_level=options.log_level,
        server_header=False, proxy_headers=False, limit_concurrency=MAX_CONNECTIONS, timeout_keep_alive=5,
        timeout_graceful_shutdown=10, backlog=2048,
    )


def _allow_open_files(wanted: int) -> None:
    """Raise this process's open-file limit towards `wanted` (within its hard limit), so that connections,
    not the default soft limit of 1024 descriptors, are what MAX_CONNECTIONS bounds."""
    try:
        import resource  # POSIX only
    except ImportError:
        return
    with contextlib.suppress(ValueError, OSError):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        if soft != resource.RLIM_INFINITY and soft < target:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
