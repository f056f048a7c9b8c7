"""Derived data that cannot be read is rebuilt, never fatal: a damaged conversation.json (the shapes seen in the
wild and a generated corpus), transcript.json or perception.json, then one more callback of that conversation:
derive rebuilds the state from the events folder with every event in it, and show, list and repair end without
a traceback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import drain, load_event
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.servers import sqlite_url
from tavus_callbacks.cli import main
from tavus_callbacks.http import Request
from tavus_callbacks.pipeline import Pipeline
from tavus_callbacks.settings import Settings

TOKEN = "damaged-state-token-0123456789ab"
CID = "c123456"
PAYLOADS = [load_event(n) for n in ("conversation.system.replica_joined",
                                    "conversation.system.shutdown.max_call_duration",
                                    "conversation.application.transcription_ready", "guardrail", "objective")]
LATE = load_event("conversation.application.perception_analysis")

ENTRY = {"id": "e1", "type": "io.tavus.conversation.system.replica_joined", "time": "2025-07-11T06:45:47.472000Z",
         "key": f"{CID}/events/x.json", "valid": True, "facts": {"replica_id": "r1"}}
SEEN = {  # each shape of damage found written into a state file
    "not json": b"{not json",
    "events of integers": json.dumps({"events": [1, 2, 3]}).encode(),
    "events not a list": json.dumps({"events": 5}).encode(),
    "an entry without its fields": json.dumps({"events": [{"id": "e1"}]}).encode(),
    "an entry whose time is a number": json.dumps({"events": [{**ENTRY, "time": 1752216347}]}).encode(),
    "facts of the wrong type": json.dumps({"events": [{**ENTRY, "facts": {"replica_id": ["r1"]}}]}).encode(),
    "a garbage reconciled mark": b"RECONCILED:yes",  # over the state as it was (see damaged_store)
    "an empty file": b"",
    "a list": b"[]",
}
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=12)
ENTRY_FIELD = st.sampled_from(sorted(ENTRY))


def request(payload: dict[str, Any]) -> Request:
    return Request("POST", "/", {"token": TOKEN}, {}, json.dumps(payload).encode())


def damaged_store(root: Path, state: bytes, derived: bytes | None = None) -> Pipeline:
    """A store holding the conversation's events with `state` written over its conversation.json (and `derived`
    over transcript.json), then one more callback stored and derived."""
    pipeline = Pipeline(Settings(tokens=(TOKEN,), store_url=sqlite_url(root / "store.db")))
    for payload in PAYLOADS:
        assert pipeline.handle(request(payload)).status == 200
    drain(pipeline)
    for key, data in ((f"{CID}/conversation.json", state), (f"{CID}/transcript.json", derived)):
        if data is not None:
            blob = pipeline.store.read(key)
            if data.startswith(b"RECONCILED:") and blob is not None:
                data = json.dumps({**json.loads(blob.data), "reconciled": data.decode().split(":", 1)[1]}).encode()
            pipeline.store.replace(key, data, blob.version if blob else None)
    assert pipeline.handle(request(LATE)).status == 200
    drain(pipeline)
    return pipeline


def check_rebuilt(pipeline: Pipeline, capsys: pytest.CaptureFixture[str]) -> None:
    listed = {k.rsplit("_", 1)[-1].removesuffix(".json") for k in pipeline.folder.event_keys(CID)}
    state = json.loads(pipeline.store.read(f"{CID}/conversation.json").data)  # type: ignore[union-attr]
    assert listed <= {e["id"] for e in state["events"]}, "every stored event is in the rebuilt state"
    url = pipeline.store.url
    for argv in (["conversations", "show", CID], ["conversations", "show", CID, "--json"],
                 ["conversations", "list"], ["conversations", "list", "--all"], ["repair", "--conversation", CID]):
        assert main([*argv, "--store", url]) == 0, argv
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    transcript = json.loads(pipeline.store.read(f"{CID}/transcript.json").data)  # type: ignore[union-attr]
    assert transcript["event_id"] == state["transcript"]["event_id"], "repair writes a damaged document again"


@pytest.mark.parametrize("shape", sorted(SEEN))
def test_each_damage_seen_is_rebuilt_from_the_events(shape: str, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    check_rebuilt(damaged_store(tmp_path, SEEN[shape], derived=b"garbage"), capsys)


def test_a_damaged_state_is_shown_as_such_until_the_next_event_or_repair(tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture[str]) -> None:
    pipeline = Pipeline(Settings(tokens=(TOKEN,), store_url=sqlite_url(tmp_path / "store.db")))
    for payload in PAYLOADS:
        assert pipeline.handle(request(payload)).status == 200
    drain(pipeline)
    blob = pipeline.store.read(f"{CID}/conversation.json")
    pipeline.store.replace(f"{CID}/conversation.json", SEEN["events of integers"], blob.version)  # type: ignore[union-attr]
    url = pipeline.store.url
    assert main(["conversations", "show", CID, "--store", url]) == 1
    assert main(["conversations", "list", "--store", url]) == 0
    err = capsys.readouterr().err
    assert f"repair --conversation {CID}` rebuilds it" in err and "Traceback" not in err
    assert main(["repair", "--conversation", CID, "--store", url]) == 0
    assert main(["conversations", "show", CID, "--store", url]) == 0


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(state=st.one_of(
    JSON.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(st.sampled_from(["events", "reconciled", "transcript", "status"]), JSON).map(
        lambda d: json.dumps(d).encode()),
    st.lists(st.dictionaries(ENTRY_FIELD, JSON), max_size=3).map(lambda es: json.dumps(
        {"events": [{**ENTRY, **e} for e in es]}).encode()),
    st.binary(max_size=40)))
def test_a_generated_corpus_of_damaged_states_is_rebuilt(state: bytes, tmp_path_factory: pytest.TempPathFactory,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    check_rebuilt(damaged_store(tmp_path_factory.mktemp("damaged"), state), capsys)
