"""The Cloud Functions adapter beyond the shared contract: its registration, query handling and log lines."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import load_event
from support.serve_fixture import TOKENS
from tavus_callbacks.http import Outcome

from .drivers import GcpDriver, HttpDriver


@pytest.fixture
def gcp(gcp_app: Any, adapter_env: Path) -> GcpDriver:
    return GcpDriver("gcp", adapter_env, client=gcp_app.test_client())


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_tavus_callback_is_registered_as_an_http_function(gcp_app: Any) -> None:
    from functions_framework import _function_registry

    assert _function_registry.REGISTRY_MAP["tavus_callback"] == "http"
    assert gcp_app.name == "tavus_callback"


def test_the_first_value_of_a_repeated_query_parameter_counts(gcp: GcpDriver) -> None:
    reply = gcp.client.post("/", query_string=[("token", TOKENS[0]), ("token", "second")],
                            data=json.dumps(load_event("guardrail")))
    assert reply.status_code == 200


def test_each_request_logs_one_structured_line_for_cloud_logging(
        gcp: GcpDriver, captured_logs: Callable[[], str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "my-project")
    payload = load_event("conversation.system.shutdown.internal_error")
    payload["conversation_id"] = conversation = f"c{uuid.uuid4().hex[:12]}"
    gcp.post(payload, headers={"X-Cloud-Trace-Context": "105445aa7843bc8bf206b12000100000/1;o=1"})
    gcp.post(payload, token="wrong-token-0123456789abcdef")
    lines = [line for line in json_lines(captured_logs()) if "status" in line]
    assert [(line["severity"], line["status"], line["message"]) for line in lines] == [
        ("INFO", 200, "callback stored"), ("WARNING", 401, "callback unauthorized")]
    assert lines[0]["logging.googleapis.com/trace"] == "projects/my-project/traces/105445aa7843bc8bf206b12000100000"
    assert lines[0]["logging.googleapis.com/labels"] == {"conversation_id": conversation}
    assert lines[0]["event_type"] == "io.tavus.conversation.system.shutdown"
    assert TOKENS[0] not in json.dumps(lines)


def test_a_store_outage_logs_at_error_severity(gcp_app: Any) -> None:
    from tavus_callbacks.http import answered_line
    from tavus_callbacks.platforms import gcp

    line = json.loads(gcp.log_line(answered_line(Outcome("store_unavailable"), 503)))
    assert line["severity"] == "ERROR" and line["message"] == "callback store_unavailable"
    assert "logging.googleapis.com/labels" not in line


def test_the_real_functions_framework_process_logs_json_lines(gcp_process_driver: HttpDriver) -> None:
    payload = load_event("conversation.system.pal_joined")
    payload["conversation_id"] = f"c{uuid.uuid4().hex[:12]}"
    assert gcp_process_driver.post(payload).status == 200
    lines = [line for line in json_lines(gcp_process_driver.output()) if line.get("conversation_id")]
    assert any(line["conversation_id"] == payload["conversation_id"] and line["severity"] == "INFO"
               for line in lines)
