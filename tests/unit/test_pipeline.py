"""The docs/SPEC.md §3 table on the framework-neutral pipeline, with a real SQLite file as the store."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import orjson
import pytest
from conftest import exported, load_event
from tavus_callbacks.app import App
from tavus_callbacks.http import Request, Response
from tavus_callbacks.pipeline import Pipeline
from tavus_callbacks.settings import Settings
from tavus_callbacks.stores.sqlite import SQLiteStore

TOKEN = "pipeline-token-0123456789abcdef"
OLD_TOKEN = "rotated-token-abcdefghijklmnop"


@pytest.fixture
def pipeline(tmp_path: Path) -> Pipeline:
    return Pipeline(Settings(tokens=(TOKEN, OLD_TOKEN), max_body_bytes=4096), store=SQLiteStore(tmp_path / "store.db"))


def post(p: Pipeline, body: bytes, token: str | None = TOKEN, header: bool = False) -> Response:
    query = {"token": token} if token and not header else {}
    headers = {"Authorization": f"Bearer {token}"} if token and header else {}
    return p.handle(Request("POST", "/callbacks", query, headers, body))


def stored_files(p: Pipeline, root: Path) -> list[Path]:
    """The pipeline's store, exported to `root` as plain files."""
    return exported(p.store, root)


def replica_joined() -> bytes:
    return json.dumps(load_event("conversation.system.replica_joined")).encode()


def test_health_needs_no_token_and_reveals_nothing(pipeline: Pipeline) -> None:
    response = pipeline.handle(Request("GET", "/api/healthz"))
    assert response.status == 200 and response.json_body() == {"status": "ok"}


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_other_methods_get_405(pipeline: Pipeline, method: str) -> None:
    response = pipeline.handle(Request(method, "/", {"token": TOKEN}, {}, replica_joined()))
    assert response.status == 405 and response.headers["Allow"] == "POST"


@pytest.mark.parametrize("token", [None, "", "wrong-token-0123456789abcdef", TOKEN + "x", TOKEN[:-1]])
def test_missing_or_wrong_token_gets_401_and_stores_nothing(pipeline: Pipeline, tmp_path: Path,
                                                            token: str | None) -> None:
    for header in (False, True):
        response = post(pipeline, replica_joined(), token, header=header)
        assert response.status == 401 and response.json_body() == {"error": "unauthorized"}
    assert stored_files(pipeline, tmp_path / "store") == []


@pytest.mark.parametrize("token", [TOKEN, OLD_TOKEN])
@pytest.mark.parametrize("header", [False, True])
def test_every_configured_token_is_accepted_by_query_or_bearer(pipeline: Pipeline, token: str, header: bool) -> None:
    assert post(pipeline, replica_joined(), token, header=header).status == 200


def test_body_over_the_limit_gets_413_and_stores_nothing(pipeline: Pipeline, tmp_path: Path) -> None:
    payload = load_event("conversation.system.replica_joined")
    payload["padding"] = ""
    exact = json.dumps(payload).encode()
    payload["padding"] = "x" * (4096 - len(exact))
    at_limit = json.dumps(payload).encode()
    assert len(at_limit) == 4096
    assert post(pipeline, at_limit).status == 200
    assert post(pipeline, at_limit + b" ").status == 413
    assert len(stored_files(pipeline, tmp_path / "store")) == 1  # the event at the limit, nothing else before derive


@pytest.mark.parametrize("body", [b"not json", b"{\"a\": ", b"[1, 2]", b"\"text\"", b"\xff\xfe{}", b""])
def test_a_body_that_is_not_a_json_object_gets_400_and_is_quarantined(pipeline: Pipeline, tmp_path: Path,
                                                                      body: bytes) -> None:
    response = post(pipeline, body)
    assert response.status == 400
    assert "error" in response.json_body()
    quarantined = [p for p in stored_files(pipeline, tmp_path / "store") if "quarantine" in p.parts]
    assert [p.read_bytes() for p in quarantined] == [body]


def test_a_retry_is_a_duplicate_with_the_same_event_id(pipeline: Pipeline, tmp_path: Path) -> None:
    payload = load_event("conversation.system.replica_joined")
    first = post(pipeline, json.dumps(payload).encode()).json_body()
    reordered = json.dumps(dict(reversed(list(payload.items()))), indent=4).encode()
    second = post(pipeline, reordered).json_body()
    assert first["status"] == "stored" and second["status"] == "duplicate"
    assert first["event_id"] == second["event_id"]
    events = [p for p in stored_files(pipeline, tmp_path / "store") if "events" in p.parts]
    assert len(events) == 1
    document = orjson.loads(events[0].read_bytes())
    assert document["id"] == first["event_id"] and document["data"]["payload"] == payload
    assert document["specversion"] == "1.0" and document["subject"] == payload["conversation_id"]


