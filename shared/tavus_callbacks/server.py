"""`tavus-callbacks serve`: the pipeline as an ASGI app on uvicorn, one worker process per core.

The app only translates (ASGI scope -> Request, Response -> ASGI messages) like any adapter; it refuses an
over-limit body from its Content-Length before reading it, gives every body and every request's headers a
deadline so a slow or lying client cannot hold a connection, and logs JSON lines that never hold the body
or the token. On a local folder each worker stores the requests that arrive together as one batch, made
durable by one sync before any of them is answered; on a cloud store each request has a thread of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import re
import secrets
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qsl

import orjson
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .errors import ConfigError
from .http import Outcome, Request, Response
from .pipeline import Pipeline, StoredBatch, internal_error, too_large
from .settings import Settings, parse_tokens
from .stores import GroupCommit

log = logging.getLogger("tavus_callbacks.server")
access_log = logging.getLogger("tavus_callbacks.access")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_THREADS = 8
DEFAULT_READ_TIMEOUT = 10.0
MAX_BATCH = 64  # requests stored together at most, so one batch never waits long for another

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


# -- logging -----------------------------------------------------------------------------------

_SECRET_PATTERNS = (
    re.compile(r"(?i)(token=)[^&\s\"'#]+"),
    re.compile(r"(?i)(bearer\s+)[^\s\"',]+"),
)
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "color_message"}  # uvicorn's lines carry a copy with terminal colours


def redact(text: str, tokens: Iterable[str] = ()) -> str:
    """`text` with every `token=...` value, Bearer credential and configured token replaced."""
    lowered = text.lower()
    if "token=" in lowered or "bearer" in lowered:
        for pattern in _SECRET_PATTERNS:
            text = pattern.sub(r"\1[redacted]", text)
    for token in tokens:
        if token and token in text:
            text = text.replace(token, "[redacted]")
    return text


class RedactingFilter(logging.Filter):
    """Rewrites a record's message (and string extras) so no token can reach a log line."""

    def __init__(self, tokens: Iterable[str] = ()) -> None:
        super().__init__()
        self.tokens = tuple(tokens)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage(), self.tokens)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self.tokens)
        fields = vars(record)
        for name in fields.keys() - _RECORD_FIELDS:
            value = fields[name]
            if isinstance(value, str):
                fields[name] = redact(value, self.tokens)
        return True


