"""openapi.yaml is the code's own contract: generated from it, valid OpenAPI 3.1, and the pipeline's real
answers (one per row of docs/SPEC.md §3) match the documented responses."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import RECORDED, event_path
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_openapi
from referencing import Registry
from referencing.jsonschema import DRAFT202012
from tavus_callbacks.cli.openapi import build_spec
from tavus_callbacks.http import Request, Response
from tavus_callbacks.pipeline import Pipeline
from tavus_callbacks.settings import Settings
from tavus_callbacks.stores.sqlite import SQLiteStore

ROOT = Path(__file__).resolve().parents[2]
SPEC_FILE = ROOT / "openapi.yaml"
TOKEN = "openapi-token-0123456789abcdef"


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(SPEC_FILE.read_text())
    return loaded


def validator(spec: dict[str, Any], schema: dict[str, Any]) -> Draft202012Validator:
    """A validator for a schema that is a `#/components/...` reference into the spec."""
    registry: Registry[Any] = Registry().with_resource("urn:openapi", DRAFT202012.create_resource(spec))
    return Draft202012Validator({"$ref": "urn:openapi" + schema["$ref"]}, registry=registry)


def test_openapi_yaml_is_what_the_code_generates(spec: dict[str, Any]) -> None:
    generated = json.loads(json.dumps(build_spec()))
    assert spec == generated, "openapi.yaml is stale: run `tavus-callbacks openapi --yaml > openapi.yaml`"


def test_openapi_yaml_is_a_valid_openapi_3_1_document(spec: dict[str, Any]) -> None:
    assert spec["openapi"].startswith("3.1")
    validate_openapi(spec)


def test_the_token_is_two_security_schemes_and_every_callback_needs_one(spec: dict[str, Any]) -> None:
    schemes = spec["components"]["securitySchemes"]
    assert schemes["token"] == {**schemes["token"], "type": "apiKey", "in": "query", "name": "token"}
    assert schemes["bearer"]["type"] == "http" and schemes["bearer"]["scheme"] == "bearer"
    posts = [item["post"] for item in spec["paths"].values() if "post" in item]
    assert len(posts) == 3
    for op in posts:
        assert op["security"] == [{"token": []}, {"bearer": []}]
    assert spec["paths"]["/healthz"]["get"]["security"] == []


def test_503_documents_retry_after_and_405_documents_allow(spec: dict[str, Any]) -> None:
    for path in ("/", "/{path}", "/healthz"):
        assert "Retry-After" in spec["paths"][path]["post"]["responses"]["503"]["headers"]
    assert "Allow" in spec["components"]["responses"]["MethodNotAllowed"]["headers"]
    assert spec["components"]["headers"]["Retry-After"]["required"] is True


@pytest.mark.parametrize("name", [p.name for p in RECORDED])
def test_every_recorded_payload_matches_the_request_schema(spec: dict[str, Any], name: str) -> None:
    body_schema = spec["paths"]["/"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    payload = json.loads(event_path(name).read_text())
    errors = list(validator(spec, body_schema).iter_errors(payload))
    assert not errors, errors


@pytest.mark.parametrize("value", [[], "text", 1, None, [{"conversation_id": "c1"}]])
def test_a_body_that_is_not_an_object_is_outside_the_request_schema(spec: dict[str, Any], value: Any) -> None:
    body_schema = spec["paths"]["/"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert not validator(spec, body_schema).is_valid(value)


def _answers(tmp_path: Path) -> list[tuple[str, Response]]:
    """One real answer of the pipeline per row of docs/SPEC.md §3 (the store's outage: its file locked by another)."""
    store = SQLiteStore(tmp_path / "store.db")
    pipeline = Pipeline(Settings(tokens=(TOKEN,), max_body_bytes=2048), store=store)
    event = event_path("conversation.system.replica_joined").read_bytes()
    q = {"token": TOKEN}
    answers = [
        ("post", pipeline.handle(Request("POST", "/", q, {}, event))),
        ("post", pipeline.handle(Request("POST", "/", q, {}, event))),
        ("post", pipeline.handle(Request("POST", "/", q, {}, b"[1, 2]"))),
        ("post", pipeline.handle(Request("POST", "/", {}, {}, event))),
        ("post", pipeline.handle(Request("POST", "/", q, {}, b"{" + b" " * 4096 + b"}"))),
        ("get", pipeline.handle(Request("GET", "/", q))),
    ]
    broken = Pipeline(Settings(tokens=(TOKEN,)), store=SQLiteStore(tmp_path / "broken.db", timeout=0.2))
    holder = sqlite3.connect(tmp_path / "broken.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        answers.append(("post", broken.handle(Request("POST", "/", q, {}, b'{"hello": "world"}'))))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    return answers


def test_the_pipeline_answers_match_their_documented_responses(spec: dict[str, Any], tmp_path: Path) -> None:
    answers = _answers(tmp_path)
    assert [r.status for _, r in answers] == [200, 200, 400, 401, 413, 405, 503]
    assert answers[0][1].json_body()["status"] == "stored" and answers[1][1].json_body()["status"] == "duplicate"
    for method, response in answers:
        documented = (spec["paths"]["/"][method]["responses"][str(response.status)] if method == "post"
                      else spec["components"]["responses"]["MethodNotAllowed"])
        schema = documented["content"]["application/json"]["schema"]
        assert response.headers["Content-Type"] == "application/json"
        errors = list(validator(spec, schema).iter_errors(response.json_body()))
        assert not errors, (response.status, errors)
        for header in documented.get("headers", {}):
            assert header in response.headers, (response.status, header)
