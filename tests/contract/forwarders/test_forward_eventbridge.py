"""Forwarding to Amazon EventBridge against moto server: bus -> rule on our source -> SQS queue."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from support.bus_servers import deliver, forwarding_pipeline, large_transcript, sample_payloads, stored_documents
from support.servers import Emulator, point_at, sqlite_url
from tavus_callbacks.forward.eventbridge import MAX_ENTRY_BYTES, SOURCE, EventBridgeForwarder, entry_size
from tavus_callbacks.sdk import clear_clients


@dataclass
class Bus:
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
def bus(moto_server: Emulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[Bus]:
    point_at(moto_server, monkeypatch)
    clear_clients()
    events, sqs = boto3.client("events"), boto3.client("sqs")
    name = f"tavus-{uuid.uuid4().hex[:10]}"
    queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    created = Bus(name, queue_url, queue_arn, events, sqs)
    created.create()
    yield created
    clear_clients()



def test_every_stored_event_arrives_once_per_delivery_with_its_stored_id(bus: Bus, tmp_path: Path) -> None:
    pipeline = forwarding_pipeline(sqlite_url(tmp_path / "store.db"), bus.url)
    payloads = sample_payloads()
    deliveries: Counter[str] = Counter()
    statuses: list[str] = []
    for payload in [*payloads, *payloads[:3]]:  # the first three delivered twice, as a retry would
        answer = deliver(pipeline, payload)
        assert answer.status == 200, answer.body
        deliveries[answer.json_body()["event_id"]] += 1
        statuses.append(answer.json_body()["status"])
    assert statuses[-3:] == ["duplicate"] * 3

    envelopes = bus.drain()
    assert Counter(e["detail"]["id"] for e in envelopes) == deliveries
    stored = stored_documents(sqlite_url(tmp_path / "store.db"))
    assert set(stored) == set(deliveries)
    for envelope in envelopes:
        assert envelope["source"] == SOURCE
        assert envelope["detail-type"] == envelope["detail"]["type"]
        assert envelope["detail"] == stored[envelope["detail"]["id"]], "the bus gets the stored CloudEvent as is"


def test_a_transcript_over_256_kb_goes_as_a_thin_event_pointing_to_the_stored_object(
        bus: Bus, cloud_bucket: Any) -> None:
    store_url = cloud_bucket("s3", "tavus/")
    bucket = store_url.split("/")[2]
    pipeline = forwarding_pipeline(store_url, bus.url)
    payload = large_transcript(MAX_ENTRY_BYTES)
    answer = deliver(pipeline, payload)
    assert answer.status == 200, answer.body
    event_id = answer.json_body()["event_id"]

    [envelope] = bus.drain()
    thin = envelope["detail"]
    assert "data" not in thin
    assert thin["id"] == event_id
    assert thin["type"] == "io.tavus.conversation.application.transcription_ready"
    assert thin["subject"] == payload["conversation_id"]
    assert thin["source"] == f"/tavus/conversations/{payload['conversation_id']}"
    assert thin["time"]
    assert thin["dataref"].startswith(f"s3://{bucket}/tavus/{payload['conversation_id']}/events/")
    key = thin["dataref"].removeprefix(f"s3://{bucket}/")
    stored = json.loads(boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())
    assert stored["id"] == event_id and stored["data"]["payload"] == payload


def test_a_failing_bus_answers_200_and_the_retry_publishes_once_it_recovers(bus: Bus, tmp_path: Path) -> None:
    pipeline = forwarding_pipeline(sqlite_url(tmp_path / "store.db"), bus.url)
    payload = sample_payloads()[0]
    bus.delete()
    answer = deliver(pipeline, payload)
    assert answer.status == 200 and answer.json_body()["status"] == "stored"  # durable: the bus can wait
    assert len(stored_documents(sqlite_url(tmp_path / "store.db"))) == 1, "durable even though the bus failed"

    bus.create()
    retry = deliver(pipeline, payload)
    assert retry.status == 200
    assert retry.json_body()["status"] == "duplicate"
    assert [e["detail"]["id"] for e in bus.drain()] == [retry.json_body()["event_id"]]
    assert len(stored_documents(sqlite_url(tmp_path / "store.db"))) == 1, "exactly once in the bucket"


def test_serve_forward_publishes_every_stored_event(bus: Bus, moto_server: Emulator, serve_factory: Any,
                                                    tmp_path: Path) -> None:
    from support.servers import emulator_env

    server = serve_factory(store_url=sqlite_url(tmp_path / "store.db"), env=emulator_env(moto_server),
                           args=["--forward", bus.url], workers=1, threads=2)
    payloads = sample_payloads()[:5]
    ids = []
    for payload in payloads:
        status, answer = server.post(payload)
        assert status == 200 and answer is not None
        ids.append(answer["event_id"])
    assert sorted(e["detail"]["id"] for e in bus.drain(expect=len(ids))) == sorted(ids)


def _record(body_bytes: int) -> Any:
    from tavus_callbacks.events.normalize import normalize
    from tavus_callbacks.record import Layout, build_record

    payload = large_transcript(0)
    payload["properties"]["transcript"] = [{"role": "user", "content": "x" * body_bytes}]
    return build_record(payload, normalize(payload), Layout())


def test_the_size_rule_counts_the_encoded_entry_as_eventbridge_does() -> None:
    forwarder = EventBridgeForwarder("bus")
    small = _record(1000)
    entry = forwarder.entry(small, "s3://bucket")
    assert json.loads(entry["Detail"]) == small.document
    assert entry_size(entry) == len(SOURCE) + len(entry["DetailType"]) + len(small.body)

    # Non-ASCII text: the limit is on UTF-8 bytes, not characters.
    wide = _record(0)
    wide.document["data"]["payload"]["properties"]["transcript"] = [{"role": "user", "content": "é" * 140_000}]
    from tavus_callbacks.record import StoredEvent, canonical_json

    wide = StoredEvent(wide.id, wide.key, wide.event, wide.document, canonical_json(wide.document))
    assert len(wide.body.decode()) < MAX_ENTRY_BYTES < len(wide.body)
    thin = json.loads(forwarder.entry(wide, "s3://bucket")["Detail"])
    assert thin["dataref"] == f"s3://bucket/{wide.key}" and "data" not in thin


def test_the_template_turns_forwarding_on_with_put_events_on_that_bus_only() -> None:
    import yaml

    class CloudFormationLoader(yaml.SafeLoader):
        """Reads CloudFormation's short-form tags (!If, !Sub, ...) as their long form."""

    def long_form(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
        name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
        if isinstance(node, yaml.ScalarNode):
            return {name: loader.construct_scalar(node)}
        if isinstance(node, yaml.SequenceNode):
            return {name: loader.construct_sequence(node, deep=True)}
        return {name: loader.construct_mapping(node, deep=True)}  # type: ignore[arg-type]

    CloudFormationLoader.add_multi_constructor("!", long_form)
    template = yaml.load((Path(__file__).parents[3] / "template.yaml").read_text(), CloudFormationLoader)
    assert template["Parameters"]["ForwardBusName"]["Default"] == ""
    assert template["Conditions"]["ForwardEnabled"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "ForwardBusName"}, ""]}]}
    function = template["Resources"]["CallbackFunction"]["Properties"]
    assert function["Environment"]["Variables"]["TAVUS_FORWARD_URL"] == {
        "Fn::If": ["ForwardEnabled", {"Fn::Sub": "eventbridge://${ForwardBusName}"}, {"Ref": "AWS::NoValue"}]}
    role = template["Resources"]["CallbackFunctionRole"]["Properties"]
    statements = [s for policy in role["Policies"] for s in policy["PolicyDocument"]["Statement"]]
    [put_events] = [s["Fn::If"] for s in statements if "Fn::If" in s and s["Fn::If"][0] == "ForwardEnabled"]
    assert put_events[1]["Action"] == "events:PutEvents"
    assert put_events[1]["Resource"] == {
        "Fn::Sub": "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:event-bus/${ForwardBusName}"}
    assert put_events[2] == {"Ref": "AWS::NoValue"}
    assert not [s for s in statements if "events:" in json.dumps(s) and s.get("Fn::If", [None])[0] != "ForwardEnabled"]
