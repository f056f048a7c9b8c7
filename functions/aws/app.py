"""AWS Lambda adapter: Function URL and API Gateway HTTP API (payload 2.0) events in, the core's answer out.

Translation only, plus the platform's hooks: Powertools Logger (JSON, correlation id = conversation id),
Metrics (EMF, namespace TavusCallbacks) and, when POWERTOOLS_TRACE_DISABLED is false, Tracer.
"""

from __future__ import annotations

import base64
import os
import warnings
from dataclasses import asdict
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from tavus_callbacks.errors import ConfigError
from tavus_callbacks.http import Request, Response
from tavus_callbacks.pipeline import handle, reset_default_pipeline, unavailable
from tavus_callbacks.settings import parse_tokens

if TYPE_CHECKING:
    from collections.abc import Callable

    from tavus_callbacks.http import Outcome

SERVICE = "tavus-callbacks"
NAMESPACE = "TavusCallbacks"
TOKENS_SECRET_VAR = "TAVUS_CALLBACK_TOKENS_SECRET"
TOKENS_VAR = "TAVUS_CALLBACK_TOKENS"
DEFAULT_SECRET_MAX_AGE = 300

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", SERVICE))
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", NAMESPACE),
                  service=os.environ.get("POWERTOOLS_SERVICE_NAME", SERVICE))
# The core logs through the standard library; give its lines the same JSON shape and keys.
copy_config_to_registered_loggers(source_logger=logger, include={"tavus_callbacks"})
# A health check stores nothing and so has no metric to publish: that is expected, not worth a warning.
warnings.filterwarnings("ignore", message="No application metrics to publish")


class UnsupportedEvent(ValueError):
    """The Lambda was invoked with an event that is not an HTTP request of payload format 2.0."""


def to_request(event: dict[str, Any]) -> Request:
    """The core Request of a Function URL or HTTP API v2 event (base64 body undone, cookies ignored)."""
    http = (event.get("requestContext") or {}).get("http")
    if event.get("version") != "2.0" or not isinstance(http, dict):
        raise UnsupportedEvent(
            "this handler answers Lambda Function URL and API Gateway HTTP API events of payload format 2.0; "
            "invoke it through the template's Function URL, or set PayloadFormatVersion: '2.0' on the integration"
        )
    raw_query = event.get("rawQueryString")
    if raw_query is not None:
        query: dict[str, str] = {}
        for name, value in parse_qsl(raw_query, keep_blank_values=True):
            query.setdefault(name, value)
    else:
        query = dict(event.get("queryStringParameters") or {})
    body = event.get("body") or ""
    data = base64.b64decode(body) if event.get("isBase64Encoded") else body.encode("utf-8", "surrogatepass")
    return Request(
        method=http.get("method", "GET"),
        path=event.get("rawPath") or http.get("path") or "/",
        query=query,
        headers=dict(event.get("headers") or {}),
        body=data,
    )


def from_response(response: Response) -> dict[str, Any]:
    """The Lambda proxy result of a core Response; a body that is not UTF-8 goes base64."""
    try:
        return {"statusCode": response.status, "headers": dict(response.headers),
                "body": response.body.decode("utf-8"), "isBase64Encoded": False}
    except UnicodeDecodeError:
        return {"statusCode": response.status, "headers": dict(response.headers),
                "body": base64.b64encode(response.body).decode("ascii"), "isBase64Encoded": True}


_secret_tokens: str | None = None


def load_secret_tokens() -> None:
    """Put the tokens of TAVUS_CALLBACK_TOKENS_SECRET into TAVUS_CALLBACK_TOKENS, where the core reads them.

    Powertools caches the secret for POWERTOOLS_PARAMETERS_MAX_AGE seconds (300 by default); when a
    later fetch shows a rotated value the pipeline is rebuilt with it.
    """
    global _secret_tokens
    secret_id = os.environ.get(TOKENS_SECRET_VAR, "").strip()
    if not secret_id:
        return
    from aws_lambda_powertools.utilities.parameters import get_secret

    max_age = int(os.environ.get("POWERTOOLS_PARAMETERS_MAX_AGE", DEFAULT_SECRET_MAX_AGE))
    value = get_secret(secret_id, max_age=max_age)
    text = value.decode("utf-8") if isinstance(value, bytes) else str(value)
    if text != _secret_tokens:
        source = f"the secret {TOKENS_SECRET_VAR}={secret_id}"
        if text.lstrip().startswith(("{", "[")):
            raise ConfigError(f"{source} holds JSON: store the token(s) as plain text, comma-separated")
        tokens = parse_tokens(text, source=source)
        os.environ[TOKENS_VAR] = ",".join(tokens)
        reset_default_pipeline()
        _secret_tokens = text


