"""`tavus-callbacks serve`: the pipeline as a small ASGI app, run by `uvicorn.run` with one process per core.

The app only translates (ASGI scope -> Request, Response -> ASGI messages) like any adapter and hands each
request to a thread of its worker's pool. It refuses an over-limit body from its Content-Length before
reading it and gives every body a deadline; uvicorn's own options bound connections and idle keep-alives.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qsl

import orjson
import uvicorn

from .auth import is_authorized
from .errors import ConfigError
from .http import Outcome, Request, Response
from .logs import configure_logging, redact, utc_stamp
from .pipeline import Pipeline, internal_error, too_large
from .settings import DEFAULT_STORE_URL, Settings, parse_tokens

log = logging.getLogger("tavus_callbacks.server")
access_log = logging.getLogger("tavus_callbacks.access")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_THREADS = 8
DEFAULT_READ_TIMEOUT = 10.0
MAX_CONNECTIONS = 1000  # per worker process: beyond it, uvicorn answers 503

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class _Gone(Exception):
    """The client hung up before its body arrived: nobody to answer."""


class CallbackApp:
    """ASGI app around a Pipeline: scope -> Request, Response -> ASGI messages, one access line each."""

    def __init__(self, pipeline: Pipeline, read_timeout: float = DEFAULT_READ_TIMEOUT,
                 threads: int = DEFAULT_THREADS) -> None:
        self.pipeline = pipeline
        self.read_timeout = read_timeout
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="tavus-callbacks")
        self.access = AccessLog(pipeline.settings.tokens) if access_log.isEnabledFor(logging.INFO) else None

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
    """The access line of each request, in the JSON shape of every other line, written to stderr in one call.

    It skips the logging machinery (a record, the caller's frame, filters), which cost as much per request
    as storing a small event. The path, the only part a client chose, is redacted like any line.
    """

    def __init__(self, tokens: Iterable[str] = (), fd: int = 2) -> None:
        self.tokens = tuple(tokens)
        self.fd = fd
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
        with contextlib.suppress(OSError):  # a closed or full stderr must not fail the request
            os.write(self.fd, orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE))


def _headers(scope: Scope) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in scope["headers"]:
        key, text = name.decode("latin-1").lower(), value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return headers


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
            return b"".join(chunks)


def _content_length(headers: Mapping[str, str]) -> int | None:
    try:
        return max(int(headers.get("content-length") or ""), 0)
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


_WORKER_ENV = "TAVUS_SERVE_WORKER"  # what each worker process needs, in its environment (workers start afresh)


def worker_app() -> CallbackApp:
    """The app of one worker process: its own Pipeline, built from what `serve` put in the environment."""
    options = orjson.loads(os.environ[_WORKER_ENV])
    settings = Settings.from_env(os.environ)
    configure_logging(options["log_level"], settings.tokens)
    pipeline = Pipeline(settings, fold_later=True)  # answers wait for the event object only
    return CallbackApp(pipeline, read_timeout=options["read_timeout"], threads=options["threads"])


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
    # uvloop's libuv otherwise accepts every waiting connection in the worker that wakes first: spread them
    os.environ.setdefault("UV_TCP_SINGLE_ACCEPT", "1")
    uvicorn.run(
        f"{__name__}:worker_app", factory=True, host=options.host, port=options.port, workers=options.workers,
        lifespan="off", access_log=False, log_config=None, log_level=options.log_level, server_header=False,
        proxy_headers=False, limit_concurrency=MAX_CONNECTIONS, timeout_keep_alive=5,
        timeout_graceful_shutdown=10, h11_max_incomplete_event_size=16 * 1024, backlog=2048,
    )


# -- the `serve` subcommand ----------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `serve`; each falls back to its TAVUS_* variable, then to the default."""
    option = parser.add_argument
    option("--store", metavar="URL", help="where to store events: sqlite:///file.db, s3://…, gs://…, azure://… "
                                          f"(env TAVUS_STORE_URL; default {DEFAULT_STORE_URL})")
    option("--host", help=f"address to listen on (env TAVUS_HOST; default {DEFAULT_HOST})")
    option("--port", help=f"port to listen on (env TAVUS_PORT; default {DEFAULT_PORT})")
    option("--token", action="append", metavar="TOKEN",
           help="secret token callers must present; repeat or comma-separate for rotation "
                "(env TAVUS_CALLBACK_TOKENS; default: a new random token, printed once)")
    option("--workers", metavar="N", help="worker processes (env TAVUS_WORKERS; default: one per CPU)")
    option("--threads", metavar="N", help=f"threads per worker (env TAVUS_THREADS; default {DEFAULT_THREADS})")
    option("--max-body-bytes", type=int, metavar="N",
           help="largest body accepted (env TAVUS_MAX_BODY_BYTES; default 5 MiB)")
    option("--read-timeout", metavar="SECONDS", help="longest wait for a request's whole body "
                                                     f"(env TAVUS_READ_TIMEOUT; default {DEFAULT_READ_TIMEOUT:g})")
    option("--forward", metavar="URL", help="also publish every stored event to a bus (env TAVUS_FORWARD_URL)")
    option("--log-level", choices=["debug", "info", "warning", "error"],
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

    def number(flag: str, kind: type[int] | type[float], default: float, low: float, high: float = 1e9,
               what: str = "whole number") -> Any:
        name = "TAVUS_" + flag.upper().replace("-", "_")
        given = getattr(args, flag.replace("-", "_"))
        source, raw = (f"--{flag}", str(given)) if given is not None else (name, env.get(name))
        if raw is None or not raw.strip():
            return kind(default)
        try:
            value = kind(raw)
        except ValueError:
            raise ConfigError(f"{source}={raw!r} is not a {what}") from None
        if not low <= value <= high:
            raise ConfigError(f"{source}={raw!r} is out of range: use a number from {low:g} to {high:g}")
        return value

    options = ServeOptions(
        host=args.host or env.get("TAVUS_HOST", "").strip() or DEFAULT_HOST,
        port=number("port", int, DEFAULT_PORT, 1, 65535, "port number"),
        workers=number("workers", int, _cpu_count(), 1),
        threads=number("threads", int, DEFAULT_THREADS, 1),
        read_timeout=number("read-timeout", float, DEFAULT_READ_TIMEOUT, 0.001, what="number of seconds"),
        log_level=args.log_level or env.get("TAVUS_LOG_LEVEL", "").strip().lower() or "info",
    )
    if options.log_level not in ("debug", "info", "warning", "error"):
        raise ConfigError(f"TAVUS_LOG_LEVEL={options.log_level!r}: use debug, info, warning or error")
    return settings, options, generated


def banner(settings: Settings, options: ServeOptions, generated: bool, store_url: str | None = None) -> str:
    """What to paste into Tavus; the token is shown only when it was made up for this run."""
    token = settings.tokens[0] if generated else "<your token>"
    lines = [f"tavus-callbacks serve: listening on {options.base_url} ({options.workers} worker processes), "
             f"storing in {store_url or settings.store_url}",
             f"Callback URL: {options.base_url}?token={token}"]
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
            raise ConfigError(f"cannot listen on {options.host}:{options.port}: {exc.strerror or exc}; "
                              "choose another --port (or TAVUS_PORT), or stop what is using it") from None


def _cpu_count() -> int:
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
