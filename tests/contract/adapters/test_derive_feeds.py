"""Each adapter's derive entry, driven by its platform's change feed in the documented event shape, against its
cloud's emulator: the S3 EventBridge notification (moto's own, through the template's rule, and the shape
Powertools' S3EventBridgeNotificationEvent reads), a Cloud Storage `finalized` CloudEvent POSTed to
functions-framework in binary and structured mode, an `azure.functions.EventGridEvent` of BlobCreated.

A callback's answer waits for the event object only; the feed then derives conversation.json and the rest, a
redelivery changes nothing, a derive that fails raises (the platform's retry) and the next delivery finishes it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from conftest import RECORDED, load_event
from deploy.cloudformation import derive_rule_pattern
from support.servers import AZURITE_ACCOUNT, Emulator, create_bucket, new_bucket_name, store_url_for
from tavus_callbacks.record import event_id
from tavus_callbacks.stores import Store, open_store

from .conftest import core_logger_kept, reload_apps
from .drivers import (
    AwsDriver,
    AzureDriver,
    Driver,
    GcpDriver,
    LambdaContext,
    cloudevent_request,
    gcs_event,
    grid_event,
    s3_notification,
)

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

PREFIX = "tavus/"
CONVERSATION = sorted(p.stem for p in RECORDED if '"c123456"' in p.read_text())
RECORDING_KEY = "c123456/adapter-recording.mp4"


def is_event_object(key: str) -> bool:
    """What each platform's filter passes on: <prefix><folder>/events/<event>.json and <prefix>unrecognized/..."""
    return key.startswith(PREFIX) and key.endswith(".json") and (
        "/events/" in key or key.startswith(f"{PREFIX}unrecognized/"))


def conversation_payloads(kind: str, bucket: str, conversation: str) -> list[dict[str, Any]]:
    """The recorded conversation's payloads as one conversation of this test, its recording in `bucket`."""
    payloads = [load_event(name) for name in CONVERSATION]
    for payload in payloads:
        payload["conversation_id"] = conversation
    ready = next(p for p in payloads if p.get("event_type") == "application.recording_ready")
    key = f"{conversation}/recording.mp4"
    ready["properties"]["storage_provider"], ready["properties"]["storage_uri"] = {
        "s3": ("s3", f"s3://{bucket}/{key}"), "gcs": ("gcs", f"gs://{bucket}/{key}"),
        "azure": ("azure_blob", f"https://{AZURITE_ACCOUNT}.blob.core.windows.net/{bucket}/{key}")}[kind]
    return payloads


def snapshot(store: Store) -> dict[str, bytes]:
    """Every object of the store under the prefix, and its bytes."""
    found = {}
    for key in store.iter_keys(PREFIX):
        blob = store.read(key)
        assert blob is not None, key
        found[key] = blob.data
    return found


def state_of(store: Store, conversation: str) -> dict[str, Any] | None:
    blob = store.read(f"{PREFIX}{conversation}/conversation.json")
    return None if blob is None else dict(json.loads(blob.data))


@pytest.fixture
def bucket_store(cloud_bucket: Callable[..., str], adapter_env: Path,
                 monkeypatch: pytest.MonkeyPatch) -> Callable[[str], tuple[str, Store]]:
    """`bucket_store(kind)`: a fresh bucket in the shared emulator, the adapters' store; (bucket, store)."""

    def make(kind: str) -> tuple[str, Store]:
        url = cloud_bucket(kind, PREFIX)
        monkeypatch.setenv("TAVUS_STORE_URL", url)
        reload_apps()
        return url.split("://", 1)[1].split("/", 1)[0], open_store(url)[0]

    return make


