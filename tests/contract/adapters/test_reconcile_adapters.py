"""The scheduled reconcile through each adapter's own entry point, against the fake vendor API: the Lambda
handler with EventBridge's scheduled event (key from Secrets Manager on moto), Cloud Scheduler's OIDC-authenticated
POST to the Google Cloud function, and the Azure timer function."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson
import pytest
from support.fake_tavus import API_KEY, FakeTavus, conversation_callbacks
from support.servers import Emulator, point_at, serving, sqlite_url
from tavus_callbacks.stores import open_store

from .drivers import LambdaContext

AUDIENCE = "https://tavus-callback-abc123-uc.a.run.app/reconcile"
SCHEDULER = "tavus-scheduler@my-project.iam.gserviceaccount.com"


def lost_conversation(fake: FakeTavus, cid: str = "csched") -> None:
    """A recent conversation of which the store received no callback at all."""
    start = (datetime.now(UTC) - timedelta(minutes=20)).replace(microsecond=125000)
    fake.add(cid, conversation_callbacks(cid, start))


def stored_objects(store_dir: Path, under: str) -> dict[str, bytes]:
    """The objects under a key prefix of the adapters' store (the SQLite file in `store_dir`)."""
    store, prefix = open_store(sqlite_url(store_dir / "store.db"))
    return {key: blob.data for key in store.iter_keys(f"{prefix}{under}") if (blob := store.read(key))}


def stored_events(store_dir: Path, cid: str = "csched") -> list[dict[str, Any]]:
    return [orjson.loads(data) for data in stored_objects(store_dir, f"{cid}/events/").values()]


def scheduled_event() -> dict[str, Any]:
    """What an EventBridge schedule rule (SAM `Type: Schedule`) sends the function."""
    return {"version": "0", "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa", "detail-type": "Scheduled Event",
            "source": "aws.events", "account": "123456789012", "time": "2026-11-01T12:00:00Z",
            "region": "us-east-1", "resources": ["arn:aws:events:us-east-1:123456789012:rule/tavus-reconcile"],
            "detail": {}}


# -- AWS --------------------------------------------------------------------------------------------