def _utc_stamp(seconds: float) -> str:
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(seconds))}.{int(seconds % 1 * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, pid, message and the record's extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _utc_stamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in _RECORD_FIELDS and not name.startswith("_"):
                line[name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        return orjson.dumps(line, default=str).decode()


def configure_logging(level: str = "info", tokens: Iterable[str] = ()) -> None:
    """JSON lines on stderr for the package's loggers and uvicorn's, every line passed through the token redaction.

    At `info` a request is one access line (with its result and event id); the core's own line per
    callback, which says the same, shows only at `debug`.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter(tokens))
    numeric = logging.getLevelName(level.upper())
    quiet = numeric if numeric == logging.DEBUG else max(numeric, logging.WARNING)
    for name, threshold in (("tavus_callbacks", quiet), ("uvicorn", numeric)):
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            logger.removeHandler(old)
        logger.addHandler(handler)
        logger.setLevel(threshold)
        logger.propagate = False
    for name in (access_log.name, log.name):
        logging.getLogger(name).setLevel(numeric)
    logging.getLogger("uvicorn.access").disabled = True  # its lines quote the query string; ours are above


# -- bounded reads --------------------------------------------------------------------------------

class CallbackProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol with a deadline on each request's headers.

    uvicorn waits for the headers of a connection's first request, and for the rest of those of a later
    one, as long as the client likes; a client that stalls half-way is closed after the read timeout.
    """

    headers_timeout: float = DEFAULT_READ_TIMEOUT
    _headers_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_headers_deadline()

    def on_response_complete(self) -> None:
        waiting = bool(self.pipeline)  # a pipelined request whose headers are already in starts now
        super().on_response_complete()
        if not waiting and not self.transport.is_closing():
            self._arm_headers_deadline()

    def on_headers_complete(self) -> None:
        self._disarm_headers_deadline()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_headers_deadline()
        super().connection_lost(exc)

    def eof_received(self) -> bool | None:  # type: ignore[override]  # asyncio allows True: stay open
        """A client that stops sending mid-body still gets its answer (the body ended short: 400)."""
        cycle = self.cycle
        if cycle is None or cycle.response_complete or not cycle.more_body:
            return None  # nothing in progress: close
        cycle.more_body = False
        cycle.keep_alive = False
        cycle.message_event.set()
        return True  # keep the connection open for writing until the answer is sent

    def _arm_headers_deadline(self) -> None:
        self._disarm_headers_deadline()
        self._headers_deadline = self.loop.call_later(self.headers_timeout, self._headers_too_slow)

    def _disarm_headers_deadline(self) -> None:
        handle = self._headers_deadline
        if handle is not None:
            handle.cancel()
            self._headers_deadline = None

    def _headers_too_slow(self) -> None:
        self._headers_deadline = None
        if not self.transport.is_closing():
            log.warning("closed a connection: no whole request headers within %g s", self.headers_timeout)
            self.transport.close()


# -- handing requests to the pipeline ---------------------------------------------------------------

class Batches:
    """Requests that arrive together are stored together, on the event loop; their sync runs on a thread.

    For stores that commit in groups (a local folder): one compare-and-swap per conversation per batch
    instead of one per request, and one sync per batch. Storing is Python work under the one interpreter
    lock that writes to the page cache only: on a thread of its own it would pass that lock back and forth
    with the loop at every system call, so it runs on the loop, between reads of the sockets; only the
    sync, which waits for the disk, leaves it. While a batch is being synced the requests that arrive
    wait for it to end and are then stored as one batch: fewer, larger batches, which cost less CPU per
    request (measured: 335 vs 400 us) for the same throughput.
    """

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self._queue: list[tuple[Request, asyncio.Future[Response]]] = []
        self._scheduled = False
        self._syncing = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def answer(self, request: Request) -> Response:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Response] = loop.create_future()
        self._queue.append((request, future))
        self._schedule(loop)
        return await future

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        """Store what waits after the other requests read in this turn of the loop, unless a sync runs."""
        if self._queue and not self._scheduled and not self._syncing:
            self._scheduled = True
            loop.call_soon(self._store_queued, loop)

    def _store_queued(self, loop: asyncio.AbstractEventLoop) -> None:
        self._scheduled = False
        batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
        try:
            stored = self.pipeline.store_many([r for r, _ in batch])
        except Exception:
            log.exception("unexpected error storing a batch of %d requests", len(batch))
            _settle(batch, [internal_error()] * len(batch))
            self._schedule(loop)
            return
        self._syncing += 1
        task = loop.create_task(self._answer(batch, stored))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, batch: list[tuple[Request, asyncio.Future[Response]]], stored: StoredBatch) -> None:
        loop = asyncio.get_running_loop()
        try:
            try:
                await asyncio.to_thread(stored.commit)
            finally:
                self._syncing -= 1
                self._schedule(loop)  # the next batch is stored while this one is forwarded and answered
            # Publishing is network I/O: on a thread too.
            answers = await asyncio.to_thread(stored.answers) if stored.forwards else stored.answers()
        except Exception:
            log.exception("unexpected error answering a batch of %d requests", len(batch))
            answers = [internal_error()] * len(batch)
        _settle(batch, answers)


def _settle(batch: list[tuple[Request, asyncio.Future[Response]]], answers: list[Response]) -> None:
    for (_, future), answer in zip(batch, answers, strict=True):
        if not future.done():
            future.set_result(answer)


class Threads:
    """Each request on a thread of its own pool (stores reached over a network work concurrently)."""

    def __init__(self, pipeline: Pipeline, threads: int) -> None:
        self.pipeline = pipeline
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="tavus-callbacks")

    async def answer(self, request: Request) -> Response:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self.pipeline.handle, request)


# -- the ASGI app -------------------------------------------------------------------------------

def _headers(scope: Scope) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in scope["headers"]:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return headers


class _Gone(Exception):
    """The client hung up before its body arrived: nobody to answer."""


