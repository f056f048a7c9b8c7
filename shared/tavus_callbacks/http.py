"""The framework-neutral request and response every adapter translates to and from."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request as the core sees it: the raw body stays bytes, header names are lower-case."""

    method: str
    path: str = "/"
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def __post_init__(self) -> None:
        object.__setattr__(self, "method", self.method.upper())
        object.__setattr__(self, "headers", {k.lower(): v for k, v in self.headers.items()})

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to a request, for an adapter's logs and metrics; never sent to the caller."""

    # stored | duplicate | invalid_json | unauthorized | too_large | method | health | store_unavailable |
    # forward_failed | config_error | timeout | truncated | malformed_request | error
    result: str
    event_id: str | None = None
    event_type: str | None = None
    family: str | None = None
    conversation_id: str | None = None
    valid: bool = True
    key: str | None = None  # the event object's key, for a server that derives from it after answering

    def log_fields(self) -> dict[str, Any]:
        """The fields that are set, for a structured log line."""
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True, slots=True)
class LogLine:
    """The one log line of a request's outcome, which each platform's logger writes in its own shape."""

    message: str
    level: int  # a `logging` level: INFO below 400, WARNING for the sender's mistakes, ERROR from 500
    fields: dict[str, Any]

    @property
    def severity(self) -> str:
        """The level's name (INFO, WARNING, ERROR), as Cloud Logging reads it."""
        return logging.getLevelName(self.level)


def severity_of(status: int) -> int:
    """The log level of an answer's status: the sender's mistakes warn, the server's failures are errors."""
    return logging.INFO if status < 400 else (logging.ERROR if status >= 500 else logging.WARNING)


def answered_line(outcome: Outcome | None, status: int) -> LogLine:
    """The log line of an answered request: `callback <result>`, its level from the status, and the status with
    the outcome's fields (never the token or the body)."""
    message = f"callback {outcome.result}" if outcome else "answered"
    return LogLine(message, severity_of(status), {"status": status, **(outcome.log_fields() if outcome else {})})


@dataclass(frozen=True, slots=True)
class Response:
    """One HTTP response: status, headers and an already-encoded body."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    outcome: Outcome | None = None

    @classmethod
    def json(cls, status: int, payload: dict[str, Any], *, headers: dict[str, str] | None = None,
             outcome: Outcome | None = None) -> Response:
        return cls(status, {"Content-Type": "application/json", **(headers or {})}, orjson.dumps(payload), outcome)

    def json_body(self) -> Any:
        return orjson.loads(self.body) if self.body else None


def malformed_request(reason: str) -> Response:
    """The answer to an HTTP request a platform handed over in a shape the adapter cannot read: 400, JSON."""
    return Response.json(400, {"error": f"malformed HTTP request: {reason}"}, outcome=Outcome("malformed_request"))
