"""AWS Lambda adapter: Function URL and API Gateway (payload 2.0 and 1.0) events in, the core's answer out;
the bucket's EventBridge notifications of new event objects in, the derive step run; the schedule's sweep.
Secrets, logs and metrics are platforms.aws's."""

from __future__ import annotations

import base64
import functools
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

from aws_lambda_powertools.utilities.data_classes import S3EventBridgeNotificationEvent

from tavus_callbacks.errors import MalformedRequest
from tavus_callbacks.http import Request, Response, malformed_request
from tavus_callbacks.pipeline import default_pipeline, derive, handle, unavailable
from tavus_callbacks.platforms import aws
from tavus_callbacks.platforms.aws import logger

SAFETY_SECONDS = 3.0  # of the invocation's time, kept for writing the cursor and the metrics

# Any of these marks an HTTP request (Function URL, HTTP API 2.0 and 1.0, REST API), well formed or not.
HTTP_EVENT_KEYS = frozenset({"requestContext", "rawPath", "rawQueryString", "routeKey", "httpMethod", "headers",
                             "multiValueHeaders", "queryStringParameters", "multiValueQueryStringParameters",
                             "body", "isBase64Encoded", "cookies"})


class UnsupportedEvent(ValueError):
    """An invocation that is not an HTTP request, the schedule nor a bucket notification: a configuration error,
    so it fails loudly."""


def is_http_event(event: Any) -> bool:
    """Whether an invocation is an HTTP request, to be answered (400 when malformed) rather than refused."""
    return isinstance(event, dict) and not HTTP_EVENT_KEYS.isdisjoint(event)


def to_request(event: dict[str, Any]) -> Request:
    """The core Request of a payload 2.0 or 1.0 event: base64 undone, cookies ignored; a field missing or of the
    wrong type raises MalformedRequest (answered 400)."""
    context = event.get("requestContext")
    http = context.get("http") if isinstance(context, dict) else None
    if event.get("version") == "2.0" or http is not None:
        if not isinstance(http, dict):
            raise MalformedRequest("payload format 2.0 without requestContext.http")
        method = http.get("method")
        path = event.get("rawPath") or http.get("path") or "/"
        raw_query = event.get("rawQueryString")
        query = _parse_query(raw_query) if raw_query is not None else _object(event, "queryStringParameters")
        headers = _object(event, "headers")
    elif "httpMethod" in event or event.get("version") == "1.0":
        method = event.get("httpMethod")
        path = event.get("path") or "/"
        query = {**_object(event, "queryStringParameters"), **_object(event, "multiValueQueryStringParameters", True)}
        if isinstance(context, dict) and "elb" in context:  # a load balancer passes the query undecoded
            query = {unquote_plus(k): unquote_plus(v) for k, v in query.items()}
        headers = {**_object(event, "multiValueHeaders", True), **_object(event, "headers")}
    else:
        raise MalformedRequest("neither payload format 2.0 (requestContext.http) nor 1.0 (httpMethod)")
    if not isinstance(method, str) or not method:
        raise MalformedRequest("the HTTP method is missing or not a string")
    if not isinstance(path, str):
        raise MalformedRequest("the path is not a string")
    return Request(method=method, path=path, query=query, headers=headers, body=_body(event))


def _parse_query(raw: Any) -> dict[str, str]:
    if not isinstance(raw, str):
        raise MalformedRequest("rawQueryString is not a string")
    query: dict[str, str] = {}
    for name, value in parse_qsl(raw, keep_blank_values=True):
        query.setdefault(name, value)
    return query


def _object(event: dict[str, Any], field: str, multi: bool = False) -> dict[str, str]:
    """An object of strings (of lists of strings when `multi`, whose first values it gives); null is empty."""
    value = event.get(field)
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and (isinstance(v, list) and v and all(isinstance(x, str) for x in v) if multi
                                    else isinstance(v, str)) for k, v in value.items()):
        raise MalformedRequest(f"{field} is not an object of {'lists of ' if multi else ''}strings")
    return {k: v[0] for k, v in value.items()} if multi else value


