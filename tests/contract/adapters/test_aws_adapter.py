"""The Lambda adapter beyond the shared contract: event shapes, Powertools logs and EMF metrics, tokens from
Secrets Manager (a real moto server) and tracing switched on. Malformed and non-HTTP events: test_malformed_requests."""

from __future__ import annotations

import base64
import json
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
from aws_lambda_powertools.logging import logger as powertools_logger
from aws_lambda_powertools.metrics.provider import cold_start
from conftest import load_event
from support.serve_fixture import TOKENS
from tavus_callbacks.http import Response
from tavus_callbacks.record import event_id

from .conftest import core_logger_kept, reload_apps
from .drivers import FUNCTIONS, AwsDriver, LambdaContext, lambda_event

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")


@pytest.fixture
def aws(aws_app: ModuleType, adapter_env: Path) -> AwsDriver:
    return AwsDriver("aws-url", adapter_env, kind="url", module=aws_app)


def lines(text: str) -> list[dict[str, Any]]:
    """The JSON objects among printed lines (Powertools logs and EMF blobs)."""
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            found.append(json.loads(line))
    return found


def emf(captured: str) -> dict[str, Any]:
    """Metric name -> {value, dimensions} from the EMF blobs printed during the test."""
    metrics: dict[str, Any] = {}
    for blob in lines(captured):
        for directive in blob.get("_aws", {}).get("CloudWatchMetrics", []):
            assert directive["Namespace"] == "TavusCallbacks"
            for metric in directive["Metrics"]:
                dims = {d: blob[d] for group in directive["Dimensions"] for d in group}
                value = blob[metric["Name"]]
                value = sum(value) if isinstance(value, list) else value
                metrics.setdefault(metric["Name"], []).append({"value": value, "dimensions": dims})
    return metrics


# -- event shapes ----------------------------------------------------------------------------------

def test_a_function_url_event_shaped_like_powertools_sample_answers_health(aws: AwsDriver) -> None:
    event = lambda_event("url", "GET", "/healthz", {}, {"accept": "text/html"}, b"", False)
    assert event["requestContext"]["accountId"] == "anonymous" and "cookies" not in event
    result = aws.module.handler(event, LambdaContext())  # type: ignore[union-attr]
    assert result == {"statusCode": 200, "headers": {"Content-Type": "application/json"},
                      "body": '{"status":"ok"}', "isBase64Encoded": False}


def test_the_raw_query_string_is_decoded_and_its_first_value_wins(aws: AwsDriver) -> None:
    payload = load_event("guardrail")
    encoded = "".join(f"%{b:02X}" for b in TOKENS[0].encode())
    event = lambda_event("httpapi", "POST", "/cb", {}, {}, json.dumps(payload).encode(), False)
    event["rawQueryString"] = f"token={encoded}&token=ignored-second-value&x=1"
    event["queryStringParameters"] = {"token": f"{TOKENS[0]},ignored-second-value", "x": "1"}
    result = aws.module.handler(event, LambdaContext())  # type: ignore[union-attr]
    assert result["statusCode"] == 200 and json.loads(result["body"])["event_id"] == event_id(payload)


def test_query_parameters_are_used_when_there_is_no_raw_query_string(aws: AwsDriver) -> None:
    event = lambda_event("httpapi", "POST", "/", {"token": TOKENS[0]}, {}, json.dumps(load_event("objective")).encode(),
                         False)
    del event["rawQueryString"]
    assert aws.module.handler(event, LambdaContext())["statusCode"] == 200  # type: ignore[union-attr]


def test_cookies_are_ignored_and_a_base64_body_is_undone(aws: AwsDriver) -> None:
    payload = load_event("video.ready")
    event = lambda_event("httpapi", "POST", "/", {"token": TOKENS[0]}, {"cookie": "session=abc; theme=dark"},
                         json.dumps(payload).encode(), True)
    assert event["cookies"] == ["session=abc", "theme=dark"] and event["isBase64Encoded"] is True
    result = aws.module.handler(event, LambdaContext())  # type: ignore[union-attr]
    assert result["statusCode"] == 200 and json.loads(result["body"])["event_id"] == event_id(payload)


def test_a_body_that_is_not_utf8_goes_back_base64(aws_app: ModuleType) -> None:
    from tavus_callbacks.adapters.aws_lambda import from_response

    result = from_response(Response(200, {}, b"\xff\x00"))
    assert result["isBase64Encoded"] is True and base64.b64decode(result["body"]) == b"\xff\x00"


