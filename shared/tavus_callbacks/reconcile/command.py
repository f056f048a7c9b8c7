"""`tavus-callbacks reconcile`: recover the callbacks a store missed from the vendor's API; and the scheduled run.

The key comes from TAVUS_API_KEY (TAVUS_API_URL overrides the API's address); progress goes to stderr,
the summary to stdout, and the exit status is 1 when anything failed.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import IO

from ..errors import ConfigError
from .client import DEFAULT_API_URL, DEFAULT_MAX_PER_MINUTE, TavusClient
from .sweep import DEFAULT_PAGE_SIZE, Summary, Sweep

API_KEY_VAR = "TAVUS_API_KEY"
API_URL_VAR = "TAVUS_API_URL"
MAX_RPM_VAR = "TAVUS_API_MAX_RPM"
SINCE_VAR = "TAVUS_RECONCILE_SINCE"
BUDGET_VAR = "TAVUS_RECONCILE_BUDGET_SECONDS"
DEFAULT_SINCE = "72h"
DEFAULT_BUDGET = 10.0  # seconds a scheduled run works for unless its platform leaves less
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def client_from_env(environ: Mapping[str, str] | None = None, max_per_minute: int | None = None) -> TavusClient:
    """The API client configured by TAVUS_API_KEY, TAVUS_API_URL and TAVUS_API_MAX_RPM."""
    env = os.environ if environ is None else environ
    key = env.get(API_KEY_VAR, "").strip()
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
    from ..replay import parse_time

    try:
        return parse_time(text)
    except ConfigError:
        raise ConfigError(f"--since {text!r} is neither a duration such as 72h, 30m or 7d nor an ISO-8601 time "
                          "such as 2025-07-11T06:00:00Z") from None


def run_scheduled(seconds_left: float | None = None, environ: Mapping[str, str] | None = None) -> Summary | None:
    """One scheduled sweep with the process-wide pipeline, or None when no API key is configured (off).

    It works for TAVUS_RECONCILE_BUDGET_SECONDS (default 10), or less when the platform leaves
    `seconds_left`; the next run resumes where this one stopped.
    """
    from ..pipeline import default_pipeline

    env = os.environ if environ is None else environ
    if not env.get(API_KEY_VAR, "").strip():
        return None
    budget = _budget(env)
    if seconds_left is not None:
        budget = min(budget, seconds_left)
    since = parse_since(env.get(SINCE_VAR, "").strip() or DEFAULT_SINCE)
    sweep = Sweep(default_pipeline(), client_from_env(env), since=since, deadline=time.monotonic() + budget)
    return sweep.run()


def _budget(env: Mapping[str, str]) -> float:
    raw = env.get(BUDGET_VAR, "").strip()
    try:
        budget = float(raw) if raw else DEFAULT_BUDGET
    except ValueError:
        raise ConfigError(f"{BUDGET_VAR}={raw!r} is not a number of seconds") from None
    if budget <= 0:
        raise ConfigError(f"{BUDGET_VAR}={raw!r} must be greater than zero")
    return budget


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", default=os.environ.get("TAVUS_STORE_URL"),
                        help="the store to complete (default: TAVUS_STORE_URL)")
    parser.add_argument("--since", default=DEFAULT_SINCE,
                        help="the window: conversations updated in the last 72h (default), 30m, 7d, or since an "
                             "ISO-8601 time")
    parser.add_argument("--conversation", help="only this conversation (always fetched, whatever its state)")
    parser.add_argument("--dry-run", action="store_true", help="count what is missing, store nothing")
    parser.add_argument("--thorough", action="store_true",
                        help="fetch every conversation not reconciled since its last change, even one whose state "
                             "already holds its terminal events")
    parser.add_argument("--page-size", type=int, default=DEFAULT_PAGE_SIZE, help="conversations per listing page")
    parser.add_argument("--max-rpm", type=int, default=None,
                        help=f"at most this many API requests a minute (default: {MAX_RPM_VAR} or "
                             f"{DEFAULT_MAX_PER_MINUTE}; 0: no cap)")
    parser.add_argument("--budget", type=float, default=None,
                        help="stop after this many seconds; the next run resumes where this one stopped")


def run(args: argparse.Namespace) -> int:
    from ..pipeline import Pipeline
    from ..settings import Settings

    if not args.store:
        raise ConfigError("no store: pass --store URL or set TAVUS_STORE_URL")
    if args.page_size < 1:
        raise ConfigError("--page-size must be at least 1")
    client = client_from_env(max_per_minute=args.max_rpm)
    since = parse_since(args.since)
    deadline = time.monotonic() + args.budget if args.budget else None
    pipeline = Pipeline(Settings.from_env(store_url=args.store))
    try:
        sweep = Sweep(pipeline, client, since=since, deadline=deadline, dry_run=args.dry_run,
                      thorough=args.thorough, page_size=args.page_size, progress=Progress(sys.stderr))
        summary = sweep.run(args.conversation)
    finally:
        pipeline.close()
    for failure in summary.failures:
        print(f"failed: {failure}", file=sys.stderr)
    print(summary.line() + (" (dry run: nothing stored)" if args.dry_run else ""))
    print(f"reconcile: {client.requests} API requests, {summary.pages} listing pages", file=sys.stderr)
    return 1 if summary.failures else 0


class Progress:
    """One progress line on stderr at most every two seconds (and at the end) while a sweep runs."""

    def __init__(self, stream: IO[str], every: float = 2.0) -> None:
        self.stream, self.every = stream, every
        self.last = time.monotonic()

    def __call__(self, summary: Summary) -> None:
        now = time.monotonic()
        if now - self.last < self.every:
            return
        self.last = now
        self.stream.write(f"... {summary.checked} checked, {summary.complete} complete, {summary.fetched} fetched, "
                          f"{summary.recovered} recovered, {len(summary.failures)} failures\n")
        self.stream.flush()
