"""A polite client of the vendor's conversations API (`http.client`): timeouts, retries with backoff, a rate cap.

The API key travels in the `x-api-key` header and never appears in a log line or an error message.
"""

from __future__ import annotations

import http.client
import logging
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import orjson

from tavus_callbacks.errors import ConfigError, TavusCallbacksError

log = logging.getLogger("tavus_callbacks")

DEFAULT_API_URL = "https://tavusapi.com"
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0
ATTEMPTS = 5  # the first try included
BACKOFF = 1.0  # seconds before the first retry of a 5xx or a network error; doubles each time
MAX_WAIT = 60.0  # the longest pause between tries, whatever Retry-After asks
DEFAULT_MAX_PER_MINUTE = 120
_JITTER = random.Random()


class TavusAPIError(TavusCallbacksError):
    """The vendor's API refused a request or kept failing; the message says which and what to do."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class DeadlineReached(TavusCallbacksError):
    """The run's time budget is spent; the work left is for the next run."""


@dataclass(frozen=True, slots=True)
class Page:
    """One page of `GET /v2/conversations`."""

    conversations: list[dict[str, Any]]
    total_count: int


class TavusClient:
    """GET requests on one kept connection, at most `max_per_minute` a minute; 429 (after its Retry-After), 5xx
    and network errors are retried with jittered exponential backoff. `deadline` (time.monotonic()) bounds every
    request and pause; `requests` counts the requests sent."""

    def __init__(self, api_key: str, base_url: str = DEFAULT_API_URL, *, max_per_minute: int = DEFAULT_MAX_PER_MINUTE,
                 connect_timeout: float = CONNECT_TIMEOUT, read_timeout: float = READ_TIMEOUT,
                 attempts: int = ATTEMPTS, backoff: float = BACKOFF,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if not api_key.strip():
            raise ConfigError("TAVUS_API_KEY is empty: set it to the API key of your Tavus account")
        parts = urlsplit(base_url.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"TAVUS_API_URL {base_url!r} is not an http(s) URL such as {DEFAULT_API_URL}")
        self._key = api_key.strip()
        self._scheme, self._host, self._port, self._base_path = parts.scheme, parts.hostname, parts.port, parts.path
        self.interval = 60.0 / max_per_minute if max_per_minute > 0 else 0.0
        self.connect_timeout, self.read_timeout = connect_timeout, read_timeout
        self.attempts, self.backoff, self._sleep = attempts, backoff, sleep
        self._connection: http.client.HTTPConnection | None = None
        self._next_start, self._lock, self.requests = 0.0, threading.Lock(), 0

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
        """The decoded JSON answer of a GET, after the retries the answer calls for."""
        target = f"{self._base_path}{path}?{urlencode(query)}"
        for attempt in range(1, self.attempts + 1):
            self._pace(deadline)
            try:
                status, headers, body = self._send(target, deadline)
            except (OSError, http.client.HTTPException) as exc:
                self._drop_connection()
                problem = "timed out" if isinstance(exc, socket.timeout | TimeoutError) else type(exc).__name__
                wait, why = self._backoff(attempt), f"{path}: {problem}"
            else:
                if 200 <= status < 300:
                    try:
                        return orjson.loads(body)
                    except orjson.JSONDecodeError:
                        raise TavusAPIError(f"GET {path} answered {status} with a body that is not JSON") from None
                if status == 429:
                    wait = min(_retry_after(headers.get("retry-after")) or self._backoff(attempt), MAX_WAIT)
                    why = f"{path}: 429 too many requests"
                elif status >= 500:
                    wait, why = self._backoff(attempt), f"{path}: {status}"
                else:
                    raise TavusAPIError(self._refusal(path, status, body), status)
            if attempt == self.attempts:
                raise TavusAPIError(f"GET {why}, {self.attempts} tries; try again later")
            if deadline is not None and time.monotonic() + wait > deadline:
                raise DeadlineReached(f"GET {why}; no time left to retry in this run")
            log.warning("tavus api: GET %s; retrying in %.1f s (try %d of %d)", why, wait, attempt + 1, self.attempts)
            self._sleep(wait)
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._drop_connection()

    def _send(self, target: str, deadline: float | None) -> tuple[int, dict[str, str], bytes]:
        """One request on the kept connection (opened with the connect timeout), read with the read timeout."""
        read_timeout = self.read_timeout
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise DeadlineReached("the run's time budget is spent")
            read_timeout = min(read_timeout, left)
        if self._connection is None:
            kind = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
            connection = kind(self._host, self._port, timeout=min(self.connect_timeout, read_timeout))
            connection.connect()
            self._connection = connection
        connection = self._connection
        assert connection.sock is not None
        connection.sock.settimeout(read_timeout)
        self.requests += 1
        connection.request("GET", target, headers={"x-api-key": self._key, "Accept": "application/json",
                                                   "User-Agent": "tavus-callbacks-reconcile"})
        response = connection.getresponse()
        body = response.read()
        headers = {k.lower(): v for k, v in response.getheaders()}
        if response.will_close:
            self._drop_connection()
        return response.status, headers, body

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

    def _backoff(self, attempt: int) -> float:
        return float(min(self.backoff * 2.0 ** (attempt - 1), MAX_WAIT)) * _JITTER.uniform(0.5, 1.0)

    def _refusal(self, path: str, status: int, body: bytes) -> str:
        """What a 4xx means, with the API's own words (never the key)."""
        said = body[:200].decode("utf-8", "replace").replace(self._key, "[redacted]").strip()
        said = f" ({said})" if said else ""
        if status in (401, 403):
            return f"GET {path} answered {status}{said}: the API key was refused; check TAVUS_API_KEY"
        if status == 404:
            return f"GET {path} answered 404{said}: not found"
        return f"GET {path} answered {status}{said}"

    def _drop_connection(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header: a number of seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, float(when.timestamp() - time.time()))