class CallbackApp:
    """ASGI app around a Pipeline: scope -> Request, Response -> ASGI messages, one access line each."""

    def __init__(self, pipeline: Pipeline, read_timeout: float = DEFAULT_READ_TIMEOUT, threads: int = DEFAULT_THREADS,
                 ) -> None:
        self.pipeline = pipeline
        self.read_timeout = read_timeout
        self.handler: Batches | Threads = (Batches(pipeline) if isinstance(pipeline.store, GroupCommit)
                                           else Threads(pipeline, threads))
        self.access = AccessLog(pipeline.settings.tokens) if access_log.isEnabledFor(logging.INFO) else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        started = time.perf_counter()
        try:
            response = await self.answer(scope, receive)
        except _Gone:
            return
        except Exception:
            log.exception("unexpected error answering a request")
            response = internal_error()
        headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response.headers.items()]
        headers.append((b"content-length", str(len(response.body)).encode()))
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": response.body})
        self._log(scope, response, started)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        """Start-up has nothing to do; on shutdown, after the last answer, the pipeline lets go of its store
        (a local folder's last process then checkpoints its journal, so a restart has nothing to redo)."""
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await asyncio.to_thread(self.pipeline.close)
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def answer(self, scope: Scope, receive: Receive) -> Response:
        """The pipeline's answer; the body is read only when the request may carry one we would accept."""
        method = scope["method"]
        head = Request(
            method=method,
            path=scope["path"] or "/",
            query=dict(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)),
            headers=_headers(scope),
        )
        if method != "POST":
            return self.pipeline.handle(head)
        limit = self.pipeline.settings.max_body_bytes
        length = _content_length(head.headers)
        if length is not None and length > limit:
            # Not read: the pipeline answers 401 to a stranger, and 413 to a sender we know.
            return self.pipeline.handle(head) if not self._authorized(head) else too_large(limit)
        try:
            async with asyncio.timeout(self.read_timeout):  # the whole body, not each read
                body = await _read_body(receive, limit)
        except TimeoutError:
            return Response.json(408, {"error": f"the body did not arrive within {self.read_timeout:g} s"},
                                 outcome=Outcome("timeout"))
        if body is None:
            return self.pipeline.handle(head) if not self._authorized(head) else too_large(limit)
        if length is not None and len(body) < length:
            return Response.json(400, {"error": "the body is shorter than its Content-Length"},
                                 outcome=Outcome("truncated"))
        return await self.handler.answer(replace(head, body=body))

    def _authorized(self, head: Request) -> bool:
        from .auth import is_authorized

        return is_authorized(head, self.pipeline.settings.tokens)

    def _log(self, scope: Scope, response: Response, started: float) -> None:
        if self.access is None:
            return
        outcome = response.outcome
        client = scope.get("client")
        path = str(scope["path"] or "/")[:200]
        extra: dict[str, Any] = {
            "method": scope["method"],
            "path": path,
            "status": response.status,
            "ms": round((time.perf_counter() - started) * 1000, 2),
            "remote": client[0] if client else None,
        }
        if outcome is not None:
            extra["result"] = outcome.result
            if outcome.event_id:
                extra["event_id"] = outcome.event_id
            if outcome.event_type:
                extra["type"] = outcome.event_type
            if outcome.conversation_id:
                extra["conversation_id"] = outcome.conversation_id
        self.access.write(f"{scope['method']} {path} {response.status}", extra)


class AccessLog:
    """The access line of each request, in the JSON shape of every other line, written to stderr in one call.

    It skips the logging machinery (a record, the caller's frame, filters): that cost as much per request
    as storing a small event. The path, the only part a client chose, is redacted like any line.
    """

    def __init__(self, tokens: Iterable[str] = (), fd: int = 2) -> None:
        self.tokens = tuple(tokens)
        self.fd = fd
        self.pid = os.getpid()

    def write(self, message: str, extra: dict[str, Any]) -> None:
        now = time.time()
        line = {"time": _utc_stamp(now), "level": "info", "logger": access_log.name, "pid": self.pid,
                "message": redact(message, self.tokens), **extra, "path": redact(extra["path"], self.tokens)}
        with contextlib.suppress(OSError):  # a closed or full stderr must not fail the request
            os.write(self.fd, orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE))


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The body, or None as soon as it runs over `limit` bytes (chunked bodies have no length to check first)."""
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
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _content_length(headers: Mapping[str, str]) -> int | None:
    raw = headers.get("content-length")
    if raw in (None, ""):
        return None
    try:
        return max(int(raw), 0)
    except ValueError:
        return None


# -- the server ----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ServeOptions:
    """How `serve` runs: where it listens, how many processes and threads, and its bounds."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    workers: int = 1
    threads: int = DEFAULT_THREADS
    read_timeout: float = DEFAULT_READ_TIMEOUT
    log_level: str = "info"

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"


