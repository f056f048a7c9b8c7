"""Azure Functions adapter (Python v2 model): one anonymous HTTP function on every path, logging one line per
request (platforms.azure writes it for Application Insights); the Event Grid function deriving from each new event
blob; the reconcile timer."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlsplit

import azure.functions as func

from tavus_callbacks.errors import MalformedRequest
from tavus_callbacks.http import Request, Response, answered_line, malformed_request
from tavus_callbacks.platforms.azure import log, write, write_derived, write_sweep

if TYPE_CHECKING:
    from tavus_callbacks.app import App

def to_request(req: func.HttpRequest) -> Request:
    """The core Request of an HttpRequest: path and query from the URL, the raw body; MalformedRequest when the
    URL cannot be parsed."""
    try:
        parts = urlsplit(req.url)
    except ValueError:
        raise MalformedRequest("the request URL cannot be parsed") from None
    query = dict(req.params)
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        query.setdefault(name, value)
    return Request(method=req.method, path=parts.path or "/", query=query, headers=dict(req.headers.items()),
                   body=req.get_body() or b"")


def from_response(response: Response) -> func.HttpResponse:
    return func.HttpResponse(body=response.body, status_code=response.status, headers=dict(response.headers))


BLOB_CREATED = "Microsoft.Storage.BlobCreated"
BLOBS = "/blobs/"  # a BlobCreated subject: /blobServices/default/containers/<container>/blobs/<blob name>


def blob_name(event: func.EventGridEvent) -> str | None:
    """The blob name (the key inside the container) of a BlobCreated event, or None for any other event."""
    if event.event_type != BLOB_CREATED or BLOBS not in (event.subject or ""):
        return None
    return event.subject.split(BLOBS, 1)[1] or None


def function_app(app: App) -> func.FunctionApp:
    """The FunctionApp of `app`: the HTTP function on every path (no `methods`: the host routes every method here,
    so the core answers 405 itself), the Event Grid function deriving, and the reconcile timer (every 15 minutes,
    NCRONTAB with seconds; off while TAVUS_API_KEY is not set)."""
    functions = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @functions.function_name(name="tavus_callback")
    @functions.route(route="{*path}")
    def tavus_callback(req: func.HttpRequest) -> func.HttpResponse:
        """Answer one Tavus callback per the core's contract."""
        try:
            response = app.handle(to_request(req))
        except MalformedRequest as exc:
            response = malformed_request(str(exc))
        write(answered_line(response.outcome, response.status))
        return from_response(response)

    @functions.function_name(name="tavus_derive")
    @functions.event_grid_trigger(arg_name="event")
    def tavus_derive(event: func.EventGridEvent) -> None:
        """Derive from the event blob a BlobCreated event names; any other event is acknowledged at once. When
        derive cannot finish, the core's error line names the key and the cause, and the error goes on: Event
        Grid retries the delivery, then writes it to the dead-letter container."""
        key = blob_name(event)
        if key is None:
            log.warning("not a BlobCreated event of a blob, acknowledged: %s %s", event.event_type, event.subject,
                        extra={"event_type": event.event_type})
        else:
            write_derived(app.derive(key))

    @functions.function_name(name="tavus_reconcile")
    @functions.timer_trigger(schedule="0 */15 * * * *", arg_name="timer", run_on_startup=False, use_monitor=True)
    def tavus_reconcile(timer: func.TimerRequest) -> None:
        """The reconcile sweep: recover from the vendor's API the callbacks the store missed."""
        write_sweep(app.reconcile())

    return functions
