"""Routine work on a store with years of history: `conversations list --since 24h`, `repair --since 24h` and one
scheduled reconcile sweep, on a SQLite store holding only 20 recent conversations, then on the same plus
--old objects of old conversations (default 10^6). Target: each at most 2x on the big store.

    python bench/bench_history.py               # 10^6 old objects (about a minute to write them)
    python bench/bench_history.py --old 100000

The old objects are written straight into the SQLite file (events, states and time-index marks of 2023, as
derive writes them), then the feed's checkpoint is moved past them, as if they were derived long ago.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import secrets
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests")]

from support.fake_tavus import API_KEY, conversation_callbacks, running_fake_tavus  # noqa: E402
from tavus_callbacks.cli import main as cli  # noqa: E402
from tavus_callbacks.feed import FeedWorker  # noqa: E402
from tavus_callbacks.http import Request  # noqa: E402
from tavus_callbacks.pipeline import Pipeline  # noqa: E402
from tavus_callbacks.reconcile.scheduled import run_scheduled  # noqa: E402
from tavus_callbacks.settings import Settings  # noqa: E402

TOKEN = "history-bench-token-0123456789ab"
RECENT = 20


def fill_old(path: Path, count: int) -> None:
    """`count` objects of old conversations (10 events, a state and an index mark each), in one transaction."""
    conn = sqlite3.connect(path)
    rows = []
    n = 0
    while len(rows) < count:
        cid = f"cold{n:07d}"
        day = (datetime(2023, 1, 1) + timedelta(days=n % 365)).strftime("%Y/%m/%d")
        rows.append((f"{cid}/conversation.json", b'{"events": []}', "application/json", "v"))
        rows.append((f"index/{day}/{cid}", b"{}", "application/json", "v"))
        rows += [(f"{cid}/events/20230101T000000.000000Z_objective.completed_{secrets.token_hex(32)}.json",
                  b"{}", "application/json", "v") for _ in range(10)]
        n += 1
    with conn:
        conn.executemany("INSERT INTO objects (key, body, content_type, version) VALUES (?, ?, ?, ?)",
                         rows[:count])
        conn.execute("INSERT INTO checkpoints (name, seq) VALUES ('derive', (SELECT max(seq) FROM changes)) "
                     "ON CONFLICT (name) DO UPDATE SET seq = excluded.seq")
        conn.execute("DELETE FROM changes")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # as SQLite does by itself over time
    conn.close()


def fill_recent(pipeline: Pipeline, fake: object) -> None:
    now = datetime.now(UTC)
    for n in range(RECENT):
        cid = f"crecent{n:03d}"
        callbacks = conversation_callbacks(cid, now - timedelta(minutes=30 + n))
        fake.add(cid, callbacks)  # type: ignore[attr-defined]
        for callback in callbacks[:-1]:  # the last one never arrived: the sweep recovers it
            body = Request("POST", "/", {"token": TOKEN}, {}, __import__("json").dumps(callback).encode())
            assert pipeline.handle(body).status == 200
    worker = FeedWorker(pipeline, pipeline.store)  # type: ignore[arg-type]
    while worker.run_once():
        pass


def timed(fn: object, repeat: int = 7) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            fn()  # type: ignore[operator]
        best = min(best, time.perf_counter() - start)
    return best


def measure(old: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="tavus-history-") as folder, running_fake_tavus() as fake:
        path = Path(folder) / "store.db"
        url = f"sqlite:///{path}"
        pipeline = Pipeline(Settings(tokens=(TOKEN,), store_url=url))
        if old:
            fill_old(path, old)
        fill_recent(pipeline, fake)
        env = {"TAVUS_API_KEY": API_KEY, "TAVUS_API_URL": fake.url, "TAVUS_API_MAX_RPM": "0",
               "TAVUS_RECONCILE_BUDGET_SECONDS": "60"}
        figures = {
            "conversations list --since 24h": timed(lambda: cli(["conversations", "list", "--store", url,
                                                                  "--since", "24h"])),
            "repair --since 24h": timed(lambda: cli(["repair", "--store", url, "--since", "24h"])),
            "scheduled sweep": timed(lambda: run_scheduled(lambda: pipeline, environ={**os.environ, **env})),
        }
        pipeline.close()
        return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old", type=int, default=1_000_000, help="objects of old conversations in the big store")
    args = parser.parse_args()
    small, big = measure(0), measure(args.old)
    print(f"{RECENT} recent conversations; the big store holds {args.old:,} more objects of old ones")
    print(f"{'':34}{'small':>10}{'big':>10}{'ratio':>8}  (target <= 2x)")
    for name in small:
        print(f"{name:34}{small[name] * 1000:>8.1f}ms{big[name] * 1000:>8.1f}ms{big[name] / small[name]:>7.2f}x")


if __name__ == "__main__":
    main()
