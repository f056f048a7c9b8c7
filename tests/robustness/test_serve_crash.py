"""`kill -9` of `serve` under load: no acknowledged event is lost, and a restart alone (no `repair`) derives every
stored event into its conversation's state: the SQLite change feed goes on from its checkpoint."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import requests
from conftest import load_event
from support.serve_fixture import running_serve
from support.servers import sqlite_url
from tavus_callbacks.stores import open_store


def test_kill_9_under_load_loses_no_acknowledged_event_and_a_restart_derives_every_stored_one(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "store.db")
    acknowledged: set[str] = set()
    lock = threading.Lock()
    stop = threading.Event()
    base = load_event("objective")

    def send(sender: int, callback_url: str) -> None:
        n = 0
        with requests.Session() as session:
            while not stop.is_set():
                payload = {**base, "conversation_id": f"ckill{sender}x{n // 8}", "objective_name": f"o{n}"}
                n += 1
                try:
                    answer = session.post(callback_url, json=payload, timeout=10)
                except requests.RequestException:
                    continue  # the server is gone: this one was never acknowledged
                if answer.status_code == 200:
                    with lock:
                        acknowledged.add(answer.json()["event_id"])

    with running_serve(store_url=url, workers=2, threads=4) as server:
        senders = [threading.Thread(target=send, args=(i, server.callback_url())) for i in range(8)]
        for thread in senders:
            thread.start()
        time.sleep(2.0)
        os.killpg(server.pid, signal.SIGKILL)  # the whole process group: uvicorn's parent and its workers
        server.process.wait(10)
        stop.set()
        for thread in senders:
            thread.join()
    assert len(acknowledged) > 50

    store, _ = open_store(url)  # after the restart: the file opens, recovered by SQLite from its WAL
    keys = list(store.iter_keys(""))
    stored = {k.rsplit("_", 1)[1].removesuffix(".json") for k in keys if "/events/" in k}
    assert acknowledged <= stored, f"{len(acknowledged - stored)} acknowledged events lost"

    with running_serve(store_url=url, workers=1, threads=4) as restarted:
        restarted.settle()
    by_conversation: dict[str, set[str]] = {}
    for key in store.iter_keys(""):
        if "/events/" in key:
            by_conversation.setdefault(key.split("/")[0], set()).add(key.rsplit("_", 1)[1].removesuffix(".json"))
    for cid, ids in by_conversation.items():
        blob = store.read(f"{cid}/conversation.json")
        assert blob is not None, cid
        assert {e["id"] for e in json.loads(blob.data)["events"]} == ids, cid
    assert not [k for k in store.iter_keys("") if "/pending/" in k]
