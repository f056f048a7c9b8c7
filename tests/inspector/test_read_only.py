"""`tavus-callbacks inspect` reads a store and never writes it: on every backend, against its real server, the
store holds the same objects at the same versions after every page and endpoint was asked for."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import orjson
import pytest
from conftest import handle_and_derive
from support.servers import sqlite_url
from tavus_callbacks.cli.send import SAMPLES, Ids, SampleConversation
from tavus_callbacks.http import Request
from tavus_callbacks.inspector.reading import Reader, ReadOnly, ReadOnlyStore
from tavus_callbacks.layout import Layout
from tavus_callbacks.pipeline import Pipeline
from tavus_callbacks.settings import Settings
from tavus_callbacks.stores import open_store

from inspector.conftest import InspectProcess, cli, get

TOKEN = "inspect-test-token-0123456789abcdef"


def fill(store_url: str, conversations: int = 2) -> list[str]:
    """Every sample callback of a few conversations, stored and derived by the pipeline; their ids."""
    pipeline = Pipeline(Settings(tokens=(TOKEN,), store_url=store_url))
    ids = []
    for _ in range(conversations):
        sample = SampleConversation(Ids())
        ids.append(sample.ids.conversation_id)
        for name in SAMPLES:
            body = orjson.dumps(sample.named(name))
            assert handle_and_derive(pipeline, Request("POST", "/", {"token": TOKEN}, body=body)).status == 200, name
    pipeline.close()
    return ids


def snapshot(store_url: str) -> dict[str, tuple[str, bytes]]:
    """Every object of the store: key -> (version, bytes)."""
    store, _ = open_store(store_url)
    objects = {}
    for key in store.iter_keys(""):
        blob = store.read(key)
        assert blob is not None, key
        objects[key] = (blob.version, blob.data)
    return objects


def look_at_everything(proc: InspectProcess, conversations: list[str], keys: list[str]) -> None:
    """Ask for every page and endpoint the inspector has, and some it has not."""
    auth = {"Authorization": f"Bearer {proc.token}"}
    entered = get(proc.url, f"/_/?token={proc.token}")
    assert entered.status == 303
    assert get(proc.url, "/_/", auth).status == 200
    recent = get(proc.url, "/_/api/recent", auth).json()
    assert {r["id"] for r in recent["tables"]["conversations"]} == set(conversations)
    assert get(proc.url, f"/_/api/recent?version={recent['version']}", auth).status == 200
    for cid in conversations:
        assert get(proc.url, f"/_/c/{cid}", auth).status == 200
        assert get(proc.url, f"/_/api/c/{cid}", auth).status == 200
    for key in keys:
        status = get(proc.url, f"/_/api/event?key={quote(key)}", auth).status
        assert status == (200 if "/events/" in key else 404), key
    for path in ("/_/c/cnosuchconv", "/_/api/c/..", "/_/nothing", "/"):
        assert get(proc.url, path, auth).status in (303, 404), path
    for method in ("POST", "PUT", "DELETE"):
        assert get(proc.url, "/_/", auth, method=method, body=b"{}").status == 405


def test_inspect_on_any_store_writes_nothing(store_url: str, inspect_factory: Callable[..., InspectProcess]) -> None:
    conversations = fill(store_url)
    before = snapshot(store_url)
    assert any(key.endswith("/conversation.json") for key in before)
    proc = inspect_factory(store_url, TOKEN)
    look_at_everything(proc, conversations, sorted(before))
    assert snapshot(store_url) == before
    assert "Traceback" not in proc.output.read_text()


def test_inspect_refuses_a_missing_sqlite_file_and_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "store.db"
    result = cli("inspect", "--store", sqlite_url(missing), "--port", "0")
    assert result.returncode == 2
    assert result.stderr.startswith("error: no such store:") and "Traceback" not in result.stderr
    assert not (tmp_path / "no").exists()


def test_inspect_refuses_a_sqlite_file_that_is_not_a_store_and_leaves_it_alone(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE notes (text TEXT)")
    before = other.read_bytes()
    result = cli("inspect", "--store", sqlite_url(other), "--port", "0")
    assert result.returncode == 2 and "not a store of this package" in result.stderr
    assert other.read_bytes() == before
    for url in ("sqlite:relative.db", "sqlite://host/x.db"):
        refused = cli("inspect", "--store", url, "--port", "0")
        assert refused.returncode == 2 and "SQLite file URL" in refused.stderr, url
        assert "Traceback" not in refused.stderr


def test_the_readers_view_of_a_store_refuses_every_write(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "store.db")
    fill(url, conversations=1)
    before = snapshot(url)
    store, _ = open_store(url)
    view = ReadOnlyStore(store)
    key = next(iter(before))
    for write in (lambda: view.create("new.json", b"{}"), lambda: view.replace(key, b"{}", before[key][0]),
                  lambda: view.delete(key)):
        with pytest.raises(ReadOnly, match="only reads"):
            write()
    assert Reader(store, Layout()).store is not store  # what the pages read through
    assert snapshot(url) == before
