"""The contract of docs/SPEC.md §3 and every recorded payload, run against each deployment (see drivers.py).

Each test keeps to its own events (a fresh conversation id, or one recorded payload per test), so the
deployments that share one store across the session (`serve`, `gcp-process`) give the same answers.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from conftest import RECORDED, load_event
from support.serve_fixture import TOKENS
from tavus_callbacks.record import event_id

from .drivers import IN_PROCESS, LIMIT, Driver

# A health check publishes no metric; Powertools says so with a warning, which is expected here.
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

SAMPLES = sorted(p.stem for p in RECORDED)
WRONG_TOKEN = "wrong-token-0123456789abcdefghij"


def fresh(name: str = "conversation.system.replica_joined") -> dict[str, Any]:
    """A recorded conversation payload under a conversation id no other test uses."""
    payload = load_event(name)
    payload["conversation_id"] = f"c{uuid.uuid4().hex[:12]}"
    return payload


def stored(driver: Driver, eid: str) -> list[Path]:
    return [p for p in driver.objects(eid) if p.suffix == ".json"]


def test_the_sample_files_cover_every_family() -> None:
    families = {name.split(".")[0] for name in SAMPLES}
    assert {"conversation", "guardrail", "objective", "replica", "video", "unrecognized"} <= families


@pytest.mark.parametrize("name", SAMPLES)
def test_every_recorded_payload_is_stored_once_then_answered_duplicate(driver: Driver, name: str) -> None:
    payload = load_event(name)
    first = driver.post(payload)
    assert first.status == 200, first.body
    assert first.headers["content-type"].startswith("application/json")
    answer = first.json()
    assert answer["status"] == "stored" and answer["event_id"] == event_id(payload)
    again = driver.post(payload)
    assert again.status == 200 and again.json()["status"] == "duplicate"
    assert again.json()["event_id"] == answer["event_id"]
    objects = stored(driver, answer["event_id"])
    assert len(objects) == 1, objects
    document = json.loads(objects[0].read_bytes())
    assert document["id"] == answer["event_id"] and document["specversion"] == "1.0"
    assert document["data"]["payload"] == payload


def test_a_retry_with_other_whitespace_and_key_order_is_a_duplicate(driver: Driver) -> None:
    payload = fresh("conversation.application.transcription_ready")
    first = driver.post(json.dumps(payload, separators=(",", ":")).encode())
    reordered = dict(reversed(list(payload.items())))
    second = driver.post(json.dumps(reordered, indent=4).encode())
    assert first.status == second.status == 200
    assert (first.json()["status"], second.json()["status"]) == ("stored", "duplicate")
    assert first.json()["event_id"] == second.json()["event_id"]
    assert len(stored(driver, first.json()["event_id"])) == 1


def test_the_token_may_come_in_the_authorization_header(driver: Driver) -> None:
    reply = driver.post(fresh(), token=TOKENS[0], bearer=True)
    assert reply.status == 200 and reply.json()["status"] == "stored"


def test_every_configured_token_is_accepted_for_rotation(driver: Driver) -> None:
    reply = driver.post(fresh(), token=TOKENS[1])
    assert reply.status == 200 and reply.json()["status"] == "stored"


@pytest.mark.parametrize("how", ["none", "wrong-query", "wrong-bearer", "prefix-of-a-token"])
def test_a_missing_or_wrong_token_is_401_without_detail_and_stores_nothing(driver: Driver, how: str) -> None:
    payload = fresh()
    token = {"none": None, "wrong-query": WRONG_TOKEN, "wrong-bearer": WRONG_TOKEN,
             "prefix-of-a-token": TOKENS[0][:-1]}[how]
    reply = driver.post(payload, token=token, bearer=how == "wrong-bearer")
    assert reply.status == 401 and reply.json() == {"error": "unauthorized"}
    assert driver.objects(payload["conversation_id"]) == []


def test_a_known_type_failing_its_schema_is_stored_whole_and_marked_invalid(driver: Driver) -> None:
    payload = fresh("conversation.application.transcription_ready")
    payload["properties"]["transcript"] = "not a list"
    reply = driver.post(payload)
    assert reply.status == 200 and reply.json()["valid"] is False
    (obj,) = stored(driver, reply.json()["event_id"])
    document = json.loads(obj.read_bytes())
    assert document["data"]["valid"] is False and document["data"]["payload"] == payload


@pytest.mark.parametrize("body", [b"[1, 2, 3]", b'"text"', b"{not json", b"\xff\xfe\x00garbage"],
                         ids=["array", "string", "broken", "not-utf8"])
def test_a_body_that_is_not_a_json_object_is_400_and_quarantined(driver: Driver, body: bytes) -> None:
    body = body + f" {uuid.uuid4().hex}".encode()  # a body no other test sends
    reply = driver.post(body)
    assert reply.status == 400 and "error" in reply.json()
    (obj,) = driver.objects(hashlib.sha256(body).hexdigest())
    assert driver.key(obj).startswith("quarantine/") and obj.read_bytes() == body


def test_a_body_over_the_limit_is_413_and_one_at_the_limit_is_stored(driver: Driver) -> None:
    payload = fresh()
    payload["padding"] = ""
    size = len(json.dumps(payload).encode())
    payload["padding"] = "x" * (LIMIT - size)
    at_limit = json.dumps(payload).encode()
    assert len(at_limit) == LIMIT
    over = at_limit[:-1] + b' }'
    assert len(over) == LIMIT + 1
    reply = driver.post(over)
    assert reply.status == 413
    assert driver.objects(payload["conversation_id"]) == []
    reply = driver.post(at_limit)
    assert reply.status == 200 and reply.json()["status"] == "stored"


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_any_other_method_is_405_and_stores_nothing(driver: Driver, method: str) -> None:
    payload = fresh()
    reply = driver.call(method, "/", {"token": TOKENS[0]}, {"content-type": "application/json"},
                        json.dumps(payload).encode() if method != "GET" else b"")
    assert reply.status == 405 and reply.headers.get("allow") == "POST"
    assert driver.objects(payload["conversation_id"]) == []


def test_the_health_check_needs_no_token_and_reveals_nothing(driver: Driver) -> None:
    reply = driver.call("GET", "/healthz")
    assert reply.status == 200 and reply.json() == {"status": "ok"}


def test_callbacks_are_accepted_on_any_path(driver: Driver) -> None:
    reply = driver.post(fresh(), path="/tavus/callbacks/v1")
    assert reply.status == 200 and reply.json()["status"] == "stored"


def test_an_unwritable_store_answers_503_with_retry_after_then_stores_on_redelivery(driver: Driver) -> None:
    payload = fresh("conversation.system.shutdown.max_call_duration")
    assert driver.post(fresh()).status == 200  # warm: the store is open before it breaks
    with driver.broken_store():
        reply = driver.post(payload)
        assert reply.status == 503 and int(reply.headers["retry-after"]) > 0
        assert "error" in reply.json()
    reply = driver.post(payload)
    assert reply.status == 200 and reply.json()["status"] == "stored"


def test_an_unwritable_store_at_cold_start_answers_503(driver: Driver) -> None:
    if driver.name not in IN_PROCESS:
        pytest.skip("a process on a shared store is already warm; its cold start is covered in-process")
    with driver.broken_store():
        reply = driver.post(fresh())
        assert reply.status == 503 and int(reply.headers["retry-after"]) > 0
    assert driver.post(fresh()).status == 200


def test_the_token_is_in_no_stored_object_and_no_log_line(driver: Driver, captured_logs: Any) -> None:
    payload = fresh("conversation.application.recording_copy_failed")
    driver.post(payload)
    driver.post(payload, bearer=True)
    driver.post(payload, token=TOKENS[1])
    driver.post(b"not json " + uuid.uuid4().hex.encode())
    driver.post(payload, token=TOKENS[0] + "-but-wrong")
    for obj in driver.objects():
        data = obj.read_bytes()
        assert TOKENS[0].encode() not in data and TOKENS[1].encode() not in data, driver.key(obj)
    logs = captured_logs() + driver.output()
    assert payload["conversation_id"] in logs or driver.name in ("serve",), "the outcome is logged"
    assert TOKENS[0] not in logs and TOKENS[1] not in logs
