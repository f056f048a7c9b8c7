"""`replay --webhook`: a store resent to a team's endpoint as the forwarder delivers it (the stored CloudEvent, the
same webhook-id, a fresh signature), verified by a local receiver with the `standardwebhooks` library."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from support.bus_servers import FORWARD_TOKEN, deliver, large_transcript, sample_payloads, stored_documents
from support.servers import sqlite_url
from support.webhook_receiver import WebhookReceiver
from tavus_callbacks.cli import main
from tavus_callbacks.pipeline import Pipeline
from tavus_callbacks.settings import Settings
from tavus_callbacks.stores import open_store


def filled_store(tmp_path: Path) -> str:
    """A SQLite store holding every recorded payload and a large transcript; its URL."""
    store_url = sqlite_url(tmp_path / "store.db")
    pipeline = Pipeline(Settings(tokens=(FORWARD_TOKEN,), store_url=store_url))
    for payload in [*sample_payloads(), large_transcript(200_000)]:
        assert deliver(pipeline, payload).status == 200
    pipeline.close()
    return store_url


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def stored_bodies(store_url: str) -> dict[str, bytes]:
    """The stored bytes of every event object, by event id."""
    store, prefix = open_store(store_url)
    bodies = {}
    for event_id in stored_documents(store_url):
        [key] = [k for k in store.iter_keys(prefix) if k.endswith(f"_{event_id}.json")]
        blob = store.read(key)
        assert blob is not None
        bodies[event_id] = blob.data
    return bodies


def test_replay_delivers_every_stored_event_as_the_same_standard_webhook(
        capsys: pytest.CaptureFixture[str], webhook_receiver: Any, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    receiver: WebhookReceiver = webhook_receiver()
    monkeypatch.setenv("TAVUS_WEBHOOK_SECRETS", receiver.secret)
    store_url = filled_store(tmp_path)
    bodies = stored_bodies(store_url)

    for run in (1, 2):  # a second run delivers the same ids again: the receiver deduplicates on webhook-id
        code, out, err = run_cli(capsys, "replay", "--store", store_url, "--to", receiver.url, "--webhook")
        assert code == 0, err
        assert f"{len(bodies)} sent to {receiver.url}, {len(bodies)} delivered, 0 failed" in out
        assert Counter(d.id for d in receiver.delivered()) == Counter({i: run for i in bodies})
    assert all(d.verified for d in receiver.deliveries)
    for delivery in receiver.delivered():
        assert delivery.body == bodies[delivery.id], "the stored CloudEvent as stored, as the forwarder sends it"
    times = [(d.document.get("time") or "", d.id) for d in receiver.delivered()[:len(bodies)]]
    assert times == sorted(times), "in time order"


def test_replay_retries_a_busy_receiver_with_the_same_id(capsys: pytest.CaptureFixture[str], webhook_receiver: Any,
                                                         tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    receiver: WebhookReceiver = webhook_receiver()
    monkeypatch.setenv("TAVUS_WEBHOOK_SECRETS", receiver.secret)
    store_url = filled_store(tmp_path)
    receiver.answer(503, 429)
    code, out, err = run_cli(capsys, "replay", "--store", store_url, "--to", receiver.url, "--webhook",
                             "--conversation", "c123456")
    assert code == 0, err
    assert ", 0 failed" in out
    first = receiver.deliveries[:3]
    assert [d.status for d in first] == [503, 429, 200] and len({d.id for d in first}) == 1
    assert all(d.verified for d in receiver.deliveries)


def test_replay_reports_a_refusing_receiver_without_its_query(capsys: pytest.CaptureFixture[str],
                                                              webhook_receiver: Any, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    receiver: WebhookReceiver = webhook_receiver()
    monkeypatch.setenv("TAVUS_WEBHOOK_SECRETS", receiver.secret)
    store_url = filled_store(tmp_path)
    receiver.refuse(404)
    code, out, err = run_cli(capsys, "replay", "--store", store_url, "--to", f"{receiver.url}?key=sink-key-123",
                             "--webhook")
    assert code == 1
    total = len(stored_documents(store_url))
    assert f"0 delivered, {total} failed" in out
    assert err.count("HTTP 404") == total, "each refusal once: a 4xx is not retried"
    assert len(receiver.deliveries) == total
    assert "sink-key-123" not in out + err and receiver.secret not in out + err


def test_replay_to_typed_sinks_sends_each_only_its_types(capsys: pytest.CaptureFixture[str], webhook_receiver: Any,
                                                         tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    receiver: WebhookReceiver = webhook_receiver()
    monkeypatch.setenv("TAVUS_WEBHOOK_SECRETS", receiver.secret)
    store_url = filled_store(tmp_path)
    code, out, _ = run_cli(capsys, "replay", "--store", store_url, "--to", f"{receiver.url}?types=system.shutdown",
                           "--webhook")
    assert code == 0
    documents = stored_documents(store_url).values()
    shutdowns = sum(d["type"] == "io.tavus.conversation.system.shutdown" for d in documents)
    assert shutdowns > 1
    assert {d.document["type"] for d in receiver.delivered()} == {"io.tavus.conversation.system.shutdown"}
    assert f"{shutdowns} delivered, 0 failed, {len(documents) - shutdowns} not of the types asked for" in out


def test_webhook_replay_needs_http_sinks_and_secrets(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    store_url = filled_store(tmp_path)
    monkeypatch.delenv("TAVUS_WEBHOOK_SECRETS", raising=False)
    code, _, err = run_cli(capsys, "replay", "--store", store_url, "--to", "https://hooks.example.com/t", "--webhook")
    assert code == 2 and "TAVUS_WEBHOOK_SECRETS is not set" in err and "Traceback" not in err
    monkeypatch.setenv("TAVUS_EVENTGRID_KEY", "eventgrid-test-key-0123456789")
    code, _, err = run_cli(capsys, "replay", "--store", store_url, "--to", "eventgrid://127.0.0.1:9?scheme=http",
                           "--webhook")
    assert code == 2 and "--webhook delivers to http(s):// endpoints" in err and "Traceback" not in err
