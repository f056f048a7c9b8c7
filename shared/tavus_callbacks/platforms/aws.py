"""AWS services for the Lambda adapter: Powertools Logger (correlation id = conversation id), Metrics (EMF) and,
when enabled, Tracer; the callback tokens and the API key from Secrets Manager, cached by Powertools."""

from __future__ import annotations

import functools
import logging
import os
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from tavus_callbacks.errors import ConfigError
from tavus_callbacks.http import answered_line
from tavus_callbacks.settings import SecretVariables, parse_tokens

if TYPE_CHECKING:
    from tavus_callbacks.http import Outcome
    from tavus_callbacks.pipeline import Derived
    from tavus_callbacks.reconcile.sweep import Summary

SERVICE = "tavus-callbacks"
SAFETY_SECONDS = 3.0  # of the invocation's time, kept for writing the cursor and the metrics
# Any of these marks an HTTP request (Function URL, HTTP API 2.0 and 1.0, REST API), well formed or not.
HTTP_EVENT_KEYS = frozenset({"requestContext", "rawPath", "rawQueryString", "routeKey", "httpMethod", "headers",
                             "multiValueHeaders", "queryStringParameters", "multiValueQueryStringParameters",
                             "body", "isBase64Encoded", "cookies"})
TOKENS_SECRET_VAR = "TAVUS_CALLBACK_TOKENS_SECRET"
DEFAULT_SECRET_MAX_AGE = 300

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", SERVICE))
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "TavusCallbacks"),
                  service=os.environ.get("POWERTOOLS_SERVICE_NAME", SERVICE))
copy_config_to_registered_loggers(source_logger=logger, include={"tavus_callbacks"})  # the core's lines as JSON too
warnings.filterwarnings("ignore", message="No application metrics to publish")  # a health check stores nothing


class UnsupportedEvent(ValueError):
    """An invocation that is not an HTTP request, the schedule nor a bucket notification: a configuration error,
    so it fails loudly."""


def kind_of(event: Any) -> str | None:
    """What an invocation is: `http` (to be answered, 400 when malformed, rather than refused), `schedule` (the
    template's reconcile rule), `object_created` (an S3 notification delivered by EventBridge), or None."""
    if not isinstance(event, dict):
        return None
    if not HTTP_EVENT_KEYS.isdisjoint(event):
        return "http"
    source, detail_type = event.get("source"), event.get("detail-type")
    if source == "aws.events" and detail_type == "Scheduled Event":
        return "schedule"
    return "object_created" if source == "aws.s3" and detail_type == "Object Created" else None


def object_key(event: dict[str, Any]) -> str:
    """The key of the object an S3 `Object Created` notification names."""
    from aws_lambda_powertools.utilities.data_classes import S3EventBridgeNotificationEvent

    try:
        return S3EventBridgeNotificationEvent(event).detail.object.key
    except (KeyError, TypeError):
        raise UnsupportedEvent("an S3 Object Created notification without detail.object.key") from None


def seconds_left(context: Any) -> float:
    """What the scheduled sweep may spend: the invocation's remaining time, less what writing its cursor and
    metrics takes."""
    return float(context.get_remaining_time_in_millis()) / 1000 - SAFETY_SECONDS


def secret(secret_id: str | None) -> str | None:
    """The value of the Secrets Manager secret `secret_id` (None when there is none), cached by Powertools for
    POWERTOOLS_PARAMETERS_MAX_AGE seconds, so a rotation shows on a later fetch."""
    if not secret_id:
        return None
    from aws_lambda_powertools.utilities.parameters import get_secret

    value = get_secret(secret_id, max_age=int(os.environ.get("POWERTOOLS_PARAMETERS_MAX_AGE", DEFAULT_SECRET_MAX_AGE)))
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


@functools.lru_cache(maxsize=1)
def _tokens_of(text: str, secret_id: str) -> tuple[str, ...]:
    source = f"the secret {TOKENS_SECRET_VAR}={secret_id}"
    if text.lstrip().startswith(("{", "[")):
        raise ConfigError(f"{source} holds JSON: store the token(s) as plain text, comma-separated")
    return parse_tokens(text, source=source)