# What each worker process needs, handed down in its environment (uvicorn starts workers afresh).
_WORKER_ENV = "TAVUS_SERVE_WORKER"


def worker_app() -> CallbackApp:
    """The app of one worker process: its own Pipeline, built from what `run` put in the environment."""
    options = orjson.loads(os.environ[_WORKER_ENV])
    settings = Settings.from_env(os.environ)
    configure_logging(options["log_level"], settings.tokens)
    CallbackProtocol.headers_timeout = options["read_timeout"]
    app = CallbackApp(Pipeline(settings), read_timeout=options["read_timeout"], threads=options["threads"])
    # What start-up made lives as long as the process: the cyclic collector need not scan it again, and
    # each request makes few cycles, so it runs less often.
    gc.freeze()
    gc.set_threshold(20_000, 50, 50)
    return app


def serve(settings: Settings, options: ServeOptions) -> None:
    """Run uvicorn with `options.workers` processes until stopped (SIGINT / SIGTERM: graceful)."""
    os.environ.update({
        "TAVUS_STORE_URL": settings.store_url,
        "TAVUS_CALLBACK_TOKENS": ",".join(settings.tokens),
        "TAVUS_MAX_BODY_BYTES": str(settings.max_body_bytes),
        _WORKER_ENV: orjson.dumps({"read_timeout": options.read_timeout, "threads": options.threads,
                                   "log_level": options.log_level}).decode(),
    })
    if settings.forward_url:
        os.environ["TAVUS_FORWARD_URL"] = settings.forward_url
    CallbackProtocol.headers_timeout = options.read_timeout
    uvicorn.run(
        f"{__name__}:worker_app", factory=True, host=options.host, port=options.port, workers=options.workers,
        http=CallbackProtocol, loop="uvloop" if _has_uvloop() else "asyncio", lifespan="on",
        access_log=False, log_config=None, log_level=options.log_level, server_header=False, proxy_headers=False,
        timeout_keep_alive=5, timeout_graceful_shutdown=10, backlog=2048,
    )


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


# -- the `serve` subcommand ----------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `serve`; each falls back to its TAVUS_* variable, then to the default."""
    parser.add_argument("--store", metavar="URL",
                        help="where to store events: file:///path, s3://…, gs://…, azure://… "
                             "(env TAVUS_STORE_URL; default file://./tavus-data)")
    parser.add_argument("--host", help=f"address to listen on (env TAVUS_HOST; default {DEFAULT_HOST})")
    parser.add_argument("--port", help=f"port to listen on (env TAVUS_PORT; default {DEFAULT_PORT})")
    parser.add_argument("--token", action="append", metavar="TOKEN",
                        help="secret token callers must present; repeat or comma-separate for rotation "
                             "(env TAVUS_CALLBACK_TOKENS; default: a new random token, printed once)")
    parser.add_argument("--workers", type=int, metavar="N",
                        help="worker processes (env TAVUS_WORKERS; default: one per CPU)")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="threads per worker for a cloud store; a local folder is written in batches by one "
                             f"(env TAVUS_THREADS; default {DEFAULT_THREADS})")
    parser.add_argument("--max-body-bytes", type=int, metavar="N",
                        help="largest body accepted (env TAVUS_MAX_BODY_BYTES; default 5 MiB)")
    parser.add_argument("--read-timeout", type=float, metavar="SECONDS",
                        help="longest wait for a client's next bytes (env TAVUS_READ_TIMEOUT; "
                             f"default {DEFAULT_READ_TIMEOUT:g})")
    parser.add_argument("--forward", metavar="URL",
                        help="also publish every stored event to a bus (env TAVUS_FORWARD_URL)")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"],
                        help="log verbosity (env TAVUS_LOG_LEVEL; default info)")


def run(args: argparse.Namespace) -> int:
    """Validate everything, print the callback URL, then serve until stopped."""
    settings, options, generated = resolve(args, os.environ)
    where = Pipeline(settings).store.url  # fail now, with a clear message, on a bad store or forward URL
    _check_port_free(options)
    configure_logging(options.log_level, settings.tokens)
    print(banner(settings, options, generated, where), flush=True)
    serve(settings, options)
    return 0


