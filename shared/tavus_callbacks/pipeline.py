"""The pipeline every deployment runs: authenticate, limit, decode, normalize, store once, then fold and forward.

`Pipeline.handle(Request) -> Response` is the whole HTTP contract of SPEC §3; adapters only translate.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from tavus_callbacks.auth import TokenRedactor, is_authorized
from tavus_callbacks.errors import ConfigError, ForwardError, StoreUnavailable
from tavus_callbacks.events.normalize import normalize
from tavus_callbacks.forward import open_forwarder
from tavus_callbacks.http import Outcome, Request, Response
from tavus_callbacks.record import Layout, StoredEvent, build_record
from tavus_callbacks.settings import Settings
from tavus_callbacks.state.drain import Drain
from tavus_callbacks.state.fold import ConversationFolder
from tavus_callbacks.state.repair import mark_pending, repair
from tavus_callbacks.stores import open_store

if TYPE_CHECKING:
    from tavus_callbacks.forward.base import Forwarder
    from tavus_callbacks.stores import Store

log = logging.getLogger("tavus_callbacks")

RETRY_AFTER_SECONDS = "5"
REPAIR_SECONDS = 2.0  # at most this long finishing a conversation's pending work on the way to an answer
CONVERSATION_FAMILIES = ("conversation", "guardrail", "objective")


class Pipeline:
    """One configured endpoint: settings, the store it writes to, and an optional forwarder.

    With `fold_later` (a long-running server) a `Drain` folds and forwards after the answer; a function, which
    cannot work after answering, does it before.
    """

    def __init__(self, settings: Settings, store: Store | None = None, forwarder: Forwarder | None = None,
                 prefix: str | None = None, fold_later: bool = False) -> None:
        self.settings = settings
        if store is None:
            store, url_prefix = open_store(settings.store_url)
            prefix = url_prefix if prefix is None else prefix
        self.store = store
        self.layout = Layout(prefix or "")
        self.redactor = TokenRedactor(settings.tokens)
        self.folder = ConversationFolder(store, self.layout, attempts=settings.fold_attempts)
        self.forwarder = forwarder
        self._unfinished: set[str] = set()  # conversations this process left derived work pending in
        self._pending: set[str] = set()  # events this process left derived work of pending
        if forwarder is None and settings.forward_url:
            self.forwarder = open_forwarder(settings.forward_url)
        self.drain: Drain[StoredEvent] | None = Drain(self._derive) if fold_later else None

    def close(self) -> None:
        """Finish the derived work queued, then let go of the store, for a store that holds something open."""
        if self.drain is not None:
            self.drain.close()
        close = getattr(self.store, "close", None)
        if close is not None:
            close()

    def handle(self, request: Request) -> Response:
        """Answer one request per SPEC §3; never raises for anything the sender did."""
        received = self._receive(request)
        return received if isinstance(received, Response) else self._finish(*received)

    def ingest(self, payload: dict[str, Any], *, origin: str = "api", fields: dict[str, Any] | None = None) -> bool:
        """Store an event that did not come as a callback (e.g. from the vendor's API) as a callback is; True
        when stored, False when already there. `fields` is what to normalize when it differs from the payload
        kept verbatim. Raises StoreUnavailable when the event could not be stored.
        """
        if self.settings.tokens:
            payload = self.redactor.redact_value(payload)
            fields = None if fields is None else self.redactor.redact_value(fields)
        source = payload if fields is None else fields
        record = build_record(source, normalize(source), self.layout, original=payload, origin=origin)
        created = self.store.create(record.key, record.body)
        self._finish(record, created)
        return created

    def _receive(self, request: Request) -> Response | tuple[StoredEvent, bool]:
        """A refusal, or the event stored (create-only) and whether it is new, waiting to be answered."""
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
            log.error("store unavailable, answering 503: %s", exc, extra={"error": str(exc)})
            return unavailable("the store cannot be written; retry later", "store_unavailable")
        except Exception:  # a bug: this request's answer only
            log.exception("unexpected error storing a callback")
            return internal_error()

    def _store(self, body: bytes) -> Response | tuple[StoredEvent, bool]:
        payload = decode(body)
        # e.g. a webhook_url echoing ?token=, as written or escaped: never stored, nor in a key, the id or a log
        body, payload = self.redactor.redact(body, payload)
        if not isinstance(payload, dict):
            key = self.layout.quarantine_key(body)
            self.store.create(key, body, content_type="application/octet-stream")
            reason = payload.reason if isinstance(payload, Unreadable) else "the body is JSON but not an object"
            log.warning("quarantined a body that is not a JSON object", extra={"key": key})
            return Response.json(400, {"error": f"{reason}; send one JSON object per callback"},
                                 outcome=Outcome("invalid_json"))
        event = normalize(payload)
        record = build_record(payload, event, self.layout)
        return record, self.store.create(record.key, record.body)

    def _finish(self, record: StoredEvent, created: bool) -> Response:
        """Answer 200 for a durably stored event, after folding and forwarding it (before, with a drain)."""
        event = record.event
        copy_failed = False
        if self.drain is not None:
            self.drain.add(self._conversation_of(record) or record.id, record)
        else:
            copy_failed = self._derive([record])
        status = "stored" if created else "duplicate"
        log.info("callback %s", status, extra={"event_id": record.id, "type": event.type,
                                                "conversation_id": event.conversation_id, "key": record.key})
        outcome = Outcome(status, event_id=record.id, event_type=event.type, family=event.family,
                          conversation_id=event.conversation_id, valid=event.valid, copy_failed=copy_failed)
        return Response.json(200, {"status": status, "event_id": record.id, "type": event.type,
                                   "valid": event.valid}, outcome=outcome)

    def _derive(self, records: list[StoredEvent]) -> bool:
        """Fold stored events of one conversation (one compare-and-swap) and forward each; what fails is left
        pending (`mark_pending`). True when a recording copy newly failed."""
        cid = self._conversation_of(records[0])
        unfinished: dict[str, list[str]] = {}  # event id -> its work left pending
        copy_failed = False
        if cid:
            try:
                copy_failed = any(self.folder.apply_all(records))
            except Exception as exc:
                if isinstance(exc, StoreUnavailable):
                    log.warning("conversation %s not updated, left pending", cid, extra={"error": str(exc)})
                else:  # a bug: the events are stored all the same
                    log.exception("unexpected error folding conversation %s, left pending", cid)
                unfinished = {r.id: ["fold"] for r in records}
        if self.forwarder is not None:
            for record in records:
                try:
                    self.forwarder.publish(record, self.store.url)
                except Exception as exc:  # a bus client's own error types vary by SDK
                    error = exc if isinstance(exc, ForwardError) else ForwardError(f"{type(exc).__name__}: {exc}")
                    log.error("forwarding failed, left pending: %s", error,
                              extra={"error": str(error), "event_id": record.id})
                    unfinished.setdefault(record.id, []).append("publish")
        for record in records:
            if record.id in unfinished:
                mark_pending(self.store, self.layout, record, unfinished[record.id])
                self._pending.add(record.id)
            elif record.id in self._pending:  # a retry did what an earlier delivery left pending
                self._pending.discard(record.id)
                with contextlib.suppress(StoreUnavailable):
                    self.store.delete(self.layout.pending_key(record.event, record.id))
        if cid and unfinished:
            self._unfinished.add(cid)
        elif cid in self._unfinished:  # this process left work pending there: finish it now
            self._finish_pending(cid)
        return copy_failed

    @staticmethod
    def _conversation_of(record: StoredEvent) -> str | None:
        """The conversation whose state an event is folded into, if any."""
        event = record.event
        return event.conversation_id if event.family in CONVERSATION_FAMILIES else None

    def _finish_pending(self, cid: str) -> None:
        """Finish what this process left pending in a conversation, briefly; what is left stays pending."""
        self._unfinished.discard(cid)
        try:
            unfinished = repair(self, cid, deadline=time.monotonic() + REPAIR_SECONDS).failures
        except Exception:  # a bug: the answer is 200 all the same, the markers stay for `repair`
            log.exception("unexpected error finishing pending work of conversation %s", cid)
            unfinished = 1
        if unfinished:
            self._unfinished.add(cid)


@dataclass(frozen=True, slots=True)
class Unreadable:
    """Why a body cannot be taken as a callback: it is quarantined as received and answered 400."""

    reason: str


MAX_JSON_DEPTH = 128  # deeper than any callback, well below the serializers' limits (~250 levels)
_PARSER_DEPTH = 1024  # orjson.loads refuses more nested arrays and objects than this
_DEPTH_PROBE = b"[" * (_PARSER_DEPTH - MAX_JSON_DEPTH), b"]" * (_PARSER_DEPTH - MAX_JSON_DEPTH)
# Digits to "0" and "[" to "{": a run of 19 zeros finds an integer beyond 64 bits, a count of "{" bounds nesting.
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
    if scan.find(_LONG_DIGIT_RUN) >= 0:  # only then can an integer have lost digits: compare with an exact parse
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


def default_pipeline(tokens: tuple[str, ...] | None = None) -> Pipeline:
    """The process-wide pipeline of the environment's settings, built on first use and reused; given `tokens`
    (e.g. from a secret) it has those instead, and is built again when they change."""
    global _default
    with _default_lock:
        if _default is None or (tokens is not None and _default.settings.tokens != tokens):
            settings = Settings.from_env() if tokens is None else Settings.from_env(tokens=tokens)
            _default = Pipeline(settings.require_tokens())
        return _default


def handle(request: Request, tokens: tuple[str, ...] | None = None) -> Response:
    """Answer a request with the process-wide pipeline (of `tokens` when given); a configuration error or a
    store that cannot be opened answers 503 and is logged."""
    try:
        pipeline = default_pipeline(tokens)
    except ConfigError as exc:
        log.error("configuration error: %s", exc)
        return unavailable("the endpoint is not configured; see its logs", "config_error")
    except StoreUnavailable as exc:  # opening the store at cold start failed: retry later, never a 500
        log.error("store unavailable, answering 503: %s", exc, extra={"error": str(exc)})
        return unavailable("the store cannot be written; retry later", "store_unavailable")
    return pipeline.handle(request)


def reset_default_pipeline() -> None:
    """Forget the process-wide pipeline (tests, or after the environment changed)."""
    global _default
    _default = None


__all__ = ["ConfigError", "Forwarder", "Pipeline", "decode", "default_pipeline", "handle", "reset_default_pipeline"]
