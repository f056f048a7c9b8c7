"""No adapter raises on an HTTP request it cannot read: it answers a JSON 400 (or the core's own answer).

Edge cases of Lambda events as the runtime could hand them over, an invocation that is not an HTTP request
at all (refused loudly, a configuration error), and property tests feeding each adapter arbitrary requests
through its real request object: Lambda events around the Function URL and API Gateway shapes, Flask requests
through functions-framework, and `azure.functions.HttpRequest`.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import quote

import pytest
from conftest import load_event
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from support.serve_fixture import TOKENS

from .drivers import LambdaContext, lambda_event

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

ALLOWED = {200, 400, 401, 405, 413}
PAYLOAD = json.dumps(load_event("guardrail")).encode()


def function_url_event() -> dict[str, Any]:
    return lambda_event("url", "POST", "/", {"token": TOKENS[0]}, {"content-type": "application/json"}, PAYLOAD,
                        False)


def rest_api_event() -> dict[str, Any]:
    """An API Gateway REST API (payload 1.0) event as AWS builds it."""
    return {"resource": "/{proxy+}", "path": "/callbacks", "httpMethod": "POST",
            "headers": {"Content-Type": "application/json", "Host": "a1b2c3.execute-api.us-east-1.amazonaws.com"},
            "multiValueHeaders": {"Content-Type": ["application/json"]},
            "queryStringParameters": {"token": TOKENS[0]}, "multiValueQueryStringParameters": {"token": [TOKENS[0]]},
            "pathParameters": {"proxy": "callbacks"}, "stageVariables": None,
            "requestContext": {"resourcePath": "/{proxy+}", "httpMethod": "POST", "stage": "prod",
                               "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"},
            "body": PAYLOAD.decode(), "isBase64Encoded": False}


def invoke(aws_app: ModuleType, event: Any) -> dict[str, Any]:
    result: dict[str, Any] = aws_app.handler(event, LambdaContext())
    return result


def assert_json_answer(result: dict[str, Any], statuses: set[int]) -> Any:
    assert result["statusCode"] in statuses, result
    assert result["headers"]["Content-Type"] == "application/json"
    return json.loads(base64.b64decode(result["body"]) if result["isBase64Encoded"] else result["body"])


def edit(make: Callable[[], dict[str, Any]], change: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    event = make()
    change(event)
    return event


MALFORMED: dict[str, dict[str, Any]] = {
    "body-dict": edit(function_url_event, lambda e: e.update(body={"a": 1})),
    "body-int": edit(function_url_event, lambda e: e.update(body=7)),
    "body-list": edit(function_url_event, lambda e: e.update(body=["x"])),
    "header-value-int": edit(function_url_event, lambda e: e["headers"].update({"content-length": 12})),
    "header-value-null": edit(function_url_event, lambda e: e["headers"].update({"x-a": None})),
    "headers-list": edit(function_url_event, lambda e: e.update(headers=["content-type"])),
    "headers-string": edit(function_url_event, lambda e: e.update(headers="content-type: x")),
    "method-null": edit(function_url_event, lambda e: e["requestContext"]["http"].update(method=None)),
    "method-int": edit(function_url_event, lambda e: e["requestContext"]["http"].update(method=1)),
    "method-empty": edit(function_url_event, lambda e: e["requestContext"]["http"].update(method="")),
    "method-missing": edit(function_url_event, lambda e: e["requestContext"]["http"].pop("method")),
    "bad-base64": edit(function_url_event, lambda e: e.update(body="not base64!", isBase64Encoded=True)),
    "base64-flag-string-false": edit(function_url_event, lambda e: e.update(isBase64Encoded="false")),
    "base64-flag-int": edit(function_url_event, lambda e: e.update(isBase64Encoded=0)),
    "no-request-context": edit(function_url_event, lambda e: e.pop("requestContext")),
    "request-context-string": edit(function_url_event, lambda e: e.update(requestContext="ctx")),
    "http-list": edit(function_url_event, lambda e: e["requestContext"].update(http=["POST"])),
    "raw-query-int": edit(function_url_event, lambda e: e.update(rawQueryString=5)),
    "query-parameters-list": edit(function_url_event, lambda e: (e.pop("rawQueryString"),
                                                                 e.update(queryStringParameters=["token"]))),
    "query-value-int": edit(function_url_event, lambda e: (e.pop("rawQueryString"),
                                                           e.update(queryStringParameters={"token": 1}))),
    "raw-path-int": edit(function_url_event, lambda e: e.update(rawPath=3)),
    "version-2-body-only": {"version": "2.0", "body": PAYLOAD.decode()},
    "no-version-no-method": {"headers": {}, "body": "{}"},
    "v1-method-null": edit(rest_api_event, lambda e: e.update(httpMethod=None)),
    "v1-multi-value-header-string": edit(rest_api_event, lambda e: e.update(multiValueHeaders={"a": "b"})),
    "v1-multi-value-query-empty-list": edit(rest_api_event,
                                            lambda e: e.update(multiValueQueryStringParameters={"token": []})),
    "v1-path-object": edit(rest_api_event, lambda e: e.update(path={"p": "/"})),
    "payload-1.0-without-method": {"version": "1.0", "requestContext": {"httpMethod": "POST"}},
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_a_malformed_http_event_is_answered_400_in_json_never_raised(aws_app: ModuleType, adapter_env: Path,
                                                                     name: str) -> None:
    body = assert_json_answer(invoke(aws_app, copy.deepcopy(MALFORMED[name])), {400})
    assert body["error"].startswith("malformed HTTP request: ")
    assert not any(adapter_env.rglob("*.json")), "nothing is stored"


def alb_event() -> dict[str, Any]:
    """An Application Load Balancer event: payload 1.0 with the query string as received (percent-encoded)."""
    event = rest_api_event()
    event["requestContext"] = {"elb": {"targetGroupArn": "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/t/1"}}
    encoded = "".join(f"%{b:02X}" for b in TOKENS[0].encode())
    event["queryStringParameters"] = {"token": encoded}
    del event["multiValueQueryStringParameters"]
    return event


EDGE: dict[str, tuple[dict[str, Any], set[int]]] = {
    "rest-api-v1": (rest_api_event(), {200}),
    "rest-api-v1-base64": (edit(rest_api_event, lambda e: e.update(body=base64.b64encode(PAYLOAD).decode(),
                                                                    isBase64Encoded=True)), {200}),
    "rest-api-v1-multi-value-query-only": (edit(rest_api_event, lambda e: e.update(queryStringParameters=None)),
                                           {200}),
    "load-balancer": (alb_event(), {200}),
    "body-null": (edit(function_url_event, lambda e: e.update(body=None)), {400}),
    "headers-null": (edit(function_url_event, lambda e: e.update(headers=None)), {200}),
    "lone-surrogate-body": (edit(function_url_event, lambda e: e.update(body="\ud800{}")), {400}),
    "base64-empty-body": (edit(function_url_event, lambda e: e.update(body="", isBase64Encoded=True)), {400}),
    "unknown-extra-keys": (edit(function_url_event, lambda e: e.update(extra={"x": [1]}, cookies=None)), {200}),
    "no-token": (edit(function_url_event, lambda e: e.update(rawQueryString="")), {401}),
}


@pytest.mark.parametrize("name", sorted(EDGE))
def test_edge_case_http_events_get_the_cores_answer(aws_app: ModuleType, adapter_env: Path, name: str) -> None:
    event, statuses = EDGE[name]
    body = assert_json_answer(invoke(aws_app, copy.deepcopy(event)), statuses)
    if statuses == {400}:
        assert not body["error"].startswith("malformed HTTP request"), "read, then refused by the core"


@pytest.mark.parametrize("event", [
    {"Records": [{"eventSource": "aws:s3", "s3": {"bucket": {"name": "b"}, "object": {"key": "k"}}}]},
    # EventBridge, but neither the template's schedule (which runs reconcile: test_reconcile_adapters.py) nor the
    # bucket's Object Created notification (which runs derive: test_derive_feeds.py)
    {"version": "0", "id": "1", "detail-type": "Object Deleted", "source": "aws.s3",
     "detail": {"bucket": {"name": "b"}, "object": {"key": "c1/events/e.json"}}},
    {}, [], "a string", 42, None,
], ids=["s3-notification", "eventbridge-other", "empty-object", "list", "string", "number", "null"])
def test_an_invocation_that_is_not_an_http_request_is_refused_loudly(aws_app: ModuleType, adapter_env: Path,
                                                                    event: Any) -> None:
    from tavus_callbacks.platforms.aws import UnsupportedEvent

    with pytest.raises(UnsupportedEvent, match="answers HTTP requests"):
        invoke(aws_app, event)


@pytest.mark.parametrize("detail", [{}, {"object": {}}, {"object": None}, None],
                         ids=["no-object", "no-key", "null-object", "no-detail"])
def test_an_object_created_notification_without_a_key_is_refused_loudly(aws_app: ModuleType, adapter_env: Path,
                                                                        detail: Any) -> None:
    from tavus_callbacks.platforms.aws import UnsupportedEvent

    event = {"version": "0", "id": "1", "detail-type": "Object Created", "source": "aws.s3", "detail": detail}
    with pytest.raises(UnsupportedEvent, match=r"without detail\.object\.key"):
        invoke(aws_app, event)


# -- properties: arbitrary requests through each adapter's own request object ------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6)
# Where a field of a Function URL / HTTP API / REST API event may be replaced by anything, or be missing.
FIELDS = [("body",), ("isBase64Encoded",), ("headers",), ("rawPath",), ("rawQueryString",), ("version",),
          ("queryStringParameters",), ("requestContext",), ("requestContext", "http"),
          ("requestContext", "http", "method"), ("requestContext", "http", "path"), ("httpMethod",), ("path",),
          ("multiValueHeaders",), ("multiValueQueryStringParameters",), ("cookies",), ("headers", "content-type")]


@st.composite
def lambda_events(draw: st.DrawFn) -> Any:
    event = draw(st.sampled_from([function_url_event, rest_api_event,
                                  lambda: lambda_event("httpapi", "POST", "/x", {"token": TOKENS[0]}, {}, PAYLOAD,
                                                       True)]))()
    for path in draw(st.lists(st.sampled_from(FIELDS), max_size=4)):
        parent = event
        for name in path[:-1]:
            parent = parent.get(name) if isinstance(parent, dict) else None
        if isinstance(parent, dict):
            if draw(st.booleans()):
                parent.pop(path[-1], None)
            else:
                parent[path[-1]] = draw(JSON_VALUES | st.text(max_size=30))
    return event


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(event=lambda_events())
def test_property_the_lambda_adapter_answers_every_http_event_in_json(aws_app: ModuleType, adapter_env: Path,
                                                                     event: Any) -> None:
    from tavus_callbacks.platforms.aws import UnsupportedEvent, kind_of

    if kind_of(event) == "http":
        assert_json_answer(invoke(aws_app, event), ALLOWED)
    else:
        with pytest.raises(UnsupportedEvent):
            invoke(aws_app, event)


METHODS = st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"]) | st.from_regex(
    r"\A[A-Z]{1,10}\Z")
HEADER_NAMES = st.from_regex(r"\A[A-Za-z][A-Za-z0-9-]{0,15}\Z")
HEADER_VALUES = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
                        max_size=40)
QUERY = st.dictionaries(st.text(max_size=8), st.text(max_size=40) | st.just(TOKENS[0]), max_size=3)
BODIES = st.binary(max_size=200) | st.just(PAYLOAD) | JSON_VALUES.map(lambda v: json.dumps(v).encode())
# functions-framework's own route (`/<path:path>`) answers 404 before the function for a path with a control
# character in it, and redirects (308) a path with repeated slashes to the merged one: that is the framework's
# routing, not the adapter, so paths here have neither.
PATHS = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=20).map(
    lambda p: "/" + p).filter(lambda p: "//" not in p)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=METHODS, path=PATHS, query=QUERY, headers=st.dictionaries(HEADER_NAMES, HEADER_VALUES, max_size=4),
       body=BODIES)
def test_property_the_gcp_adapter_answers_every_request_in_json(gcp_app: Any, adapter_env: Path, method: str,
                                                               path: str, query: dict[str, str],
                                                               headers: dict[str, str], body: bytes) -> None:
    response = gcp_app.test_client().open(quote(path), method=method, query_string=query, headers=headers,
                                          data=body)
    assert response.status_code in ALLOWED
    assert response.headers["Content-Type"] == "application/json"
    if method != "HEAD":
        assert isinstance(json.loads(response.get_data()), dict)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=METHODS | st.text(max_size=10), url=st.text(max_size=40) | st.builds(
    lambda p, q: f"https://tavus-callbacks.azurewebsites.net/{p}?{q}", st.text(max_size=20), st.text(max_size=40)),
       query=QUERY, headers=st.dictionaries(st.text(max_size=10), st.text(max_size=40), max_size=4), body=BODIES)
@example(method="POST", url="https://[tavus-callbacks/", query={"token": TOKENS[0]}, headers={}, body=PAYLOAD)
def test_property_the_azure_adapter_answers_every_request_in_json(
        azure_function: Callable[..., Any], adapter_env: Path, method: str, url: str, query: dict[str, str],
        headers: dict[str, str], body: bytes) -> None:
    import azure.functions as func

    response = azure_function(func.HttpRequest(method=method, url=url, headers=headers, params=query, body=body))
    assert response.status_code in ALLOWED
    assert response.headers["Content-Type"] == "application/json"
    assert isinstance(json.loads(response.get_body()), dict)