def resolve(args: argparse.Namespace, env: Mapping[str, str]) -> tuple[Settings, ServeOptions, bool]:
    """Settings and options from the command line over TAVUS_* variables; True when a token was made up."""
    settings = Settings.from_env(env)
    if args.store:
        settings = replace(settings, store_url=args.store)
    if args.token:
        settings = replace(settings, tokens=parse_tokens(",".join(args.token), source="--token"))
    if args.max_body_bytes is not None:
        if args.max_body_bytes <= 0:
            raise ConfigError("--max-body-bytes must be greater than zero")
        settings = replace(settings, max_body_bytes=args.max_body_bytes)
    if args.forward:
        settings = replace(settings, forward_url=args.forward)
    generated = not settings.tokens
    if generated:
        settings = replace(settings, tokens=(secrets.token_urlsafe(32),))
    options = ServeOptions(
        host=args.host or env.get("TAVUS_HOST", "").strip() or DEFAULT_HOST,
        port=_port(args.port, "--port") if args.port is not None else _port(env.get("TAVUS_PORT"), "TAVUS_PORT"),
        workers=_count(args.workers, env.get("TAVUS_WORKERS"), "TAVUS_WORKERS", _cpu_count()),
        threads=_count(args.threads, env.get("TAVUS_THREADS"), "TAVUS_THREADS", DEFAULT_THREADS),
        read_timeout=_seconds(args.read_timeout, env.get("TAVUS_READ_TIMEOUT")),
        log_level=args.log_level or env.get("TAVUS_LOG_LEVEL", "").strip().lower() or "info",
    )
    if options.log_level not in ("debug", "info", "warning", "error"):
        raise ConfigError(f"TAVUS_LOG_LEVEL={options.log_level!r}: use debug, info, warning or error")
    return settings, options, generated


def banner(settings: Settings, options: ServeOptions, generated: bool, store_url: str | None = None) -> str:
    """What to paste into Tavus; the token is shown only when it was made up for this run."""
    token = settings.tokens[0] if generated else "<your token>"
    lines = [
        f"tavus-callbacks serve: listening on {options.base_url} "
        f"({options.workers} worker processes), storing in {store_url or settings.store_url}",
        f"Callback URL: {options.base_url}?token={token}",
    ]
    if generated:
        lines.append("This token was generated for this run: pass --token or set TAVUS_CALLBACK_TOKENS "
                     "to keep the same URL across restarts.")
    lines.append(f"Tavus must reach it from the internet: expose port {options.port} with a tunnel "
                 f"(e.g. `ngrok http {options.port}`) and use the tunnel's https address with the same "
                 "?token=... as callback_url.")
    lines.append(f"Try it: tavus-callbacks send --all --url '{options.base_url}' --token ...")
    return "\n".join(lines)


def _check_port_free(options: ServeOptions) -> None:
    family = socket.AF_INET6 if ":" in options.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((options.host, options.port))
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {options.host}:{options.port}: {exc.strerror or exc}; "
                "choose another --port (or TAVUS_PORT), or stop what is using it"
            ) from None


def _cpu_count() -> int:
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _port(raw: str | None, source: str) -> int:
    if raw is None or not raw.strip():
        return DEFAULT_PORT
    try:
        port = int(raw)
    except ValueError:
        raise ConfigError(f"{source}={raw!r} is not a port number: use a whole number from 1 to 65535") from None
    if not 0 < port < 65536:
        raise ConfigError(f"{source}={raw!r} is out of range: use a whole number from 1 to 65535")
    return port


def _count(flag: int | None, raw: str | None, name: str, default: int) -> int:
    source, value = ("--" + name.removeprefix("TAVUS_").lower(), str(flag)) if flag is not None else (name, raw)
    if value is None or not value.strip():
        return default
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{source}={value!r} is not a whole number") from None
    if number < 1:
        raise ConfigError(f"{source}={value!r} must be at least 1")
    return number


def _seconds(flag: float | None, raw: str | None) -> float:
    source, value = ("--read-timeout", str(flag)) if flag is not None else ("TAVUS_READ_TIMEOUT", raw)
    if value is None or not value.strip():
        return DEFAULT_READ_TIMEOUT
    try:
        seconds = float(value)
    except ValueError:
        raise ConfigError(f"{source}={value!r} is not a number of seconds") from None
    if not seconds > 0:
        raise ConfigError(f"{source}={value!r} must be greater than zero")
    return seconds
