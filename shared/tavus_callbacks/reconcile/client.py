"""A polite client of the vendor's conversations API on urllib3: its Retry (backoff, Retry-After) and timeouts,
a rate cap, and a wall-clock deadline no request outlives, whatever the server does.

The API key travels in the `x-api-key` header and never appears in a log line or an error message.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode, urlsplit

import orjson
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, HTTPError, InvalidHeader, MaxRetryError
from urllib3.util import Retry, Timeout

from tavus_callbacks.errors import ConfigError, TavusCallbacksError
from tavus_callbacks.settings import DEFAULT_API_URL
from tavus_callbacks.settings import DEFAULT_MAX_PER_MINUTE as DEFAULT_MAX_PER_MINUTE

if TYPE_CHECKING:
    from urllib3.response import BaseHTTPResponse

log = logging.getLogger("tavus_callbacks")

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0  # between two reads of an answer
REQUEST_SECONDS = 120.0  # a request, its retries and pauses included, ends by then (or the run's deadline)
ATTEMPTS = 5  # the first try included
BACKOFF = 0.5  # urllib3's backoff factor: retries wait 0, 1, 2, 4 s, plus up to BACKOFF s of jitter
MAX_WAIT = 60.0  # the longest Retry-After waited for; a longer one stops the run (RateLimited)
RETRY_STATUSES = frozenset({429, *range(500, 600)})
_AT_DEADLINE = 0.05  # seconds: a failure this close to the deadline is the deadline's
_RETRY_AFTER_SHOWN = 10**10  # urllib3 clamps a Retry-After to this (its default, 6 h, would misquote the API)


class TavusAPIError(TavusCallbacksError):
    """The vendor's API refused a request, kept failing or answered something unreadable; the message says which
    and what to do."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class KeyRefused(TavusAPIError):
    """The API answered 401 or 403: no request with this key will do better."""


class DeadlineReached(TavusCallbacksError):
    """The run's time budget is spent; the work left is for the next run."""


class RateLimited(DeadlineReached):
    """The API asked (429, Retry-After) for a pause longer than the run may wait; the next run resumes."""


class _Expired(Exception):
    """A request's deadline came before its answer (whose deadline it was, the request says)."""


@dataclass(frozen=True, slots=True)
class Page:
    """One page of `GET /v2/conversations`."""

    conversations: list[dict[str, Any]]
    total_count: int


