"""AWS Lambda adapter: Function URL and API Gateway (payload 2.0 and 1.0) events in, the core's answer out; the
bucket's EventBridge notifications run derive, the schedule the sweep. Secrets, logs and metrics: platforms.aws."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote_plus

from tavus_callbacks.errors import MalformedRequest
from tavus_callbacks.http import Request, Response, malformed_request
from tavus_callbacks.platforms import aws

if TYPE_CHECKING:
    from tavus_callbacks.app import App

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
    return dict(reversed(parse_qsl(raw, keep_blank_values=True)))  # a name's first value


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


def lambda_handler(app: App) -> Callable[[Any, Any], Any]:
    """The Lambda handler of `app`: an HTTP request is answered (a malformed one 400), the template's schedule runs
    the reconcile sweep, a bucket notification the derive step (when it cannot finish, the error goes on: Lambda
    retries, then the dead-letter queue keeps it); anything else is refused."""

    def handler(event: Any, context: Any) -> dict[str, Any]:
        aws.logger.set_correlation_id(None)
        kind = aws.kind_of(event)
        if kind == "http":
            try:
                response = app.handle(to_request(event))
            except MalformedRequest as exc:
                aws.logger.warning("malformed HTTP event, answering 400: %s", exc)
                response = malformed_request(str(exc))
            aws.record(response.outcome, response.status)
            return from_response(response)
        if kind == "schedule":
            return aws.record_sweep(app.reconcile(seconds_left=aws.seconds_left(context)))
        if kind == "object_created":
            return aws.record_derived(app.derive(aws.object_key(event)))
        raise aws.UnsupportedEvent(
            "this handler answers HTTP requests: Lambda Function URL, API Gateway HTTP API or REST API events, "
            "the template's reconcile schedule and the bucket's EventBridge notifications; invoke it through the "
            "template's Function URL, not directly or from another event source")

    return aws.instrument(handler)
