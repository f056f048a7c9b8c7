"""Reconcile benchmark: a store that missed a random 30 % of the callbacks of 200 conversations, one
`tavus-callbacks reconcile` against the fake vendor API (tests/support/fake_tavus.py), and what it took.

Prints the events missed and recovered, duplicates (objects beyond one per event), and the API requests:
listing pages plus one verbose fetch per incomplete conversation, none fetched twice.

    .venv/bin/python bench/bench_reconcile.py [--conversations 200] [--missed 0.3] [--seed 1]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import random
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from support.fake_tavus import API_KEY, conversation_callbacks, running_fake_tavus  # noqa: E402 - tests/ is on the path now
from tavus_callbacks.cli import main as cli  # noqa: E402
from tavus_callbacks.http import Request  # noqa: E402
from tavus_callbacks.pipeline import Pipeline  # noqa: E402
from tavus_callbacks.record import event_id  # noqa: E402
from tavus_callbacks.settings import Settings  # noqa: E402

TOKEN = "bench-reconcile-token-0123456789"


def seed(pipeline: Pipeline, fake: Any, conversations: int, missed: float, rng: random.Random) -> tuple[
        dict[str, set[str]], int, int]:
    """Every conversation's callbacks into the fake API, and those not missed into the store: the ids expected
    per conversation, how many callbacks were missed and how many conversations lack one."""
    expected: dict[str, set[str]] = {}
    lost_total = incomplete = 0
    now = datetime.now(UTC).replace(microsecond=0)
    for n in range(conversations):
        cid = f"cbench{n:05d}"
        start = now - timedelta(hours=1, minutes=n, milliseconds=rng.randint(0, 999))
        callbacks = conversation_callbacks(cid, start)
        fake.add(cid, callbacks)
        expected[cid] = {event_id(c) for c in callbacks}
        lost = [c for c in callbacks if rng.random() < missed]
        lost_total += len(lost)
        incomplete += bool(lost)
        for callback in callbacks:
            if callback not in lost:
                answer = pipeline.handle(Request("POST", "/", {"token": TOKEN}, {}, orjson.dumps(callback)))
                assert answer.status == 200 and answer.outcome and answer.outcome.key, answer.body
                pipeline.derive(answer.outcome.key)  # what the store's change feed runs after the answer
    return expected, lost_total, incomplete


def audit(store_url: str, expected: dict[str, set[str]]) -> tuple[int, int, int]:
    """What the store holds after the run: events recovered from the API, duplicated, still missing."""
    pipeline = Pipeline(Settings(tokens=(TOKEN,), store_url=store_url))
    recovered = duplicated = still_missing = 0
    for cid, ids in expected.items():
        keys = list(pipeline.store.iter_keys(f"{cid}/events/"))
        documents = [orjson.loads(pipeline.store.read(k).data) for k in keys]  # type: ignore[union-attr]
        stored_ids = Counter(d["id"] for d in documents)
        recovered += sum(d.get("tavusorigin") == "api" for d in documents)
        duplicated += len(keys) - len(stored_ids) + len(set(stored_ids) - ids)
        still_missing += len(ids - set(stored_ids))
    pipeline.close()
    return recovered, duplicated, still_missing


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=200)
    parser.add_argument("--missed", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, running_fake_tavus() as fake:
        store_url = f"sqlite:///{Path(folder, 'tavus.db')}"
        pipeline = Pipeline(Settings(tokens=(TOKEN,), store_url=store_url))
        expected, missed, incomplete = seed(pipeline, fake, args.conversations, args.missed, random.Random(args.seed))
        pipeline.close()
        os.environ.update({"TAVUS_API_KEY": API_KEY, "TAVUS_API_URL": fake.url})
        out, err = io.StringIO(), io.StringIO()
        started = time.perf_counter()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli(["reconcile", "--store", store_url, "--since", "72h", "--max-rpm", "0"])
        seconds = time.perf_counter() - started
        recovered, duplicated, still_missing = audit(store_url, expected)
        paths = Counter(r.split("?", 1)[0] for r in fake.requests)
        pages = sum(1 for r in fake.requests if r.startswith("/v2/conversations?"))
        fetches = sum(n for p, n in paths.items() if p != "/v2/conversations")
        fetched_twice = sum(1 for p, n in paths.items() if p != "/v2/conversations" and n > 1)

    print(out.getvalue().strip())
    print(f"conversations            {args.conversations} ({incomplete} incomplete, "
          f"{args.conversations - incomplete} fully received)")
    print(f"events missed            {missed}")
    print(f"events recovered         {recovered}")
    print(f"still missing            {still_missing}")
    print(f"duplicated               {duplicated}")
    print(f"API requests             {len(fake.requests)} = {pages} listing pages + {fetches} verbose fetches "
          f"(expected {pages} + {incomplete}); fetched twice: {fetched_twice}")
    print(f"time                     {seconds:.2f} s (exit status {code})")
    return 0 if code == 0 and still_missing == 0 and duplicated == 0 and fetches == incomplete else 1


if __name__ == "__main__":
    sys.exit(main())
