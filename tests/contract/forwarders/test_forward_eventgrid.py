"""Forwarding to Azure Event Grid: the real azure-eventgrid client publishing to a local HTTP sink."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.bus_servers import (
    SDK_WARNINGS,
    EventGridSink,
    deliver,
    forwarding_pipeline,
    large_transcript,
    sample_payloads,
    stored_documents,
)
from support.servers import sqlite_url
from tavus_callbacks.errors import ConfigError
from tavus_callbacks.forward.eventgrid import KEY_VARIABLE, MAX_EVENT_BYTES, EventGridForwarder

KEY = "eventgrid-test-key-0123456789"
pytestmark = SDK_WARNINGS



@pytest.fixture
def sink(eventgrid_sink: EventGridSink, monkeypatch: pytest.MonkeyPatch) -> EventGridSink:
    monkeypatch.setenv(KEY_VARIABLE, KEY)
    return eventgrid_sink


def test_every_event_reaches_the_topic_in_the_cloudevents_schema_with_the_key(sink: EventGridSink,
                                                                             tmp_path: Path) -> None:
    pipeline = forwarding_pipeline(sqlite_url(tmp_path / "store.db"), sink.url())
    sent = [deliver(pipeline, p).json_body()["event_id"] for p in sample_payloads()]
    assert len(sink.requests) == len(sent)
    stored = stored_documents(sqlite_url(tmp_path / "store.db"))
    received = []
    for request in sink.requests:
        assert request.path.startswith("/api/events?api-version=")
        assert request.headers["aeg-sas-key"] == KEY
        assert request.headers["content-type"].split(";")[0] == "application/cloudevents-batch+json"
        [event] = json.loads(request.body)
        for attribute in ("specversion", "id", "source", "type", "data"):
            assert attribute in event, attribute
        assert event["specversion"] == "1.0"
        assert event == stored[event["id"]], "the topic gets the stored CloudEvent as is"
        received.append(event["id"])
    assert received == sent


def test_an_event_over_1_mb_goes_thin_with_a_dataref(sink: EventGridSink, tmp_path: Path) -> None:
    pipeline = forwarding_pipeline(sqlite_url(tmp_path / "store.db"), sink.url())
    payload = large_transcript(MAX_EVENT_BYTES)
    answer = deliver(pipeline, payload)
    assert answer.status == 200
    [event] = json.loads(sink.requests[0].body)
    assert "data" not in event
    assert event["id"] == answer.json_body()["event_id"]
    url = sqlite_url(tmp_path / "store.db")
    assert event["dataref"].startswith(f"{url}/{payload['conversation_id']}/events/")
    assert pipeline.store.read(event["dataref"].removeprefix(f"{url}/")) is not None


def test_a_topic_that_refuses_answers_200_and_the_retry_publishes(sink: EventGridSink, tmp_path: Path) -> None:
    pipeline = forwarding_pipeline(sqlite_url(tmp_path / "store.db"), sink.url())
    payload = sample_payloads()[0]
    sink.status = 401
    answer = deliver(pipeline, payload)
    assert answer.status == 200  # durable: the topic can wait (the event is left pending)
    assert len(stored_documents(sqlite_url(tmp_path / "store.db"))) == 1
    sink.status = 200
    sink.requests.clear()
    retry = deliver(pipeline, payload)
    assert retry.status == 200 and retry.json_body()["status"] == "duplicate"
    [event] = json.loads(sink.requests[0].body)
    assert event["id"] == retry.json_body()["event_id"]


def test_the_topic_hostname_becomes_the_https_events_endpoint() -> None:
    assert EventGridForwarder.from_url("eventgrid://my-topic.westus2-1.eventgrid.azure.net", {}).endpoint == \
        "https://my-topic.westus2-1.eventgrid.azure.net/api/events"
    assert EventGridForwarder.from_url("eventgrid://127.0.0.1:9000?scheme=http", {}).endpoint == \
        "http://127.0.0.1:9000/api/events"
    with pytest.raises(ConfigError, match="scheme"):
        EventGridForwarder.from_url("eventgrid://host?scheme=ftp", {})
