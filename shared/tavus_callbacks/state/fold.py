"""The per-conversation state: `conversation.json`, folded order-independently from its events.

Every stored event of a conversation becomes an entry (id, type, time, key and a few facts) in
the state's `events` list; all other fields are derived from that set by `fold`, sorted by
(time, id). So the state depends only on which events arrived, never on their order or count:
replaying, racing or duplicating deliveries gives the same `conversation.json`. Its fields are a few of
its own (`CORE_FIELDS`) and those the registry's entries add (events/catalogue.py); `State` is their model.
"""

from __future__ import annotations

import copy
import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import ConfigDict, TypeAdapter, with_config
from typing_extensions import TypedDict  # pydantic takes typing.TypedDict only from Python 3.12

from tavus_callbacks.errors import PreconditionFailed, StoreUnavailable
from tavus_callbacks.events.catalogue import KINDS, RECORDING_COPY_FAILED, RECORDING_READY, kind_of
from tavus_callbacks.events.recording import RecordingLocation
from tavus_callbacks.events.registry import Found, StateField
from tavus_callbacks.state.stored import read_record
from tavus_callbacks.stores import split_store_url

if TYPE_CHECKING:
    from tavus_callbacks.events.normalize import Event
    from tavus_callbacks.layout import Layout
    from tavus_callbacks.record import Record
    from tavus_callbacks.stores import Blob, Store

log = logging.getLogger("tavus_callbacks")
_JITTER = random.Random()  # its own generator: backoff never moves the global `random` state

STATE_SCHEMA = 1
RECONCILED = "reconciled"  # what the vendor's API said when `reconcile` last found every event stored
KEPT_FIELDS = (RECONCILED,)  # state fields that are not folded from the events: a fold keeps them
_PROVIDER_OF_SCHEME = {"s3": "s3", "gs": "gcs", "gcs": "gcs", "azure": "azure_blob"}


class Entry(TypedDict):
    """One stored event as the state lists it; a state whose entries are not all of this shape is rebuilt."""

    __pydantic_config__ = ConfigDict(strict=True)  # type: ignore[misc]

    id: str
    type: str
    time: str | None
    key: str
    valid: bool
    facts: dict[str, Any]


# The state's own fields, before and after those of the entries (`fold` sets `conversation_id` and `events`):
# `status` starts "unknown", the entries' folds make it "in_progress" or "ended".
CORE_FIELDS = (StateField("schema", int, STATE_SCHEMA), StateField("conversation_id", str, ""),
               StateField("status", str, "unknown"), StateField("replica_id", str | None))
CLOSING_FIELDS = (StateField("invalid_events", int, 0), StateField("events", list[Entry], []))


def state_fields() -> tuple[StateField, ...]:
    """Every field of a conversation state, in order: its own, then each entry's (a name given twice is an error)."""
    fields = (*CORE_FIELDS, *(f for kind in KINDS for f in kind.state), *CLOSING_FIELDS)
    names = [f.name for f in fields]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"state fields declared more than once in the registry: {', '.join(twice)}")
    return fields


def _typed_dict(name: str, fields: tuple[StateField, ...], doc: str) -> Any:
    """A strict TypedDict of `fields` (as Entry is), made at run time: its fields come from the registry."""
    shape: Any = TypedDict(name, {f.name: f.type for f in fields})  # type: ignore[misc]
    shape.__doc__ = doc
    return with_config(ConfigDict(strict=True))(shape)


STATE_FIELDS = state_fields()
State = _typed_dict("State", STATE_FIELDS, "What `fold` makes of the entries (conversation.json): a state whose "
                                           "fold is not of this shape is rebuilt.")
_ENTRIES = TypeAdapter(list[Entry])
_STATE = TypeAdapter(State)


def entry_for(record: Record, recording_check: dict[str, Any] | None = None,
              store_provider: str | None = None) -> dict[str, Any]:
    """The state's entry for one stored event: what the timeline shows and what `fold` derives from."""
    event = record.event
    return {
        "id": record.id,
        "type": event.type,
        "time": event.time,
        "key": record.key,
        "valid": event.valid,
        "facts": facts_of(event, recording_check, store_provider),
    }


def facts_of(event: Event, recording_check: dict[str, Any] | None = None,
             store_provider: str | None = None) -> dict[str, Any]:
    """The few fields of an event that the conversation state shows (its registry entry's `facts`)."""
    if not event.valid:
        return {"errors": event.errors[:5]}
    kind = kind_of(event.type)
    return kind.facts(event.details, Found(recording_check, store_provider)) if kind else {}


def _rank(entry: dict[str, Any]) -> tuple[str, str]:
    return (entry.get("time") or "", entry["id"])