def answer(request: Request) -> Response:
    """The core's answer, after the tokens are loaded from Secrets Manager when one is configured."""
    try:
        load_secret_tokens()
    except Exception as exc:  # a configuration problem (missing secret, no permission, bad token): 503, logged
        logger.error("cannot load the callback tokens from Secrets Manager: %s: %s", type(exc).__name__, exc)
        return unavailable("the endpoint is not configured; see its logs", "config_error")
    return handle(request)


def record(outcome: Outcome | None, status: int) -> None:
    """One log line and the EMF metrics for a request's outcome."""
    if outcome is None:
        logger.info("request answered", extra={"status": status})
        return
    logger.set_correlation_id(outcome.conversation_id)
    fields = {k: v for k, v in asdict(outcome).items() if v is not None}
    logger.info("request answered", extra={"status": status, **fields})
    if outcome.result == "stored":
        metrics.add_metric(name="EventsStored", unit=MetricUnit.Count, value=1)
        if outcome.event_type:
            metrics.add_metadata(key="event_type", value=outcome.event_type)
    elif outcome.result == "duplicate":
        metrics.add_metric(name="Duplicates", unit=MetricUnit.Count, value=1)
    elif outcome.result != "health":
        with single_metric(name="Rejected", unit=MetricUnit.Count, value=1, namespace=metrics.namespace) as m:
            m.add_dimension(name="service", value=metrics.service or SERVICE)
            m.add_dimension(name="reason", value=outcome.result)
    if outcome.copy_failed:
        metrics.add_metric(name="CopyFailures", unit=MetricUnit.Count, value=1)


API_KEY_SECRET_VAR = "TAVUS_API_KEY_SECRET"
SAFETY_SECONDS = 3.0  # of the invocation's time, kept for writing the cursor and the metrics


def is_scheduled(event: dict[str, Any]) -> bool:
    """Whether the invocation is the EventBridge schedule of template.yaml (reconcile mode), not an HTTP request."""
    return event.get("source") == "aws.events" and event.get("detail-type") == "Scheduled Event"


def reconcile(context: Any) -> dict[str, Any]:
    """The scheduled sweep: the API key from TAVUS_API_KEY_SECRET, bounded by the invocation's remaining time."""
    from tavus_callbacks.reconcile.command import API_KEY_VAR, run_scheduled

    load_secret_tokens()
    secret_id = os.environ.get(API_KEY_SECRET_VAR, "").strip()
    if secret_id:
        from aws_lambda_powertools.utilities.parameters import get_secret

        value = get_secret(secret_id, max_age=int(os.environ.get("POWERTOOLS_PARAMETERS_MAX_AGE",
                                                                  DEFAULT_SECRET_MAX_AGE)))
        os.environ[API_KEY_VAR] = (value.decode("utf-8") if isinstance(value, bytes) else str(value)).strip()
    summary = run_scheduled(context.get_remaining_time_in_millis() / 1000 - SAFETY_SECONDS)
    if summary is None:
        logger.info("reconcile is off: no API key (TAVUS_API_KEY_SECRET)")
        return {"status": "off"}
    metrics.add_metric(name="EventsRecovered", unit=MetricUnit.Count, value=summary.recovered)
    metrics.add_metric(name="ReconcileFailures", unit=MetricUnit.Count, value=len(summary.failures))
    (logger.error if summary.failures else logger.info)(summary.line(), extra=summary.as_dict())
    return {"status": "failed" if summary.failures else "ok", **summary.as_dict()}


def _handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    logger.set_correlation_id(None)
    if is_scheduled(event):
        return reconcile(context)
    response = answer(to_request(event))
    record(response.outcome, response.status)
    return from_response(response)


def _decorate(fn: Callable[[dict[str, Any], Any], dict[str, Any]]) -> Callable[[dict[str, Any], Any], Any]:
    wrapped = logger.inject_lambda_context(clear_state=True)(fn)
    wrapped = metrics.log_metrics(capture_cold_start_metric=True)(wrapped)
    if os.environ.get("POWERTOOLS_TRACE_DISABLED", "true").strip().lower() in ("false", "0", "no"):
        from aws_lambda_powertools import Tracer

        wrapped = Tracer(service=metrics.service or SERVICE).capture_lambda_handler(wrapped)
    return wrapped


handler = _decorate(_handler)
