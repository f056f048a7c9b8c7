"""Pub/Sub beyond the forwarder contract (test_forwarder_contract.py), against the Cloud SDK's emulator: a
conversation's order under its ordering key, the thin message over 10 MB, and a publisher through an outage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from support.bus_servers import PubSubTopic, deliver_and_derive, forwarding_pipeline, sample_payloads
from support.servers import sqlite_url
from tavus_callbacks.forward.pubsub import MAX_MESSAGE_BYTES, PubSubForwarder, message_size


def test_a_conversation_arrives_in_publish_order_under_its_ordering_key(pubsub_topic: PubSubTopic,
                                                                        tmp_path: Path) -> None:
    pipeline = forwarding_pipeline(sqlite_url(tmp_path / "store.db"), pubsub_topic.url)
    conversation = [p for p in sample_payloads() if p.get("conversation_id") == "c123456"]
    assert len(conversation) > 5
    sent = [deliver_and_derive(pipeline, p).json_body()["event_id"] for p in conversation]
    messages = pubsub_topic.pull(len(sent))
    assert {m.ordering_key for m in messages} == {"c123456"}
    assert [m.attributes["ce-id"] for m in messages] == sent


def test_a_message_over_10_mb_goes_thin_with_a_dataref(pubsub_topic: PubSubTopic) -> None:
    from tavus_callbacks.events.normalize import normalize
    from tavus_callbacks.layout import Layout
    from tavus_callbacks.record import build_record

    payload = sample_payloads()[0]
    payload["properties"]["note"] = "x" * MAX_MESSAGE_BYTES
    record = build_record(payload, normalize(payload), Layout())
    forwarder = PubSubForwarder(pubsub_topic.topic)
    data, attributes, key = forwarder.message(record, "gs://recordings")
    assert data == b""
    assert attributes["ce-dataref"] == f"gs://recordings/{record.key}"
    assert attributes["ce-id"] == record.id and "content-type" not in attributes
    assert message_size(data, attributes, key) < 2000

    forwarder.publish(record, "gs://recordings")
    [message] = pubsub_topic.pull(1)
    assert message.data == b"" and message.attributes["ce-dataref"] == f"gs://recordings/{record.key}"


def test_an_emulator_outage_fails_the_publish_and_the_same_publisher_recovers(
        pubsub_emulator: Any, monkeypatch: Any) -> None:
    from google.cloud import pubsub_v1
    from support.bus_servers import PUBSUB_EMULATOR, PUBSUB_PROJECT
    from support.servers import Emulator
    from tavus_callbacks.clients import clear_clients
    from tavus_callbacks.errors import ForwardError
    from tavus_callbacks.events.normalize import normalize
    from tavus_callbacks.layout import Layout
    from tavus_callbacks.record import build_record

    emulator = Emulator("pubsub", lambda port, _dir: [str(PUBSUB_EMULATOR), "--host=127.0.0.1", f"--port={port}"],
                        ready_path="/")
    emulator.start(timeout=90)
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", f"127.0.0.1:{emulator.port}")
    clear_clients()
    topic, subscription = f"projects/{PUBSUB_PROJECT}/topics/outage", f"projects/{PUBSUB_PROJECT}/subscriptions/outage"

    def create() -> Any:
        pubsub_v1.PublisherClient().create_topic(name=topic)
        subscriber = pubsub_v1.SubscriberClient()
        subscriber.create_subscription(request={"name": subscription, "topic": topic,
                                                "enable_message_ordering": True})
        return subscriber

    try:
        create()
        forwarder = PubSubForwarder(topic, timeout=3.0)
        first, second = sample_payloads()[:2]
        records = [build_record(p, normalize(p), Layout()) for p in (first, second)]
        forwarder.publish(records[0], "gs://recordings")
        emulator.stop()
        try:
            forwarder.publish(records[1], "gs://recordings")
        except ForwardError as exc:
            assert topic in str(exc) and "roles/pubsub.publisher" in str(exc)
        else:
            raise AssertionError("a publish to a stopped emulator must fail")
        emulator.start(timeout=90)  # same port, empty: the topic comes back as an operator would recreate it
        subscriber = create()
        forwarder.publish(records[1], "gs://recordings")
        answer = subscriber.pull(request={"subscription": subscription, "max_messages": 10}, timeout=10)
        # At least once: the publish that timed out may still have gone through once the emulator was back.
        ids = [m.message.attributes["ce-id"] for m in answer.received_messages]
        assert ids and set(ids) == {records[1].id}
        assert answer.received_messages[0].message.ordering_key == second["conversation_id"]
    finally:
        clear_clients()
        emulator.close()
