"""Standard Webhooks delivery beyond the forwarder contract (test_forwarder_contract.py), against a real local
receiver that verifies every request with the `standardwebhooks` library: retries keep the id, an outage loses
nothing, rotation, type filters and fan-out, refusals that are not retried, and where the secret never goes."""

from __future__ import annotations

import base64
import json
import logging
import os
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import drain
from support.bus_servers import (
    deliver,
    deliver_and_derive,
    forwarding_pipeline,
    large_transcript,
    sample_payloads,
    stored_documents,
)
from support.servers import free_port, point_at, sqlite_url
from support.webhook_receiver import WebhookReceiver, new_secret
from tavus_callbacks.errors import ConfigError, ForwardError
from tavus_callbacks.events.normalize import normalize
from tavus_callbacks.feed import FeedWorker
from tavus_callbacks.forward import open_forwarder, open_sinks
from tavus_callbacks.forward.base import FanOutForwarder, split_sinks, take_types, type_admitted
from tavus_callbacks.forward.webhook import WebhookForwarder
from tavus_callbacks.layout import Layout
from tavus_callbacks.record import Record, build_record
from tavus_callbacks.settings import WebhookSettings, parse_webhook_secrets
from tavus_callbacks.stores import open_store

STORE_URL = "s3://acme-recordings"


def records(payloads: list[dict[str, Any]] | None = None) -> list[Record]:
    """The stored form of every recorded payload (or of `payloads`), as derive hands them to a forwarder."""
    return [build_record(p, normalize(p), Layout()) for p in (payloads or sample_payloads())]


def forwarder(url: str, *secrets: str, max_body_bytes: int = 1024 * 1024) -> Any:
    return open_forwarder(url, WebhookSettings(secrets, max_body_bytes))


def test_every_event_is_delivered_as_stored_signed_with_its_id(webhook_receiver: Any) -> None:
    receiver: WebhookReceiver = webhook_receiver()
    sink = forwarder(receiver.url, receiver.secret)
    sent = records()
    for record in sent:
        sink.publish(record, STORE_URL)

    delivered = receiver.delivered()
    assert len(delivered) == len(receiver.deliveries) == len(sent), "one verified 2xx request per event"
    for record, delivery in zip(sent, delivered, strict=True):
        assert delivery.verified
        assert delivery.id == record.id
        assert delivery.body == record.body, "the body is the stored CloudEvent, byte for byte"
        assert delivery.headers["content-type"] == "application/json"
        assert delivery.headers["webhook-signature"].startswith("v1,")
        assert delivery.path == "/hook"


def test_a_receiver_answering_500_twice_gets_the_same_id_on_each_retry(webhook_receiver: Any) -> None:
    receiver: WebhookReceiver = webhook_receiver()
    sink = forwarder(receiver.url, receiver.secret)
    record = records()[0]
    receiver.answer(500, 500)
    for _ in range(2):  # what the change feed does: deliver the event to derive again after a failure
        with pytest.raises(ForwardError, match="HTTP 500"):
            sink.publish(record, STORE_URL)
    sink.publish(record, STORE_URL)

    assert [d.status for d in receiver.deliveries] == [500, 500, 200]
    assert {d.id for d in receiver.deliveries} == {record.id}
    assert all(d.verified for d in receiver.deliveries), "each retry is signed afresh and verifies"
    assert len({d.body for d in receiver.deliveries}) == 1


