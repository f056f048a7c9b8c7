"""Concurrent retries against `serve`: 16 threads deliver the same 20 events 10 times each."""

from __future__ import annotations

import json
import random
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import requests
from conftest import RECORDED, load_event
from support.serve_fixture import ServeProcess
from tavus_callbacks.record import event_id
from tavus_callbacks.state.fold import fold

THREADS = 16
ROUNDS = 10
CONVERSATION_ID = "cconcurrent01"


def conversation_payloads() -> list[bytes]:
    """20 distinct callbacks of one conversation, from the recorded payloads of the three conversation families."""
    names = sorted(p.stem for p in RECORDED
                   if p.stem.startswith(("conversation.", "guardrail", "objective")))
    payloads = []
    for name in names[:20]:
        payload = load_event(name)
        payload["conversation_id"] = CONVERSATION_ID
        if "event_type" in payload:  # variants of one type share a time in the recordings: one event each here
            payload["timestamp"] = f"2025-07-11T06:{len(payloads):02d}:00.000000Z"
        payloads.append(json.dumps(payload).encode())
    assert len(payloads) == 20 and len({event_id(json.loads(p)) for p in payloads}) == 20
    return payloads


def test_sixteen_threads_of_retries_store_each_event_once(serve: ServeProcess) -> None:
    payloads = conversation_payloads()
    url = serve.callback_url()
    answers: list[tuple[int, str, str]] = []
    lock = threading.Lock()

    def deliver(seed: int) -> None:
        order = [p for _ in range(ROUNDS) for p in payloads]
        random.Random(seed).shuffle(order)
        mine = []
        with requests.Session() as session:
            for body in order:
                resp = session.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=60)
                answer = resp.json()
                mine.append((resp.status_code, answer.get("status", ""), answer.get("event_id", "")))
        with lock:
            answers.extend(mine)

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(deliver, range(THREADS)))

    assert len(answers) == THREADS * ROUNDS * len(payloads)
    assert Counter(status for status, _, _ in answers) == {200: len(answers)}
    expected_ids = {event_id(json.loads(p)) for p in payloads}
    assert {eid for _, _, eid in answers} == expected_ids
    stored = Counter(eid for _, outcome, eid in answers if outcome == "stored")
    assert stored == dict.fromkeys(expected_ids, 1)  # each event answered "stored" exactly once

    events = serve.objects(f"{CONVERSATION_ID}/events")
    assert len(events) == 20
    assert {key.rsplit("_", 1)[1].removesuffix(".json") for key in events} == expected_ids

    state = json.loads(serve.read(f"{CONVERSATION_ID}/conversation.json"))
    assert {e["id"] for e in state["events"]} == expected_ids
    assert len(state["events"]) == 20
    assert state == fold(CONVERSATION_ID, state["events"])  # the stored state is the fold of its own events