def _body(event: dict[str, Any]) -> bytes:
    body, encoded = event.get("body"), event.get("isBase64Encoded")
    if body is None:
        body = ""
    if not isinstance(body, str):
        raise MalformedRequest("body is not a string")
    if encoded is True:
        try:
            return base64.b64decode(body, validate=True)
        except ValueError:  # binascii.Error, or text that is not ASCII
            raise MalformedRequest("isBase64Encoded is true but the body is not base64") from None
    if encoded is not None and encoded is not False:
        raise MalformedRequest("isBase64Encoded is neither true nor false")
    return body.encode("utf-8", "surrogatepass")


def from_response(response: Response) -> dict[str, Any]:
    """The Lambda proxy result of a core Response; a body that is not UTF-8 goes base64."""
    try:
        body, encoded = response.body.decode("utf-8"), False
    except UnicodeDecodeError:
        body, encoded = base64.b64encode(response.body).decode("ascii"), True
    return {"statusCode": response.status, "headers": dict(response.headers), "body": body, "isBase64Encoded": encoded}


def answer(request: Request) -> Response:
    try:
        tokens = aws.secret_tokens()
    except Exception as exc:  # a configuration problem (missing secret, no permission, bad token): 503, logged
        logger.error("cannot load the callback tokens from Secrets Manager: %s: %s", type(exc).__name__, exc)
        return unavailable("the endpoint is not configured; see its logs", "config_error")
    return handle(request, tokens)


def is_object_created(event: Any) -> bool:
    """Whether an invocation is an S3 `Object Created` notification delivered by EventBridge."""
    return isinstance(event, dict) and event.get("source") == "aws.s3" and event.get("detail-type") == "Object Created"


def derive_object(event: dict[str, Any]) -> dict[str, Any]:
    """Run the derive step for the object a notification names. When it cannot finish, the core's log line
    (JSON here, like every core line) names the key and the cause, and the error goes on: Lambda retries the
    invocation, then the dead-letter queue keeps it."""
    try:
        key = S3EventBridgeNotificationEvent(event).detail.object.key
    except (KeyError, TypeError):
        raise UnsupportedEvent("an S3 Object Created notification without detail.object.key") from None
    derived = derive(key)
    aws.record_derived(derived)
    return {"status": "skipped" if derived.skipped else "derived", "key": key,
            **({} if derived.skipped else {"event_id": derived.event_id})}


def reconcile(context: Any) -> dict[str, Any]:
    """The scheduled sweep: the API key from TAVUS_API_KEY_SECRET, bounded by the invocation's remaining time."""
    from tavus_callbacks.reconcile.scheduled import run_scheduled

    summary = run_scheduled(functools.partial(default_pipeline, aws.secret_tokens()),
                            api_key=aws.secret(aws.API_KEY_SECRET_VAR),
                            seconds_left=context.get_remaining_time_in_millis() / 1000 - SAFETY_SECONDS)
    aws.record_sweep(summary)
    if summary is None:
        return {"status": "off"}
    return {"status": "failed" if summary.failures else "ok", **summary.as_dict()}


def _handler(event: Any, context: Any) -> dict[str, Any]:
    """An HTTP request is answered (a malformed one 400), the template's schedule runs the reconcile sweep, a
    bucket notification the derive step; anything else is refused."""
    logger.set_correlation_id(None)
    if not is_http_event(event):
        if isinstance(event, dict) and event.get("source") == "aws.events" and \
                event.get("detail-type") == "Scheduled Event":
            return reconcile(context)
        if is_object_created(event):
            return derive_object(event)
        raise UnsupportedEvent(
            "this handler answers HTTP requests: Lambda Function URL, API Gateway HTTP API or REST API events, "
            "the template's reconcile schedule and the bucket's EventBridge notifications; invoke it through the "
            "template's Function URL, not directly or from another event source"
        )
    try:
        response = answer(to_request(event))
    except MalformedRequest as exc:
        logger.warning("malformed HTTP event, answering 400: %s", exc)
        response = malformed_request(str(exc))
    aws.record(response.outcome, response.status)
    return from_response(response)


handler = aws.instrument(_handler)
