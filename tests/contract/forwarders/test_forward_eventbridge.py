"""EventBridge beyond the forwarder contract (test_forwarder_contract.py): the dataref of a thin event on an S3
store, the 256 KB rule as EventBridge counts it, and the template's switch for forwarding."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
from support.bus_servers import EventBridgeBus, deliver_and_derive, forwarding_pipeline, large_transcript
from tavus_callbacks.forward.eventbridge import MAX_ENTRY_BYTES, SOURCE, EventBridgeForwarder, entry_size


def test_a_transcript_over_256_kb_goes_as_a_thin_event_pointing_to_the_stored_object(
        eventbridge_bus: EventBridgeBus, cloud_bucket: Any) -> None:
    store_url = cloud_bucket("s3", "tavus/")
    bucket = store_url.split("/")[2]
    pipeline = forwarding_pipeline(store_url, eventbridge_bus.url)
    payload = large_transcript(MAX_ENTRY_BYTES)
    answer = deliver_and_derive(pipeline, payload)
    assert answer.status == 200, answer.body
    event_id = answer.json_body()["event_id"]

    [envelope] = eventbridge_bus.drain()
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


def _record(body_bytes: int) -> Any:
    from tavus_callbacks.events.normalize import normalize
    from tavus_callbacks.layout import Layout
    from tavus_callbacks.record import build_record

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
    from tavus_callbacks.record import Record, canonical_json

    wide = Record(wide.id, wide.key, wide.event, wide.document, canonical_json(wide.document))
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
    def chosen(node: Any, conditions: dict[str, bool]) -> Any:
        while isinstance(node, dict) and "Fn::If" in node:
            name, yes, no = node["Fn::If"]
            node = yes if conditions[name] else no
        return node

    forward_url = function["Environment"]["Variables"]["TAVUS_FORWARD_URL"]
    bus_only = {"ForwardToBusAndWebhook": False, "ForwardEnabled": True, "WebhookEnabled": False}
    assert chosen(forward_url, bus_only) == {"Fn::Sub": "eventbridge://${ForwardBusName}"}
    assert chosen(forward_url, dict.fromkeys(bus_only, False)) == {"Ref": "AWS::NoValue"}
    role = template["Resources"]["CallbackFunctionRole"]["Properties"]
    statements = [s for policy in role["Policies"] for s in policy["PolicyDocument"]["Statement"]]
    [put_events] = [s["Fn::If"] for s in statements if "Fn::If" in s and s["Fn::If"][0] == "ForwardEnabled"]
    assert put_events[1]["Action"] == "events:PutEvents"
    assert put_events[1]["Resource"] == {
        "Fn::Sub": "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:event-bus/${ForwardBusName}"}
    assert put_events[2] == {"Ref": "AWS::NoValue"}
    assert not [s for s in statements if "events:" in json.dumps(s) and s.get("Fn::If", [None])[0] != "ForwardEnabled"]
