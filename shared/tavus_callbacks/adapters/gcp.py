"""Google Cloud Functions adapter: the HTTP function `tavus_callback` and the CloudEvent function `tavus_derive`
(the bucket's `finalized` events, through Eventarc) for functions-framework, with one JSON log line per request
or event in the shape Cloud Logging reads from stdout."""

from __future__ import annotations

import logging
import os
import sys
from typing import TYPE_CHECKING, Any

import functions_framework
import orjson

from tavus_callbacks.http import Request, Response
from tavus_callbacks.logs import JsonFormatter
from tavus_callbacks.pipeline import derive, handle

if TYPE_CHECKING:
    import flask
    from cloudevents.http import CloudEvent

    from tavus_callbacks.http import Outcome


Reply = tuple[bytes, int, dict[str, str]]  # what Flask turns into its response


class CloudLoggingFormatter(JsonFormatter):
    """The core's log records as the JSON lines Cloud Logging reads from stdout and stderr: `severity` (which
    it understands) for the level, the message and the record's fields (a failed derive's key and error)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = orjson.loads(super().format(record))
        del entry["level"]
        return orjson.dumps({"severity": record.levelname, **entry}).decode()


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """A StreamHandler writing to whatever sys.stderr is when a record comes (a host may replace it)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def send_core_logs_to_cloud_logging() -> logging.Handler:
    """Give the core's logger (WARNING and above, as configured) a handler writing Cloud Logging's JSON lines
    to stderr, instead of Python's plain last-resort lines; the handler, so that it can be taken off again."""
    handler = _Stderr()
    handler.setFormatter(CloudLoggingFormatter())
    logging.getLogger("tavus_callbacks").addHandler(handler)
    return handler


send_core_logs_to_cloud_logging()


def to_request(request: flask.Request) -> Request:
    """The core Request of a Flask request: raw body bytes, first value of each query parameter."""
    return Request(method=request.method, path=request.path, query=request.args.to_dict(flat=True),
                   headers=dict(request.headers.items()), body=request.get_data(cache=False))


def from_response(response: Response) -> Reply:
    return response.body, response.status, dict(response.headers)


def log_line(outcome: Outcome | None, status: int, trace_header: str | None) -> str:
    """A JSON log line Cloud Logging understands (severity, message, trace), never the token or the body."""
    entry: dict[str, Any] = {"severity": "INFO" if status < 400 else ("ERROR" if status >= 500 else "WARNING"),
                             "message": f"callback {outcome.result}" if outcome else "answered", "status": status,
                             **(outcome.log_fields() if outcome else {})}
    project = os.environ.get("GOOGLE_CLOUD_PROJECT") or os.environ.get("GCP_PROJECT")
    if trace_header and project:
        entry["logging.googleapis.com/trace"] = f"projects/{project}/traces/{trace_header.split('/', 1)[0]}"
    if outcome and outcome.conversation_id:
        entry["logging.googleapis.com/labels"] = {"conversation_id": outcome.conversation_id}
    return orjson.dumps(entry).decode("utf-8")


RECONCILE_PATH = "/reconcile"
AUDIENCE_VAR = "TAVUS_RECONCILE_AUDIENCE"  # the audience Cloud Scheduler puts in its OIDC token
SCHEDULER_ACCOUNT_VAR = "TAVUS_RECONCILE_SERVICE_ACCOUNT"  # the service account the token must be of
CERTS_URL_VAR = "TAVUS_RECONCILE_CERTS_URL"  # Google's signing certificates unless set (tests)
GOOGLE_ISSUERS = ("https://accounts.google.com", "accounts.google.com")


def scheduler_token_valid(authorization: str | None) -> bool:
    """Whether a request carries Cloud Scheduler's OIDC token (Google's signature, our audience and account),
    checked here with google-auth because the function is public (Tavus must reach it)."""
    from google.auth import exceptions
    from google.auth.transport import requests as transport
    from google.oauth2 import id_token

    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return False
    certs_url = os.environ.get(CERTS_URL_VAR, "").strip()
    options = {"certs_url": certs_url} if certs_url else {}
    try:
        claims = id_token.verify_token(token.strip(), transport.Request(), audience=os.environ[AUDIENCE_VAR],
                                       clock_skew_in_seconds=10, **options)
    except (ValueError, exceptions.GoogleAuthError):
        return False
    account = os.environ.get(SCHEDULER_ACCOUNT_VAR, "").strip()
    return (claims.get("iss") in GOOGLE_ISSUERS and bool(account) and claims.get("email") == account
            and claims.get("email_verified") is True)


def reconcile(request: flask.Request) -> Reply:
    """The scheduled sweep, for Cloud Scheduler's authenticated POST to /reconcile; its summary as JSON."""
    from tavus_callbacks.reconcile.scheduled import run_scheduled

    headers = {"Content-Type": "application/json"}
    if request.method != "POST" or not scheduler_token_valid(request.headers.get("Authorization")):
        _log({"severity": "WARNING", "message": "reconcile refused: no valid scheduler token"})
        return b'{"error": "unauthorized"}', 401, headers
    summary = run_scheduled()
    if summary is None:
        return b'{"status": "off", "reason": "TAVUS_API_KEY is not set"}', 200, headers
    failed = bool(summary.failures)
    _log({"severity": "ERROR" if failed else "INFO", "message": summary.line(), **summary.as_dict()})
    return orjson.dumps({"status": "failed" if failed else "ok", **summary.as_dict()}), 503 if failed else 200, headers


def _log(entry: dict[str, Any]) -> None:
    print(orjson.dumps(entry).decode(), flush=True)


@functions_framework.http
def tavus_callback(request: flask.Request) -> Reply:
    """Answer one Tavus callback per the core's contract (or, from Cloud Scheduler, run the reconcile sweep)."""
    if request.path.rstrip("/") == RECONCILE_PATH and os.environ.get(AUDIENCE_VAR, "").strip():
        return reconcile(request)
    response = handle(to_request(request))
    print(log_line(response.outcome, response.status, request.headers.get("X-Cloud-Trace-Context")), flush=True)
    return from_response(response)


FINALIZED = "google.cloud.storage.object.v1.finalized"


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


@functions_framework.cloud_event
def tavus_derive(event: CloudEvent) -> None:
    """Derive from the event object a `finalized` event names; any other object or event is acknowledged at
    once. When derive cannot finish, the core's ERROR line names the key and the cause, and the error goes on:
    Eventarc (deployed with --retry) delivers the event again, then to the dead-letter topic."""
    key = object_name(event)
    if key is None:
        _log({"severity": "WARNING", "message": "not a Cloud Storage finalized event, acknowledged",
              "type": event["type"], "ce_id": event["id"]})
        return
    derived = derive(key)
    if derived.skipped:
        return  # every object of the bucket comes here (recordings, conversation.json): nothing to say
    entry: dict[str, Any] = {"severity": "INFO", "message": "event derived", "key": key,
                             "event_id": derived.event_id, "event_type": derived.event_type,
                             "conversation_id": derived.conversation_id}
    if derived.copy_failed:
        entry["copy_failed"] = True
    if derived.conversation_id:
        entry["logging.googleapis.com/labels"] = {"conversation_id": derived.conversation_id}
    _log(entry)
