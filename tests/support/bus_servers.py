"""Event buses for the forwarding tests: an EventBridge bus in moto, the Pub/Sub emulator and an Event Grid sink.

- `eventbridge_bus` (function): a fresh bus in the shared moto server with a rule on our source that sends
  every event to an SQS queue, the SDK pointed at moto; `drain()` reads what arrived.
- `pubsub_emulator` (session): the Cloud Pub/Sub emulator shipped with the Google Cloud SDK, on a free
  loopback port, stopped by its pid; the tests that need it skip, saying why, where it or Java is absent.
- `pubsub_topic` (function): a fresh topic with an ordered subscription, `PUBSUB_EMULATOR_HOST` set.
- `eventgrid_sink` (function): an HTTP server in a thread that records what an Event Grid topic would
  receive and answers like one (200, or the status a test sets).
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from tavus_callbacks.clients import clear_clients

from support.servers import Emulator, free_port, point_at, serving

PUBSUB_EMULATOR = Path(os.environ.get(
    "PUBSUB_EMULATOR_BIN", "/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator"))
PUBSUB_PROJECT = "tavus-callbacks-test"
# azure-eventgrid tries the `cloudevents` package's deprecated to_json on every dict it sends (and then sends
# the dict as it is); that package is only here because functions-framework needs it.
SDK_WARNINGS = pytest.mark.filterwarnings("ignore:to_json is deprecated")


def pubsub_missing() -> str | None:
    """Why the Pub/Sub emulator cannot run here, or None when it can."""
    if not PUBSUB_EMULATOR.exists():
        return f"the Cloud Pub/Sub emulator is not installed at {PUBSUB_EMULATOR} (set PUBSUB_EMULATOR_BIN)"
    if shutil.which("java") is None:
        return "the Cloud Pub/Sub emulator needs Java, and no `java` is on PATH"
    return None


@pytest.fixture(scope="session")
def pubsub_emulator() -> Iterator[Emulator]:
    """The Pub/Sub emulator of the test session (gRPC and REST on one loopback port)."""
    reason = pubsub_missing()
    if reason:
        pytest.skip(reason)
    emulator = Emulator("pubsub", lambda port, _dir: [str(PUBSUB_EMULATOR), "--host=127.0.0.1", f"--port={port}"],
                        ready_path="/")
    emulator.start(timeout=90)
    try:
        yield emulator
    finally:
        emulator.close()


@dataclass
class PubSubTopic:
    """A topic and its ordered subscription in the emulator, with a helper to pull what arrived."""

    topic: str
    subscription: str
    subscriber: Any

    @property
    def url(self) -> str:
        return f"pubsub://{self.topic}"

    def pull(self, expected: int, timeout: float = 20.0) -> list[Any]:
        """Pull and acknowledge messages until `expected` have arrived (or the time is up)."""
        messages: list[Any] = []
        deadline = time.monotonic() + timeout
        while len(messages) < expected and time.monotonic() < deadline:
            answer = self.subscriber.pull(request={"subscription": self.subscription, "max_messages": 100},
                                          timeout=5)
            received = list(answer.received_messages)
            if received:
                self.subscriber.acknowledge(request={"subscription": self.subscription,
                                                     "ack_ids": [m.ack_id for m in received]})
            messages.extend(m.message for m in received)
        return messages


@pytest.fixture
def pubsub_topic(pubsub_emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[PubSubTopic]:
    """A fresh topic with an ordered subscription; the environment points the client library at the emulator."""
    from google.cloud import pubsub_v1

    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", f"127.0.0.1:{pubsub_emulator.port}")
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", PUBSUB_PROJECT)
    clear_clients()
    name = uuid.uuid4().hex[:12]
    topic = f"projects/{PUBSUB_PROJECT}/topics/events-{name}"
    subscription = f"projects/{PUBSUB_PROJECT}/subscriptions/all-{name}"
    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    publisher.create_topic(name=topic)
    subscriber.create_subscription(request={"name": subscription, "topic": topic, "enable_message_ordering": True})
    try:
        yield PubSubTopic(topic, subscription, subscriber)
    finally:
        clear_clients()
        subscriber.close()


@dataclass
class EventBridgeBus:
    """A bus in moto with a rule matching our source and an SQS queue as its target."""

    name: str
    queue_url: str
    queue_arn: str
    events: Any
    sqs: Any

    @property
    def url(self) -> str:
        return f"eventbridge://{self.name}"

    def create(self) -> None:
        from tavus_callbacks.forward.eventbridge import SOURCE

        self.events.create_event_bus(Name=self.name)
        self.events.put_rule(Name="tavus", EventBusName=self.name, EventPattern=json.dumps({"source": [SOURCE]}))
        self.events.put_targets(Rule="tavus", EventBusName=self.name, Targets=[{"Id": "queue", "Arn": self.queue_arn}])

    def delete(self) -> None:
        self.events.remove_targets(Rule="tavus", EventBusName=self.name, Ids=["queue"])
        self.events.delete_rule(Name="tavus", EventBusName=self.name)
        self.events.delete_event_bus(Name=self.name)

    def drain(self, expect: int = 0, wait: float = 10.0) -> list[dict[str, Any]]:
        """Every EventBridge envelope waiting in the queue (received and deleted); waits up to `wait` seconds
        for at least `expect` of them (a server publishes after its answer)."""
        envelopes: list[dict[str, Any]] = []
        deadline = time.monotonic() + wait
        while True:
            answer = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
            messages = answer.get("Messages", [])
            if not messages:
                if len(envelopes) >= expect or time.monotonic() > deadline:
                    return envelopes
                time.sleep(0.05)
            for message in messages:
                envelopes.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])


@pytest.fixture
def eventbridge_bus(moto_server: Emulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[EventBridgeBus]:
    """A fresh EventBridge bus in moto whose events land in an SQS queue; the SDK points at moto."""
    import boto3

    point_at(moto_server, monkeypatch)
    clear_clients()
    events, sqs = boto3.client("events"), boto3.client("sqs")
    name = f"tavus-{uuid.uuid4().hex[:10]}"
    queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    created = EventBridgeBus(name, queue_url, queue_arn, events, sqs)
    created.create()
    yield created
    clear_clients()


@dataclass
class SinkRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class EventGridSink:
    """What an Event Grid topic endpoint received; `status` is what it answers next."""

    port: int
    status: int = 200
    requests: list[SinkRequest] = field(default_factory=list)

    def url(self) -> str:
        """The forward URL for this sink: an Event Grid topic host over plain HTTP."""
        return f"eventgrid://127.0.0.1:{self.port}?scheme=http"


@pytest.fixture
def eventgrid_sink() -> Iterator[EventGridSink]:
    """A local HTTP server standing in for an Event Grid topic; stopped when the test ends."""
    sink = EventGridSink(port=free_port())

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            sink.requests.append(SinkRequest("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(sink.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    clear_clients()
    try:
        with serving(ThreadingHTTPServer(("127.0.0.1", sink.port), Handler)):
            yield sink
    finally:
        clear_clients()


# -- delivering callbacks to a forwarding pipeline ------------------------------------------------

FORWARD_TOKEN = "forward-test-token-0123456789abcdef"


def sample_payloads() -> list[dict[str, Any]]:
    """Every recorded payload, in file-name order."""
    from conftest import RECORDED, load_event

    return [load_event(path.name) for path in RECORDED]


def large_transcript(min_bytes: int) -> dict[str, Any]:
    """A transcription_ready payload whose transcript makes it at least `min_bytes` long."""
    from conftest import load_event

    payload = load_event("conversation.application.transcription_ready")
    turn = {"role": "user", "content": "All work and no play makes a long transcript. " * 20}
    count = min_bytes // len(json.dumps(turn)) + 1
    payload["properties"]["transcript"] = [*payload["properties"]["transcript"], *([turn] * count)]
    payload["conversation_id"] = f"c{uuid.uuid4().hex[:10]}"
    return payload


def forwarding_pipeline(store_url: str, forward_url: str, **settings: Any) -> Any:
    """A Pipeline on `store_url` that forwards to `forward_url`, accepting FORWARD_TOKEN (other Settings fields
    as keyword arguments)."""
    from tavus_callbacks.pipeline import Pipeline
    from tavus_callbacks.settings import Settings

    return Pipeline(Settings(tokens=(FORWARD_TOKEN,), store_url=store_url, forward_url=forward_url, **settings))


def deliver(pipeline: Any, payload: dict[str, Any]) -> Any:
    """POST one payload to a pipeline as Tavus would; the Response."""
    from tavus_callbacks.http import Request

    return pipeline.handle(Request("POST", "/", query={"token": FORWARD_TOKEN}, body=json.dumps(payload).encode()))


def deliver_and_derive(pipeline: Any, payload: dict[str, Any]) -> Any:
    """POST one payload, then derive from the event it stored as the store's change feed would next (it raises
    when the derive does); the Response. A duplicate stores nothing, so the feed has nothing to derive."""
    answer = deliver(pipeline, payload)
    if answer.outcome is not None and answer.outcome.result == "stored" and answer.outcome.key:
        pipeline.derive(answer.outcome.key)
    return answer


def stored_documents(store_url: str) -> dict[str, dict[str, Any]]:
    """Every stored CloudEvent in a store, by id."""
    from tavus_callbacks.cli.replay import load_events
    from tavus_callbacks.stores import open_store

    store, prefix = open_store(store_url)
    return {e.id: e.document for e in load_events(store, prefix)[0]}