@dataclass
class StoppableStore:
    """A bucket in an emulator of this test alone (the adapters' store), which the test stops and starts again."""

    emulator: Emulator
    bucket: str
    store: Store

    def post(self, driver: Driver, name: str) -> tuple[dict[str, Any], str]:
        """POST the recorded payload `name` as a new conversation's; (the payload, the key of its event object)."""
        payload = load_event(name)
        payload["conversation_id"] = f"c{uuid.uuid4().hex[:12]}"
        assert driver.post(payload).status == 200
        (key,) = [k for k in self.store.iter_keys(PREFIX) if is_event_object(k)]
        return payload, key

    def finished_by_the_next_delivery(self, deliver: Callable[[], object], payload: dict[str, Any]) -> None:
        """With the emulator back, one delivery derives the event and the one after changes nothing."""
        self.emulator.start()
        deliver()
        before = snapshot(self.store)
        deliver()
        assert snapshot(self.store) == before
        state = state_of(self.store, payload["conversation_id"])
        assert state is not None and [e["id"] for e in state["events"]] == [event_id(payload)]


@pytest.fixture
def stoppable_store(start_emulator: Callable[[str], Emulator], adapter_env: Path,
                    monkeypatch: pytest.MonkeyPatch) -> Callable[[str], StoppableStore]:
    """`stoppable_store(kind)`: a fresh bucket in a new emulator of that kind, the adapters' store."""

    def make(kind: str) -> StoppableStore:
        emulator = start_emulator(kind)
        bucket = new_bucket_name()
        create_bucket(emulator, bucket)
        url = store_url_for(kind, bucket, PREFIX)
        monkeypatch.setenv("TAVUS_STORE_URL", url)
        reload_apps()
        return StoppableStore(emulator, bucket, open_store(url)[0])

    return make


# -- how each platform delivers "this object was created" ------------------------------------------------------

def deliver_s3(aws_app: ModuleType, event: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = aws_app.handler(event, LambdaContext())
    return result


def deliver_gcs(client: Any, event: dict[str, Any], mode: str) -> int:
    """POST a CloudEvent to functions-framework as Eventarc does, in binary or structured mode."""
    headers, body = cloudevent_request(event, mode)
    return int(client.post("/", data=body, headers=headers).status_code)


@pytest.fixture
def s3_feed(moto_server: Emulator) -> Iterator[Callable[[str], Callable[[], list[dict[str, Any]]]]]:
    """`s3_feed(bucket)`: the bucket's EventBridge notifications on, the template's rule sending what it matches
    to an SQS queue (standing in for the function); returns a function taking the notifications queued so far."""
    import boto3

    made: list[tuple[str, str]] = []

    def start(bucket: str) -> Callable[[], list[dict[str, Any]]]:
        s3, sqs, events = boto3.client("s3"), boto3.client("sqs"), boto3.client("events")
        s3.put_bucket_notification_configuration(Bucket=bucket,
                                                 NotificationConfiguration={"EventBridgeConfiguration": {}})
        queue = sqs.create_queue(QueueName=bucket)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events.put_rule(Name=bucket, EventPattern=json.dumps(derive_rule_pattern(bucket, KeyPrefix=PREFIX)))
        events.put_targets(Rule=bucket, Targets=[{"Id": "function", "Arn": arn}])
        made.append((bucket, queue))

        def take() -> list[dict[str, Any]]:
            taken: list[dict[str, Any]] = []
            while messages := sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", []):
                taken += [json.loads(m["Body"]) for m in messages]
                sqs.delete_message_batch(QueueUrl=queue, Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)])
            return taken

        return take

    yield start
    import boto3 as b

    for rule, _queue in made:
        b.client("events").remove_targets(Rule=rule, Ids=["function"])
        b.client("events").delete_rule(Name=rule)


# -- AWS -------------------------------------------------------------------------------------------------------

