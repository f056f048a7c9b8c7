"""Derived work off the answer's path: derive raises so the feed delivers again, nothing is duplicated, reads only
read, and `repair` folds a conversation again from its events folder (one, --since from the time index, or --all,
which also finishes the `pending/` markers older versions left).

Real stores (a SQLite file, the cloud emulators) and a real bus client against a local Event Grid sink.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import drain, load_event
from support.bus_servers import SDK_WARNINGS, EventGridSink, deliver, forwarding_pipeline
from support.servers import sqlite_url
from tavus_callbacks.cli import main
from tavus_callbacks.errors import ForwardError, StoreUnavailable
from tavus_callbacks.events.normalize import normalize
from tavus_callbacks.forward.eventgrid import KEY_VARIABLE
from tavus_callbacks.http import Request
from tavus_callbacks.pipeline import Pipeline
from tavus_callbacks.record import build_record
from tavus_callbacks.settings import Settings

TOKEN = "repair-test-token-0123456789abcdef"


def conversation_events(cid: str, count: int) -> list[dict[str, Any]]:
    """`count` distinct callbacks of one conversation (objectives with different names)."""
    base = load_event("objective")
    return [{**base, "conversation_id": cid, "objective_name": f"objective_{n:03d}"} for n in range(count)]


def state_ids(pipeline: Pipeline, cid: str) -> list[str]:
    blob = pipeline.store.read(pipeline.layout.conversation_key(cid))
    assert blob is not None
    return [e["id"] for e in json.loads(blob.data)["events"]]


def local(tmp_path: Path) -> Pipeline:
    return Pipeline(Settings(tokens=(TOKEN,), store_url=sqlite_url(tmp_path / "store.db")))


def store_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_answer_writes_the_event_object_only_and_the_feed_derives_the_rest(tmp_path: Path) -> None:
    pipeline = local(tmp_path)
    payload = load_event("conversation.application.transcription_ready")
    answer = pipeline.handle(_request(payload))
    assert answer.status == 200 and answer.json_body()["status"] == "stored"
    assert [k for k in pipeline.store.iter_keys("")] == [answer.outcome.key]  # type: ignore[union-attr]
    drain(pipeline)
    cid = payload["conversation_id"]
    assert state_ids(pipeline, cid) == [answer.json_body()["event_id"]]
    keys = set(pipeline.store.iter_keys(""))
    assert {f"{cid}/conversation.json", f"{cid}/transcript.json"} <= keys
    assert any(k.startswith("index/") and k.endswith(f"/{cid}") for k in keys)
    drain(pipeline)  # nothing new: derive ran once per change
    assert pipeline.store.changes(0, 1000) == []  # type: ignore[attr-defined]


def test_an_event_stored_but_never_derived_is_shown_as_missing_and_folded_by_repair(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pipeline = local(tmp_path)
    folded, lost = conversation_events("ccrash", 2)
    assert pipeline.handle(_request(folded)).status == 200
    drain(pipeline)
    record = build_record(lost, normalize(lost), pipeline.layout)
    assert pipeline.store.create(record.key, record.body)
    pipeline.store.save_checkpoint(10**9)  # type: ignore[attr-defined]  # as if its derive went to the dead letter
    url = pipeline.store.url
    before = store_digest(tmp_path / "store.db")
    assert main(["conversations", "show", "ccrash", "--store", url]) == 0
    assert "1 stored event of this conversation is not in its state yet" in capsys.readouterr().err
    assert main(["conversations", "list", "--store", url, "--json"]) == 0
    assert store_digest(tmp_path / "store.db") == before, "reads only read"
    assert record.id not in state_ids(pipeline, "ccrash")
    assert main(["repair", "--store", url, "--conversation", "ccrash"]) == 0
    assert "1 conversations folded again, 1 events newly folded" in capsys.readouterr().out
    assert record.id in state_ids(pipeline, "ccrash")
    assert main(["repair", "--store", url, "--since", "3650d"]) == 0
    assert "0 events newly folded" in capsys.readouterr().out


@pytest.mark.parametrize("name, derived", [("conversation.application.transcription_ready", "transcript"),
                                           ("conversation.application.perception_analysis", "perception")])
def test_a_derived_document_lost_is_written_again_by_repair(tmp_path: Path, name: str, derived: str) -> None:
    pipeline = local(tmp_path)
    payload = load_event(name)
    eid = pipeline.handle(_request(payload)).json_body()["event_id"]
    drain(pipeline)
    key = getattr(pipeline.layout, f"{derived}_key")(payload["conversation_id"])
    pipeline.store.delete(key)
    assert main(["repair", "--store", pipeline.store.url, "--all"]) == 0
    written = pipeline.store.read(key)
    assert written is not None and json.loads(written.data)["event_id"] == eid


@SDK_WARNINGS
def test_a_derive_whose_publish_fails_raises_and_its_redelivery_publishes_once(
        eventgrid_sink: EventGridSink, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_VARIABLE, "eventgrid-test-key-0123456789")
    pipeline = forwarding_pipeline(sqlite_url(tmp_path / "store.db"), eventgrid_sink.url())
    payload = load_event("conversation.system.replica_joined")
    eventgrid_sink.status = 503
    answer = deliver(pipeline, payload)
    assert answer.status == 200  # the event is durable: the bus's failure is not the sender's
    key, eid = answer.outcome.key, answer.json_body()["event_id"]
    with pytest.raises(ForwardError):
        pipeline.derive(key)
    assert state_ids(pipeline, payload["conversation_id"]) == [eid], "folded before the publish failed"
    eventgrid_sink.status = 200
    eventgrid_sink.requests.clear()
    for _ in range(2):  # the feed delivers it again, twice
        assert pipeline.derive(key).event_id == eid
    assert [json.loads(r.body)[0]["id"] for r in eventgrid_sink.requests] == [eid, eid]  # at-least-once, same id
    assert state_ids(pipeline, payload["conversation_id"]) == [eid], "folded once"
    assert not [k for k in pipeline.store.iter_keys("") if "/pending/" in k]


def test_a_state_that_keeps_changing_fails_the_derive_and_not_the_answer(tmp_path: Path) -> None:
    """conversation.json that some other writer keeps changing: acknowledged all the same, derived later."""
    pipeline = local(tmp_path)
    store, key = pipeline.store, pipeline.layout.conversation_key("cbusy")
    store.create(key, b'{"events": []}')
    real_read = store.read

    def read_then_someone_writes(k: str) -> Any:  # the real store, raced by a real concurrent write
        blob = real_read(k)
        if k == key and blob is not None:
            store.replace(key, blob.data, blob.version)
        return blob

    store.read = read_then_someone_writes  # type: ignore[method-assign]
    answer = pipeline.handle(_request(conversation_events("cbusy", 1)[0]))
    assert answer.status == 200 and answer.json_body()["status"] == "stored"
    with pytest.raises(StoreUnavailable, match="kept changing"):
        pipeline.derive(answer.outcome.key)  # type: ignore[union-attr]
    store.read = real_read  # type: ignore[method-assign]
    drain(pipeline)  # redelivered by the feed
    assert state_ids(pipeline, "cbusy") == [answer.json_body()["event_id"]]


@SDK_WARNINGS
def test_markers_of_older_versions_are_finished_once_by_repair_all(
        eventgrid_sink: EventGridSink, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(KEY_VARIABLE, "eventgrid-test-key-0123456789")
    url = sqlite_url(tmp_path / "store.db")
    pipeline = local(tmp_path)
    unfolded, unpublished = conversation_events("cold", 2)
    records = [build_record(p, normalize(p), pipeline.layout) for p in (unfolded, unpublished)]
    for record, work in zip(records, (["fold"], ["publish"]), strict=True):  # what an older version left
        pipeline.store.create(record.key, record.body)
        marker = {"event_id": record.id, "key": record.key, "work": work}
        pipeline.store.create(f"cold/pending/{record.id}.json", json.dumps(marker).encode())
    pipeline.store.save_checkpoint(10**9)  # type: ignore[attr-defined]  # stored before the feed existed
    assert main(["repair", "--store", url, "--all", "--forward", eventgrid_sink.url()]) == 0
    assert "2 old pending markers finished, 0 failures" in capsys.readouterr().out
    assert sorted(state_ids(pipeline, "cold")) == sorted(r.id for r in records)
    assert [json.loads(r.body)[0]["id"] for r in eventgrid_sink.requests] == [records[1].id]
    assert not [k for k in pipeline.store.iter_keys("") if "/pending/" in k]
    assert main(["repair", "--store", url, "--all", "--forward", eventgrid_sink.url()]) == 0
    assert len(eventgrid_sink.requests) == 1, "published once"


def test_export_writes_every_object_as_a_file(tmp_path: Path, cloud_bucket: Callable[..., str]) -> None:
    """The same export from the embedded store and from a cloud bucket gives the same files."""
    trees = []
    for name, url in (("sqlite", sqlite_url(tmp_path / "store.db")), ("s3", cloud_bucket("s3", "p/"))):
        pipeline = Pipeline(Settings(tokens=(TOKEN,), store_url=url))
        for payload in [*conversation_events("cexport", 3), load_event("video.ready")]:
            answer = pipeline.handle(_request(payload))
            assert answer.status == 200
            pipeline.derive(answer.outcome.key)  # type: ignore[union-attr]
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


def _request(payload: dict[str, Any]) -> Request:
    return Request("POST", "/", {"token": TOKEN}, {}, json.dumps(payload).encode())