# -- logs and metrics ------------------------------------------------------------------------------

def test_logs_are_json_with_the_conversation_as_correlation_id_and_no_token_or_body(
        aws: AwsDriver, captured_logs: Callable[[], str]) -> None:
    payload = load_event("conversation.application.transcription_ready")
    payload["conversation_id"] = conversation = f"c{uuid.uuid4().hex[:12]}"
    assert aws.post(payload).status == 200
    assert aws.post(payload, token="wrong-token-0123456789abcdef").status == 401
    records = lines(captured_logs())
    answered = [r for r in records if str(r.get("message")).startswith("callback ") and "status" in r]
    assert [r["result"] for r in answered] == ["stored", "unauthorized"]
    line = answered[0]
    assert line["correlation_id"] == conversation and line["service"] == "tavus-callbacks"
    assert line["event_id"] == event_id(payload)
    assert line["event_type"] == "io.tavus.conversation.application.transcription_ready"
    assert line["function_name"] == LambdaContext.function_name and "function_request_id" in line
    assert answered[1].get("correlation_id") is None and answered[1]["status"] == 401, "no stale correlation id"
    text = json.dumps(records)
    assert TOKENS[0] not in text and "wrong-token" not in text
    assert payload["properties"]["transcript"][0]["content"] not in text, "the body is never logged"


def test_the_cores_own_log_lines_get_the_same_json_shape(aws: AwsDriver, aws_app: ModuleType,
                                                         captured_logs: Callable[[], str]) -> None:
    from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
    from tavus_callbacks.platforms import aws as aws_platform

    with core_logger_kept():
        copy_config_to_registered_loggers(source_logger=aws_platform.logger, include={"tavus_callbacks"})
        aws.post(b"{broken " + uuid.uuid4().hex.encode())
        records = lines(captured_logs())
    (quarantined,) = [r for r in records if r.get("message") == "quarantined a body that is not a JSON object"]
    assert quarantined["level"] == "WARNING" and quarantined["service"] == "tavus-callbacks"
    assert quarantined["key"].startswith("quarantine/")
    assert quarantined["function_name"] == LambdaContext.function_name


def test_metrics_count_stored_duplicates_rejections_by_reason_and_the_cold_start(
        aws: AwsDriver, capsys: pytest.CaptureFixture[str]) -> None:
    cold_start.reset_cold_start_flag()
    powertools_logger.is_cold_start = True
    capsys.readouterr()
    failed = load_event("conversation.application.recording_copy_failed")
    failed["conversation_id"] = f"c{uuid.uuid4().hex[:12]}"
    aws.post(failed)
    aws.post(failed)
    aws.post(failed, token=None)
    aws.post(b"[not an object]")
    metrics = emf(capsys.readouterr().out)
    assert [m["value"] for m in metrics["EventsStored"]] == [1.0]
    assert [m["value"] for m in metrics["Duplicates"]] == [1.0]
    assert "CopyFailures" not in metrics, "counted by derive (test_derive_feeds), which the answer does not wait for"
    assert sorted(m["dimensions"]["reason"] for m in metrics["Rejected"]) == ["invalid_json", "unauthorized"]
    (cold,) = metrics["ColdStart"]
    assert cold["value"] == 1.0 and cold["dimensions"]["function_name"] == LambdaContext.function_name
    assert all(m["dimensions"]["service"] == "tavus-callbacks" for m in metrics["EventsStored"])


# -- tokens from Secrets Manager -------------------------------------------------------------------

@pytest.fixture
def secret(moto_server: Any, monkeypatch: pytest.MonkeyPatch, aws: AwsDriver) -> Iterator[Callable[[str], None]]:
    """A secret in the moto server named by TAVUS_CALLBACK_TOKENS_SECRET; call the fixture to change its value."""
    import boto3
    from aws_lambda_powertools.utilities import parameters
    from support.servers import point_at

    point_at(moto_server, monkeypatch)
    client = boto3.client("secretsmanager")
    name = f"tavus/callback-tokens-{uuid.uuid4().hex[:8]}"
    client.create_secret(Name=name, SecretString=f"{TOKENS[0]}, {TOKENS[1]}")
    monkeypatch.delenv("TAVUS_CALLBACK_TOKENS")
    monkeypatch.setenv("TAVUS_CALLBACK_TOKENS_SECRET", name)
    parameters.clear_caches()
    yield lambda value: client.put_secret_value(SecretId=name, SecretString=value)
    parameters.clear_caches()


