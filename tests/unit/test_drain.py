"""Folding after the answer (`Pipeline(fold_later=True)`, what `serve` runs): nothing is lost or folded twice."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from conftest import load_event
from tavus_callbacks.http import Request
from tavus_callbacks.pipeline import Pipeline
from tavus_callbacks.settings import Settings
from tavus_callbacks.state.drain import Drain
from tavus_callbacks.stores.sqlite import SQLiteStore

TOKEN = "drain-token-0123456789abcdef"


def post(p: Pipeline, payload: dict[str, object]) -> dict[str, object]:
    response = p.handle(Request("POST", "/", {"token": TOKEN}, {}, json.dumps(payload).encode()))
    assert response.status == 200
    answer: dict[str, object] = json.loads(response.body)
    return answer


def state_ids(store: SQLiteStore, cid: str) -> set[str]:
    blob = store.read(f"{cid}/conversation.json")
    assert blob is not None, cid
    return {e["id"] for e in json.loads(blob.data)["events"]}


def test_events_answered_before_their_fold_are_all_folded_once_the_drain_closes(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "store.db")
    pipeline = Pipeline(Settings(tokens=(TOKEN,)), store=store, fold_later=True)
    base = load_event("objective")
    payloads = [{**base, "conversation_id": f"cdrain{n % 3}", "objective_name": f"o{n}"} for n in range(60)]
    with ThreadPoolExecutor(8) as senders:
        answers = list(senders.map(lambda p: post(pipeline, p), payloads))
    pipeline.close()  # finishes what is queued
    for cid in ("cdrain0", "cdrain1", "cdrain2"):
        expected = {a["event_id"] for a, p in zip(answers, payloads, strict=True) if p["conversation_id"] == cid}
        assert len(expected) == 20
        assert state_ids(store, cid) == expected
    assert not [k for k in store.iter_keys("") if "/pending/" in k]


def test_a_group_is_worked_on_one_batch_at_a_time_what_waits_goes_in_one_batch_and_a_bug_stops_nothing() -> None:
    batches: list[list[str]] = []
    running: set[str] = set()
    overlaps: list[str] = []
    lock = threading.Lock()
    release = threading.Event()

    def work(items: list[str]) -> None:
        group = items[0][0]
        with lock:
            if group in running:
                overlaps.append(group)
            running.add(group)
        release.wait(10)  # the first batch of each group waits until every item is queued
        with lock:
            running.discard(group)
            batches.append(items)
        if group == "x":
            raise RuntimeError("a bug in derived work")

    drain: Drain[str] = Drain(work, threads=4, linger=0)
    items = [f"{'abx'[n % 3]}{n}" for n in range(30)]
    for item in items[:3]:  # the first of each group, and wait until their batches are being worked on
        drain.add(item[0], item)
    for _ in range(200):
        with lock:
            if len(running) == 3:
                break
        time.sleep(0.01)
    for item in items[3:]:
        drain.add(item[0], item)
    release.set()
    drain.close()
    assert overlaps == []
    assert sorted(i for batch in batches for i in batch) == sorted(items)  # each once, the failing group's too
    for group in "abx":
        mine = [batch for batch in batches if batch[0][0] == group]
        assert [len(batch) for batch in mine] == [1, 9], group  # the first alone, the rest together


def test_events_of_a_group_that_arrive_within_the_linger_go_in_one_batch() -> None:
    batches: list[list[str]] = []
    drain: Drain[str] = Drain(batches.append, threads=2, linger=0.5)
    for n in range(8):
        drain.add("c1", f"e{n}")
    drain.close()
    assert batches == [[f"e{n}" for n in range(8)]]