def test_aws_the_buckets_notifications_through_the_templates_rule_derive_each_new_event_once(
        aws_app: ModuleType, adapter_env: Path, bucket_store: Callable[[str], tuple[str, Store]],
        s3_feed: Callable[[str], Callable[[], list[dict[str, Any]]]]) -> None:
    bucket, store = bucket_store("s3")
    take = s3_feed(bucket)
    conversation = f"c{uuid.uuid4().hex[:12]}"
    store.create(f"{conversation}/recording.mp4", b"\x00" * 4096, content_type="video/mp4")  # the vendor's copy
    driver = AwsDriver("aws-url", adapter_env, module=aws_app)
    payloads = conversation_payloads("s3", bucket, conversation)
    for payload in payloads:
        assert driver.post(payload).json()["status"] == "stored"
    assert state_of(store, conversation) is None, "the answer waited for the event object only"
    notifications = take()
    assert sorted(n["detail"]["object"]["key"] for n in notifications) == sorted(
        k for k in store.iter_keys(PREFIX) if is_event_object(k))
    for notification in notifications:
        assert deliver_s3(aws_app, notification)["status"] == "derived"
    assert take() == [], "what derive writes (state, documents, index) is no event object: no notification"
    state = state_of(store, conversation)
    assert state is not None and {e["id"] for e in state["events"]} == {event_id(p) for p in payloads}
    assert state["status"] == "ended" and state["recording"]["found"] is True and state["recording"]["size"] == 4096
    before = snapshot(store)
    for notification in notifications:  # EventBridge and Lambda deliver at least once
        deliver_s3(aws_app, notification)
    assert snapshot(store) == before, "a redelivery changes nothing"


def test_aws_the_documented_notification_shape_is_read_with_powertools(
        aws_app: ModuleType, adapter_env: Path, bucket_store: Callable[[str], tuple[str, Store]],
        captured_logs: Callable[[], str]) -> None:
    bucket, store = bucket_store("s3")
    driver = AwsDriver("aws-url", adapter_env, module=aws_app)
    payload = load_event("conversation.application.recording_copy_failed")
    payload["conversation_id"] = conversation = f"c{uuid.uuid4().hex[:12]}"
    driver.post(payload)
    (key,) = [k for k in store.iter_keys(PREFIX) if is_event_object(k)]
    result = deliver_s3(aws_app, s3_notification(bucket, key))
    assert result == {"status": "derived", "key": key, "event_id": event_id(payload)}
    state = state_of(store, conversation)
    assert state is not None and state["recording"]["copy_failure"]["error_code"] == payload["properties"]["error_code"]
    lines = [json.loads(line) for line in captured_logs().splitlines() if line.startswith("{")]
    (derived,) = [line for line in lines if line.get("message") == "event derived"]
    assert derived["key"] == key and derived["correlation_id"] == conversation
    # A key S3 notifications percent-encode reaches derive decoded; an object that is no event is acknowledged.
    recording = f"{PREFIX}{conversation}/recording (1).mp4"
    encoded = s3_notification(bucket, recording.replace(" ", "+").replace("(", "%28").replace(")", "%29"))
    assert deliver_s3(aws_app, encoded) == {"status": "skipped", "key": recording}


def test_aws_copy_failures_are_counted_by_derive_with_the_alarms_dimensions(
        aws_app: ModuleType, adapter_env: Path, bucket_store: Callable[[str], tuple[str, Store]],
        capsys: pytest.CaptureFixture[str]) -> None:
    from .test_aws_adapter import emf, template_alarm_dimensions

    bucket, store = bucket_store("s3")
    driver = AwsDriver("aws-url", adapter_env, module=aws_app)
    failed = load_event("conversation.application.recording_copy_failed")
    failed["conversation_id"] = f"c{uuid.uuid4().hex[:12]}"
    driver.post(failed)
    (key,) = [k for k in store.iter_keys(PREFIX) if is_event_object(k)]
    capsys.readouterr()
    deliver_s3(aws_app, s3_notification(bucket, key))
    deliver_s3(aws_app, s3_notification(bucket, key))  # redelivered: not a second failure
    metrics = emf(capsys.readouterr().out)
    (copy_failure,) = metrics["CopyFailures"]
    assert copy_failure["value"] == 1.0
    assert copy_failure["dimensions"] == template_alarm_dimensions()[("CopyFailures", "")]