def test_a_known_type_failing_its_schema_is_stored_marked_invalid(pipeline: Pipeline, tmp_path: Path) -> None:
    payload = load_event("conversation.application.transcription_ready")
    payload["properties"]["transcript"] = "not a list"
    response = post(pipeline, json.dumps(payload).encode())
    assert response.status == 200 and response.json_body()["valid"] is False
    events = [p for p in stored_files(pipeline, tmp_path / "store") if "events" in p.parts]
    document = orjson.loads(events[0].read_bytes())
    assert document["data"]["valid"] is False and document["data"]["errors"]
    assert document["data"]["payload"] == payload


def test_no_token_in_any_stored_object(pipeline: Pipeline, tmp_path: Path) -> None:
    payload = load_event("conversation.system.replica_joined")
    post(pipeline, json.dumps(payload).encode(), header=True)
    post(pipeline, json.dumps(payload).encode())
    post(pipeline, b"garbage")
    for path in stored_files(pipeline, tmp_path / "store"):
        assert TOKEN.encode() not in path.read_bytes()


def test_an_unwritable_store_answers_503_with_retry_after(tmp_path: Path) -> None:
    p = Pipeline(Settings(tokens=(TOKEN,)), store=SQLiteStore(tmp_path / "store.db", timeout=0.2))
    holder = sqlite3.connect(tmp_path / "store.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process keeps the file locked
    try:
        response = post(p, replica_joined())
        assert response.status == 503 and response.headers["Retry-After"]
        assert post(p, b"not json").status == 503  # quarantine is a write too: nothing acknowledged
    finally:
        holder.execute("ROLLBACK")
    assert p.store.read("c123456/conversation.json") is None and post(p, replica_joined()).status == 200


def test_missing_configuration_answers_503_and_logs(monkeypatch: pytest.MonkeyPatch,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv("TAVUS_CALLBACK_TOKENS", raising=False)
    with caplog.at_level("ERROR", logger="tavus_callbacks"):
        response = App.from_env().handle(Request("POST", "/", {}, {}, replica_joined()))
    assert response.status == 503
    assert "TAVUS_CALLBACK_TOKENS" in caplog.text


def test_a_payload_echoing_the_token_stores_it_redacted_with_a_stable_id(pipeline: Pipeline, tmp_path: Path) -> None:
    payload = load_event("conversation.system.replica_joined")
    payload["webhook_url"] = f"https://example.com/webhook?token={TOKEN}"
    first = post(pipeline, json.dumps(payload).encode()).json_body()
    escaped = json.dumps(payload).replace("/", "\\/").encode()  # the same JSON with escaped slashes
    second = post(pipeline, escaped).json_body()
    assert (first["status"], second["status"]) == ("stored", "duplicate")
    assert first["event_id"] == second["event_id"]
    for path in stored_files(pipeline, tmp_path / "store"):
        assert TOKEN.encode() not in path.read_bytes()
    events = [p for p in stored_files(pipeline, tmp_path / "store") if "events" in p.parts]
    stored_payload = orjson.loads(events[0].read_bytes())["data"]["payload"]
    assert stored_payload["webhook_url"] == "https://example.com/webhook?token=[redacted]"
    # replaying the stored payload finds the same event
    assert post(pipeline, json.dumps(stored_payload).encode()).json_body()["event_id"] == first["event_id"]
    post(pipeline, f"not json {TOKEN}".encode())
    quarantined = [p for p in stored_files(pipeline, tmp_path / "store") if "quarantine" in p.parts]
    assert quarantined and all(TOKEN.encode() not in p.read_bytes() for p in quarantined)


def test_an_undated_unrecognized_payload_has_a_name_that_does_not_depend_on_the_day(pipeline: Pipeline,
                                                                                    tmp_path: Path) -> None:
    payload = load_event("unrecognized")
    for key in ("timestamp", "created_at", "updated_at"):
        payload.pop(key, None)
    first = post(pipeline, json.dumps(payload).encode()).json_body()
    second = post(pipeline, json.dumps(payload).encode()).json_body()
    assert (first["status"], second["status"]) == ("stored", "duplicate")
    stored = [p.relative_to(tmp_path / "store").as_posix() for p in stored_files(pipeline, tmp_path / "store")]
    assert stored == [f"unrecognized/undated/unrecognized_{first['event_id']}.json"]
