"""The pipeline every deployment runs: authenticate, limit, decode, normalize, store once, answer; and, apart,
`derive`: what follows from a stored event, run from the store's change feed.

`Pipeline.handle(Request) -> Response` is the whole HTTP contract (docs in README, "What it does with a callback");
adapters only translate. The answer waits for one create-only write and nothing else.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from tavus_callbacks.auth import TokenRedactor, is_authorized
from tavus_callbacks.errors import ConfigError, ForwardError, StoreUnavailable
from tavus_callbacks.events.normalize import normalize
from tavus_callbacks.forward import open_forwarder
from tavus_callbacks.http import Outcome, Request, Response
from tavus_callbacks.layout import Layout, day_path
from tavus_callbacks.record import Record, build_record
from tavus_callbacks.settings import Settings
from tavus_callbacks.state.fold import ConversationFolder
from tavus_callbacks.state.stored import read_record
from tavus_callbacks.stores import open_store

if TYPE_CHECKING:
    from tavus_callbacks.forward.base import Forwarder
    from tavus_callbacks.stores import Store

log = logging.getLogger("tavus_callbacks")

RETRY_AFTER_SECONDS = "5"
CONVERSATION_FAMILIES = ("conversation", "guardrail", "objective")
PUBLISHERS = 16  # conversations of one derive batch published at once


@dataclass(frozen=True, slots=True)
class Derived:
    """What one derive did, for an adapter's log line and metrics."""

    key: str
    event_id: str | None = None
    event_type: str | None = None
    conversation_id: str | None = None
    skipped: bool = False  # not an event object of this store (or unreadable as one): nothing to do
    copy_failed: bool = False  # a recording copy failure newly reported


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
        self._forwarder = forwarder

    @property
    def forwarder(self) -> Forwarder | None:
        """The forwarder of `settings.forward_url`, opened on first use by derive: a callback's answer never
        depends on it."""
        if self._forwarder is None and self.settings.forward_url:
            self._forwarder = open_forwarder(self.settings.forward_url)
        return self._forwarder

    def close(self) -> None:
        """Let go of the store, for a store that holds something open."""
        close = getattr(self.store, "close", None)
        if close is not None:
            close()

    def handle(self, request: Request) -> Response:
        """Answer one request (authenticate, limit, decode, normalize, create-only write); never raises for
        anything the sender did."""
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

    def ingest(self, payload: dict[str, Any], *, origin: str = "api",
               fields: dict[str, Any] | None = None) -> tuple[Record, bool]:
        """Store an event that did not come as a callback (e.g. from the vendor's API) as a callback is, and
        whether it is new; `fields` is what to normalize when it differs from the payload kept verbatim.
        Raises StoreUnavailable when the event could not be stored."""
        if self.settings.tokens:
            payload = self.redactor.redact_value(payload)
            fields = None if fields is None else self.redactor.redact_value(fields)
        source = payload if fields is None else fields
        record = build_record(source, normalize(source), self.layout, original=payload, origin=origin)
        return record, self.store.create(record.key, record.body)

    def _store(self, body: bytes) -> Response:
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
        status = "stored" if self.store.create(record.key, record.body) else "duplicate"
        log.info("callback %s", status, extra={"event_id": record.id, "type": event.type,
                                                "conversation_id": event.conversation_id, "key": record.key})
        outcome = Outcome(status, event_id=record.id, event_type=event.type, family=event.family,
                          conversation_id=event.conversation_id, valid=event.valid, key=record.key)
        return Response.json(200, {"status": status, "event_id": record.id, "type": event.type,
                                   "valid": event.valid}, outcome=outcome)

    def derive(self, key: str) -> Derived:
        """Fold the stored event at `key` into its conversation's state (compare-and-swap), write the derived
        documents and the time index, check the recording, publish it. Idempotent; raises when it could not
        finish, so the change feed delivers it again."""
        result = self.derive_many([key])[0]
        if isinstance(result, Exception):
            raise result
        return result

    def derive_many(self, keys: Sequence[str]) -> list[Derived | Exception]:
        """`derive` for several keys, one compare-and-swap per conversation; per key, its result or what it raised
        (logged here, with the key and the cause)."""
        results: dict[str, Derived | Exception] = {}
        groups: dict[str | None, list[Record]] = {}
        for key in dict.fromkeys(keys):
            record = None
            if self.layout.is_event_key(key):
                try:
                    record = read_record(self.store, key)
                except StoreUnavailable as exc:
                    results[key] = exc
                    continue
            if record is None:
                results[key] = Derived(key, skipped=True)
            else:
                groups.setdefault(conversation_of(record), []).append(record)
        folded: list[tuple[Record, bool]] = []  # each record and whether it newly reports a copy failure
        for cid, records in groups.items():
            try:
                if cid is None:
                    folded += [(r, False) for r in records]
                    continue
                self._index(cid, records)
                folded += zip(records, self.folder.apply_all(records), strict=True)
            except Exception as exc:  # the store's own errors, or a bug: either way the feed delivers it again
                for record in records:
                    results[record.key] = exc
        by_conversation: dict[str, list[Record]] = {}  # published in order within one, several at once
        for record, _ in folded:
            by_conversation.setdefault(conversation_of(record) or record.id, []).append(record)
        with ThreadPoolExecutor(max_workers=PUBLISHERS) as pool:
            errors = dict(kv for group in pool.map(self._publish, by_conversation.values()) for kv in group.items())
        for record, copy_failed in folded:
            event = record.event
            results[record.key] = errors.get(record.key) or Derived(record.key, record.id, event.type,
                                                                    event.conversation_id, copy_failed=copy_failed)
        for key, result in results.items():
            if isinstance(result, Exception):
                log.error("derive of %s failed: %s; the change feed delivers it again", key, result,
                          extra={"key": key, "error": f"{type(result).__name__}: {result}"})
        return [results[key] for key in keys]

    def _publish(self, records: list[Record]) -> dict[str, ForwardError]:
        """Publish derived events of one conversation to the forwarder, in order; what failed, by key."""
        errors: dict[str, ForwardError] = {}
        for record in records:
            try:
                if self.forwarder is not None:
                    self.forwarder.publish(record, self.store.url)
            except Exception as exc:  # a bus client's own error types vary by SDK
                errors[record.key] = exc if isinstance(exc, ForwardError) else ForwardError(
                    f"{type(exc).__name__}: {exc}")
        return errors

    def _index(self, cid: str, records: Sequence[Record]) -> None:
        """Mark the conversation active on each event's own day (the day of now for an undated one)."""
        today = datetime.now(UTC).isoformat()
        for day in {day_path(r.event.time or today) for r in records}:
            self.store.create(self.layout.index_key(day, cid), orjson.dumps({"conversation_id": cid, "day": day}))


def conversation_of(record: Record) -> str | None:
    """The conversation whose state an event is folded into, if any."""
    event = record.event
    return event.conversation_id if event.family in CONVERSATION_FAMILIES else None


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


__all__ = ["ConfigError", "Derived", "Forwarder", "Pipeline", "decode"]