def fold(conversation_id: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The conversation state from a set of entries; the same set gives the same state, in any order.

    Each valid entry leaves its mark through its registry entry's `fold`, in (time, id) order.
    """
    unique = sorted({e["id"]: e for e in entries}.values(), key=_rank)
    state: dict[str, Any] = {f.name: copy.copy(f.initial) for f in STATE_FIELDS}
    state.update(conversation_id=conversation_id, events=unique)
    for e in unique:
        if not e.get("valid", True):
            state["invalid_events"] += 1
            continue
        if e["facts"].get("replica_id"):
            state["replica_id"] = e["facts"]["replica_id"]
        kind = kind_of(e["type"])
        if kind is not None and kind.fold is not None:
            kind.fold(state, e)
    return state


def parse_state(cid: str, data: bytes) -> tuple[list[dict[str, Any]], dict[str, Any]] | None:
    """The entries of a stored state and the fields a fold keeps (`reconciled`); None when it is damaged: not
    JSON, entries not all of the Entry shape, or facts its types' fold cannot take (the events rebuild it)."""
    try:
        document = orjson.loads(data)
        entries: list[dict[str, Any]] = _ENTRIES.validate_python(document["events"])  # type: ignore[assignment]
        _STATE.validate_python(fold(cid, entries))
    except Exception:  # whatever the damage
        return None
    return entries, {k: document[k] for k in KEPT_FIELDS if isinstance(document.get(k), dict)}


def readable_state(cid: str, data: bytes) -> dict[str, Any] | None:
    """A stored state as readers show it (folded again from its entries, so always of the state's shape), or None
    when it is damaged."""
    parsed = parse_state(cid, data)
    return None if parsed is None else {**fold(cid, parsed[0]), **parsed[1]}


def event_id_of(event_key: str) -> str:
    """The event id an event object's name ends with (`..._<id>.json`)."""
    return event_key.rsplit("_", 1)[-1].removesuffix(".json")


def encode_state(state: dict[str, Any]) -> bytes:
    return orjson.dumps(state, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)


class ConversationFolder:
    """Applies stored events to their conversation's state files by compare-and-swap."""

    def __init__(self, store: Store, layout: Layout, attempts: int = 8, budget_seconds: float = 2.0) -> None:
        self.store = store
        self.layout = layout
        self.attempts = attempts
        self.budget_seconds = budget_seconds
        self.store_provider = _PROVIDER_OF_SCHEME.get(split_store_url(store.url)[0])

    def apply(self, record: Record) -> bool:
        """Fold one event into its conversation; True when it newly reports a failed recording copy.

        Idempotent: an event already in the state changes nothing, but the derived documents are
        still brought up to date, so a retry repairs a delivery that failed half-way.
        """
        return self.apply_all([record])[0]

    def apply_all(self, records: Sequence[Record]) -> list[bool]:
        """Fold events of one conversation with one compare-and-swap, with every other event of its events folder
        the state lacks (one listing: a derive that never ran, a damaged state); per event given, True when it
        newly reports a failed recording copy."""
        cid = records[0].event.conversation_id
        assert cid is not None and all(r.event.conversation_id == cid for r in records)
        given = {r.id: r for r in records}
        folder = {event_id_of(k): k for k in self.event_keys(cid)}
        loaded: dict[str, Record | None] = dict(given)  # id -> record, read once whatever the retries
        built: dict[str, dict[str, Any]] = {}  # id -> entry, made once whatever the retries
        fresh: list[dict[str, Any]] = []
        state: dict[str, Any] = {}

        def change(blob: Blob | None) -> bytes | None:
            nonlocal fresh, state
            parsed = parse_state(cid, blob.data) if blob is not None else ([], {})
            if parsed is None:
                log.warning("the state %s could not be read; rebuilding it from the conversation's stored events",
                            self.layout.conversation_key(cid), extra={"conversation_id": cid})
            entries, kept = parsed or ([], {})
            known = {e["id"] for e in entries}
            fresh = []
            for eid in [*given, *folder]:
                if eid in known:
                    continue
                known.add(eid)
                if eid not in loaded:
                    loaded[eid] = read_record(self.store, folder[eid])
                record = loaded[eid]
                if record is None:
                    continue
                if eid not in built:
                    built[eid] = entry_for(record, self._check_recording(record.event), self.store_provider)
                fresh.append(built[eid])
            state = {**fold(cid, [*entries, *fresh]), **kept}
            return encode_state(state) if fresh or parsed is None else None

        self._swap(self.layout.conversation_key(cid), change)
        newly = {e["id"] for e in fresh}
        for eid, record in loaded.items():
            if record is not None and (eid in given or eid in newly):
                self._write_derived(record, state)
            if eid in newly:
                self._log_problems(cid, built[eid])
        copy_failed = {eid for eid in newly if eid in given and given[eid].event.type == RECORDING_COPY_FAILED.type}
        flags = []
        for record in records:  # a repeated event reports only once
            flags.append(record.id in copy_failed)
            copy_failed.discard(record.id)
        return flags

    def mark_reconciled(self, cid: str, mark: dict[str, Any]) -> None:
        """Record in the state what the vendor's API said when its events were last all stored (`reconciled`);
        the events folder's own events are folded in by derive."""
        def change(blob: Blob | None) -> bytes:
            entries = (parse_state(cid, blob.data) or ([], {}))[0] if blob is not None else []
            return encode_state({**fold(cid, entries), RECONCILED: mark})

        self._swap(self.layout.conversation_key(cid), change)

    def event_keys(self, cid: str) -> list[str]:
        """The keys of a conversation's stored events (its events folder, nothing else of the store)."""
        return [k for k in self.store.iter_keys(f"{self.layout.prefix}{cid}/events/") if self.layout.is_event_key(k)]

    def _check_recording(self, event: Event) -> dict[str, Any] | None:
        """Whether a ready recording is really in the bucket: found, size, ETag and content type."""
        if event.type != RECORDING_READY.type or not event.valid:
            return None
        d = event.details
        location = RecordingLocation(d["storage_provider"], d["bucket"], d["key"], d.get("account"))
        key = self.store.locate(location)
        if key is None:
            return {"checked": False, "note": "the recording is in another bucket than this store's; not checked"}
        info = self.store.stat(key)
        if info is None:
            return {"checked": True, "found": False}
        return {"checked": True, "found": True, "size": info.size, "etag": info.etag,
                "content_type": info.content_type}

    def _log_problems(self, cid: str, entry: dict[str, Any]) -> None:
        facts = entry["facts"]
        if entry["type"] == RECORDING_COPY_FAILED.type:
            log.error("recording copy failed for conversation %s: %s %s. %s", cid, facts.get("error_code"),
                      facts.get("error_message"), facts.get("hint"),
                      extra={"conversation_id": cid, "error_code": facts.get("error_code")})
        elif facts.get("checked") and facts.get("found") is False:
            log.error("recording of conversation %s is missing from the bucket: %s", cid, facts.get("uri"),
                      extra={"conversation_id": cid, "uri": facts.get("uri")})

    def _write_derived(self, record: Record, state: dict[str, Any]) -> None:
        """The document of the event's registry entry (transcript.json, perception.json), when the state's mark
        names this event (the winner: latest by time, then id)."""
        event, cid = record.event, record.event.conversation_id
        assert cid is not None
        kind = kind_of(event.type)
        document = kind.document if kind is not None else None
        mark = state.get(document.mark) if document is not None else None
        if document is None or not isinstance(mark, dict) or mark.get("event_id") != record.id:
            return
        doc = {"conversation_id": cid, "event_id": record.id, "time": event.time, **document.body(event.details)}
        self._replace_if_newer(self.layout.document_key(cid, document.name), doc)

    def _replace_if_newer(self, key: str, doc: dict[str, Any]) -> None:
        rank = (doc["time"] or "", doc["event_id"])

        def change(blob: Blob | None) -> bytes | None:
            try:
                current = orjson.loads(blob.data) if blob is not None else None
            except orjson.JSONDecodeError:  # damaged: written again
                current = None
            if isinstance(current, dict) and (str(current.get("time") or ""), str(current.get("event_id", ""))) >= rank:
                return None
            return encode_state(doc)

        self._swap(key, change)

    def _swap(self, key: str, change: Callable[[Blob | None], bytes | None]) -> None:
        """Replace `key` with what `change` makes of its current content (None: leave it), by compare-and-swap."""
        for _ in self._attempts():
            blob = self.store.read(key)
            data = change(blob)
            if data is None:
                return
            try:
                self.store.replace(key, data, blob.version if blob else None)
                return
            except PreconditionFailed:
                continue
        raise self._contended(key)

    def _attempts(self) -> Iterator[int]:
        """Compare-and-swap attempts: jittered, growing backoff between them, bounded in count and time.

        The first retry is immediate: a conflict means another writer has just finished, so the state
        read again is most likely the one to build on; waiting only helps once writers keep colliding.
        """
        deadline = time.monotonic() + self.budget_seconds
        for attempt in range(self.attempts):
            if attempt > 1:
                pause = _JITTER.uniform(0, min(0.25, 0.004 * 2 ** (attempt - 1)))
                if time.monotonic() + pause > deadline:
                    return
                time.sleep(pause)
            yield attempt

    def _contended(self, key: str) -> StoreUnavailable:
        return StoreUnavailable(f"{key} kept changing while it was updated ({self.attempts} attempts, "
                                f"{self.budget_seconds:g} s); retry later")