def secret_tokens() -> tuple[str, ...] | None:
    """The tokens of TAVUS_CALLBACK_TOKENS_SECRET, or None when it is not set and TAVUS_CALLBACK_TOKENS holds
    them; a missing secret, a missing permission or a bad token raises ConfigError."""
    secret_id = SecretVariables.read().callback_tokens_secret
    try:
        text = secret(secret_id)
        return None if text is None or secret_id is None else _tokens_of(text, secret_id)
    except Exception as exc:  # a missing secret, no permission, a bad token: the App answers 503 and logs this
        raise ConfigError(f"cannot load the callback tokens from Secrets Manager: {type(exc).__name__}: {exc}") from exc


def secret_api_key() -> str | None:
    """The Tavus API key of TAVUS_API_KEY_SECRET, or None when it is not set (TAVUS_API_KEY then holds it)."""
    return secret(SecretVariables.read().api_key_secret)


def record(outcome: Outcome | None, status: int) -> None:
    """The request's log line and its EMF metrics."""
    line = answered_line(outcome, status)
    if outcome is not None:
        logger.set_correlation_id(outcome.conversation_id)
    write = {logging.ERROR: logger.error, logging.WARNING: logger.warning}.get(line.level, logger.info)
    write(line.message, extra=line.fields)
    if outcome is None or outcome.result == "health":
        return
    if outcome.result == "stored":
        metrics.add_metric(name="EventsStored", unit=MetricUnit.Count, value=1)
        if outcome.event_type:
            metrics.add_metadata(key="event_type", value=outcome.event_type)
    elif outcome.result == "duplicate":
        metrics.add_metric(name="Duplicates", unit=MetricUnit.Count, value=1)
    else:
        with single_metric(name="Rejected", unit=MetricUnit.Count, value=1, namespace=metrics.namespace) as m:
            m.add_dimension(name="service", value=metrics.service or SERVICE)
            m.add_dimension(name="reason", value=outcome.result)


def record_derived(derived: Derived) -> dict[str, Any]:
    """The derive step's log line and, when a recording copy newly failed, its metric; the invocation's result."""
    if derived.skipped:
        logger.info("not an event object of this store, acknowledged", extra={"key": derived.key})
        return {"status": "skipped", "key": derived.key}
    logger.set_correlation_id(derived.conversation_id)
    logger.info("event derived", extra={"key": derived.key, "event_id": derived.event_id,
                                        "event_type": derived.event_type, "conversation_id": derived.conversation_id})
    if derived.copy_failed:
        metrics.add_metric(name="CopyFailures", unit=MetricUnit.Count, value=1)
    return {"status": "derived", "key": derived.key, "event_id": derived.event_id}


def record_sweep(summary: Summary | None) -> dict[str, Any]:
    """The reconcile sweep's log line and metrics; the invocation's result."""
    if summary is None:
        logger.info("reconcile is off: no API key (TAVUS_API_KEY_SECRET)")
        return {"status": "off"}
    metrics.add_metric(name="EventsRecovered", unit=MetricUnit.Count, value=summary.recovered)
    metrics.add_metric(name="ReconcileFailures", unit=MetricUnit.Count, value=len(summary.failures))
    (logger.error if summary.failures else logger.info)(summary.line(), extra=summary.as_dict())
    return {"status": "failed" if summary.failures else "ok", **summary.as_dict()}


def instrument(fn: Callable[[Any, Any], dict[str, Any]]) -> Callable[[Any, Any], Any]:
    """`fn` with the Lambda context in its log lines, its metrics flushed (and the cold start counted) and,
    when POWERTOOLS_TRACE_DISABLED is false, traced by X-Ray."""
    wrapped = logger.inject_lambda_context(clear_state=True)(fn)
    wrapped = metrics.log_metrics(capture_cold_start_metric=True)(wrapped)
    if os.environ.get("POWERTOOLS_TRACE_DISABLED", "true").strip().lower() in ("false", "0", "no"):
        from aws_lambda_powertools import Tracer

        wrapped = Tracer(service=metrics.service or SERVICE).capture_lambda_handler(wrapped)
    return wrapped
