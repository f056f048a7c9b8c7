"""Every 503 says why in the message of its log line (plain-text and Cloud Logging lines drop `extra`): the
store's error code and the fix, against the real emulators; and a missing cloud SDK names the extra to install."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest
from conftest import load_event
from support.servers import AZURITE_ACCOUNT, Emulator, new_bucket_name, point_at, store_url_for
from tavus_callbacks.clients import clear_clients
from tavus_callbacks.http import Request
from tavus_callbacks.pipeline import Pipeline
from tavus_callbacks.settings import Settings

TOKEN = "store-errors-token-0123456789abcdef"
# (emulator fixture, words of the message: the SDK's code and the fix)
MISSING = {
    "s3": ("moto_server", ["NoSuchBucket (HTTP 404)", "does not exist: create it or fix TAVUS_STORE_URL"]),
    "gcs": ("gcs_server", ["404 NotFound", "does not exist: create it or fix TAVUS_STORE_URL"]),
    "azure": ("azurite_server", ["ContainerNotFound (HTTP 404)", "does not exist: create it or fix TAVUS_STORE_URL"]),
}


@pytest.fixture
def fresh_clients() -> Iterator[None]:
    clear_clients()
    yield
    clear_clients()


def store_error_line(url: str, caplog: pytest.LogCaptureFixture) -> str:
    """POST one callback to a pipeline on `url`: it must answer 503; the message of its error line."""
    pipeline = Pipeline(Settings(tokens=(TOKEN,), store_url=url))
    with caplog.at_level(logging.ERROR, logger="tavus_callbacks"):
        response = pipeline.handle(Request("POST", "/", {"token": TOKEN}, {},
                                           json.dumps(load_event("guardrail")).encode()))
    assert response.status == 503 and response.headers["Retry-After"]
    (line,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert line.startswith("store unavailable, answering 503: ") and TOKEN not in line
    return line


@pytest.mark.parametrize("kind", sorted(MISSING))
def test_a_missing_bucket_is_named_with_the_sdks_code_in_the_log_message(
        kind: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture, fresh_clients: None) -> None:
    fixture, words = MISSING[kind]
    point_at(request.getfixturevalue(fixture), monkeypatch)
    bucket = new_bucket_name()  # never created
    line = store_error_line(store_url_for(kind, bucket, "tavus/"), caplog)
    assert bucket in line and all(word in line for word in words), line


def test_a_wrong_azure_account_key_says_access_denied_with_the_role_to_grant(
        azurite_server: Emulator, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        fresh_clients: None) -> None:
    wrong_key = "d3Jvbmcta2V5LW5vdC10aGUtYXp1cml0ZS1vbmUtMDEyMzQ1Njc4OWFiY2RlZg=="
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING",
                       f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={wrong_key};"
                       f"BlobEndpoint={azurite_server.endpoint}/{AZURITE_ACCOUNT};")
    line = store_error_line(f"azure://{new_bucket_name()}/", caplog)
    assert "AuthorizationFailure (HTTP 403)" in line or "AuthenticationFailed (HTTP 403)" in line, line
    assert "Storage Blob Data Contributor" in line


def test_an_s3_endpoint_that_never_answers_is_a_timeout_in_the_message(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, fresh_clients: None) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # connections wait in the backlog: connected, never answered
    try:
        for name, value in {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{silent.getsockname()[1]}",
                            "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                            "AWS_REGION": "us-east-1"}.items():
            monkeypatch.setenv(name, value)
        line = store_error_line("s3://some-bucket/", caplog)
    finally:
        silent.close()
    assert "timed out (ReadTimeoutError)" in line and "did not answer in time" in line, line


BLOCKED = {  # store URL -> (module whose import is blocked, extra named)
    "s3://tavus-bucket/": ("boto3", "aws"),
    "gs://tavus-bucket/": ("google.cloud.storage", "gcp"),
    "azure://tavus-container/": ("azure.storage.blob", "azure"),
}


def run_without(module: str, code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Python code run in a new interpreter in which importing `module` fails as if it were not installed."""
    prelude = f"import sys; sys.modules[{module!r}] = None\n"
    return subprocess.run([sys.executable, "-c", prelude + code], capture_output=True, text=True, timeout=60,
                          env=env)


@pytest.mark.parametrize("url", sorted(BLOCKED))
def test_the_cli_without_the_clouds_sdk_names_the_extra_to_install(url: str) -> None:
    module, extra = BLOCKED[url]
    package = {"aws": "boto3", "gcp": "google-cloud-storage", "azure": "azure-storage-blob"}[extra]
    result = run_without(module, "from tavus_callbacks.cli import main\n"
                                 f"sys.exit(main(['conversations', 'list', '--store', {url!r}]))")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert f"which is not installed: pip install {package} (or, from the project's folder, pip install -e " \
           f"'.[{extra}]')" in result.stderr


def test_a_deployment_forwarding_without_the_sdk_stores_the_callback_and_its_derive_names_the_extra(
        tmp_path: object) -> None:
    """The answer never depends on the forwarder: the callback is stored (200); its derive fails, naming the fix."""
    code = ("import json, logging\n"
            "logging.basicConfig(level=logging.ERROR, format='%(message)s')\n"
            "from tavus_callbacks.http import Request\n"
            "from tavus_callbacks.app import App\n"
            "app = App.from_env()\n"
            f"r = app.handle(Request('POST', '/', {{'token': {TOKEN!r}}}, {{}}, b'{{}}'))\n"
            "print(r.status)\n"
            "try:\n"
            "    app.derive(r.outcome.key)\n"
            "except Exception as exc:\n"
            "    print(type(exc).__name__)\n")
    import os

    env = {**os.environ, "TAVUS_CALLBACK_TOKENS": TOKEN, "TAVUS_STORE_URL": f"sqlite:///{tmp_path}/tavus.db",
           "TAVUS_FORWARD_URL": "eventbridge://tavus-bus"}
    result = run_without("boto3", code, env)
    assert result.stdout.split() == ["200", "ForwardError"], result.stderr
    assert ("forwarding to eventbridge:// needs boto3, which is not installed: "
            "pip install boto3 (or, from the project's folder, pip install -e '.[aws]')") in result.stderr
    assert "Traceback" not in result.stderr


