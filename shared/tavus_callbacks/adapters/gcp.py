"""Google Cloud Functions adapter: the HTTP function `tavus_callback` (and Cloud Scheduler's /reconcile) and the
CloudEvent function `tavus_derive` (the bucket's `finalized` events, through Eventarc) for functions-framework;
logs and the scheduler's identity check are platforms.gcp's."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import functions_framework
import orjson

from tavus_callbacks.http import LogLine, Request, Response, answered_line
from tavus_callbacks.platforms import gcp

if TYPE_CHECKING:
    import flask
    from cloudevents.http import CloudEvent

    from tavus_callbacks.app import App

Reply = tuple[bytes, int, dict[str, str]]  # what Flask turns into its response
RECONCILE_PATH = "/reconcile"
FINALIZED = "google.cloud.storage.object.v1.finalized"
JSON = {"Content-Type": "application/json"}

def to_request(request: flask.Request) -> Request:
    """The core Request of a Flask request: raw body bytes, first value of each query parameter."""
    return Request(method=request.method, path=request.path, query=request.args.to_dict(flat=True),
                   headers=dict(request.headers.items()), body=request.get_data(cache=False))


def from_response(response: Response) -> Reply:
    return response.body, response.status, dict(response.headers)


def functions(app: App) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """The HTTP function `tavus_callback` and the CloudEvent function `tavus_derive` of `app`, registered with
    functions-framework; the core's log lines go to Cloud Logging."""
    gcp.send_core_logs_to_cloud_logging()

    @functions_framework.http
    def tavus_callback(request: flask.Request) -> Reply:
        """Answer one Tavus callback per the core's contract (or, from Cloud Scheduler, run the sweep)."""
        if request.path.rstrip("/") == RECONCILE_PATH and gcp.reconcile_enabled():
            return reconcile(app, request)
        response = app.handle(to_request(request))
        gcp.write(answered_line(response.outcome, response.status), request.headers.get("X-Cloud-Trace-Context"))
        return from_response(response)

    @functions_framework.cloud_event
    def tavus_derive(event: CloudEvent) -> None:
        """Derive from the event object a `finalized` event names; any other is acknowledged at once. When derive
        cannot finish, the core's ERROR line names the key and the cause, and the error goes on: Eventarc
        (deployed with --retry) delivers the event again, then to the dead-letter topic."""
        key = object_name(event)
        if key is None:
            gcp.write(LogLine("not a Cloud Storage finalized event, acknowledged", logging.WARNING,
                              {"type": event["type"], "ce_id": event["id"]}))
        else:
            gcp.write_derived(app.derive(key))

    return tavus_callback, tavus_derive


def reconcile(app: App, request: flask.Request) -> Reply:
    """The scheduled sweep, for Cloud Scheduler's authenticated POST to /reconcile; its summary as JSON."""
    if request.method != "POST" or not gcp.scheduler_token_valid(request.headers.get("Authorization")):
        gcp.write(LogLine("reconcile refused: no valid scheduler token", logging.WARNING, {}))
        return b'{"error": "unauthorized"}', 401, JSON
    summary = app.reconcile()
    if summary is None:
        return b'{"status": "off", "reason": "TAVUS_API_KEY is not set"}', 200, JSON
    failed = bool(summary.failures)
    gcp.write(LogLine(summary.line(), logging.ERROR if failed else logging.INFO, summary.as_dict()))
    return orjson.dumps({"status": "failed" if failed else "ok", **summary.as_dict()}), 503 if failed else 200, JSON


def object_name(event: CloudEvent) -> str | None:
    """The object name of a Cloud Storage `finalized` CloudEvent (its data is the object's metadata), or None
    for any other event."""
    if event["type"] != FINALIZED:
        return None
    data = event.data
    if isinstance(data, bytes | str):  # a binary-mode event without a JSON content type
        try:
            data = orjson.loads(data)
        except orjson.JSONDecodeError:
            return None
    name = data.get("name") if isinstance(data, dict) else None
    return name if isinstance(name, str) and name else None
