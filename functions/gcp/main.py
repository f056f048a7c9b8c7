"""Google Cloud Functions adapter: the HTTP function `tavus_callback` for functions-framework.

Translation only: the Flask request becomes the core Request, the core Response a (body, status, headers)
tuple; one structured log line per request in the shape Cloud Logging reads from stdout.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import functions_framework
import orjson
from tavus_callbacks.http import Request, Response
from tavus_callbacks.pipeline import handle

if TYPE_CHECKING:
    import flask
    from tavus_callbacks.http import Outcome


def to_request(request: flask.Request) -> Request:
    """The core Request of a Flask request: raw body bytes, first value of each query parameter."""
    return Request(
        method=request.method,
        path=request.path,
        query=request.args.to_dict(flat=True),
        headers=dict(request.headers.items()),
        body=request.get_data(cache=False),
    )


def from_response(response: Response) -> tuple[bytes, int, dict[str, str]]:
    """The (body, status, headers) tuple Flask turns into its response."""
    return response.body, response.status, dict(response.headers)


def log_line(outcome: Outcome | None, status: int, trace_header: str | None) -> str:
    """A JSON log line Cloud Logging understands (severity, message, trace), never the token or the body."""
    fields: dict[str, Any] = {k: v for k, v in asdict(outcome).items() if v is not None} if outcome else {}
    entry: dict[str, Any] = {
        "severity": "INFO" if status < 400 else ("ERROR" if status >= 500 else "WARNING"),
        "message": f"callback {outcome.result}" if outcome else "answered",
        "status": status,
        **fields,
    }
    project = os.environ.get("GOOGLE_CLOUD_PROJECT") or os.environ.get("GCP_PROJECT")
    if trace_header and project:
        entry["logging.googleapis.com/trace"] = f"projects/{project}/traces/{trace_header.split('/', 1)[0]}"
    if outcome and outcome.conversation_id:
        entry["logging.googleapis.com/labels"] = {"conversation_id": outcome.conversation_id}
    return orjson.dumps(entry).decode("utf-8")


@functions_framework.http
def tavus_callback(request: flask.Request) -> tuple[bytes, int, dict[str, str]]:
    """Answer one Tavus callback per the core's contract."""
    response = handle(to_request(request))
    print(log_line(response.outcome, response.status, request.headers.get("X-Cloud-Trace-Context")), flush=True)
    return from_response(response)
