"""Derived work the answer did not wait for: pending markers, and `repair` finishing them and folding what is missing.

Real stores (a SQLite file, the cloud emulators) and a real bus client against a local Event Grid sink.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import load_event
from support.bus_servers import SDK_WARNINGS, EventGridSink, deliver, forwarding_pipeline
from support.servers import sqlite_url
from tavus_callbacks.cli import main
from tavus_callbacks.events.normalize import normalize
from tavus_callbacks.forward.eventgrid import KEY_VARIABLE
from tavus_callbacks.pipeline import Pipeline
from tavus_callbacks.record import build_record
from tavus_callbacks.settings import Settings
from tavus_callbacks.state.repair import repair

TOKEN = "repair-test-token-0123456789abcdef"


def conversation_events(cid: str, count: int) -> list[dict[str, Any]]:
    """`count` distinct callbacks of one conversation (objectives with different names)."""
    base = load_event("objective")
    return [{**base, "conversation_id": cid, "objective_name": f"objective_{n:03d}"} for n in range(count)]


def state_ids(pipeline: Pipeline, cid: str) -> set[str]:
    blob = pipeline.store.read(pipeline.layout.conversation_key(cid))
    assert blob is not None
    return {e["id"] for e in json.loads(blob.data)["events"]}


def pending(pipeline: Pipeline, cid: str | None = None) -> list[str]:
    return [k for k in pipeline.store.iter_keys(pipeline.layout.prefix) if "/pending/" in k
            and (cid is None or k.startswith(f"{pipeline.layout.prefix}{cid}/"))]


def test_an_event_stored_but_never_folded_is_folded_by_repair(tmp_path: Path) -> None:
    """A crash between the create and the fold leaves no marker: repair compares the events with the state."""
    pipeline = Pipeline(Settings(tokens=(TOKEN,), store_url=sqlite_url(tmp_path / "store.db")))
    folded, crashed = conversation_events("ccrash", 2)
    assert pipeline.handle(_request(folded)).status == 200
    record = build_record(crashed, normalize(crashed), pipeline.layout)
    assert pipeline.store.create(record.key, record.body)  # stored, then the process died
    assert record.id not in state_ids(pipeline, "ccrash")
    summary = repair(pipeline)
    assert (summary.conversations, summary.folded, summary.failures) == (1, 1, 0)
    assert record.id in state_ids(pipeline, "ccrash")
    assert repair(pipeline).folded == 0  # nothing left to do


@pytest.mark.parametrize("name, derived", [("conversation.application.transcription_ready", "transcript"),
                                           ("conversation.application.perception_analysis", "perception")])
def test_a_derived_document_lost_with_its_marker_is_written_again_by_repair(
        tmp_path: Path, name: str, derived: str) -> None:
    """The state names the winning event, the document is gone (its write and its marker both failed)."""
    pipeline = Pipeline(Settings(tokens=(TOKEN,), store_url=sqlite_url(tmp_path / "store.db")))
    payload = load_event(name)
    eid = pipeline.handle(_request(payload)).json_body()["event_id"]
    key = getattr(pipeline.layout, f"{derived}_key")(payload["conversation_id"])
    pipeline.store.delete(key)
    summary = repair(pipeline)
    assert (summary.folded, summary.failures) == (0, 0)
    written = pipeline.store.read(key)
    assert written is not None and json.loads(written.data)["event_id"] == eid


@SDK_WARNINGS
def test_a_failing_forwarder_leaves_a_marker_that_repair_publishes_exactly_once(
        eventgrid_sink: EventGridSink, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_VARIABLE, "eventgrid-test-key-0123456789")
    url = sqlite_url(tmp_path / "store.db")
    pipeline = forwarding_pipeline(url, eventgrid_sink.url())
    payload = load_event("conversation.system.replica_joined")
    eventgrid_sink.status = 503
    answer = deliver(pipeline, payload)
    assert answer.status == 200  # the event is durable: the bus's failure is not the sender's
    eid = answer.json_body()["event_id"]
    assert eid in state_ids(pipeline, payload["conversation_id"])
    markers = pending(pipeline)
    assert markers == [f"{payload['conversation_id']}/pending/{eid}.json"]
    assert json.loads(pipeline.store.read(markers[0]).data)["work"] == ["publish"]
    eventgrid_sink.status = 200
    eventgrid_sink.requests.clear()
    assert main(["repair", "--store", url, "--forward", eventgrid_sink.url()]) == 0
    assert [json.loads(r.body)[0]["id"] for r in eventgrid_sink.requests] == [eid]
    assert pending(pipeline) == []
    assert main(["repair", "--store", url, "--forward", eventgrid_sink.url()]) == 0
    assert len(eventgrid_sink.requests) == 1  # published once


@SDK_WARNINGS
def test_the_next_fold_of_the_conversation_finishes_its_pending_publish(
        eventgrid_sink: EventGridSink, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_VARIABLE, "eventgrid-test-key-0123456789")
    pipeline = forwarding_pipeline(sqlite_url(tmp_path / "store.db"), eventgrid_sink.url())
    first, second = conversation_events("cnext", 2)
    eventgrid_sink.status = 500
    eid = deliver(pipeline, first).json_body()["event_id"]
    assert len(pending(pipeline)) == 1
    eventgrid_sink.status = 200
    eventgrid_sink.requests.clear()
    other = deliver(pipeline, second).json_body()["event_id"]
    assert sorted(json.loads(r.body)[0]["id"] for r in eventgrid_sink.requests) == sorted([eid, other])
    assert pending(pipeline) == []


def test_a_fold_that_cannot_finish_is_answered_200_and_left_pending(tmp_path: Path) -> None:
    """conversation.json that some other writer keeps changing: the event is acknowledged all the same."""
    pipeline = Pipeline(Settings(tokens=(TOKEN,), store_url=sqlite_url(tmp_path / "store.db")))
    store, key = pipeline.store, pipeline.layout.conversation_key("cbusy")
    store.create(key, b'{"events": []}')
    real_read = store.read

    def read_then_someone_writes(k: str) -> Any:  # the real store, raced by a real concurrent write
        blob = real_read(k)
        if k == key and blob is not None:
            store.replace(key, blob.data, blob.version)
        return blob

    store.read = read_then_someone_writes  # type: ignore[method-assign]
    payload = conversation_events("cbusy", 1)[0]
    answer = pipeline.handle(_request(payload))
    assert answer.status == 200 and answer.json_body()["status"] == "stored"
    eid = answer.json_body()["event_id"]
    assert pending(pipeline, "cbusy") == [f"cbusy/pending/{eid}.json"]
    store.read = real_read  # type: ignore[method-assign]
    assert main(["conversations", "show", "cbusy", "--store", store.url, "--json"]) == 0  # reading repairs
    assert state_ids(pipeline, "cbusy") == {eid}
    assert pending(pipeline) == []


def test_export_writes_every_object_as_a_file(tmp_path: Path, cloud_bucket: Callable[..., str]) -> None:
    """The same export from the embedded store and from a cloud bucket gives the same files."""
    trees = []
    for name, url in (("sqlite", sqlite_url(tmp_path / "store.db")), ("s3", cloud_bucket("s3", "p/"))):
        pipeline = Pipeline(Settings(tokens=(TOKEN,), store_url=url))
        for payload in [*conversation_events("cexport", 3), load_event("video.ready")]:
            assert pipeline.handle(_request(payload)).status == 200
        out = tmp_path / name
        assert main(["export", "--store", url, "--to", str(out)]) == 0
        files = {p.relative_to(out).as_posix().removeprefix("p/"): p.read_bytes() for p in out.rglob("*")
                 if p.is_file()}
        assert json.loads(files["cexport/conversation.json"])["conversation_id"] == "cexport"
        assert len([k for k in files if k.startswith("cexport/events/")]) == 3
        assert any(k.startswith("videos/") for k in files)
        only = tmp_path / f"{name}-one"
        assert main(["export", "--store", url, "--to", str(only), "--conversation", "cexport"]) == 0
        assert not any(p.is_file() and "videos" in p.parts for p in only.rglob("*"))
        trees.append(files)
    assert trees[0].keys() == trees[1].keys()
    events = [k for k in trees[0] if "/events/" in k]
    assert [trees[0][k] for k in events] == [trees[1][k] for k in events]  # the state differs: it names its keys


def _request(payload: dict[str, Any]) -> Any:
    from tavus_callbacks.http import Request

    return Request("POST", "/", {"token": TOKEN}, {}, json.dumps(payload).encode())
