"""The scheduled reconcile run every cloud's timer calls, of the reconcile settings (settings.ReconcileVariables)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from tavus_callbacks.errors import ConfigError
from tavus_callbacks.reconcile.client import TavusClient
from tavus_callbacks.reconcile.sweep import Summary, Sweep
from tavus_callbacks.settings import DEFAULT_SINCE, ReconcileVariables, parse_since

if TYPE_CHECKING:
    from tavus_callbacks.pipeline import Pipeline

__all__ = ["DEFAULT_SINCE", "client_from_env", "parse_since", "run_scheduled"]
API_URL_VAR = "TAVUS_API_URL"
MAX_RPM_VAR = "TAVUS_API_MAX_RPM"


def client_from_env(api_key: str | None = None, environ: Mapping[str, str] | None = None,
                    max_per_minute: int | None = None) -> TavusClient:
    """The API client of `api_key` (TAVUS_API_KEY unless given), TAVUS_API_URL and TAVUS_API_MAX_RPM (unless
    `max_per_minute`, the flag --max-rpm, is given)."""
    read = ReconcileVariables.read(environ, {"api_max_rpm": ("--max-rpm", max_per_minute)})
    key = (api_key or read.api_key or "").strip()
    if not key:
        raise ConfigError("TAVUS_API_KEY is not set: set it to the API key of your Tavus account "
                          "(the platform's API Keys page)")
    return TavusClient(key, read.api_url, max_per_minute=read.api_max_rpm)


def run_scheduled(pipeline: Callable[[], Pipeline], *, api_key: str | None = None,
                  seconds_left: float | None = None, environ: Mapping[str, str] | None = None) -> Summary | None:
    """One sweep with `pipeline()`, or None (off) without an API key (`api_key`, else TAVUS_API_KEY).

    It works for TAVUS_RECONCILE_BUDGET_SECONDS (default 10), or less when the platform leaves
    `seconds_left`; the next run resumes where this one stopped.
    """
    read = ReconcileVariables.read(environ)
    key = (api_key or read.api_key or "").strip()
    if not key:
        return None
    budget = read.reconcile_budget_seconds if seconds_left is None else min(read.reconcile_budget_seconds,
                                                                             seconds_left)
    # what it stores reaches the store's change feed, which derives it as it does a callback
    sweep = Sweep(pipeline(), client_from_env(key, environ), since=read.since(), deadline=time.monotonic() + budget,
                  derive=False)
    return sweep.run()
