"""`tavus-callbacks reconcile`: recover the callbacks a store missed from the vendor's API (key from
TAVUS_API_KEY); progress on stderr, the summary on stdout, exit 1 when anything failed."""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import sys
import time
from dataclasses import replace
from datetime import datetime
from typing import IO
from urllib.parse import urlsplit

from tavus_callbacks.console import SkipCounter
from tavus_callbacks.errors import ConfigError, Failed
from tavus_callbacks.pipeline import Pipeline
from tavus_callbacks.reconcile.client import DEFAULT_MAX_PER_MINUTE, TavusClient
from tavus_callbacks.reconcile.scheduled import (
    API_URL_VAR,
    DEFAULT_SINCE,
    MAX_RPM_VAR,
    client_from_env,
    parse_since,
)
from tavus_callbacks.reconcile.sweep import DEFAULT_PAGE_SIZE, Summary, Sweep
from tavus_callbacks.settings import ReconcileVariables, Settings


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
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object: checked, complete, fetched, recovered, missing, "
                             "new_conversations, pages, finished, folded, published, pending, failures ([text]), "
                             "requests, dry_run, stopped (why the run stopped early, or null), skipped "
                             "([{key, why}]: objects where events belong that are not events)")


def run(args: argparse.Namespace) -> int:
    _check_arguments(args)
    client = client_from_env(max_per_minute=args.max_rpm)
    since = parse_since(args.since)
    _check_reachable(ReconcileVariables.read().api_url)
    deadline = time.monotonic() + args.budget if args.budget else None
    summary, skipped = _sweep(args, client, since, deadline)
    # "stopped at the time budget" only when it is the budget that stopped the run; else the first failure says why
    budget_spent = deadline is not None and time.monotonic() >= deadline
    if args.json:
        print(json.dumps({**summary.as_dict(), "requests": client.requests, "dry_run": args.dry_run,
                          "stopped": _stopped(summary, budget_spent),
                          "skipped": [{"key": k, "why": w} for k, w in skipped.items()]}, indent=2))
    else:
        for failure in dict.fromkeys(summary.failures):  # the same failure once
            print(f"failed: {failure}", file=sys.stderr)
        print(_summary_line(summary, budget_spent, skipped, dry_run=args.dry_run))
        print(f"reconcile: {client.requests} API requests, {summary.pages} listing pages", file=sys.stderr)
    return 1 if summary.failures or skipped else 0


def _check_arguments(args: argparse.Namespace) -> None:
    """A ConfigError naming the flag whose value cannot be used."""
    if not args.store:
        raise ConfigError("no store: pass --store URL or set TAVUS_STORE_URL")
    if args.page_size < 1:
        raise ConfigError("--page-size must be at least 1")
    if args.max_rpm is not None and args.max_rpm < 0:
        raise ConfigError("--max-rpm must be 0 (no cap) or more")
    if args.budget is not None and args.budget <= 0:
        raise ConfigError("--budget must be a number of seconds above 0")


def _sweep(args: argparse.Namespace, client: TavusClient, since: datetime, deadline: float | None,
           ) -> tuple[Summary, dict[str, str]]:
    """Run the sweep over the store, and the objects it skipped (where events belong, not events) by key."""
    pipeline = Pipeline(Settings.from_env(store_url=args.store))
    counter = SkipCounter()  # objects where events belong that are not events: skipped, named, counted
    logging.getLogger("tavus_callbacks").addHandler(counter)
    try:
        sweep = Sweep(pipeline, client, since=since, deadline=deadline, dry_run=args.dry_run,
                      thorough=args.thorough, page_size=args.page_size, progress=Progress(sys.stderr))
        summary = sweep.run(args.conversation)
    finally:
        logging.getLogger("tavus_callbacks").removeHandler(counter)
        pipeline.close()
    return summary, counter.skipped


def _limit_said(summary: Summary) -> str:
    """What stopped a run without failures (a rate limit, the budget), as the sweep said it."""
    return summary.stopped.removeprefix("stopped: ") if not summary.failures else ""


def _stopped(summary: Summary, budget_spent: bool) -> str | None:
    """Why the run stopped early, or None when it finished."""
    if summary.finished:
        return None
    if budget_spent or not summary.failures:
        return _limit_said(summary) or "the time budget is spent; the next run resumes"
    return f"{summary.failures[0]}"


def _summary_line(summary: Summary, budget_spent: bool, skipped: dict[str, str], *, dry_run: bool) -> str:
    """The one line on stdout: the sweep's counts, why it stopped early and what was skipped."""
    stopped_by_failure = not summary.finished and not budget_spent and summary.failures
    shown = summary if summary.finished or budget_spent or _limit_said(summary) else replace(summary, finished=True)
    line = shown.line()
    if stopped_by_failure:
        line += "; stopped early by the failure above"
    if skipped:
        line += f"; {len(skipped)} objects skipped (not events this package wrote, each named above)"
    return line + (" (dry run: nothing stored)" if dry_run else "")


def _check_reachable(api_url: str) -> None:
    """Resolve the API's host once before sweeping: without a network, one line says so (rather than a retried
    name-resolution error per request)."""
    parts = urlsplit(api_url)
    host = parts.hostname
    if not host:
        return  # the client refuses a URL without a host, naming TAVUS_API_URL
    try:
        socket.getaddrinfo(host, parts.port or (443 if parts.scheme == "https" else 80), type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise Failed(f"cannot resolve {host}, the Tavus API's host ({exc}): check the network "
                                  f"connection (or {API_URL_VAR}), then run reconcile again") from None


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
