"""Each adapter against its own cloud's store on a real emulator: Lambda on S3 (moto server), Cloud Functions on
GCS (fake-gcs-server), Azure Functions on Blob Storage (Azurite). A whole conversation goes through, one event
object each, retries are duplicates; a missing bucket is a 503 whose log says why."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from conftest import RECORDED, load_event
from support.servers import AZURITE_ACCOUNT
from tavus_callbacks.record import event_id
from tavus_callbacks.stores import open_store

from .drivers import AwsDriver, AzureDriver, Driver, GcpDriver

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

CONVERSATION = sorted(p.stem for p in RECORDED if '"c123456"' in p.read_text())
RECORDING_KEY = "c123456/adapter-recording.mp4"


def recording_uri(kind: str, bucket: str) -> tuple[str, str]:
    """(storage_provider, storage_uri) of RECORDING_KEY in `bucket` as the vendor would write them."""
    if kind == "s3":
        return "s3", f"s3://{bucket}/{RECORDING_KEY}"
    if kind == "gcs":
        return "gcs", f"gs://{bucket}/{RECORDING_KEY}"
    return "azure_blob", f"https://{AZURITE_ACCOUNT}.blob.core.windows.net/{bucket}/{RECORDING_KEY}"


@pytest.mark.parametrize("adapter,kind", [("aws", "s3"), ("gcp", "gcs"), ("azure", "azure")])
def test_an_adapter_stores_a_whole_conversation_in_its_clouds_bucket_and_nothing_else_before_answering(
        adapter: str, kind: str, request: pytest.FixtureRequest, adapter_env: Path,
        cloud_bucket: Callable[..., str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Each answer waits for its event object only; what follows from it (conversation.json, the derived
    documents) is the derive step's, from the bucket's change feed (test_derive_feeds)."""
    store_url = cloud_bucket(kind, "tavus/")
    monkeypatch.setenv("TAVUS_STORE_URL", store_url)
    driver: Driver
    if adapter == "aws":
        driver = AwsDriver("aws-url", adapter_env, module=request.getfixturevalue("aws_app"))
    elif adapter == "gcp":
        driver = GcpDriver("gcp", adapter_env, client=request.getfixturevalue("gcp_app").test_client())
    else:
        driver = AzureDriver("azure", adapter_env, function=request.getfixturevalue("azure_function"))
    store, _ = open_store(store_url)
    bucket = store_url.split("://", 1)[1].split("/", 1)[0]
    store.create(RECORDING_KEY, b"\x00" * 4096, content_type="video/mp4")

    payloads: list[dict[str, Any]] = [load_event(name) for name in CONVERSATION]
    ready = next(p for p in payloads if p.get("event_type") == "application.recording_ready")
    ready["properties"]["storage_provider"], ready["properties"]["storage_uri"] = recording_uri(kind, bucket)
    for payload in payloads:
        reply = driver.post(payload)
        assert reply.status == 200 and reply.json()["status"] == "stored", (payload, reply.body)
    for payload in payloads[:3]:
        assert driver.post(payload).json()["status"] == "duplicate"

    keys = list(store.iter_keys("tavus/"))
    assert len(keys) == len(payloads) and all("/events/" in key for key in keys), keys
    for payload in payloads:
        assert sum(event_id(payload) in key for key in keys) == 1, payload
    assert store.read(RECORDING_KEY) is not None and store.read("tavus/c123456/conversation.json") is None


@pytest.mark.parametrize("adapter,kind,code", [("aws", "s3", "NoSuchBucket"), ("gcp", "gcs", "404 NotFound"),
                                               ("azure", "azure", "ContainerNotFound")])
def test_an_adapter_on_a_missing_bucket_answers_503_and_its_log_says_why(
        adapter: str, kind: str, code: str, request: pytest.FixtureRequest, adapter_env: Path, aws_app: ModuleType,
        cloud_bucket: Callable[..., str], monkeypatch: pytest.MonkeyPatch, captured_logs: Callable[[], str]) -> None:
    """(aws_app is loaded before captured_logs, which points its Powertools handler at the test's buffer.)"""
    cloud_bucket(kind)  # points the SDK at the emulator
    missing = f"missing-{kind}-bucket-0123"
    monkeypatch.setenv("TAVUS_STORE_URL", f"{ {'s3': 's3', 'gcs': 'gs', 'azure': 'azure'}[kind]}://{missing}/")
    driver: Driver
    if adapter == "aws":
        driver = AwsDriver("aws-url", adapter_env, module=aws_app)
    elif adapter == "gcp":
        driver = GcpDriver("gcp", adapter_env, client=request.getfixturevalue("gcp_app").test_client())
    else:
        driver = AzureDriver("azure", adapter_env, function=request.getfixturevalue("azure_function"))
    assert driver.post(load_event("guardrail")).status == 503
    logged = captured_logs()
    assert "store unavailable, answering 503: " in logged
    assert code in logged and f"the {'container' if kind == 'azure' else 'bucket'} '{missing}' does not exist" in logged