def test_aws_a_derive_that_fails_raises_names_its_key_and_the_next_delivery_finishes_it(
        aws_app: ModuleType, adapter_env: Path, stoppable_store: Callable[[str], StoppableStore],
        captured_logs: Callable[[], str]) -> None:
    stoppable = stoppable_store("s3")
    payload, key = stoppable.post(AwsDriver("aws-url", adapter_env, module=aws_app),
                                  "conversation.system.shutdown.max_call_duration")
    stoppable.emulator.kill()
    from tavus_callbacks.platforms import aws as aws_platform

    with core_logger_kept(), pytest.raises(Exception) as raised:
        copy_config_to_registered_loggers(source_logger=aws_platform.logger, include={"tavus_callbacks"})  # at import
        deliver_s3(aws_app, s3_notification(stoppable.bucket, key))
    assert "StoreUnavailable" in type(raised.value).__name__
    lines = [json.loads(line) for line in captured_logs().splitlines() if line.startswith("{")]
    (failure,) = [line for line in lines if line.get("level") == "ERROR" and line.get("key") == key]
    assert type(raised.value).__name__ in failure["error"] and key in failure["message"]

    def deliver() -> None:
        assert deliver_s3(aws_app, s3_notification(stoppable.bucket, key))["status"] == "derived"

    stoppable.finished_by_the_next_delivery(deliver, payload)


# -- Google Cloud ------------------------------------------------------------------------------------------------

def test_gcp_tavus_derive_is_registered_as_a_cloudevent_function(gcp_derive_app: Any) -> None:
    from functions_framework import _function_registry

    assert _function_registry.REGISTRY_MAP["tavus_derive"] == "cloudevent"
    assert gcp_derive_app.name == "tavus_derive"


@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_gcp_finalized_events_derive_each_new_event_once_and_acknowledge_other_objects(
        mode: str, gcp_app: Any, gcp_derive_app: Any, adapter_env: Path,
        bucket_store: Callable[[str], tuple[str, Store]]) -> None:
    bucket, store = bucket_store("gcs")
    conversation = f"c{uuid.uuid4().hex[:12]}"
    store.create(f"{conversation}/recording.mp4", b"\x00" * 4096, content_type="video/mp4")
    driver = GcpDriver("gcp", adapter_env, client=gcp_app.test_client())
    payloads = conversation_payloads("gcs", bucket, conversation)
    for payload in payloads:
        assert driver.post(payload).json()["status"] == "stored"
    assert state_of(store, conversation) is None, "the answer waited for the event object only"
    client = gcp_derive_app.test_client()
    created = list(store.iter_keys(""))  # Eventarc delivers every object of the bucket, the recording too
    for key in created:
        assert deliver_gcs(client, gcs_event(bucket, key), mode) == 200, key
    state = state_of(store, conversation)
    assert state is not None and {e["id"] for e in state["events"]} == {event_id(p) for p in payloads}
    assert state["status"] == "ended" and state["recording"]["found"] is True
    before = snapshot(store)
    for key in store.iter_keys(""):  # what derive wrote is finalized too, and delivered again: nothing changes
        assert deliver_gcs(client, gcs_event(bucket, key), mode) == 200, key
    assert snapshot(store) == before


def test_gcp_an_event_of_another_type_is_acknowledged(gcp_derive_app: Any, adapter_env: Path,
                                                       bucket_store: Callable[[str], tuple[str, Store]]) -> None:
    bucket, store = bucket_store("gcs")
    event = gcs_event(bucket, f"{PREFIX}c1/events/x.json")
    event["type"] = "google.cloud.storage.object.v1.deleted"
    assert deliver_gcs(gcp_derive_app.test_client(), event, "binary") == 200
    assert list(store.iter_keys("")) == []