class _Watch:
    """The connections of one client and the deadline of its request in flight: at that deadline a timer shuts
    their sockets, so an answer that drips or stalls ends there (urllib3's timeouts bound each read, not the
    whole answer: "consider having a second watcher thread to cut off a slow request", its documentation says)."""

    def __init__(self) -> None:
        self.connections: weakref.WeakSet[HTTPConnection] = weakref.WeakSet()
        self.deadline: float | None = None
        self.cut = False
        self.sent = 0  # requests written, retries included
        self._timer: threading.Timer | None = None

    def arm(self, deadline: float) -> None:
        self.deadline, self.cut = deadline, False
        self._timer = threading.Timer(max(deadline - time.monotonic(), 0.0), self._cut)
        self._timer.daemon = True
        self._timer.start()

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.deadline = None

    def left(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()

    def _cut(self) -> None:
        self.cut = True
        for connection in list(self.connections):
            sock = connection.sock
            if sock is not None:
                with contextlib.suppress(OSError):  # already closed
                    sock.shutdown(socket.SHUT_RDWR)


class _WatchedConnection(HTTPConnection):
    """urllib3's connection, known to the client's `_Watch`, connecting within the time the request has left."""

    def __init__(self, *args: Any, watch: _Watch, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.watch = watch

    def connect(self) -> None:
        _connect(self, super().connect)

    def request(self, *args: Any, **kwargs: Any) -> None:
        self.watch.sent += 1
        super().request(*args, **kwargs)


class _WatchedTLSConnection(_WatchedConnection, HTTPSConnection):
    """The same for https (urllib3's HTTPSConnection is an HTTPConnection: the methods above wrap its own)."""


def _connect(connection: _WatchedConnection, connect: Callable[[], None]) -> None:
    left = connection.watch.left()
    if left is not None:
        if left <= 0:
            raise ConnectTimeoutError(connection, "the request's time is spent")
        current = connection.timeout
        connection.timeout = min(current, left) if isinstance(current, int | float) else left
    connect()
    connection.watch.connections.add(connection)


class _Pool(HTTPConnectionPool):
    ConnectionCls = _WatchedConnection


class _TLSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedTLSConnection


class _Retry(Retry):
    """urllib3's Retry that takes no pause ending past the request's deadline: it raises instead, saying why
    (RateLimited for a Retry-After too long to wait, TavusAPIError for a server that kept failing, _Expired
    when the deadline itself came); a Retry-After that is no time (`nan`) means backing off."""

    deadline: float | None = None
    run_deadline: float | None = None
    pause: Callable[[float], None] = staticmethod(time.sleep)
    path = ""

    def new(self, **kw: Any) -> _Retry:
        retry = super().new(**kw)
        retry.deadline, retry.run_deadline, retry.pause, retry.path = (
            self.deadline, self.run_deadline, self.pause, self.path)
        return retry

    def get_retry_after(self, response: BaseHTTPResponse) -> float | None:
        try:
            return super().get_retry_after(response)
        except InvalidHeader:
            return None

    def sleep(self, response: BaseHTTPResponse | None = None) -> None:
        asked = self.get_retry_after(response) if response is not None else None
        wait = asked if asked is not None else self.get_backoff_time()
        now = time.monotonic()
        why = self.last_problem()
        if asked is not None and asked > MAX_WAIT:
            raise RateLimited(f"GET {self.path} answered {why} asking to wait {asked:.0f} s, longer than a run "
                              f"waits ({MAX_WAIT:g} s)")
        if self.deadline is not None and now + wait > self.deadline:
            if self.deadline - now <= _AT_DEADLINE:
                raise _Expired
            if asked is not None and self.deadline == self.run_deadline:
                raise RateLimited(f"GET {self.path} answered {why} asking to wait {asked:.0f} s, beyond this run's "
                                  "time budget")
            tries = len(self.history)
            raise TavusAPIError(f"GET {self.path}: {why} ({tries} {'try' if tries == 1 else 'tries'}); "
                                "no time left for another try; try again later")
        log.warning("tavus api: GET %s: %s; retrying in %.1f s (try %d of %d)", self.path, why, wait,
                    len(self.history) + 1, ATTEMPTS)
        if wait > 0:
            self.pause(wait)

    def last_problem(self) -> str:
        """What the last try met: a status, or the kind of error (never the key: it is in no URL or error)."""
        if not self.history:
            return "no answer"
        last = self.history[-1]
        if last.status:
            return str(last.status)
        error = last.error
        cause = getattr(error, "reason", None) or error
        return "timed out" if "timed out" in str(cause).lower() else type(cause).__name__


class TavusClient:
    """GET requests on one kept connection, at most `max_per_minute` a minute; 429, 5xx and network errors are
    retried by urllib3's Retry (Retry-After honoured, jittered exponential backoff). Each request ends by its
    deadline: the run's (`deadline`, time.monotonic()) or REQUEST_SECONDS after it started, whichever comes
    first, however slowly the server answers. `requests` counts the requests sent, retries included."""

    def __init__(self, api_key: str, base_url: str = DEFAULT_API_URL, *, max_per_minute: int = DEFAULT_MAX_PER_MINUTE,
                 connect_timeout: float = CONNECT_TIMEOUT, read_timeout: float = READ_TIMEOUT,
                 attempts: int = ATTEMPTS, backoff: float = BACKOFF, request_seconds: float = REQUEST_SECONDS,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if not api_key.strip():
            raise ConfigError("TAVUS_API_KEY is empty: set it to the API key of your Tavus account")
        parts = urlsplit(base_url.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"TAVUS_API_URL {base_url!r} is not an http(s) URL such as {DEFAULT_API_URL}")
        self._key = api_key.strip()
        self._base_path = parts.path
        self.interval = 60.0 / max_per_minute if max_per_minute > 0 else 0.0
        self.connect_timeout, self.read_timeout = connect_timeout, read_timeout
        self.attempts, self.backoff, self.request_seconds, self._sleep = attempts, backoff, request_seconds, sleep
        self._watch = _Watch()
        pool = _TLSPool if parts.scheme == "https" else _Pool
        self._pool = pool(parts.hostname, parts.port, maxsize=1, block=True, watch=self._watch,
                          headers={"x-api-key": self._key, "Accept": "application/json",
                                   "User-Agent": "tavus-callbacks-reconcile"})
        self._next_start, self._lock = 0.0, threading.Lock()

    @property
    def requests(self) -> int:
        return self._watch.sent

    def list_conversations(self, page: int, limit: int, status: str | None = None,
                           deadline: float | None = None) -> Page:
        """One page of the account's conversations (`data`, `total_count`)."""
        query = {"limit": limit, "page": page, **({"status": status} if status else {})}
        answer = self.get("/v2/conversations", query, deadline)
        data = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(data, list):
            raise TavusAPIError("GET /v2/conversations answered without a `data` list; is TAVUS_API_URL the "
                                "vendor's API?")
        total = answer.get("total_count")
        count = total if isinstance(total, int) and not isinstance(total, bool) else len(data)
        return Page([c for c in data if isinstance(c, dict)], count)

    def conversation(self, conversation_id: str, deadline: float | None = None) -> dict[str, Any]:
        """The verbose conversation: its fields, `events` and `shutdown_reason`."""
        answer = self.get(f"/v2/conversations/{quote(conversation_id, safe='')}", {"verbose": "true"}, deadline)
        if not isinstance(answer, dict):
            raise TavusAPIError(f"GET /v2/conversations/{conversation_id} answered something other than an object")
        return answer

    def get(self, path: str, query: dict[str, Any], deadline: float | None = None) -> Any:
        """The decoded JSON answer of a GET, after the retries the answer calls for, by the request's deadline."""
        self._pace(deadline)
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            raise DeadlineReached("the run's time budget is spent")
        limit = now + self.request_seconds if deadline is None else min(deadline, now + self.request_seconds)
        retry = _Retry(total=self.attempts - 1, redirect=0, raise_on_redirect=False, raise_on_status=False,
                       status_forcelist=RETRY_STATUSES, backoff_factor=self.backoff, backoff_jitter=self.backoff,
                       backoff_max=MAX_WAIT, respect_retry_after_header=True,
                       retry_after_max=_RETRY_AFTER_SHOWN)  # said as asked; never waited for beyond MAX_WAIT
        retry.deadline, retry.run_deadline, retry.pause, retry.path = limit, deadline, self._sleep, path
        timeout = Timeout(connect=min(self.connect_timeout, limit - now), read=min(self.read_timeout, limit - now))
        self._watch.arm(limit)
        try:
            response = self._pool.urlopen("GET", f"{self._base_path}{path}?{urlencode(query)}", retries=retry,
                                          timeout=timeout)
        except (HTTPError, OSError) as exc:
            raise self._no_answer(path, exc, limit, deadline) from None
        except _Expired:
            raise self._expired(path, limit, deadline) from None
        finally:
            self._watch.disarm()
        if self._watch.cut:  # shut at the deadline just as the answer ended: it is not trusted whole
            raise self._expired(path, limit, deadline)
        status, body = response.status, response.data
        if 200 <= status < 300:
            try:
                return orjson.loads(body)
            except orjson.JSONDecodeError:
                raise TavusAPIError(f"GET {path} answered {status} with a body that is not JSON") from None
        if status in RETRY_STATUSES:
            raise TavusAPIError(f"GET {path}: {status}, {self.attempts} tries; try again later", status)
        raise self._refusal(path, status, body)

    def close(self) -> None:
        self._pool.close()

    def _no_answer(self, path: str, exc: BaseException, limit: float, deadline: float | None) -> TavusCallbacksError:
        """Why a request got no answer: the run's deadline, its own, or the network (after its retries)."""
        if self._watch.cut or time.monotonic() >= limit - _AT_DEADLINE:
            return self._expired(path, limit, deadline)
        cause = exc.reason if isinstance(exc, MaxRetryError) and exc.reason is not None else exc
        problem = "timed out" if "timed out" in str(cause).lower() else type(cause).__name__
        return TavusAPIError(f"GET {path}: {problem}, {self.attempts} tries; try again later")

    def _expired(self, path: str, limit: float, deadline: float | None) -> TavusCallbacksError:
        """The run's deadline came (the next run goes on), or the request's own (the API is too slow)."""
        if limit == deadline:
            return DeadlineReached(f"the time budget ran out while GET {path} was unanswered")
        return TavusAPIError(f"GET {path} was not answered within {self.request_seconds:g} s (retries included); "
                             "the API is too slow, try again later")

    def _pace(self, deadline: float | None) -> None:
        """Wait until the next request may start under the per-minute cap."""
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next_start)
            if deadline is not None and start > deadline:
                raise DeadlineReached("the request rate cap leaves no time for another request in this run")
            self._next_start = start + self.interval
        if start > now:
            self._sleep(start - now)

    def _refusal(self, path: str, status: int, body: bytes) -> TavusAPIError:
        """What a 4xx means, with the API's own words (never the key)."""
        said = body[:200].decode("utf-8", "replace").replace(self._key, "[redacted]").strip()
        said = f" ({said})" if said else ""
        if status in (401, 403):
            return KeyRefused(f"GET {path} answered {status}{said}: the API key was refused; check TAVUS_API_KEY",
                              status)
        if status == 404:
            return TavusAPIError(f"GET {path} answered 404{said}: not found", status)
        return TavusAPIError(f"GET {path} answered {status}{said}", status)