def test_tokens_come_from_the_secret_and_are_cached_until_max_age(aws: AwsDriver,
                                                                   secret: Callable[[str], None]) -> None:
    from aws_lambda_powertools.utilities import parameters

    first, second = load_event("replica.training.ready"), load_event("replica.training.error")
    assert aws.post(first, token=TOKENS[1]).status == 200
    rotated = "rotated-token-" + uuid.uuid4().hex
    secret(rotated)
    assert aws.post(second, token=rotated).status == 401, "the cached value is used until max_age"
    parameters.clear_caches()  # what max_age expiring does
    assert aws.post(second, token=TOKENS[0]).status == 401, "a rotated-out token stops working"
    reply = aws.post(second, token=rotated)
    assert reply.status == 200 and reply.json()["status"] == "stored"


def test_a_rotated_secret_takes_effect_without_changing_the_environment(aws: AwsDriver,
                                                                          secret: Callable[[str], None]) -> None:
    from aws_lambda_powertools.utilities import parameters

    environment = dict(os.environ)
    assert aws.post(load_event("replica.training.ready"), token=TOKENS[0]).status == 200
    rotated = "rotated-token-" + uuid.uuid4().hex
    secret(rotated)
    parameters.clear_caches()
    assert aws.post(load_event("replica.training.error"), token=rotated).status == 200
    assert aws.post(load_event("replica.training.error"), token=TOKENS[0]).status == 401
    assert dict(os.environ) == environment


def test_a_missing_secret_answers_503_and_says_why_in_the_logs(aws: AwsDriver, secret: Callable[[str], None],
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               captured_logs: Callable[[], str]) -> None:
    monkeypatch.setenv("TAVUS_CALLBACK_TOKENS_SECRET", "tavus/no-such-secret")
    reply = aws.post(load_event("guardrail"))
    assert reply.status == 503 and reply.headers["retry-after"]
    assert aws.objects() == []
    assert "cannot load the callback tokens from Secrets Manager" in captured_logs()


@pytest.mark.parametrize("value,why", [("short", "at least 16"), (f'{{"token": "{TOKENS[0]}"}}', "holds JSON")])
def test_a_secret_that_is_no_token_list_answers_503_and_says_why(
        aws: AwsDriver, secret: Callable[[str], None], captured_logs: Callable[[], str], value: str, why: str) -> None:
    secret(value)
    assert aws.post(load_event("guardrail")).status == 503
    assert why in captured_logs()


# -- tracing ---------------------------------------------------------------------------------------

def test_tracing_can_be_switched_on(aws_app: ModuleType, adapter_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "false")
    from tavus_callbacks.adapters.aws_lambda import lambda_handler

    traced = SimpleNamespace(handler=lambda_handler(aws_app.callbacks))  # instrumented as tracing is now set
    assert "Tracer" in traced.handler.__qualname__ or hasattr(traced.handler, "__wrapped__")
    driver = AwsDriver("aws-url", adapter_env, kind="url", module=traced)
    assert driver.post(load_event("video.error")).status == 200


def test_a_conversation_id_holding_an_escaped_token_reaches_no_log_field(
        aws: AwsDriver, captured_logs: Callable[[], str]) -> None:
    payload = load_event("conversation.system.replica_joined")
    payload["conversation_id"] = "PLACEHOLDER"
    escaped = "".join(f"\\u{ord(c):04x}" for c in TOKENS[0])
    reply = aws.post(json.dumps(payload).replace("PLACEHOLDER", escaped).encode())
    assert reply.status == 200 and reply.json()["valid"] is False
    records = lines(captured_logs())
    (answered,) = [r for r in records if str(r.get("message")).startswith("callback ") and "status" in r]
    assert "conversation_id" not in answered and answered.get("correlation_id") is None
    text = json.dumps(records)
    assert TOKENS[0] not in text and escaped not in text
    keys = [aws.key(k) for k in aws.objects()]
    assert len(keys) == 1 and keys[0].startswith("unrecognized/") and TOKENS[0] not in keys[0]


# -- what the template's alarms and lifecycle rule rely on -----------------------------------------------------

