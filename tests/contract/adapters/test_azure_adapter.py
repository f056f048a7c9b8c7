"""The Azure Functions adapter beyond the shared contract: what the FunctionApp registers, host.json, the
files `func azure functionapp publish` reads, and its log line."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import load_event
from support.serve_fixture import TOKENS

from .conftest import reload_apps
from .drivers import FUNCTIONS, AzureDriver

AZURE = FUNCTIONS / "azure"


@pytest.fixture
def azure(azure_function: Callable[..., Any], adapter_env: Path) -> AzureDriver:
    return AzureDriver("azure", adapter_env, function=azure_function)


def test_one_anonymous_http_function_on_every_path_and_every_method(azure_functions: list[Any]) -> None:
    function = next(f for f in azure_functions if f.get_function_name() == "tavus_callback")
    spec = json.loads(function.get_function_json())
    trigger = next(b for b in spec["bindings"] if b["type"] == "httpTrigger")
    output = next(b for b in spec["bindings"] if b["type"] == "http")
    assert spec["scriptFile"] == "function_app.py" and function.get_function_name() == "tavus_callback"
    assert trigger["authLevel"] == "ANONYMOUS" and trigger["route"] == "{*path}"
    assert "methods" not in trigger, "every method reaches the core, which answers 405 itself"
    assert trigger["direction"] == "IN" and output["name"] == "$return"


def test_host_json_has_the_extension_bundle_and_no_route_prefix() -> None:
    host = json.loads((AZURE / "host.json").read_text())
    assert host["version"] == "2.0"
    assert host["extensionBundle"]["id"] == "Microsoft.Azure.Functions.ExtensionBundle"
    assert host["extensions"]["http"]["routePrefix"] == ""


def test_the_publish_files_keep_local_settings_out_and_show_every_setting() -> None:
    ignored = (AZURE / ".funcignore").read_text().split()
    assert "local.settings.json" in ignored and ".venv" in ignored
    settings = json.loads((AZURE / "local.settings.json.example").read_text())["Values"]
    assert settings["FUNCTIONS_WORKER_RUNTIME"] == "python"
    assert {"TAVUS_CALLBACK_TOKENS", "TAVUS_STORE_URL", "AzureWebJobsStorage"} <= set(settings)


def test_the_query_is_read_from_the_url_when_the_worker_gives_no_params(azure: AzureDriver) -> None:
    import azure.functions as func

    request = func.HttpRequest(method="POST", url=f"https://app.azurewebsites.net/cb?token={TOKENS[0]}",
                               headers={}, body=json.dumps(load_event("objective")).encode())
    response = azure.function(request)
    assert response.status_code == 200 and json.loads(response.get_body())["status"] in ("stored", "duplicate")


def test_each_request_logs_one_line_with_its_outcome(azure: AzureDriver, caplog: pytest.LogCaptureFixture) -> None:
    payload = load_event("conversation.application.perception_unavailable")
    payload["conversation_id"] = conversation = f"c{uuid.uuid4().hex[:12]}"
    with caplog.at_level(logging.INFO, logger="tavus_callbacks.azure"):
        azure.post(payload)
        azure.post(payload, token=None)
    records = [r for r in caplog.records if r.name == "tavus_callbacks.azure"]
    assert [(r.levelno, r.status) for r in records] == [(logging.INFO, 200), (logging.WARNING, 401)]  # type: ignore[attr-defined]
    assert records[0].conversation_id == conversation  # type: ignore[attr-defined]
    assert f"conversation_id={conversation}" in records[0].getMessage()
    assert TOKENS[0] not in caplog.text


def test_an_unresolved_key_vault_reference_is_not_a_token(azure: AzureDriver, monkeypatch: pytest.MonkeyPatch,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    """The platform leaves the reference's text in the setting when it cannot resolve it: 503, never 200."""
    reference = "@Microsoft.KeyVault(VaultName=tavus-kv;SecretName=tavus-callback-tokens)"
    monkeypatch.setenv("TAVUS_CALLBACK_TOKENS", reference)
    reload_apps()
    with caplog.at_level(logging.INFO):
        reply = azure.post(load_event("guardrail"), token=reference)
    assert reply.status == 503 and reply.json() == {"error": "the endpoint is not configured; see its logs"}
    assert azure.objects() == []
    messages = [r.getMessage() for r in caplog.records]
    assert any("Key Vault reference" in m and "Key Vault Secrets User" in m for m in messages), messages
    assert any("callback config_error status=503" in m for m in messages), messages
