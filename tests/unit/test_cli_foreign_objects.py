"""Objects of other writers in the store (the vendor, a team's jobs, older versions): every tool that walks the
store skips what it cannot read or write, names it with why, counts it, says so in its exit status, and goes on.
Run on the embedded store and on S3 (moto server)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import drain
from support.bus_servers import FORWARD_TOKEN, SDK_WARNINGS, deliver
from support.fake_tavus import FakeTavus, conversation_callbacks
from support.servers import sqlite_url
from tavus_callbacks.cli import main
from tavus_callbacks.cli.history import load_events
from tavus_callbacks.cli.send import CONVERSATION_ORDER, Ids, SampleConversation
from tavus_callbacks.feed import ChangeFeed
from tavus_callbacks.pipeline import Pipeline
from tavus_callbacks.settings import Settings
from tavus_callbacks.state.stored import Skipped
from tavus_callbacks.stores import Store, open_store

pytestmark = SDK_WARNINGS

CID = "cforeign001"
VALID_DATA = {"family": "conversation", "type": "io.tavus.conversation.system.replica_joined", "payload": {}}

# Objects where stored events belong that are not events this package wrote, and the reason each is skipped.
NOT_EVENTS: dict[str, tuple[bytes, str]] = {
    f"{CID}/events/not-json.json": (b"this is not json", "not JSON"),
    f"{CID}/events/array.json": (b"[1, 2, 3]", "its JSON is list, not an object"),
    f"{CID}/events/no-id.json": (json.dumps({"data": VALID_DATA}).encode(), "no `id` string"),
    f"{CID}/events/number-id.json": (json.dumps({"id": 7, "data": VALID_DATA}).encode(), "`id` is not"),
    f"{CID}/events/no-data.json": (b'{"id": "e1"}', "no `data` object"),
    f"{CID}/events/data-string.json": (b'{"id": "e1", "data": "x"}', "its `data` is not an object"),
    f"{CID}/events/no-payload.json": (json.dumps({"id": "e1", "data": {"family": "conversation"}}).encode(),
                                      "has no `payload`"),
    f"{CID}/events/wrong-type.json": (json.dumps({"id": "e1", "data": {**VALID_DATA, "valid": "maybe"}}).encode(),
                                      "data.valid"),
    f"{CID}/events/missing-family.json": (json.dumps({"id": "e1", "data": {"type": "x", "payload": {}}}).encode(),
                                          "data.family"),
    f"{CID}/events/bad-time.json": (json.dumps({"id": "e1", "time": "yesterday", "data": VALID_DATA}).encode(),
                                    "`time` is not an ISO-8601 time"),
    "unrecognized/2025/07/11/vendor-note.json": (b'{"note": "written by another tool"}', "no `id` string"),
}
# Objects that are no events at all: left alone by replay, exported like any other.
OTHERS = {
    f"{CID}/events/recording.mp4": b"\x00\x00\x00\x18ftypmp42",
    f"{CID}/{CID}-1720680347472.mp4": b"\x00\x00\x00\x18ftypmp42",
    "team-job/report.csv": b"a,b\n1,2\n",
}
# Objects that cannot be files in a folder here, and why.
NOT_FILES: dict[str, str] = {
    "x" * 300: "longer than the file system allows",
    f"{CID}/{'y' * 300}/segment.json": "longer than the file system allows",
    f"{CID}/conversation.json/x": "already a file",
    "a/../escape.json": "not a safe file path",
}


def foreign_store(url: str) -> tuple[Store, str, list[str]]:
    """A store with a real conversation (sent as Tavus would, then derived) beside every kind of odd object, which
    the change feed hands to derive too; its ids."""
    pipeline = Pipeline(Settings(tokens=(FORWARD_TOKEN,), store_url=url))
    sample = SampleConversation(Ids(CID))
    ids = [deliver(pipeline, sample.named(name)).json_body()["event_id"] for name in CONVERSATION_ORDER]
    store, prefix = pipeline.store, pipeline.layout.prefix
    odd = [*NOT_EVENTS, *OTHERS, *NOT_FILES]
    for key, (data, _) in NOT_EVENTS.items():
        assert store.create(prefix + key, data)
    for key, data in OTHERS.items():
        assert store.create(prefix + key, data)
    for key in NOT_FILES:
        assert store.create(prefix + key, b'{"written": "by someone else"}')
    if isinstance(store, ChangeFeed):
        drain(pipeline)  # every key written, odd ones included, as serve's feed worker derives them
    else:  # as the bucket's notifications would: each event, then each odd object
        for key in [k for k in store.iter_keys(prefix) if "/events/" in k and k.removeprefix(prefix) not in odd]:
            pipeline.derive(key)
        for key in odd:
            pipeline.derive(prefix + key)
    pipeline.close()
    return store, prefix, ids


@pytest.fixture(params=["sqlite", "s3"])
def odd_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Store, str, list[str]]]:
    url = sqlite_url(tmp_path / "store.db") if request.param == "sqlite" else \
        request.getfixturevalue("cloud_bucket")("s3", "tavus/")
    store, prefix, ids = foreign_store(url)
    yield url, store, prefix, ids


def test_load_events_skips_each_object_that_is_not_an_event_with_why(
        odd_store: tuple[str, Store, str, list[str]], caplog: pytest.LogCaptureFixture) -> None:
    _, store, prefix, ids = odd_store
    skipped: list[Skipped] = []
    events, left_out = load_events(store, prefix, skipped=skipped)
    assert sorted(e.id for e in events) == sorted(set(ids))
    assert {s.key.removeprefix(prefix) for s in skipped} == set(NOT_EVENTS)
    for s in skipped:
        assert NOT_EVENTS[s.key.removeprefix(prefix)][1] in s.why, (s.key, s.why)
    assert left_out == len(skipped)
    for key in NOT_EVENTS:
        assert repr(prefix + key) in caplog.text, "each one is named in a log line"


def test_export_goes_on_past_what_it_cannot_write_and_counts_it(
        odd_store: tuple[str, Store, str, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url, store, prefix, _ = odd_store
    out = tmp_path / "files"
    assert main(["export", "--store", url, "--to", str(out), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    skipped = {s["key"].removeprefix(prefix): s["why"] for s in report["skipped"]}
    assert set(skipped) == set(NOT_FILES)
    for key, why in NOT_FILES.items():
        assert why in skipped[key], (key, skipped[key])
    written = {p.relative_to(out).as_posix().removeprefix(prefix) for p in out.rglob("*") if p.is_file()}
    everything = {k.removeprefix(prefix) for k in store.iter_keys(prefix)}
    assert written == everything - set(NOT_FILES), "every other object, including those after the odd ones"
    assert report["written"] == len(written)
    assert not (tmp_path / "escape.json").exists() and not (out / "escape.json").exists()

    main(["export", "--store", url, "--to", str(tmp_path / "again")])
    captured = capsys.readouterr()
    assert f"; {len(NOT_FILES)} objects skipped" in captured.out
    assert captured.err.count("warning: skipped ") == len(NOT_FILES) and "Traceback" not in captured.err


def test_replay_sends_the_events_and_names_and_counts_the_rest(
        odd_store: tuple[str, Store, str, list[str]], serve_factory: Callable[..., Any], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    url, _, prefix, ids = odd_store
    server = serve_factory(store_url=sqlite_url(tmp_path / "copy.db"), workers=1, threads=2)
    code = main(["replay", "--store", url, "--to", server.url, "--token", server.token, "--json"])
    captured = capsys.readouterr()
    assert code == 1, "the exit status says some objects were skipped"
    report = json.loads(captured.out)
    assert report["stored"] == len(set(ids)) and report["failed"] == 0
    assert {s["key"].removeprefix(prefix) for s in report["skipped"]} == set(NOT_EVENTS)
    for key in NOT_EVENTS:
        assert repr(prefix + key) in captured.err
    assert "Traceback" not in captured.err

    main(["replay", "--store", url, "--to", server.url, "--token", server.token])
    line = capsys.readouterr().out
    assert f"{len(set(ids))} duplicate" in line and f"{len(NOT_EVENTS)} skipped (not events" in line


def test_repair_and_reconcile_go_on_past_objects_that_are_not_events(
        odd_store: tuple[str, Store, str, list[str]], fake_tavus: FakeTavus,
        capsys: pytest.CaptureFixture[str]) -> None:
    url, store, prefix, _ = odd_store
    missed = "cforeign002"
    callbacks = conversation_callbacks(missed, datetime.now(UTC) - timedelta(minutes=30))
    fake_tavus.add(missed, callbacks)
    store.create(f"{prefix}{missed}/events/not-json.json", b"{")
    code = main(["reconcile", "--store", url, "--json"])
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["recovered"] == len(callbacks), captured.err
    assert code == 1 and report["failures"] == []
    assert f"{prefix}{missed}/events/not-json.json" in {s["key"] for s in report["skipped"]}
    state = json.loads(store.read(f"{prefix}{missed}/conversation.json").data)  # type: ignore[union-attr]
    assert len(state["events"]) == len(callbacks)
    assert "Traceback" not in captured.err
    assert open_store(url)[0].read(f"{prefix}{CID}/conversation.json") is not None