def object_created(key: str) -> dict[str, Any]:
    """The S3 EventBridge notification of a new object (the documented shape; see test_derive_feeds)."""
    return {"version": "0", "id": str(uuid.uuid4()), "detail-type": "Object Created", "source": "aws.s3",
            "account": "123456789012", "time": "2025-07-11T06:45:48Z", "region": "us-east-1",
            "resources": ["arn:aws:s3:::recordings"],
            "detail": {"version": "0", "bucket": {"name": "recordings"},
                       "object": {"key": key, "size": 1, "etag": "0", "sequencer": "0"},
                       "request-id": "0", "requester": "123456789012", "reason": "PutObject"}}


def template_alarm_dimensions() -> dict[tuple[str, str], dict[str, str]]:
    """(metric, reason or '') -> dimensions, of the template's alarms on the TavusCallbacks namespace."""
    import yaml

    text = (FUNCTIONS.parent / "template.yaml").read_text()
    loader = type("Loader", (yaml.SafeLoader,), {})
    loader.add_multi_constructor("!", lambda _loader, _suffix, _node: None)
    resources = yaml.load(text, Loader=loader)["Resources"]
    found = {}
    for resource in resources.values():
        props = resource.get("Properties") or {}
        if resource["Type"] == "AWS::CloudWatch::Alarm" and props["Namespace"] == "TavusCallbacks":
            dims = {d["Name"]: d["Value"] for d in props["Dimensions"]}
            found[(props["MetricName"], dims.get("reason", ""))] = dims
    return found


def test_the_metrics_the_alarms_watch_are_emitted_with_exactly_their_dimensions(
        aws: AwsDriver, moto_server: Any, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from support.servers import point_at

    alarms = template_alarm_dimensions()
    assert {("CopyFailures", ""), ("Rejected", "store_unavailable"), ("Rejected", "config_error")} <= set(alarms)
    capsys.readouterr()
    failed = load_event("conversation.application.recording_copy_failed")
    failed["conversation_id"] = f"c{uuid.uuid4().hex[:12]}"
    aws.post(failed)
    (stored,) = aws.objects("/events/")
    aws.module.handler(object_created(aws.key(stored)), LambdaContext())  # type: ignore[union-attr]
    point_at(moto_server, monkeypatch)
    monkeypatch.setenv("TAVUS_STORE_URL", f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/")
    reload_apps()
    assert aws.post(load_event("guardrail")).status == 503
    monkeypatch.setenv("TAVUS_CALLBACK_TOKENS_SECRET", "tavus/no-such-secret")
    assert aws.post(load_event("guardrail")).status == 503
    metrics = emf(capsys.readouterr().out)
    (copy_failure,) = metrics["CopyFailures"]
    assert copy_failure["dimensions"] == alarms[("CopyFailures", "")]
    rejected = {m["dimensions"]["reason"]: m["dimensions"] for m in metrics["Rejected"]}
    assert rejected["store_unavailable"] == alarms[("Rejected", "store_unavailable")]
    assert rejected["config_error"] == alarms[("Rejected", "config_error")]


def test_every_object_written_to_s3_carries_the_lifecycle_tag_and_a_recording_does_not(
        aws: AwsDriver, moto_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3
    from support.servers import create_bucket, point_at

    bucket = f"tagged-{uuid.uuid4().hex[:8]}"
    point_at(moto_server, monkeypatch)
    create_bucket(moto_server, bucket)
    monkeypatch.setenv("TAVUS_STORE_URL", f"s3://{bucket}/")
    monkeypatch.setenv("TAVUS_S3_OBJECT_TAGGING", "tavus-callbacks=callback")
    reload_apps()
    s3 = boto3.client("s3")
    conversation = f"c{uuid.uuid4().hex[:12]}"
    s3.put_object(Bucket=bucket, Key=f"{conversation}/recording.mp4", Body=b"\x00\x00\x00\x18ftypmp42")  # the vendor
    for name in ("conversation.system.replica_joined", "conversation.application.transcription_ready"):
        payload = load_event(name)
        payload["conversation_id"] = conversation
        assert aws.post(payload).status == 200
    assert aws.post(b"[not an object]").status == 400
    for key in [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"] if "/events/" in o["Key"]]:
        aws.module.handler(object_created(key), LambdaContext())  # type: ignore[union-attr]
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert any(k.startswith("quarantine/") for k in keys) and f"{conversation}/conversation.json" in keys
    assert f"{conversation}/transcript.json" in keys and any(k.startswith("index/") for k in keys)
    for key in keys:
        tags = {t["Key"]: t["Value"] for t in s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]}
        expected = {} if key.endswith(".mp4") else {"tavus-callbacks": "callback"}
        assert tags == expected, key
