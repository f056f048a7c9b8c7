"""The conversation fold: any order, any repeats, concurrent or not, gives the same conversation.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import RECORDED, drain
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tavus_callbacks.events.normalize import normalize
from tavus_callbacks.http import Request
from tavus_callbacks.layout import Layout
from tavus_callbacks.pipeline import Pipeline
from tavus_callbacks.record import build_record
from tavus_callbacks.settings import Settings
from tavus_callbacks.state.fold import entry_for, fold
from tavus_callbacks.stores.sqlite import SQLiteStore

TOKEN = "fold-token-0123456789abcdef"


def conversation_payloads(conversation_id: str = "c123456") -> list[dict[str, Any]]:
    """Every recorded payload of one conversation (all families that carry a conversation_id)."""
    payloads = []
    for path in RECORDED:
        data = json.loads(path.read_text())
        if isinstance(data, dict) and data.get("conversation_id") == conversation_id:
            payloads.append(data)
    return payloads


PAYLOADS = conversation_payloads()


def deliver(root: Path, payloads: list[dict[str, Any]], prefix: str = "") -> Pipeline:
    pipeline = Pipeline(Settings(tokens=(TOKEN,)), store=SQLiteStore(root / "store.db"), prefix=prefix)
    for payload in payloads:
        response = pipeline.handle(Request("POST", "/", {"token": TOKEN}, {}, json.dumps(payload).encode()))
        assert response.status == 200, response.body
    drain(pipeline)
    return pipeline


def state_bytes(root: Path, name: str = "conversation.json", key: str = "c123456/") -> bytes:
    blob = SQLiteStore(root / "store.db").read(key + name)
    assert blob is not None, key + name
    return blob.data


def test_the_sample_conversation_has_events_of_every_kind() -> None:
    types = {p.get("event_type") for p in PAYLOADS}
    assert {"system.replica_joined", "system.shutdown", "application.transcription_ready",
            "application.recording_ready"} <= types
    assert any("objective_name" in p for p in PAYLOADS)
    assert any("guardrail" in p.get("properties", {}) and "event_type" not in p for p in PAYLOADS)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(order=st.permutations(range(len(PAYLOADS))), repeats=st.lists(st.integers(0, len(PAYLOADS) - 1), max_size=6))
def test_any_order_with_repeats_folds_to_the_same_state(tmp_path_factory: pytest.TempPathFactory,
                                                         order: list[int], repeats: list[int]) -> None:
    reference = tmp_path_factory.mktemp("reference")
    deliver(reference, PAYLOADS)
    shuffled = tmp_path_factory.mktemp("shuffled")
    sequence = [PAYLOADS[i] for i in order]
    for i in repeats:  # repeats land at varied positions: after the whole sequence and interleaved
        sequence.insert(i, PAYLOADS[i])
    deliver(shuffled, sequence)
    for name in ("conversation.json", "transcript.json", "perception.json"):
        if (reference / "c123456" / name).exists() or (shuffled / "c123456" / name).exists():
            assert state_bytes(shuffled, name) == state_bytes(reference, name), name


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_pure_fold_ignores_order_and_duplicates(data: st.DataObject) -> None:
    layout = Layout()
    entries = [entry_for(build_record(p, normalize(p), layout)) for p in PAYLOADS]
    picked = data.draw(st.lists(st.sampled_from(entries), min_size=1, max_size=3 * len(entries)))
    shuffled = data.draw(st.permutations(picked))
    assert fold("c123456", shuffled) == fold("c123456", list({e["id"]: e for e in picked}.values()))


def test_state_shows_the_conversation_at_a_glance(tmp_path: Path) -> None:
    deliver(tmp_path, PAYLOADS)
    state = orjson.loads(state_bytes(tmp_path))
    joined = [p for p in PAYLOADS if p.get("event_type") == "system.replica_joined"]
    shutdown = [p for p in PAYLOADS if p.get("event_type") == "system.shutdown"]
    assert state["conversation_id"] == "c123456"
    assert state["replica_id"] == joined[0]["properties"]["replica_id"]
    assert state["joined_at"] is not None and state["joined_at"].endswith("Z")
    assert state["status"] == "ended"
    assert state["shutdown"]["reason"] == shutdown[-1]["properties"]["shutdown_reason"]
    assert state["shutdown"]["code"]
    transcript = json.loads(state_bytes(tmp_path, "transcript.json"))
    assert state["transcript"]["messages"] == len(transcript["transcript"]) > 0
    assert state["transcript"]["user_turns"] == sum(1 for t in transcript["transcript"] if t["role"] == "user")
    assert state["recording"]["uri"].startswith(("s3://", "gs://", "https://"))
    assert state["recording"]["checked"] is False  # a SQLite file holds no bucket
    assert [g["name"] for g in state["guardrails"]]
    assert state["objectives"]
    assert len(state["events"]) == len({json.dumps(p, sort_keys=True) for p in PAYLOADS})
    assert [e["id"] for e in state["events"]] == [e["id"] for e in
                                                  sorted(state["events"], key=lambda e: (e["time"] or "", e["id"]))]


def test_the_latest_transcript_wins_whatever_the_arrival_order(tmp_path: Path) -> None:
    base = next(p for p in PAYLOADS if p.get("event_type") == "application.transcription_ready")
    older = {**base, "timestamp": "2025-07-11T06:40:00.000000Z",
             "properties": {**base["properties"], "transcript": base["properties"]["transcript"][:1]}}
    newer = {**base, "timestamp": "2025-07-11T06:50:00.000000Z"}
    for order, folder in (([older, newer], tmp_path / "a"), ([newer, older], tmp_path / "b")):
        deliver(folder, order)
    assert state_bytes(tmp_path / "a", "transcript.json") == state_bytes(tmp_path / "b", "transcript.json")
    doc = json.loads(state_bytes(tmp_path / "a", "transcript.json"))
    assert doc["time"] == "2025-07-11T06:50:00.000000Z"
    assert len(doc["transcript"]) == len(base["properties"]["transcript"])


def test_copy_failure_shows_code_message_and_hint(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    payload = {"conversation_id": "c777", "event_type": "application.recording_copy_failed",
               "message_type": "application", "timestamp": "2025-07-11T07:00:00Z",
               "properties": {"error_code": "DESTINATION_AUTH_FAILED", "error_message": "AccessDenied",
                              "storage_provider": "s3"}}
    with caplog.at_level("ERROR", logger="tavus_callbacks"):
        deliver(tmp_path, [payload, payload])
    state = orjson.loads(state_bytes(tmp_path, key="c777/"))
    failure = state["recording"]["copy_failure"]
    assert state["recording"]["status"] == "copy_failed"
    assert failure["error_code"] == "DESTINATION_AUTH_FAILED"
    assert "291871421005" in failure["hint"] and "43200" in failure["hint"]
    errors = [r for r in caplog.records if "c777" in r.getMessage()]
    assert len(errors) == 1  # logged once, not again for the duplicate


def test_prefix_puts_every_object_under_it(tmp_path: Path) -> None:
    deliver(tmp_path, PAYLOADS[:3], prefix="tavus/")
    keys = list(SQLiteStore(tmp_path / "store.db").iter_keys(""))
    assert "tavus/c123456/conversation.json" in keys
    assert all(k.startswith("tavus/") for k in keys)
