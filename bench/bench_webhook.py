"""`tavus-callbacks serve --forward http://127.0.0.1:PORT/` at the load of bench_serve.py: is every acknowledged event
delivered to a Standard Webhooks endpoint and verified, and how long after its answer?

    .venv/bin/python bench/bench_webhook.py [--seconds 10] [--connections 16] [--load-processes 2] [--fail 0.0]

Starts a receiver (tests/support/webhook_receiver.py: an HTTP server in this process that verifies every request
with the `standardwebhooks` library and notes when it arrived) and `serve` on a fresh SQLite file forwarding to
it, drives `serve` with bench_serve.py's distinct callbacks from Python load processes that note when each answer
came, waits for the deliveries, then prints requests/s, how many events were acknowledged, delivered, verified
and lost, and the time from each event's answer to its first delivery (p50, p99, max). `--fail F` makes the
receiver answer 503 to that share of requests, so the retries are measured too.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from bench_serve import TOKEN, acked_id, body_for, keep_posting  # noqa: E402
from support.serve_fixture import start_serve  # noqa: E402
from support.webhook_receiver import WebhookReceiver  # noqa: E402


def _load(url: str, worker: int, threads: int, seconds: float, tag: str, out: Any) -> None:
    """One load process: `threads` keep-alive connections posting distinct callbacks; (event id, time of the
    200) for each acknowledged one, and the count of other answers."""
    lock = threading.Lock()
    acked: list[tuple[str, float]] = []
    failures = [0]
    deadline = time.monotonic() + seconds

    def loop(index: int) -> None:
        mine: list[tuple[str, float]] = []
        failed = 0

        def note(status: int, data: bytes, _ms: float, answered: float) -> None:
            nonlocal failed
            if event_id := acked_id(status, data):
                mine.append((event_id, answered))
            else:
                failed += 1

        errors = keep_posting(url, deadline, lambda n: body_for(tag, worker * 100 + index, n), note)
        with lock:
            acked.extend(mine)
            failures[0] += failed + errors

    pool = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    out.put((acked, failures[0]))


def drive(url: str, seconds: float, connections: int, processes: int) -> tuple[dict[str, float], int, float]:
    """(answer time by acknowledged event id, requests not acknowledged, seconds the load took)."""
    queue: multiprocessing.Queue[Any] = multiprocessing.Queue()
    tag = uuid.uuid4().hex[:6]
    started = time.monotonic()
    procs = [multiprocessing.Process(target=_load, args=(url, w, max(1, connections // processes), seconds, tag,
                                                         queue)) for w in range(processes)]
    for p in procs:
        p.start()
    parts = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    answered: dict[str, float] = {}
    failed = 0
    for acked, failures in parts:
        failed += failures
        for event_id, at in acked:
            answered.setdefault(event_id, at)
    return answered, failed, time.monotonic() - started


class FlakyReceiver(WebhookReceiver):
    """The receiver, answering 503 to a share of the requests that verify (as a busy backend would)."""

    def __init__(self, share: float) -> None:
        super().__init__()
        self.share = share
        self._random = random.Random(7)

    def next_status(self) -> int:
        return 503 if self._random.random() < self.share else 200


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="load duration")
    parser.add_argument("--connections", type=int, default=16, help="concurrent keep-alive connections")
    parser.add_argument("--load-processes", type=int, default=2, help="Python load processes")
    parser.add_argument("--workers", type=int, default=None, help="serve worker processes (default: one per CPU)")
    parser.add_argument("--threads", type=int, default=8, help="threads per serve worker")
    parser.add_argument("--fail", type=float, default=0.0, help="share of deliveries the receiver answers 503")
    parser.add_argument("--wait", type=float, default=180.0, help="longest wait for the deliveries after the load")
    args = parser.parse_args()
    workers = args.workers or len(os.sched_getaffinity(0))
    store = Path(tempfile.mkdtemp(prefix="bench-webhook-store-"))
    receiver = FlakyReceiver(args.fail).start()
    server = start_serve(store_url=f"sqlite:///{store / 'tavus.db'}", tokens=(TOKEN,), workers=workers,
                         threads=args.threads, env={"TAVUS_WEBHOOK_SECRETS": receiver.secret},
                         args=["--forward", receiver.url])
    print(f"load: Python, {args.connections} connections in {args.load_processes} processes, {args.seconds:g} s, "
          f"distinct callbacks (8 kinds, a new conversation every 8); serve: {workers} workers x {args.threads} "
          f"threads, durable SQLite; receiver: verifies with standardwebhooks, answers 503 to {args.fail:.0%}")
    try:
        answered, failed, took = drive(server.callback_url(), args.seconds, args.connections, args.load_processes)
        load_done = time.monotonic()
        delivered = receiver.wait_for(len(answered), timeout=args.wait)
        caught_up = time.monotonic() - load_done
    finally:
        server.stop()
        receiver.stop()
        shutil.rmtree(server.log_dir, ignore_errors=True)
        shutil.rmtree(store, ignore_errors=True)

    attempts = receiver.deliveries
    first: dict[str, float] = {}
    for delivery in delivered:
        first.setdefault(delivery.id, delivery.at)
    unverified = sum(not d.verified for d in attempts)
    mismatched = sum(d.id != d.document.get("id") for d in delivered)
    lost = set(answered) - set(first)
    latencies = sorted(first[i] - answered[i] for i in answered if i in first)
    per_event = Counter(d.id for d in delivered)
    print(f"serve answered {len(answered):,} events 200 in {took:.1f} s ({len(answered) / took:,.0f} req/s), "
          f"{failed} requests not acknowledged")
    print(f"receiver: {len(attempts):,} requests, {unverified} not verified, {len(per_event):,} events delivered "
          f"({sum(per_event.values()) - len(per_event):,} deliveries again of an event already delivered), "
          f"webhook-id != body id: {mismatched}; the last arrived {caught_up:.2f} s after the load stopped")
    if latencies:
        cuts = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [latencies[0]] * 99
        print(f"answer -> first verified delivery: p50 {ms(cuts[49])}, p99 {ms(cuts[98])}, max {ms(latencies[-1])}")
    print(f"acknowledged but never delivered: {len(lost)}")
    return 1 if lost or unverified or mismatched or not answered else 0


if __name__ == "__main__":
    sys.exit(main())
