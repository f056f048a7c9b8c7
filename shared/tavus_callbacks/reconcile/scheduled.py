"""The scheduled reconcile run every cloud's timer calls, and its configuration from TAVUS_* variables."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

from tavus_callbacks.errors import ConfigError
from tavus_callbacks.pipeline import Pipeline
from tavus_callbacks.reconcile.client import DEFAULT_API_URL, DEFAULT_MAX_PER_MINUTE, TavusClient
from tavus_callbacks.reconcile.sweep import Summary, Sweep
from tavus_callbacks.state.stored import parse_time

API_KEY_VAR = "TAVUS_API_KEY"
API_URL_VAR = "TAVUS_API_URL"
MAX_RPM_VAR = "TAVUS_API_MAX_RPM"
SINCE_VAR = "TAVUS_RECONCILE_SINCE"
BUDGET_VAR = "TAVUS_RECONCILE_BUDGET_SECONDS"
DEFAULT_SINCE = "72h"
DEFAULT_BUDGET = 10.0  # seconds a scheduled run works for unless its platform leaves less
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def client_from_env(api_key: str | None = None, environ: Mapping[str, str] | None = None,
                    max_per_minute: int | None = None) -> TavusClient:
    """The API client of `api_key` (TAVUS_API_KEY unless given), TAVUS_API_URL and TAVUS_API_MAX_RPM."""
    env = os.environ if environ is None else environ
    key = (api_key or env.get(API_KEY_VAR, "")).strip()
    if not key:
        raise ConfigError(f"{API_KEY_VAR} is not set: set it to the API key of your Tavus account "
                          "(the platform's API Keys page)")
    if max_per_minute is None:
        raw = env.get(MAX_RPM_VAR, "").strip()
        try:
            max_per_minute = int(raw) if raw else DEFAULT_MAX_PER_MINUTE
        except ValueError:
            raise ConfigError(f"{MAX_RPM_VAR}={raw!r} is not a whole number of requests per minute") from None
    return TavusClient(key, env.get(API_URL_VAR, "").strip() or DEFAULT_API_URL, max_per_minute=max_per_minute)


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """`72h`, `30m`, `7d`, `90s` before now, or an ISO-8601 date or time (UTC when it has no zone)."""
    now = now or datetime.now(UTC)
    match = _DURATION.fullmatch(text.strip().lower())
    if match:
        return now - timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})
    try:
        return parse_time(text)
    except ConfigError:
        raise ConfigError(f"--since {text!r} is neither a duration such as 72h, 30m or 7d nor an ISO-8601 time "
                          "such as 2025-07-11T06:00:00Z") from None


def run_scheduled(pipeline: Callable[[], Pipeline], *, api_key: str | None = None,
                  seconds_left: float | None = None, environ: Mapping[str, str] | None = None) -> Summary | None:
    """One sweep with `pipeline()`, or None (off) without an API key (`api_key`, else TAVUS_API_KEY).

    It works for TAVUS_RECONCILE_BUDGET_SECONDS (default 10), or less when the platform leaves
    `seconds_left`; the next run resumes where this one stopped.
    """
    env = os.environ if environ is None else environ
    key = (api_key or env.get(API_KEY_VAR, "")).strip()
    if not key:
        return None
    raw = env.get(BUDGET_VAR, "").strip()
    try:
        budget = float(raw) if raw else DEFAULT_BUDGET
    except ValueError:
        raise ConfigError(f"{BUDGET_VAR}={raw!r} is not a number of seconds") from None
    if budget <= 0:
        raise ConfigError(f"{BUDGET_VAR}={raw!r} must be greater than zero")
    if seconds_left is not None:
        budget = min(budget, seconds_left)
    since = parse_since(env.get(SINCE_VAR, "").strip() or DEFAULT_SINCE)
    # what it stores reaches the store's change feed, which derives it as it does a callback
    sweep = Sweep(pipeline(), client_from_env(key, env), since=since, deadline=time.monotonic() + budget, derive=False)
    return sweep.run()
