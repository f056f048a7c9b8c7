"""The pipeline every deployment runs: authenticate, limit, decode, normalize, store once, fold, forward.

`Pipeline.handle(Request) -> Response` is the whole HTTP contract of SPEC §3; adapters only translate.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from .auth import TokenRedactor, is_authorized
from .conversation import ConversationFolder
from .errors import ConfigError, ForwardError, StoreUnavailable
from .events import normalize
from .http import Outcome, Request, Response
from .record import Layout, StoredEvent, build_record
from .settings import Settings
from .stores import GroupCommit, open_store

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from contextlib import AbstractContextManager

    from .stores import Store
    from .stores.base import Commit

log = logging.getLogger("tavus_callbacks")

RETRY_AFTER_SECONDS = "5"
CONVERSATION_FAMILIES = ("conversation", "guardrail", "objective")


class Forwarder(Protocol):
    """Publishes a durably stored event to an event bus; raises ForwardError when it cannot."""

    def publish(self, record: StoredEvent, store_url: str) -> None: ...


class Pipeline:
    """One configured endpoint: settings, the store it writes to, and an optional forwarder."""

    def __init__(self, settings: Settings, store: Store | None = None, forwarder: Forwarder | None = None,
                 prefix: str | None = None) -> None:
        self.settings = settings
        if store is None:
            store, url_prefix = open_store(settings.store_url)
            prefix = url_prefix if prefix is None else prefix
        self.store = store
        self.layout = Layout(prefix or "")
        self.redactor = TokenRedactor(settings.tokens)
        self.folder = ConversationFolder(store, self.layout, attempts=settings.fold_attempts)
        self.forwarder = forwarder
        self._deferred: Callable[[], AbstractContextManager[Commit]] = (
            store.deferred if isinstance(store, GroupCommit) else lambda: contextlib.nullcontext(_NO_COMMIT))
        if forwarder is None and settings.forward_url:
            from .forward import open_forwarder

            self.forwarder = open_forwarder(settings.forward_url)

    def close(self) -> None:
        """Let go of the store, for a store that holds something open (a local folder: its journal)."""
        close = getattr(self.store, "close", None)
        if close is not None:
            close()

    def handle(self, request: Request) -> Response:
        """Answer one request per SPEC §3; never raises for anything the sender did."""
        return self.handle_many([request])[0]

    def handle_many(self, requests: Sequence[Request]) -> list[Response]:
        """Answer requests that arrived together, each as `handle` would, in their order.

        Each event is stored on its own and each conversation's state is folded once for all of its
        events; on a store that commits in groups (a local folder) one sync makes the whole batch
        durable before any answer exists. Events are forwarded only once durable.
        """
        return self.store_many(requests).answers()

    def store_many(self, requests: Sequence[Request]) -> StoredBatch:
        """The first half of `handle_many`: events stored and folded, not yet known durable nor answered.

        Its `answers()` (callable from another thread) does the rest, so a server can store the next
        batch while this one is being synced.
        """
        answers: list[Response | _Delivery] = []
        with self._deferred() as pending:
            answers.extend(self._receive(request) for request in requests)
            self._fold([a for a in answers if isinstance(a, _Delivery)])
        return StoredBatch(self, answers, pending)

    def ingest(self, payload: dict[str, Any], *, origin: str = "api", fields: dict[str, Any] | None = None) -> bool:
        """Store one event that did not come as a callback (e.g. recovered from the vendor's API), as a callback is.

        `fields` is what to normalize when it differs from the payload kept verbatim (an API item completed
        from its conversation). Normalize, record (with the `tavusorigin` attribute), create, fold, forward:
        True when stored, False when the event was already there. Raises StoreUnavailable or ForwardError.
        """
        if self.settings.tokens:  # the API's copy holds no token as a rule; it is never stored if it does
            payload = self.redactor.redact_value(payload)
            fields = None if fields is None else self.redactor.redact_value(fields)
        source = payload if fields is None else fields
        record = build_record(source, normalize(source), self.layout, original=payload, origin=origin)
        created = self.store.create(record.key, record.body)
        event = record.event
        if event.family in CONVERSATION_FAMILIES and event.conversation_id:
            self.folder.apply_all([record])
        if created and self.forwarder is not None:
            self.forwarder.publish(record, self.store.url)
        return created

    def _receive(self, request: Request) -> Response | _Delivery:
        """A refusal, or the event stored (create-only) and waiting to be folded and answered."""
        if request.method != "POST":
            health = request.path.rstrip("/").endswith("/healthz")
            if health and request.method in ("GET", "HEAD"):
                return Response.json(200, {"status": "ok"}, outcome=Outcome("health"))
            return Response.json(405, {"error": "method not allowed: send callbacks with POST"},
                                 headers={"Allow": "GET, HEAD, POST" if health else "POST"}, outcome=Outcome("method"))
        if not is_authorized(request, self.settings.tokens):
            return Response.json(401, {"error": "unauthorized"}, outcome=Outcome("unauthorized"))
        if len(request.body) > self.settings.max_body_bytes:
            return too_large(self.settings.max_body_bytes)
        try:
            return self._store(request.body)
        except StoreUnavailable as exc:
            return self._store_unavailable(exc)
        except Exception:  # a bug: this request's answer only, not its batch's
            log.exception("unexpected error storing a callback")
            return internal_error()

    def _store(self, body: bytes) -> Response | _Delivery:
        payload = decode(body)
        if self.redactor.found_in(body):  # e.g. a webhook_url echoing ?token=: never stored, nor in the id
            body = self.redactor.redact_bytes(body)
            payload = self.redactor.redact_value(payload)
        if not isinstance(payload, dict):
            key = self.layout.quarantine_key(body)
            self.store.create(key, body, content_type="application/octet-stream")
            reason = payload.reason if isinstance(payload, Unreadable) else "the body is JSON but not an object"
            log.warning("quarantined a body that is not a JSON object", extra={"key": key})
            return Response.json(400, {"error": f"{reason}; send one JSON object per callback"},
                                 outcome=Outcome("invalid_json"))
        event = normalize(payload)
        record = build_record(payload, event, self.layout)
        return _Delivery(record, self.store.create(record.key, record.body))

    def _fold(self, deliveries: list[_Delivery]) -> None:
        """Apply the conversation events to their states, one compare-and-swap per conversation."""
        conversations: dict[str, list[_Delivery]] = {}
        for delivery in deliveries:
            event = delivery.record.event
            if event.family in CONVERSATION_FAMILIES and event.conversation_id:
                conversations.setdefault(event.conversation_id, []).append(delivery)
        for batch in conversations.values():
            try:
                flags = self.folder.apply_all([d.record for d in batch])
            except StoreUnavailable as exc:
                for delivery in batch:
                    delivery.failed = self._store_unavailable(exc)
                continue
            except Exception:  # a bug: this conversation's answers only
                log.exception("unexpected error folding conversation %s", batch[0].record.event.conversation_id)
                for delivery in batch:
                    delivery.failed = internal_error()
                continue
            for delivery, copy_failed in zip(batch, flags, strict=True):
                delivery.copy_failed = copy_failed

    def _finish(self, delivery: _Delivery) -> Response:
        """Forward a durably stored event, then answer for it."""
        if delivery.failed is not None:
            return delivery.failed
        record, event = delivery.record, delivery.record.event
        if self.forwarder is not None:
            try:
                self.forwarder.publish(record, self.store.url)
            except Exception as exc:  # a bus client's own error types vary by SDK
                error = exc if isinstance(exc, ForwardError) else ForwardError(f"{type(exc).__name__}: {exc}")
                log.error("forwarding failed, answering 503", extra={"error": str(error)})
                return unavailable("the event is stored but could not be forwarded; retry later", "forward_failed")
        status = "stored" if delivery.created else "duplicate"
        log.info("callback %s", status, extra={"event_id": record.id, "type": event.type,
                                                "conversation_id": event.conversation_id, "key": record.key})
        outcome = Outcome(status, event_id=record.id, event_type=event.type, family=event.family,
                          conversation_id=event.conversation_id, valid=event.valid, copy_failed=delivery.copy_failed)
        return Response.json(200, {"status": status, "event_id": record.id, "type": event.type,
                                   "valid": event.valid}, outcome=outcome)

    @staticmethod
    def _store_unavailable(exc: StoreUnavailable) -> Response:
        log.error("store unavailable, answering 503", extra={"error": str(exc)})
        return unavailable("the store cannot be written; retry later", "store_unavailable")


class StoredBatch:
    """Events stored by `Pipeline.store_many`: `answers()` makes them durable, forwards them and answers."""

    def __init__(self, pipeline: Pipeline, answers: list[Response | _Delivery], pending: Commit) -> None:
        self.pipeline = pipeline
        self._answers = answers
        self._pending: Commit | None = pending

    @property
    def forwards(self) -> bool:
        """Whether `answers()` publishes to a bus (network calls), beyond building the answers."""
        return self.pipeline.forwarder is not None and any(isinstance(a, _Delivery) for a in self._answers)

    def commit(self) -> None:
        """Wait until the batch is durable (the only blocking part without a forwarder); once."""
        if self._pending is None:
            return
        try:
            self._pending.commit()
        except StoreUnavailable as exc:  # the batch's sync failed: none of it may be acknowledged
            failed = self.pipeline._store_unavailable(exc)
            self._answers = [failed if isinstance(a, _Delivery) else a for a in self._answers]
        self._pending = None

    def answers(self) -> list[Response]:
        self.commit()
        return [self.pipeline._finish(a) if isinstance(a, _Delivery) else a for a in self._answers]


class _NoCommit:
    """For stores whose every write is durable when it returns."""

    def commit(self) -> None:
        return None


_NO_COMMIT = _NoCommit()


@dataclass(slots=True)
class _Delivery:
    """An event stored by `Pipeline.handle_many`, on its way to its answer."""

    record: StoredEvent
    created: bool
    copy_failed: bool = False
    failed: Response | None = None  # set when folding it failed


@dataclass(frozen=True, slots=True)
class Unreadable:
    """Why a body cannot be taken as a callback: it is quarantined as received and answered 400."""

    reason: str


# Far deeper than any real callback, and far enough below the serializers' own limits (about 250
# levels in pydantic and orjson.dumps) that what we store from a body can always be written.
MAX_JSON_DEPTH = 128
_PARSER_DEPTH = 1024  # orjson.loads refuses more nested arrays and objects than this
_DEPTH_PROBE = b"[" * (_PARSER_DEPTH - MAX_JSON_DEPTH), b"]" * (_PARSER_DEPTH - MAX_JSON_DEPTH)
# An integer literal outside orjson's 64-bit range has at least 19 digits (it becomes a float there).
# One C-speed pass maps every digit to "0" (and "[" to "{"): then looking for a run of zeros finds long
# numbers (a regex backtracks on every digit), and one count of "{" bounds the nesting.
_SCAN = bytes.maketrans(b"123456789[", b"000000000{")
_LONG_DIGIT_RUN = b"0" * 19

_INVALID = Unreadable("the body is not valid JSON")
_TOO_DEEP = Unreadable(f"the body is nested more than {MAX_JSON_DEPTH} levels deep")
_INEXACT = Unreadable("the body has an integer beyond 64 bits, which could not be stored exactly")


def decode(body: bytes) -> Any:
    """The JSON value of a body, or why it is Unreadable: not UTF-8 JSON, nested too deep, or inexact."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return _INVALID
    scan = body.translate(_SCAN)
    if scan.count(b"{") > MAX_JSON_DEPTH:  # only then can it be too deep: parse once more
        try:
            orjson.loads(_DEPTH_PROBE[0] + body + _DEPTH_PROBE[1])
        except orjson.JSONDecodeError:
            return _TOO_DEEP
    if scan.find(_LONG_DIGIT_RUN) >= 0:  # only then can an integer have lost digits (`in` is slower on bytes)
        # compare with an exact parse
        try:
            exact = json.loads(body)
        except ValueError:  # more digits than Python converts
            return _INEXACT
        if json.dumps(exact, sort_keys=True) != json.dumps(value, sort_keys=True):  # int vs float counts
            return _INEXACT
    return value


def too_large(limit: int) -> Response:
    return Response.json(413, {"error": f"the body is larger than {limit} bytes"}, outcome=Outcome("too_large"))


def internal_error() -> Response:
    """What a bug answers (never what the sender did): 500, details only in the log."""
    return Response.json(500, {"error": "internal error; see the server's log"}, outcome=Outcome("error"))


def unavailable(message: str, result: str) -> Response:
    return Response.json(503, {"error": message}, headers={"Retry-After": RETRY_AFTER_SECONDS},
                         outcome=Outcome(result))


_default: Pipeline | None = None
_default_lock = threading.Lock()


def default_pipeline() -> Pipeline:
    """The process-wide pipeline configured from the environment, built on first use and reused."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Pipeline(Settings.from_env().require_tokens())
    return _default


def handle(request: Request) -> Response:
    """Answer a request with the process-wide pipeline; a configuration error answers 503 and is logged."""
    try:
        pipeline = default_pipeline()
    except ConfigError as exc:
        log.error("configuration error: %s", exc)
        return unavailable("the endpoint is not configured; see its logs", "config_error")
    except StoreUnavailable as exc:  # opening the store at cold start failed: retry later, never a 500
        log.error("store unavailable, answering 503", extra={"error": str(exc)})
        return unavailable("the store cannot be written; retry later", "store_unavailable")
    return pipeline.handle(request)


def reset_default_pipeline() -> None:
    """Forget the process-wide pipeline (tests, or after the environment changed)."""
    global _default
    _default = None


__all__ = ["ConfigError", "Forwarder", "Pipeline", "decode", "default_pipeline", "handle", "reset_default_pipeline"]
