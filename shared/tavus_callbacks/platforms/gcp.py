"""Google Cloud services for the Cloud Functions adapter: the JSON lines Cloud Logging reads from stdout and
stderr, and the check of Cloud Scheduler's OIDC token (the function is public: Tavus must reach it)."""

from __future__ import annotations

import logging
import os
import sys
from typing import TYPE_CHECKING, Any

import orjson

from tavus_callbacks.http import LogLine
from tavus_callbacks.logs import JsonFormatter
from tavus_callbacks.settings import SchedulerVariables

if TYPE_CHECKING:
    from tavus_callbacks.pipeline import Derived

GOOGLE_ISSUERS = ("https://accounts.google.com", "accounts.google.com")
TRACE = "logging.googleapis.com/trace"
LABELS = "logging.googleapis.com/labels"


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


def log_line(line: LogLine, trace_header: str | None = None) -> str:
    """A LogLine as the JSON Cloud Logging understands: severity, message, the fields, the request's trace and
    the conversation as a label."""
    entry: dict[str, Any] = {"severity": line.severity, "message": line.message, **line.fields}
    project = os.environ.get("GOOGLE_CLOUD_PROJECT") or os.environ.get("GCP_PROJECT")
    if trace_header and project:
        entry[TRACE] = f"projects/{project}/traces/{trace_header.split('/', 1)[0]}"
    if line.fields.get("conversation_id"):
        entry[LABELS] = {"conversation_id": line.fields["conversation_id"]}
    return orjson.dumps(entry).decode("utf-8")


def write(line: LogLine, trace_header: str | None = None) -> None:
    """Print a LogLine to stdout, where Cloud Logging reads it."""
    print(log_line(line, trace_header), flush=True)


def write_derived(derived: Derived) -> None:
    """The derive step's line; none for an object that is not an event (every object of the bucket comes)."""
    if not derived.skipped:
        write(LogLine("event derived", logging.INFO, {
            "key": derived.key, "event_id": derived.event_id, "event_type": derived.event_type,
            "conversation_id": derived.conversation_id, **({"copy_failed": True} if derived.copy_failed else {})}))


def scheduler_token_valid(authorization: str | None) -> bool:
    """Whether a request carries Cloud Scheduler's OIDC token (Google's signature, our audience and account),
    checked with google-auth."""
    from google.auth import exceptions
    from google.auth.transport import requests as transport
    from google.oauth2 import id_token

    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return False
    scheduler = SchedulerVariables.read()
    if scheduler.reconcile_audience is None:  # no audience to check: nobody is the scheduler
        return False
    options = {"certs_url": scheduler.reconcile_certs_url} if scheduler.reconcile_certs_url else {}
    try:
        claims = id_token.verify_token(token.strip(), transport.Request(), audience=scheduler.reconcile_audience,
                                       clock_skew_in_seconds=10, **options)
    except (ValueError, exceptions.GoogleAuthError):
        return False
    account = scheduler.reconcile_service_account
    return (claims.get("iss") in GOOGLE_ISSUERS and bool(account) and claims.get("email") == account
            and claims.get("email_verified") is True)


def reconcile_enabled() -> bool:
    """Whether Cloud Scheduler is set up to call the sweep (its token's audience is configured)."""
    return SchedulerVariables.read().reconcile_audience is not None
