"""serve's change feed (feed.py) on a real SQLite file: one store request before the answer, every stored event
derived in order after it, a failing derive retried with backoff and never passed by the checkpoint, a restart
going on from the checkpoint, and the time index that keeps `--since` reads off the store's history."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import drain, load_event
from tavus_callbacks import feed
from tavus_callbacks.cli import main
from tavus_callbacks.errors import StoreUnavailable
from tavus_callbacks.feed import FeedWorker, MemoryFeed
from tavus_callbacks.http import Request
from tavus_callbacks.pipeline import Pipeline
from tavus_callbacks.settings import Settings
from tavus_callbacks.state.index import recent_conversations
from tavus_callbacks.state.repair import repair
from tavus_callbacks.stores.sqlite import SQLiteStore

TOKEN = "feed-test-token-0123456789abcdef"


class Counting:
    """The real store, with a count of the calls made to it (by method)."""

    def __init__(self, store: SQLiteStore) -> None:
        self.store, self.calls = store, Counter[str]()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.store, name)
        if not callable(attr):
            return attr

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return attr(*args, **kwargs)

        return counted


def request(payload: dict[str, Any]) -> Request:
    return Request("POST", "/", {"token": TOKEN}, {}, json.dumps(payload).encode())


def objectives(cid: str, count: int) -> list[dict[str, Any]]:
    base = load_event("objective")
    return [{**base, "conversation_id": cid, "objective_name": f"o{n:03d}"} for n in range(count)]


def test_a_new_event_costs_one_store_request_before_its_answer(tmp_path: Path) -> None:
    counting = Counting(SQLiteStore(tmp_path / "store.db"))
    pipeline = Pipeline(Settings(tokens=(TOKEN,)), store=counting)  # type: ignore[arg-type]
    for name in ("conversation.application.recording_ready.s3", "conversation.application.transcription_ready",
                 "replica.training.ready", "unrecognized"):
        counting.calls.clear()
        answer = pipeline.handle(request(load_event(name)))
        assert answer.status == 200 and answer.json_body()["status"] == "stored"
        assert counting.calls == Counter({"create": 1}), name
    counting.calls.clear()
    assert pipeline.handle(request(load_event("unrecognized"))).json_body()["status"] == "duplicate"
    assert counting.calls == Counter({"create": 1})


def test_the_feed_derives_every_event_in_order_and_a_restart_goes_on_from_the_checkpoint(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "store.db")
    pipeline = Pipeline(Settings(tokens=(TOKEN,)), store=store)
    first, second = objectives("cfeed", 6)[:3], objectives("cfeed", 6)[3:]
    for payload in first:
        assert pipeline.handle(request(payload)).status == 200
    drain(pipeline)
    done = store.checkpoint()
    assert done > 0 and store.changes(0, 100) == [], "derived changes are forgotten"
    for payload in second:  # stored while no feed worker runs (a kill -9, then a restart)
        assert pipeline.handle(request(payload)).status == 200
    restarted = Pipeline(Settings(tokens=(TOKEN,)), store=SQLiteStore(tmp_path / "store.db"))
    drain(restarted)
    state = json.loads(store.read("cfeed/conversation.json").data)  # type: ignore[union-attr]
    assert sorted(state["objectives"]) == [f"o{n:03d}" for n in range(6)]
    assert store.checkpoint() > done


def test_a_failing_derive_is_retried_with_backoff_and_holds_the_checkpoint(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    store = SQLiteStore(tmp_path / "store.db")
    pipeline = Pipeline(Settings(tokens=(TOKEN,)), store=store)
    stuck, later = objectives("cstuck", 1)[0], objectives("clater", 1)[0]
    keys = [pipeline.handle(request(p)).outcome.key for p in (stuck, later)]  # type: ignore[union-attr]
    real_derive_many = pipeline.derive_many
    failing = {keys[0]}

    def derive_many(batch: list[str]) -> list[Any]:
        results = real_derive_many([k for k in batch if k not in failing])
        done = dict(zip([k for k in batch if k not in failing], results, strict=True))
        return [done.get(k, StoreUnavailable("the bucket is down")) for k in batch]

    monkeypatch.setattr(pipeline, "derive_many", derive_many)
    clock = [1000.0]
    monkeypatch.setattr(feed.time, "monotonic", lambda: clock[0])
    worker = FeedWorker(pipeline, store)
    worker.run_once()
    assert worker.waiting == 1
    assert store.read("clater/conversation.json") is not None, "a failure does not hold back what follows"
    stuck_seq = next(seq for seq, key in store.changes(0, 100) if key == keys[0])
    assert store.checkpoint() == stuck_seq - 1, "the checkpoint stops before the failing event"
    clock[0] += feed.FIRST_RETRY / 2
    worker.run_once()
    assert store.read("cstuck/conversation.json") is None, "not tried again before its backoff"
    failing.clear()
    clock[0] += feed.FIRST_RETRY
    worker.run_once()
    worker.run_once()
    assert worker.waiting == 0 and store.read("cstuck/conversation.json") is not None
    assert store.changes(0, 100) == []

    failing.add(keys[0])  # for good: dead-lettered after GIVE_UP_SECONDS, with a log line naming the key
    worker = FeedWorker(pipeline, MemoryFeed())
    worker.feed.add(keys[0])  # type: ignore[attr-defined]
    with caplog.at_level(logging.ERROR, logger="tavus_callbacks"):
        worker.run_once()
        clock[0] += feed.GIVE_UP_SECONDS + feed.LAST_RETRY + 1
        worker.run_once()
    assert worker.waiting == 0
    assert any(keys[0] in r.getMessage() and "gave up" in r.getMessage() for r in caplog.records)


def test_the_time_index_finds_recent_conversations_without_reading_the_rest(tmp_path: Path) -> None:
    counting = Counting(SQLiteStore(tmp_path / "store.db"))
    pipeline = Pipeline(Settings(tokens=(TOKEN,)), store=counting)  # type: ignore[arg-type]
    now = datetime.now(UTC)
    for n, when in enumerate((now - timedelta(days=400), now - timedelta(days=3), now - timedelta(hours=2))):
        payload = {**load_event("conversation.system.replica_joined"), "conversation_id": f"cidx{n}",
                   "timestamp": when.isoformat().replace("+00:00", "Z")}
        pipeline.derive(pipeline.handle(request(payload)).outcome.key)  # type: ignore[union-attr]
    layout = pipeline.layout
    counting.calls.clear()
    assert recent_conversations(counting, layout, now - timedelta(hours=24)) == ["cidx2"]  # type: ignore[arg-type]
    assert counting.calls == Counter({"iter_keys": 3}), "one listing per day: tomorrow, today, yesterday"
    assert recent_conversations(counting, layout, now - timedelta(days=7)) == ["cidx2", "cidx1"]  # type: ignore[arg-type]


class KeysRead(Counting):
    """Counting, plus how many keys its listings yielded."""

    def __init__(self, store: SQLiteStore) -> None:
        super().__init__(store)
        self.keys = 0

    def iter_keys(self, prefix: str) -> Any:
        self.calls["iter_keys"] += 1
        for key in self.store.iter_keys(prefix):
            self.keys += 1
            yield key


def test_routine_work_on_a_store_of_100_000_old_objects_reads_only_the_recent_ones(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A callback, its derive, `conversations list --since 24h` and `repair --since 24h` read the same keys with or
    without 10^5 objects of old conversations in the store."""
    def routine(store: SQLiteStore) -> tuple[int, Counter[str]]:
        counting = KeysRead(store)
        pipeline = Pipeline(Settings(tokens=(TOKEN,)), store=counting)  # type: ignore[arg-type]
        for payload in objectives("crecent", 3):
            pipeline.derive(pipeline.handle(request(payload)).outcome.key)  # type: ignore[union-attr]
        since = datetime.now(UTC) - timedelta(hours=24)
        assert recent_conversations(counting, pipeline.layout, since) == ["crecent"]  # type: ignore[arg-type]
        assert repair(pipeline, ["crecent"]).failures == 0
        return counting.keys, counting.calls

    small = routine(SQLiteStore(tmp_path / "small.db"))
    big_path = tmp_path / "big.db"
    big = SQLiteStore(big_path)
    with sqlite3.connect(big_path) as conn:  # 10^5 objects of 10^4 old conversations, derived long ago
        conn.executemany("INSERT INTO objects (key, body, content_type, version) VALUES (?, ?, 'text/plain', 'v')",
                         [(f"cold{n // 10:05d}/events/2023_objective_{n:06d}.json" if n % 10 else
                           f"index/2023/01/01/cold{n // 10:05d}", b"{}") for n in range(100_000)])
        conn.execute("DELETE FROM changes")
    assert routine(big) == small
    assert main(["conversations", "list", "--since", "24h", "--store", big.url]) == 0
    assert "crecent" in capsys.readouterr().out
