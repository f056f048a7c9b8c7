"""`tavus-callbacks serve`: the pipeline as a WSGI app on gunicorn's threaded workers, one per core.

The WSGI app only translates (environ -> Request, Response -> start_response) like any adapter; it
refuses an over-limit body from its Content-Length before reading it, bounds every socket read so a
slow or lying client cannot hold a thread, and logs JSON lines that never hold the body or the token.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import secrets
import socket
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl

import orjson
from gunicorn import glogging
from gunicorn.app.base import BaseApplication
from gunicorn.workers import gthread

from .errors import ConfigError
from .http import Outcome, Request, Response
from .pipeline import Pipeline, too_large
from .settings import Settings, parse_tokens

log = logging.getLogger("tavus_callbacks.server")
access_log = logging.getLogger("tavus_callbacks.access")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_THREADS = 8
DEFAULT_READ_TIMEOUT = 10.0

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


# -- logging -----------------------------------------------------------------------------------

_SECRET_PATTERNS = (
    re.compile(r"(?i)(token=)[^&\s\"'#]+"),
    re.compile(r"(?i)(bearer\s+)[^\s\"',]+"),
)
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


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


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, pid, message and the record's extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        created = record.created
        line: dict[str, Any] = {
            "time": f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(created))}.{int(created % 1 * 1000):03d}Z",
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
    """JSON lines on stderr for the package's loggers, every line passed through the token redaction.

    At `info` a request is one access line (with its result and event id); the core's own line per
    callback, which says the same, shows only at `debug`.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter(tokens))
    root = logging.getLogger("tavus_callbacks")
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    numeric = logging.getLevelName(level.upper())
    root.setLevel(numeric if numeric == logging.DEBUG else max(numeric, logging.WARNING))
    for name in (access_log.name, log.name):
        logging.getLogger(name).setLevel(numeric)
    root.propagate = False


class GunicornLogger(glogging.Logger):  # type: ignore[misc]
    """gunicorn's own log in the same JSON lines, redacted (its error lines can quote a request URI)."""

    tokens: tuple[str, ...] = ()

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for handler in self.error_log.handlers:
            handler.setFormatter(JsonFormatter())
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(RedactingFilter(self.tokens))

    def exception(self, msg: str, *args: Any, **kwargs: Any) -> None:
        """A client that went quiet is one warning line, not a traceback."""
        if isinstance(sys.exc_info()[1], TimeoutError):
            self.warning("closed a connection: the client sent nothing for %g s", _TimedSocket.timeout_seconds)
            return
        super().exception(msg, *args, **kwargs)


# -- bounded socket reads -----------------------------------------------------------------------

# Body deadlines by socket: a socket's class can be swapped but it cannot carry new attributes.
_deadlines: dict[int, float] = {}


class _TimedSocket(socket.socket):
    """A client socket whose 'blocking' mode is a timeout, so no read or write can wait forever.

    While a body is read, every receive also counts against the body's overall deadline.
    """

    __slots__ = ()
    timeout_seconds: float = DEFAULT_READ_TIMEOUT

    def setblocking(self, flag: bool) -> None:
        if flag:
            self.settimeout(self.timeout_seconds)
        else:
            super().setblocking(False)

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        deadline = _deadlines.get(id(self))
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("the body did not arrive in time")
            self.settimeout(min(remaining, self.timeout_seconds))
        return super().recv(bufsize, flags)


class ThreadWorker(gthread.ThreadWorker):  # type: ignore[misc]
    """gunicorn's gthread worker with every client socket bounded by the read timeout.

    gunicorn reads request headers in blocking mode; a client that sends them slowly would hold a
    thread forever. The worker switches each accepted socket to `_TimedSocket` instead.
    """

    def enqueue_req(self, conn: Any) -> None:
        sock = getattr(conn, "sock", None)
        if type(sock) is socket.socket:
            sock.__class__ = _TimedSocket
        super().enqueue_req(conn)

    def handle(self, conn: Any) -> Any:
        """Serve a connection; one to close lingers here, on a pool thread, not on the accept loop.

        gunicorn closes gracefully on its main loop, waiting up to 2 s for the peer to hang up;
        a client that never does would stall every other connection of the worker meanwhile.
        """
        result = super().handle(conn)
        if result is False:
            _linger_and_shut(conn.sock, _TimedSocket.timeout_seconds)
        return result