def test_gcp_a_derive_that_fails_answers_500_logs_its_key_and_the_next_delivery_finishes_it(
        gcp_app: Any, gcp_derive_app: Any, adapter_env: Path, stoppable_store: Callable[[str], StoppableStore],
        capsys: pytest.CaptureFixture[str]) -> None:
    import logging

    from tavus_callbacks.platforms.gcp import send_core_logs_to_cloud_logging

    stoppable = stoppable_store("gcs")
    payload, key = stoppable.post(GcpDriver("gcp", adapter_env, client=gcp_app.test_client()),
                                  "conversation.application.perception_analysis")
    client = gcp_derive_app.test_client()
    handler = send_core_logs_to_cloud_logging()  # as importing main.py does on the platform
    try:
        stoppable.emulator.kill()
        capsys.readouterr()
        assert deliver_gcs(client, gcs_event(stoppable.bucket, key), "binary") == 500, "Eventarc delivers it again"
        lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    finally:
        logging.getLogger("tavus_callbacks").removeHandler(handler)
    (failure,) = [line for line in lines if line.get("severity") == "ERROR" and line.get("key") == key]
    assert "StoreUnavailable" in failure["error"] and key in failure["message"]
    modes = iter(["structured", "binary"])

    def deliver() -> None:
        assert deliver_gcs(client, gcs_event(stoppable.bucket, key), next(modes)) == 200

    stoppable.finished_by_the_next_delivery(deliver, payload)
    assert stoppable.store.read(f"{PREFIX}{payload['conversation_id']}/perception.json") is not None


# -- Azure -------------------------------------------------------------------------------------------------------

def test_azure_tavus_derive_is_an_event_grid_function(azure_functions: list[Any]) -> None:
    function = next(f for f in azure_functions if f.get_function_name() == "tavus_derive")
    spec = json.loads(function.get_function_json())
    (trigger,) = spec["bindings"]
    assert trigger["type"] == "eventGridTrigger" and trigger["direction"] == "IN" and trigger["name"] == "event"


def test_azure_blob_created_events_derive_each_new_event_once(
        azure_function: Callable[..., Any], azure_derive: Callable[..., Any], adapter_env: Path,
        bucket_store: Callable[[str], tuple[str, Store]]) -> None:
    container, store = bucket_store("azure")
    conversation = f"c{uuid.uuid4().hex[:12]}"
    store.create(f"{conversation}/recording.mp4", b"\x00" * 4096, content_type="video/mp4")
    driver: Driver = AzureDriver("azure", adapter_env, function=azure_function)
    payloads = conversation_payloads("azure", container, conversation)
    for payload in payloads:
        assert driver.post(payload).json()["status"] == "stored"
    assert state_of(store, conversation) is None, "the answer waited for the event object only"
    events = [k for k in store.iter_keys(PREFIX) if is_event_object(k)]  # the subscription's filter
    for key in events:
        assert azure_derive(grid_event(container, key)) is None
    state = state_of(store, conversation)
    assert state is not None and {e["id"] for e in state["events"]} == {event_id(p) for p in payloads}
    assert state["status"] == "ended" and state["recording"]["found"] is True
    before = snapshot(store)
    for key in events:
        azure_derive(grid_event(container, key))
    azure_derive(grid_event(container, f"{PREFIX}{conversation}/conversation.json"))  # acknowledged
    azure_derive(grid_event(container, events[0], event_type="Microsoft.Storage.BlobDeleted"))  # acknowledged
    assert snapshot(store) == before


def test_azure_a_derive_that_fails_raises_logs_its_key_and_the_next_delivery_finishes_it(
        azure_function: Callable[..., Any], azure_derive: Callable[..., Any], adapter_env: Path,
        stoppable_store: Callable[[str], StoppableStore], caplog: pytest.LogCaptureFixture) -> None:
    import logging

    stoppable = stoppable_store("azure")
    payload, key = stoppable.post(AzureDriver("azure", adapter_env, function=azure_function),
                                  "conversation.application.transcription_ready")
    stoppable.emulator.kill()
    with caplog.at_level(logging.ERROR, logger="tavus_callbacks"), pytest.raises(Exception) as raised:
        azure_derive(grid_event(stoppable.bucket, key))  # raised: Event Grid retries the delivery
    (failure,) = [r for r in caplog.records if r.levelno == logging.ERROR and getattr(r, "key", None) == key]
    assert type(raised.value).__name__ in failure.error and key in failure.getMessage()  # type: ignore[attr-defined]
    stoppable.finished_by_the_next_delivery(lambda: azure_derive(grid_event(stoppable.bucket, key)), payload)
    assert stoppable.store.read(f"{PREFIX}{payload['conversation_id']}/transcript.json") is not None
