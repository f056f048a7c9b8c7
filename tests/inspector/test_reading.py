"""What the inspector reads for a look: the time index of its window and the recent conversations' states, never
the store's history; `--all` walks the whole store only when asked; a damaged state is shown as damaged."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
from conftest import handle_and_derive
from support.servers import sqlite_url
from tavus_callbacks.cli.send import Ids, SampleConversation
from tavus_callbacks.http import Request
from tavus_callbacks.inspector.reading import Reader
from tavus_callbacks.layout import Layout
from tavus_callbacks.pipeline import Pipeline
from tavus_callbacks.settings import Settings
from tavus_callbacks.stores import Store, open_store

from inspector.conftest import InspectProcess, get

TOKEN = "inspect-test-token-0123456789abcdef"
NOW = dt.datetime.now(dt.UTC)


DATED = ("replica_joined", "shutdown", "transcription_ready")  # the index marks the days of their own times


def store_conversations(store_url: str, starts: list[dt.datetime], names: tuple[str, ...] = (*DATED, "guardrail"),
                        ) -> list[str]:
    """A sample conversation per start time, stored and derived (the time index marks each event's own day, and
    the day it was derived for one without a time, such as a guardrail)."""
    pipeline = Pipeline(Settings(tokens=(TOKEN,), store_url=store_url))
    ids = []
    for start in starts:
        sample = SampleConversation(Ids(), start=start)
        ids.append(sample.ids.conversation_id)
        for name in names:
            request = Request("POST", "/", {"token": TOKEN}, body=orjson.dumps(sample.named(name)))
            assert handle_and_derive(pipeline, request).status == 200
    return ids


class Counting:
    """A store that records every read and listing made through it."""

    def __init__(self, store: Store) -> None:
        self.store, self.url = store, store.url
        self.calls: list[tuple[str, str]] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.store, name)

        def counted(key: str, *args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, key))
            return method(key, *args, **kwargs)

        return counted

    def iter_keys(self, prefix: str) -> Iterator[str]:
        self.calls.append(("iter_keys", prefix))
        return self.store.iter_keys(prefix)


def test_a_look_reads_the_recent_conversations_only(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "store.db")
    old = store_conversations(url, [NOW - dt.timedelta(days=40 + i) for i in range(30)], DATED)
    recent = store_conversations(url, [NOW - dt.timedelta(hours=3), NOW - dt.timedelta(minutes=20)])
    counting = Counting(open_store(url)[0])
    reader = Reader(counting, Layout())  # type: ignore[arg-type]
    looked = reader.recent()
    assert [s["conversation_id"] for s in looked.states] == recent[::-1]  # latest activity first
    assert looked.scope == "active in the last 7 days"
    listed = [key for op, key in counting.calls if op == "iter_keys"]
    read = [key for op, key in counting.calls if op != "iter_keys"]
    assert listed and all(prefix.startswith("index/") for prefix in listed)
    assert len(listed) <= 9  # the window's days, and tomorrow's
    assert sorted(read) == sorted(f"{cid}/conversation.json" for cid in recent)
    assert not any(cid in key for cid in old for _, key in counting.calls)

    walked = Reader(open_store(url)[0], Layout(), whole_store=True).recent()
    assert {s["conversation_id"] for s in walked.states} == set(old + recent)
    assert Reader(open_store(url)[0], Layout(), since=dt.timedelta(days=90)).recent().total == 32


def test_a_damaged_state_is_shown_as_damaged(tmp_path: Path, inspect_factory: Callable[..., InspectProcess]) -> None:
    url = sqlite_url(tmp_path / "store.db")
    fine, broken = store_conversations(url, [NOW - dt.timedelta(hours=2), NOW - dt.timedelta(hours=1)])
    store, _ = open_store(url)
    blob = store.read(f"{broken}/conversation.json")
    assert blob is not None
    store.replace(f"{broken}/conversation.json", b'{"events": [{"id": 1}], "<script>": "x"', blob.version)
    proc = inspect_factory(url, TOKEN)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    rows = {r["id"]: r["cells"] for r in get(proc.url, "/_/api/recent", auth).json()["tables"]["conversations"]}
    assert rows[broken][1] == "damaged" and rows[fine][1] == "ended"
    page = get(proc.url, f"/_/c/{broken}", auth)
    assert page.status == 200 and f"repair --conversation {broken}" in page.text
    assert get(proc.url, "/_/", auth).status == 200


def test_inspect_lists_the_window_it_is_given(tmp_path: Path, inspect_factory: Callable[..., InspectProcess]) -> None:
    url = sqlite_url(tmp_path / "store.db")
    old, new = store_conversations(url, [NOW - dt.timedelta(days=20), NOW - dt.timedelta(hours=1)], DATED)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for args, expected, words in (((), {new}, "active in the last 7 days"),
                                  (("--since", "30d"), {old, new}, "active in the last 30 days"),
                                  (("--since", (NOW - dt.timedelta(days=21)).strftime("%Y-%m-%d")), {old, new},
                                   "active since"),
                                  (("--all",), {old, new}, "in the whole store")):
        proc = inspect_factory(url, TOKEN, args=args)
        data = get(proc.url, "/_/api/recent", auth).json()
        assert {r["id"] for r in data["tables"]["conversations"]} == expected, args
        assert words in data["notes"]["conversations"], args
        proc.stop()