def test_a_failed_delivery_fails_the_derive_and_its_redelivery_delivers_it(webhook_receiver: Any, tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    receiver: WebhookReceiver = webhook_receiver()
    monkeypatch.setenv("TAVUS_WEBHOOK_SECRETS", receiver.secret)
    store_url = sqlite_url(tmp_path / "store.db")
    pipeline = forwarding_pipeline(store_url, receiver.url)
    receiver.answer(500, 500)
    answer = deliver(pipeline, sample_payloads()[0])
    assert answer.status == 200, "the sink's failure never reaches the sender"
    for _ in range(2):  # the change feed delivers the event to derive again while it raises
        with pytest.raises(ForwardError, match="HTTP 500"):
            pipeline.derive(answer.outcome.key)
    assert pipeline.derive(answer.outcome.key).event_id == answer.json_body()["event_id"]

    assert [d.status for d in receiver.deliveries] == [500, 500, 200]
    assert {d.id for d in receiver.deliveries} == {answer.json_body()["event_id"]}
    assert [d.document for d in receiver.delivered()] == list(stored_documents(store_url).values())


def test_a_receiver_down_then_up_loses_nothing_through_the_change_feed(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    receiver = WebhookReceiver(port=free_port())  # not started: connections are refused
    monkeypatch.setenv("TAVUS_WEBHOOK_SECRETS", receiver.secret)
    pipeline = forwarding_pipeline(sqlite_url(tmp_path / "store.db"), receiver.url)
    ids = [deliver(pipeline, p).json_body()["event_id"] for p in sample_payloads()]
    worker = FeedWorker(pipeline, pipeline.store).start()  # serve's feed: derive in order, retry with backoff
    try:
        deadline = time.monotonic() + 10
        while worker.waiting < len(set(ids)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert worker.waiting == len(set(ids)), "every derive failed and waits for its retry"
        receiver.start()
        delivered = receiver.wait_for(len(set(ids)), timeout=30)
    finally:
        worker.stop()
        receiver.stop()
    assert Counter(d.id for d in delivered) == Counter(set(ids)), "every event, once each"
    assert all(d.verified for d in receiver.deliveries)


def test_a_receiver_down_then_up_loses_nothing_when_published_again(tmp_path: Path) -> None:
    receiver = WebhookReceiver(port=free_port())
    sink = forwarder(receiver.url, receiver.secret)
    sent = records()
    for record in sent:  # nobody listens: every delivery fails and is to be retried
        with pytest.raises(ForwardError, match="cannot connect"):
            sink.publish(record, STORE_URL)
    receiver.start()
    try:
        for record in sent[: len(sent) // 2]:
            sink.publish(record, STORE_URL)
        receiver.stop()  # down again in the middle of the redeliveries
        for record in sent[len(sent) // 2:]:
            with pytest.raises(ForwardError):
                sink.publish(record, STORE_URL)
        receiver.start()
        for record in sent[len(sent) // 2:]:
            sink.publish(record, STORE_URL)
    finally:
        receiver.stop()
    assert Counter(d.id for d in receiver.delivered()) == Counter(r.id for r in sent), "every event, once each"


def test_rotated_secrets_sign_every_delivery_with_each(webhook_receiver: Any) -> None:
    old, new = new_secret(), new_secret()
    with_old: WebhookReceiver = webhook_receiver(old)
    with_new: WebhookReceiver = webhook_receiver(new)
    with_other: WebhookReceiver = webhook_receiver()
    record = records()[0]
    for receiver in (with_old, with_new, with_other):
        forwarder(receiver.url, new, old).publish(record, STORE_URL)  # the third is refused (401): logged
    [delivery] = with_old.deliveries
    assert len(delivery.headers["webhook-signature"].split(" ")) == 2, "one signature per secret, space-separated"
    assert with_old.deliveries[0].verified and with_new.deliveries[0].verified
    assert not with_other.deliveries[0].verified, "a receiver with neither secret verifies nothing"


def test_type_filters_send_each_sink_only_its_types(webhook_receiver: Any) -> None:
    everything: WebhookReceiver = webhook_receiver()
    ends: WebhookReceiver = webhook_receiver(everything.secret)
    applications: WebhookReceiver = webhook_receiver(everything.secret)
    setting = (f"{everything.url},{ends.url}?types=system.shutdown,application.transcription_ready,"
               f"{applications.url}?types=io.tavus.conversation.application.*")
    sink = forwarder(setting, everything.secret)
    assert isinstance(sink, FanOutForwarder)
    sent = records()
    for record in sent:
        sink.publish(record, STORE_URL)

    def types(receiver: WebhookReceiver) -> set[str]:
        return {d.document["type"] for d in receiver.delivered()}

    assert len(everything.delivered()) == len(sent)
    assert types(ends) == {"io.tavus.conversation.system.shutdown",
                           "io.tavus.conversation.application.transcription_ready"}
    assert len(ends.delivered()) == sum(r.document["type"] in types(ends) for r in sent)
    assert types(applications) == {t for t in types(everything) if t.startswith("io.tavus.conversation.application.")}
    assert all(d.path == "/hook" for d in ends.deliveries), "the types parameter is ours: the sink never sees it"


def test_one_failing_sink_does_not_keep_the_event_from_the_others(webhook_receiver: Any) -> None:
    first: WebhookReceiver = webhook_receiver()
    second: WebhookReceiver = webhook_receiver(first.secret)
    sink = forwarder(f"{first.url},{second.url}", first.secret)
    record = records()[0]
    first.refuse(503)
    with pytest.raises(ForwardError, match="1 of 2 sinks"):
        sink.publish(record, STORE_URL)
    assert [d.id for d in second.delivered()] == [record.id], "tried after the first failed"
    first.accept()
    sink.publish(record, STORE_URL)  # the redelivery: both again, the second deduplicates on webhook-id
    assert [d.id for d in first.delivered()] == [record.id]
    assert [d.id for d in second.delivered()] == [record.id, record.id]


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 422, 301])
def test_a_refusal_is_logged_as_an_error_and_not_retried(status: int, webhook_receiver: Any, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    receiver: WebhookReceiver = webhook_receiver()
    monkeypatch.setenv("TAVUS_WEBHOOK_SECRETS", receiver.secret)
    store_url = sqlite_url(tmp_path / "store.db")
    pipeline = forwarding_pipeline(store_url, f"{receiver.url}?key=sink-own-key-123")
    receiver.answer(status)
    caplog.set_level(logging.INFO, logger="tavus_callbacks")
    answer = deliver_and_derive(pipeline, sample_payloads()[0])  # the derive returns: nothing to deliver again
    assert answer.status == 200
    event_id = answer.json_body()["event_id"]

    assert [d.status for d in receiver.deliveries] == [status]
    [line] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert event_id in line.getMessage() and f"HTTP {status}" in line.getMessage()
    assert line.__dict__["sink"] == receiver.url, "the sink without its query"
    assert line.__dict__["status"] == status and line.__dict__["key"].endswith(f"_{event_id}.json")
    assert "sink-own-key-123" not in caplog.text


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_a_busy_or_failing_receiver_is_retried(status: int, webhook_receiver: Any) -> None:
    receiver: WebhookReceiver = webhook_receiver()
    sink = forwarder(receiver.url, receiver.secret)
    receiver.answer(status)
    with pytest.raises(ForwardError, match=f"HTTP {status}"):
        sink.publish(records()[0], STORE_URL)


def test_the_secret_is_in_no_log_error_or_stored_object(webhook_receiver: Any, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    receiver: WebhookReceiver = webhook_receiver()
    secret = receiver.secret
    key_bytes = base64.b64decode(secret.removeprefix("whsec_"))
    monkeypatch.setenv("TAVUS_WEBHOOK_SECRETS", secret)
    caplog.set_level(logging.DEBUG)  # urllib3's own lines too
    store_url = sqlite_url(tmp_path / "store.db")
    pipeline = forwarding_pipeline(store_url, receiver.url)
    errors: list[str] = []
    receiver.answer(500, 404)
    for payload in sample_payloads()[:4]:  # a failure, a refusal, then deliveries
        try:
            deliver_and_derive(pipeline, payload)
        except ForwardError as exc:
            errors.append(str(exc))
    drain(pipeline)  # the failed one again
    receiver.stop()
    try:
        pipeline.forwarder.publish(records()[0], store_url)
    except ForwardError as exc:
        errors.append(str(exc))
    assert len(errors) == 2 and "HTTP 500" in errors[0] and "cannot connect" in errors[1]
    with pytest.raises(ConfigError) as refused:
        parse_webhook_secrets(secret[:20])
    errors.append(str(refused.value))

    shown = [caplog.text, *errors, repr(pipeline.forwarder), repr(WebhookSettings((secret,)))]
    for text in shown:
        assert secret not in text and secret.removeprefix("whsec_") not in text and secret[:20] not in text
    store, _ = open_store(store_url)
    for key in store.iter_keys(""):
        blob = store.read(key)
        assert blob is not None and secret.encode() not in blob.data and key_bytes not in blob.data
    assert all(secret not in json.dumps(d.headers) for d in receiver.deliveries)


def test_an_event_over_the_limit_goes_thin_and_still_verifies(webhook_receiver: Any) -> None:
    receiver: WebhookReceiver = webhook_receiver()
    sink = forwarder(receiver.url, receiver.secret, max_body_bytes=10_000)
    [record] = records([large_transcript(20_000)])
    sink.publish(record, STORE_URL)
    [delivery] = receiver.delivered()
    assert delivery.id == record.id and "data" not in delivery.document
    assert delivery.document["dataref"] == f"{STORE_URL}/{record.key}"


def test_the_sinks_own_query_and_credentials_reach_it(webhook_receiver: Any) -> None:
    receiver: WebhookReceiver = webhook_receiver()
    url = receiver.url.replace("http://", "http://team:p%40ss@") + "?key=abc%20def&types=system.*&b=1"
    sink = forwarder(url, receiver.secret)
    for record in records():
        sink.publish(record, STORE_URL)
    assert receiver.delivered()
    assert all(d.document["type"].startswith("io.tavus.conversation.system.") for d in receiver.delivered())
    assert {d.path for d in receiver.deliveries} == {"/hook?key=abc%20def&b=1"}, "kept as written, types taken out"
    auth = receiver.deliveries[0].headers["authorization"]
    assert base64.b64decode(auth.removeprefix("Basic ")) == b"team:p@ss"
    assert "p%40ss" not in repr(sink) and "abc" not in repr(sink)


def test_sinks_split_on_a_comma_before_a_scheme_only() -> None:
    assert split_sinks("https://a.example/h?types=system.shutdown,application.recording_ready, eventbridge://bus,"
                       "http://127.0.0.1:3000/x") == [
        "https://a.example/h?types=system.shutdown,application.recording_ready", "eventbridge://bus",
        "http://127.0.0.1:3000/x"]
    assert take_types("https://a.example/h?x=1&types=a.b,c&y=%2C") == ("https://a.example/h?x=1&y=%2C", ("a.b", "c"))
    assert take_types("eventbridge://bus?region=eu-west-1&types=system.*") == (
        "eventbridge://bus?region=eu-west-1", ("system.*",))
    assert take_types("https://a.example/h?x=1") == ("https://a.example/h?x=1", None)
    with pytest.raises(ConfigError, match="empty"):
        take_types("https://a.example/h?types=")
    with pytest.raises(ConfigError, match="not an event type"):
        take_types("https://a.example/h?types=a/b")


def test_a_type_matches_by_its_full_or_short_name() -> None:
    shutdown = "io.tavus.conversation.system.shutdown"
    for pattern in (shutdown, "conversation.system.shutdown", "system.shutdown", "system.*", "io.tavus.*"):
        assert type_admitted([pattern], shutdown), pattern
    for pattern in ("shutdown", "application.*", "io.tavus.video.*", "system.shutdow"):
        assert not type_admitted([pattern], shutdown), pattern
    assert type_admitted(["video.*"], "io.tavus.video.ready")


@pytest.mark.parametrize("url", ["http://8.8.8.8/hook", "http://[2001:4860:4860::8888]/hook",
                                 "http://no-such-host.invalid/hook"])
def test_plain_http_to_a_public_host_is_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="unencrypted to a public host: use https://"):
        forwarder(url, new_secret())


@pytest.mark.parametrize("url", ["http://127.0.0.1:3000/hook", "http://localhost:3000/", "http://10.1.2.3/h",
                                 "http://192.168.1.20:8000/h", "http://[::1]:3000/h", "http://app.localhost/h",
                                 "https://hooks.example.com/tavus"])
def test_https_and_plain_http_to_a_private_address_are_sinks(url: str) -> None:
    assert isinstance(forwarder(url, new_secret()), WebhookForwarder)


def test_an_http_sink_without_secrets_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TAVUS_WEBHOOK_SECRETS", raising=False)
    with pytest.raises(ConfigError, match=r"TAVUS_WEBHOOK_SECRETS is not set.*whsec_"):
        open_forwarder("https://hooks.example.com/tavus")
    monkeypatch.setenv("TAVUS_WEBHOOK_SECRETS", "placeholder")
    open_sinks("eventbridge://default?types=system.*")  # a bus alone never reads it


@pytest.mark.parametrize(("value", "why"), [
    ("", "is not set"),
    ("c2VjcmV0LXRva2VuLXRoYXQtaXMtbG9uZy1lbm91Z2g=", "does not start with whsec_"),
    ("@Microsoft.KeyVault(VaultName=v;SecretName=tavus-webhook-secrets)", "does not start with whsec_"),
    ("whsec_not base64!", "not whsec_ followed by base64"),
    ("whsec_c2hvcnQ=", "holds 5 bytes"),
    ("whsec_" + "A" * 32, "placeholder"),
    (f"{new_secret()}, whsec_c2hvcnQ=", "secret #2 holds 5 bytes"),
])
def test_webhook_secrets_are_checked_with_a_message_naming_the_variable(value: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why) as refused:
        parse_webhook_secrets(value)
    assert str(refused.value).startswith("TAVUS_WEBHOOK_SECRETS")
    for part in value.split(","):
        if len(part.strip()) > 12:
            assert part.strip() not in str(refused.value), "the message never repeats the value"


def test_rotation_and_unpadded_secrets_are_accepted() -> None:
    first, second = new_secret(), new_secret()
    assert parse_webhook_secrets(f" {first} ,{second}") == (first, second)
    unpadded = "whsec_" + base64.b64encode(bytes(range(25))).decode().rstrip("=")
    assert parse_webhook_secrets(unpadded) == (unpadded,)


def test_serve_forward_delivers_to_a_typed_sink_and_never_shows_its_secrets(
        serve_factory: Any, webhook_receiver: Any, tmp_path: Path) -> None:
    receiver: WebhookReceiver = webhook_receiver()
    server = serve_factory(store_url=sqlite_url(tmp_path / "store.db"),
                           env={"TAVUS_WEBHOOK_SECRETS": receiver.secret},
                           args=["--forward", f"{receiver.url}?key=sink-key-123&types=system.*"], workers=1, threads=2)
    sent = [p for p in sample_payloads() if str(p.get("event_type", "")).startswith("system.")][:4]
    ids = []
    for payload in [*sent, *sample_payloads()[:3]]:
        status, answer = server.post(payload)
        assert status == 200 and answer is not None
        ids.append(answer["event_id"])
    delivered = receiver.wait_for(len(sent))
    assert {d.id for d in delivered} == set(ids[:len(sent)])
    assert all(d.verified and d.path == "/hook?key=sink-key-123" for d in receiver.deliveries)
    server.stop()
    output = server.output()
    assert f"Forwarding every stored event to {receiver.url} (types system.*) as Standard Webhooks" in output
    assert receiver.secret not in output and "sink-key-123" not in output


def test_serve_refuses_plain_http_to_a_public_host_before_it_starts(capsys: pytest.CaptureFixture[str],
                                                                    tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from tavus_callbacks.cli import main

    monkeypatch.setenv("TAVUS_STORE_URL", sqlite_url(tmp_path / "store.db"))
    monkeypatch.setenv("TAVUS_WEBHOOK_SECRETS", new_secret())
    code = main(["serve", "--port", str(free_port()), "--forward", "http://8.8.8.8/hook?key=k1"])
    err = capsys.readouterr().err
    assert code == 2 and "unencrypted to a public host: use https://" in err
    assert "Traceback" not in err and "key=k1" not in err


def test_secrets_kept_in_secrets_manager_are_read_when_signing_and_follow_a_rotation(
        moto_server: Any, webhook_receiver: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import secrets
    import string
    import uuid

    import boto3

    point_at(moto_server, monkeypatch)
    monkeypatch.setenv("POWERTOOLS_PARAMETERS_MAX_AGE", "0")  # read on every signing: the rotation shows at once
    client = boto3.client("secretsmanager")
    generated = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(44))  # as the stack makes
    arn = client.create_secret(Name=f"tavus-webhook-{uuid.uuid4().hex[:8]}", SecretString=generated)["ARN"]
    monkeypatch.delenv("TAVUS_WEBHOOK_SECRETS", raising=False)
    monkeypatch.setenv("TAVUS_WEBHOOK_SECRETS_SECRET", arn)
    first: WebhookReceiver = webhook_receiver(f"whsec_{generated}")
    sink = open_forwarder(first.url)
    record = records()[0]
    sink.publish(record, STORE_URL)
    assert [d.verified for d in first.deliveries] == [True], "the stored base64 alone is the whsec_ secret"

    rotated = new_secret()
    client.put_secret_value(SecretId=arn, SecretString=f"{rotated},{generated}")
    second: WebhookReceiver = webhook_receiver(rotated)
    open_forwarder(second.url).publish(record, STORE_URL)
    sink.publish(record, STORE_URL)  # the forwarder opened before the rotation signs with both now
    assert [d.verified for d in second.deliveries] == [True]
    assert [d.verified for d in first.deliveries] == [True, True]
    assert len(first.deliveries[1].headers["webhook-signature"].split(" ")) == 2

    client.put_secret_value(SecretId=arn, SecretString="whsec_c2hvcnQ=")
    with pytest.raises(ForwardError, match=r"TAVUS_WEBHOOK_SECRETS_SECRET=.*secret #1 holds 5 bytes"):
        sink.publish(record, STORE_URL)
    client.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)
    with pytest.raises(ForwardError, match=r"cannot read the signing secrets.*secretsmanager:GetSecretValue") as gone:
        sink.publish(record, STORE_URL)
    assert generated not in str(gone.value) and rotated not in str(gone.value)


def test_serve_delivers_through_an_outage_and_a_crash_losing_nothing(serve_factory: Any, tmp_path: Path) -> None:
    receiver = WebhookReceiver(port=free_port())  # down when serve starts
    store_url = sqlite_url(tmp_path / "store.db")
    env = {"TAVUS_WEBHOOK_SECRETS": receiver.secret}
    server = serve_factory(store_url=store_url, env=env, args=["--forward", receiver.url], workers=1, threads=2)
    payloads = sample_payloads()
    half = len(payloads) // 2
    ids = [server.post(p)[1]["event_id"] for p in payloads[:half]]  # type: ignore[index]
    time.sleep(1.0)  # the feed tries them and backs off
    os.killpg(server.pid, signal.SIGKILL)  # a crash while they wait for their retries
    server.process.wait(10)
    receiver.start()
    try:
        receiver.answer(500, 500)  # then busy twice
        restarted = serve_factory(store_url=store_url, env=env, args=["--forward", receiver.url], workers=1,
                                  threads=2)
        ids += [restarted.post(p)[1]["event_id"] for p in payloads[half:]]  # type: ignore[index]
        delivered = receiver.wait_for(len(set(ids)), timeout=60)
    finally:
        receiver.stop()
    assert Counter(d.id for d in delivered) == Counter(set(ids)), "every acknowledged event, once each"
    assert all(d.verified for d in receiver.deliveries)
    retried = [d.id for d in receiver.deliveries if d.status == 500]
    assert len(retried) == 2 and all(i in {d.id for d in delivered} for i in retried), "the same ids once through"


def test_a_receiver_that_never_answers_times_out_and_is_retried() -> None:
    import socket

    with socket.socket() as silent:  # listens (the kernel completes the handshake) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/hook"
        sink = WebhookForwarder(url, WebhookSettings((new_secret(),)), read_timeout=0.5)
        with pytest.raises(ForwardError, match=r"no answer from .* within 0\.5 s"):
            sink.publish(records()[0], STORE_URL)
