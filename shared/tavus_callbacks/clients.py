"""Cloud SDK clients made once per process and configuration, then reused by every request.

The limits bound one store call, so a request answers within 15 s even when the store is down: ATTEMPTS
tries of CONNECT_TIMEOUT + READ_TIMEOUT, plus a short backoff.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Hashable, Iterable
from typing import Any, TypeVar

T = TypeVar("T")

CONNECT_TIMEOUT = 2.0
READ_TIMEOUT = 5.0
ATTEMPTS = 2  # the first try included
BACKOFF = 0.5  # seconds before a retry
POOL_SIZE = 32  # connections kept per client: more than the threads a local server runs

_lock = threading.Lock()
_clients: dict[Hashable, Any] = {}


def cached_client(key: Hashable, factory: Callable[[], T]) -> T:
    """The client stored under `key`, made by `factory` on first use (once, even under threads)."""
    client: T | None = _clients.get(key)
    if client is None:
        with _lock:
            client = _clients.get(key)
            if client is None:
                client = _clients[key] = factory()
    return client


def env_key(kind: str, names: Iterable[str]) -> tuple[str | None, ...]:
    """A cache key from the environment variables a client reads when it is made."""
    return (kind, *(os.environ.get(name) for name in names))


def clear_clients() -> None:
    """Forget every cached client (tests, or after credentials were rotated in the environment)."""
    with _lock:
        _clients.clear()
