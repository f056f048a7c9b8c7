"""The Forwarder contract, run against every sink: EventBridge (moto server, a rule sending to an SQS queue), Pub/Sub
(the Cloud SDK's emulator), Event Grid (the real azure-eventgrid client publishing to a local HTTP sink) and a
Standard Webhooks endpoint (a local HTTP server verifying each request with the `standardwebhooks` library).

Each sink is read back as the CloudEvents it delivered, its own framing checked on the way: EventBridge's envelope,
Pub/Sub's binary mode and ordering key, Event Grid's batch of one and its key, the webhook's signature and id. What
each does beyond the contract (size rules, ordering, outages, endpoints) is in its own test_forward_<sink>.py.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support.bus_servers import (
    SDK_WARNINGS,
    EventBridgeBus,
    EventGridSink,
    PubSubTopic,
    deliver,
    deliver_and_derive,
    forwarding_pipeline,
    large_transcript,
    sample_payloads,
    stored_documents,
)
from support.servers import sqlite_url
from support.webhook_receiver import WebhookReceiver
from tavus_callbacks.errors import ForwardError
from tavus_callbacks.forward.eventbridge import MAX_ENTRY_BYTES, SOURCE
from tavus_callbacks.forward.eventgrid import KEY_VARIABLE, MAX_EVENT_BYTES
from tavus_callbacks.forward.pubsub import MAX_MESSAGE_BYTES
from tavus_callbacks.settings import WEBHOOK_MAX_BYTES_VARIABLE, WEBHOOK_SECRETS_VARIABLE

pytestmark = SDK_WARNINGS
EVENTGRID_KEY = "eventgrid-test-key-0123456789"


class Bus:
    """A bus as the contract sees it: where to forward, its size limit, the TAVUS_* settings a server needs
    for it, a way to make it refuse and accept again, and what it delivered since the last read, as CloudEvent
    documents."""

    url: str
    limit: int
    env: dict[str, str] = {}
    in_order = False  # whether it delivers in publish order across conversations

    def published(self, expect: int) -> list[dict[str, Any]]:
        """What arrived since the last read, waiting a while for at least `expect` events."""
        raise NotImplementedError

    def refuse(self) -> None:
        raise NotImplementedError

    def accept(self) -> None:
        raise NotImplementedError


class EventBridge(Bus):
    limit = MAX_ENTRY_BYTES

    def __init__(self, bus: EventBridgeBus) -> None:
        self.bus, self.url = bus, bus.url

    def published(self, expect: int) -> list[dict[str, Any]]:
        documents = []
        for envelope in self.bus.drain(expect):
            assert envelope["source"] == SOURCE
            assert envelope["detail-type"] == envelope["detail"]["type"]
            documents.append(envelope["detail"])
        return documents

    def refuse(self) -> None:
        self.bus.delete()

    def accept(self) -> None:
        self.bus.create()


class PubSub(Bus):
    limit = MAX_MESSAGE_BYTES

    def __init__(self, topic: PubSubTopic) -> None:
        self.topic, self.url = topic, topic.url

    def published(self, expect: int) -> list[dict[str, Any]]:
        documents = []
        for message in self.topic.pull(expect):
            attributes = dict(message.attributes)
            # Binary content mode: the context attributes as ce-*, the data as the message's bytes.
            document: dict[str, Any] = {k.removeprefix("ce-"): v for k, v in attributes.items() if k.startswith("ce-")}
            if "content-type" in attributes:
                document["datacontenttype"] = attributes["content-type"]
                document["data"] = json.loads(message.data)
            else:
                assert message.data == b"", "only a thin event comes without a content type"
            assert set(attributes) <= {f"ce-{k}" for k in document} | {"content-type"}, attributes
            assert message.ordering_key == (document.get("subject") or ""), "a conversation is one ordering key"
            documents.append(document)
        return documents

    def refuse(self) -> None:
        from google.cloud import pubsub_v1

        pubsub_v1.PublisherClient().delete_topic(topic=self.topic.topic)

    def accept(self) -> None:
        from google.cloud import pubsub_v1

        pubsub_v1.PublisherClient().create_topic(name=self.topic.topic)
        subscriber = self.topic.subscriber
        subscriber.delete_subscription(subscription=self.topic.subscription)
        subscriber.create_subscription(request={"name": self.topic.subscription, "topic": self.topic.topic,
                                                "enable_message_ordering": True})


class EventGrid(Bus):
    limit = MAX_EVENT_BYTES
    env = {KEY_VARIABLE: EVENTGRID_KEY}
    in_order = True  # each publish is one request, answered before the next

    def __init__(self, sink: EventGridSink) -> None:
        self.sink, self.url, self.read = sink, sink.url(), 0

    def published(self, expect: int) -> list[dict[str, Any]]:
        deadline = time.monotonic() + 10
        while len(self.sink.requests) - self.read < expect and time.monotonic() < deadline:
            time.sleep(0.05)
        requests, self.read = self.sink.requests[self.read:], len(self.sink.requests)
        documents = []
        for request in requests:
            assert request.path.startswith("/api/events?api-version=")
            assert request.headers["aeg-sas-key"] == EVENTGRID_KEY
            assert request.headers["content-type"].split(";")[0] == "application/cloudevents-batch+json"
            [event] = json.loads(request.body)
            documents.append(event)
        return documents

    def refuse(self) -> None:
        self.sink.status = 401

    def accept(self) -> None:
        self.sink.status = 200
        self.read = len(self.sink.requests)  # what it refused was not published


class Webhook(Bus):
    limit = 64 * 1024  # TAVUS_WEBHOOK_MAX_BYTES, set low so a large transcript goes thin
    in_order = True  # each delivery is one request, answered before the next

    def __init__(self, receiver: WebhookReceiver) -> None:
        self.receiver, self.url, self.read = receiver, receiver.url, 0
        self.env = {WEBHOOK_SECRETS_VARIABLE: receiver.secret, WEBHOOK_MAX_BYTES_VARIABLE: str(self.limit)}

    def published(self, expect: int) -> list[dict[str, Any]]:
        deadline = time.monotonic() + 10
        while len(self.receiver.delivered()) - self.read < expect and time.monotonic() < deadline:
            time.sleep(0.05)
        deliveries = self.receiver.delivered()[self.read:]
        self.read += len(deliveries)
        assert all(d.verified for d in self.receiver.deliveries), "every request verifies with standardwebhooks"
        documents = []
        for delivery in deliveries:
            assert delivery.headers["content-type"] == "application/json"
            assert delivery.id == delivery.document["id"], "webhook-id is the event id"
            documents.append(delivery.document)
        return documents

    def refuse(self) -> None:
        self.receiver.refuse(503)

    def accept(self) -> None:
        self.receiver.accept()


BUSES: dict[str, Callable[[pytest.FixtureRequest], Bus]] = {
    "eventbridge": lambda request: EventBridge(request.getfixturevalue("eventbridge_bus")),
    "pubsub": lambda request: PubSub(request.getfixturevalue("pubsub_topic")),
    "eventgrid": lambda request: EventGrid(request.getfixturevalue("eventgrid_sink")),
    "webhook": lambda request: Webhook(request.getfixturevalue("webhook_receiver")()),
}


@pytest.fixture(params=sorted(BUSES))
def bus(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Bus:
    monkeypatch.setenv(KEY_VARIABLE, EVENTGRID_KEY)
    made = BUSES[request.param](request)
    for name, value in made.env.items():
        monkeypatch.setenv(name, value)
    return made


def test_every_stored_event_is_published_once_as_it_is_stored(bus: Bus, tmp_path: Path) -> None:
    store_url = sqlite_url(tmp_path / "store.db")
    pipeline = forwarding_pipeline(store_url, bus.url)
    payloads = sample_payloads()
    sent: list[str] = []
    statuses: list[str] = []
    for payload in [*payloads, *payloads[:3]]:  # the first three delivered twice, as a retry would
        answer = deliver_and_derive(pipeline, payload)
        assert answer.status == 200, answer.body
        sent.append(answer.json_body()["event_id"])
        statuses.append(answer.json_body()["status"])
    assert statuses[-3:] == ["duplicate"] * 3

    unique = list(dict.fromkeys(sent))
    published = bus.published(len(unique))
    assert Counter(d["id"] for d in published) == Counter(unique), "a duplicate stores nothing, so derives nothing"
    if bus.in_order:
        assert [d["id"] for d in published] == unique
    stored = stored_documents(store_url)
    assert set(stored) == set(sent)
    for document in published:
        assert document == stored[document["id"]], "the bus gets the stored CloudEvent as is"


def test_an_event_over_the_bus_limit_goes_thin_with_a_dataref_to_the_stored_object(bus: Bus, tmp_path: Path) -> None:
    store_url = sqlite_url(tmp_path / "store.db")
    pipeline = forwarding_pipeline(store_url, bus.url, max_body_bytes=2 * bus.limit)
    payload = large_transcript(bus.limit)
    answer = deliver_and_derive(pipeline, payload)
    assert answer.status == 200, answer.body
    event_id = answer.json_body()["event_id"]

    [thin] = bus.published(1)
    stored = stored_documents(store_url)[event_id]
    assert "data" not in thin
    assert thin["id"] == event_id
    assert thin["type"] == "io.tavus.conversation.application.transcription_ready"
    assert thin["subject"] == payload["conversation_id"]
    assert thin["source"] == f"/tavus/conversations/{payload['conversation_id']}"
    assert {k: v for k, v in thin.items() if k != "dataref"} == {k: stored[k] for k in thin if k != "dataref"}
    assert thin["time"]
    assert thin["dataref"].startswith(f"{store_url}/{payload['conversation_id']}/events/")
    blob = pipeline.store.read(thin["dataref"].removeprefix(f"{store_url}/"))
    assert blob is not None
    assert json.loads(blob.data)["data"]["payload"] == payload


def test_a_bus_that_refuses_costs_the_sender_nothing_and_the_redelivery_publishes_once(bus: Bus,
                                                                                      tmp_path: Path) -> None:
    store_url = sqlite_url(tmp_path / "store.db")
    pipeline = forwarding_pipeline(store_url, bus.url)
    payload = sample_payloads()[0]
    bus.refuse()
    answer = deliver(pipeline, payload)
    assert answer.status == 200 and answer.json_body()["status"] == "stored"  # durable: the bus can wait
    assert len(stored_documents(store_url)) == 1, "durable even though the bus failed"
    with pytest.raises(ForwardError):  # the derive fails, so the change feed delivers the event to it again
        pipeline.derive(answer.outcome.key)

    bus.accept()
    pipeline.derive(answer.outcome.key)
    retry = deliver_and_derive(pipeline, payload)
    assert retry.status == 200 and retry.json_body()["status"] == "duplicate"
    assert [d["id"] for d in bus.published(1)] == [retry.json_body()["event_id"]]
    assert len(stored_documents(store_url)) == 1, "exactly once in the bucket"


def test_serve_forward_publishes_every_stored_event(bus: Bus, serve_factory: Any, tmp_path: Path) -> None:
    # The server inherits the environment that points each SDK at its emulator or sink, but no TAVUS_* variable.
    server = serve_factory(store_url=sqlite_url(tmp_path / "store.db"), env=bus.env, args=["--forward", bus.url],
                           workers=1, threads=2)
    ids = []
    for payload in sample_payloads()[:5]:
        status, answer = server.post(payload)
        assert status == 200 and answer is not None
        ids.append(answer["event_id"])
    assert sorted(d["id"] for d in bus.published(len(ids))) == sorted(ids)