def test_the_lambda_schedule_recovers_with_the_key_from_secrets_manager(
        aws_app: ModuleType, adapter_env: Path, fake_tavus: FakeTavus, moto_server: Emulator,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3

    point_at(moto_server, monkeypatch)
    name = f"tavus-api-key-{time.time_ns()}"
    arn = boto3.client("secretsmanager").create_secret(Name=name, SecretString=API_KEY)["ARN"]
    monkeypatch.delenv("TAVUS_API_KEY")
    monkeypatch.setenv("TAVUS_API_KEY_SECRET", arn)
    lost_conversation(fake_tavus)
    result = aws_app.handler(scheduled_event(), LambdaContext())
    assert result["status"] == "ok" and result["recovered"] == 5 and result["finished"] is True
    assert {d.get("tavusorigin") for d in stored_events(adapter_env)} == {"api"}
    assert API_KEY in fake_tavus.keys_seen
    assert "TAVUS_API_KEY" not in os.environ, "the key is passed to the sweep, not put in the environment"


def test_the_lambda_schedule_is_off_without_a_key(aws_app: ModuleType, adapter_env: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TAVUS_API_KEY", raising=False)
    assert aws_app.handler(scheduled_event(), LambdaContext()) == {"status": "off"}


# -- Google Cloud -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def google_signer() -> Iterator[tuple[Any, str]]:
    """A locally generated RSA key and a local server of its public key in Google's certs format."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from google.auth import crypt

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    certs = json.dumps({"test-key-1": public.decode()}).encode()

    class Certs(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(certs)))
            self.end_headers()
            self.wfile.write(certs)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    with serving(ThreadingHTTPServer(("127.0.0.1", 0), Certs)) as url:
        yield crypt.RSASigner.from_string(private, key_id="test-key-1"), url


def oidc_token(signer: Any, **claims: Any) -> str:
    from google.auth import jwt

    now = int(time.time())
    payload = {"iss": "https://accounts.google.com", "aud": AUDIENCE, "email": SCHEDULER, "email_verified": True,
               "sub": "1234567890", "iat": now, "exp": now + 3600, **claims}
    token: bytes = jwt.encode(signer, payload)
    return token.decode()


@pytest.fixture
def gcp_scheduler(gcp_app: Any, adapter_env: Path, google_signer: tuple[Any, str],
                  monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    """POST /reconcile to the function as Cloud Scheduler does, with a token of the given claims."""
    signer, certs_url = google_signer
    monkeypatch.setenv("TAVUS_RECONCILE_AUDIENCE", AUDIENCE)
    monkeypatch.setenv("TAVUS_RECONCILE_SERVICE_ACCOUNT", SCHEDULER)
    monkeypatch.setenv("TAVUS_RECONCILE_CERTS_URL", certs_url)
    client = gcp_app.test_client()

    def post(authorization: str | None = None, **claims: Any) -> Any:
        header = authorization if authorization is not None else f"Bearer {oidc_token(signer, **claims)}"
        return client.post("/reconcile", headers={"Authorization": header, "User-Agent": "Google-Cloud-Scheduler"})

    return post


def test_cloud_scheduler_with_a_valid_oidc_token_runs_the_sweep(gcp_scheduler: Callable[..., Any],
                                                                fake_tavus: FakeTavus, adapter_env: Path) -> None:
    lost_conversation(fake_tavus)
    response = gcp_scheduler()
    assert response.status_code == 200, response.data
    assert response.get_json()["recovered"] == 5 and len(stored_events(adapter_env)) == 5


@pytest.mark.parametrize("claims", [{"aud": "https://elsewhere.example/reconcile"},
                                    {"email": "someone-else@my-project.iam.gserviceaccount.com"},
                                    {"email_verified": False},
                                    {"iss": "https://evil.example"},
                                    {"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200}],
                         ids=["audience", "account", "unverified", "issuer", "expired"])
def test_cloud_scheduler_tokens_that_do_not_fit_are_refused(gcp_scheduler: Callable[..., Any], fake_tavus: FakeTavus,
                                                           claims: dict[str, Any]) -> None:
    lost_conversation(fake_tavus)
    assert gcp_scheduler(**claims).status_code == 401
    assert fake_tavus.requests == []


@pytest.mark.parametrize("header", ["", "Bearer not-a-jwt", "Bearer reconcile-token-looks-like-a-callback-token"])
def test_a_reconcile_request_without_a_google_token_is_refused(gcp_scheduler: Callable[..., Any],
                                                               fake_tavus: FakeTavus, header: str) -> None:
    assert gcp_scheduler(authorization=header).status_code == 401 and fake_tavus.requests == []


def test_a_token_signed_by_another_key_is_refused(gcp_scheduler: Callable[..., Any], fake_tavus: FakeTavus) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from google.auth import crypt

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    token = oidc_token(crypt.RSASigner.from_string(other, key_id="test-key-1"))
    assert gcp_scheduler(authorization=f"Bearer {token}").status_code == 401 and fake_tavus.requests == []


# -- Azure ----------------------------------------------------------------------------------------------

@pytest.fixture
def azure_timer(azure_functions: list[Any]) -> Callable[..., Any]:
    function = next(f for f in azure_functions if f.get_function_name() == "tavus_reconcile")
    spec = json.loads(function.get_function_json())
    (trigger,) = spec["bindings"]
    assert trigger["type"] == "timerTrigger" and trigger["schedule"] == "0 */15 * * * *"
    return function.get_user_function()  # type: ignore[no-any-return]


def test_the_azure_timer_runs_the_sweep(azure_timer: Callable[..., Any], adapter_env: Path,
                                        fake_tavus: FakeTavus) -> None:
    from azure.functions.timer import TimerRequest

    lost_conversation(fake_tavus)
    azure_timer(TimerRequest(past_due=True))
    assert len(stored_events(adapter_env)) == 5
    (cursor,) = stored_objects(adapter_env, "reconcile/").values()
    assert orjson.loads(cursor)["finished"] is True


def test_the_azure_timer_is_off_without_a_key(azure_timer: Callable[..., Any], adapter_env: Path,
                                              monkeypatch: pytest.MonkeyPatch,
                                              caplog: pytest.LogCaptureFixture) -> None:
    from azure.functions.timer import TimerRequest

    monkeypatch.delenv("TAVUS_API_KEY", raising=False)
    with caplog.at_level("INFO"):
        azure_timer(TimerRequest())
    assert "reconcile is off" in caplog.text and stored_objects(adapter_env, "") == {}