def _linger_and_shut(sock: socket.socket, timeout: float) -> None:
    """Half-close, read what the peer still sends for at most `timeout` s, then shut both ways."""
    try:
        sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + min(timeout, 2.0)
        drained = 0
        while drained < 65536 and (remaining := deadline - time.monotonic()) > 0:
            sock.settimeout(remaining)
            data = sock.recv(4096)
            if not data:
                break
            drained += len(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


# -- the WSGI app --------------------------------------------------------------------------------

def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _headers(environ: Mapping[str, Any]) -> dict[str, str]:
    headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
    for name in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(name):
            headers[name.replace("_", "-").lower()] = environ[name]
    return headers


class CallbackApp:
    """WSGI app around a Pipeline: environ -> Request, Response -> start_response, one access line each."""

    def __init__(self, pipeline: Pipeline, read_timeout: float = DEFAULT_READ_TIMEOUT) -> None:
        self.pipeline = pipeline
        self.read_timeout = read_timeout

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        started = time.perf_counter()
        try:
            response = self.answer(environ)
        except Exception:
            log.exception("unexpected error answering a request")
            response = Response.json(500, {"error": "internal error; see the server's log"},
                                     outcome=Outcome("error"))
        headers = [*response.headers.items(), ("Content-Length", str(len(response.body)))]
        start_response(f"{response.status} {_reason(response.status)}", headers)
        self._log(environ, response, started)
        return [response.body]

    def answer(self, environ: dict[str, Any]) -> Response:
        """The pipeline's answer; the body is read only when the request may carry one we would accept."""
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        head = Request(
            method=method,
            path=environ.get("PATH_INFO") or "/",
            query=dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True)),
            headers=_headers(environ),
        )
        if method != "POST":
            return self.pipeline.handle(head)
        limit = self.pipeline.settings.max_body_bytes
        length = _content_length(environ)
        if length is not None and length > limit:
            # Not read: the pipeline answers 401 to a stranger, and 413 to a sender we know.
            return self.pipeline.handle(head) if not self._authorized(head) else too_large(limit)
        try:
            body = self._read_body(environ, length, limit)
        except TimeoutError:
            return Response.json(408, {"error": f"the body did not arrive within {self.read_timeout:g} s"},
                                 outcome=Outcome("timeout"))
        if body is None:
            return self.pipeline.handle(head) if not self._authorized(head) else too_large(limit)
        if length is not None and len(body) < length:
            return Response.json(400, {"error": "the body is shorter than its Content-Length"},
                                 outcome=Outcome("truncated"))
        return self.pipeline.handle(replace(head, body=body))

    def _authorized(self, head: Request) -> bool:
        from .auth import is_authorized

        return is_authorized(head, self.pipeline.settings.tokens)

    def _read_body(self, environ: dict[str, Any], length: int | None, limit: int) -> bytes | None:
        """The body (at most `limit` bytes; None when a chunked body runs over).

        The whole body must arrive within the read timeout, not each read: a client trickling one
        byte a second would otherwise hold a thread for as long as it likes.
        """
        sock = environ.get("gunicorn.socket")
        stream = environ["wsgi.input"]
        if sock is not None:
            _deadlines[id(sock)] = time.monotonic() + self.read_timeout
        try:
            if length is not None:
                data: bytes = stream.read(length) if length else b""
                return data
            data = stream.read(limit + 1)
            return None if len(data) > limit else data
        finally:
            if sock is not None and _deadlines.pop(id(sock), None) is not None:
                with contextlib.suppress(OSError):
                    sock.settimeout(_TimedSocket.timeout_seconds)

    def _log(self, environ: Mapping[str, Any], response: Response, started: float) -> None:
        if not access_log.isEnabledFor(logging.INFO):
            return
        outcome = response.outcome
        extra: dict[str, Any] = {
            "method": environ.get("REQUEST_METHOD"),
            "path": str(environ.get("PATH_INFO") or "/")[:200],
            "status": response.status,
            "ms": round((time.perf_counter() - started) * 1000, 2),
            "remote": environ.get("REMOTE_ADDR"),
        }
        if outcome is not None:
            extra["result"] = outcome.result
            if outcome.event_id:
                extra["event_id"] = outcome.event_id
            if outcome.event_type:
                extra["type"] = outcome.event_type
            if outcome.conversation_id:
                extra["conversation_id"] = outcome.conversation_id
        access_log.info("%s %s %s", extra["method"], extra["path"], response.status, extra=extra)



def _content_length(environ: Mapping[str, Any]) -> int | None:
    raw = environ.get("CONTENT_LENGTH")
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


class Server(BaseApplication):  # type: ignore[misc]
    """gunicorn, configured in code: `workers` processes of `threads` threads, each building its Pipeline."""

    def __init__(self, settings: Settings, options: ServeOptions) -> None:
        self.settings = settings
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        o = self.options
        config: dict[str, Any] = {
            "bind": [f"[{o.host}]:{o.port}" if ":" in o.host else f"{o.host}:{o.port}"],
            "workers": o.workers,
            "worker_class": ThreadWorker,
            "threads": o.threads,
            "keepalive": 5,
            "timeout": 30,
            "graceful_timeout": 10,
            "accesslog": None,
            "errorlog": "-",
            "loglevel": o.log_level,
            "logger_class": GunicornLogger,
            "proc_name": "tavus-callbacks",
            "control_socket_disable": True,
        }
        for key, value in config.items():
            if key in self.cfg.settings:
                self.cfg.set(key, value)

    def load(self) -> CallbackApp:
        """Runs in each worker after the fork: its own SDK clients, its own Pipeline."""
        from .clients import clear_clients

        clear_clients()  # the master's checks may have made clients; their pools must not cross a fork
        _TimedSocket.timeout_seconds = self.options.read_timeout
        return CallbackApp(Pipeline(self.settings), read_timeout=self.options.read_timeout)


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
                        help=f"threads per worker (env TAVUS_THREADS; default {DEFAULT_THREADS})")
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
    GunicornLogger.tokens = settings.tokens
    print(banner(settings, options, generated, where), flush=True)
    Server(settings, options).run()
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
        f"({options.workers} workers x {options.threads} threads), storing in {store_url or settings.store_url}",
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
