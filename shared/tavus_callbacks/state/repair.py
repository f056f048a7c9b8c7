"""Pending derived work and its repair: what an answer did not wait for is finished here.

A fold or publish that still fails after a few quick tries leaves a marker (`<folder>pending/<event_id>.json`);
`repair` finishes that work and removes it. A crash before the fold leaves no marker, so `repair` also folds
every stored event that its conversation's state does not list yet.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import orjson

from tavus_callbacks.errors import PreconditionFailed, StoreUnavailable
from tavus_callbacks.state.stored import is_event_key, read_object, read_stored

if TYPE_CHECKING:
    from tavus_callbacks.forward.base import Forwarder
    from tavus_callbacks.record import Layout, StoredEvent
    from tavus_callbacks.state.fold import ConversationFolder
    from tavus_callbacks.stores import Store

log = logging.getLogger("tavus_callbacks")

FOLD, PUBLISH = "fold", "publish"
_EXTRA_TOP = frozenset({"replicas", "videos", "unrecognized", "quarantine"})


class Derivation(Protocol):
    """What repair works with (a Pipeline)."""

    store: Store
    layout: Layout
    folder: ConversationFolder
    forwarder: Forwarder | None


@dataclass
class RepairSummary:
    """What one `repair` run did."""

    conversations: int = 0  # conversations examined
    folded: int = 0  # events newly folded into a state
    published: int = 0  # pending publishes completed
    failures: int = 0  # pending items still unfinished

    def line(self) -> str:
        return (f"{self.conversations} conversations examined, {self.folded} events folded, "
                f"{self.published} publishes completed, {self.failures} still pending")


def mark_pending(store: Store, layout: Layout, record: StoredEvent, work: Sequence[str]) -> None:
    """Record that `work` (fold, publish) of a stored event is unfinished; never raises (the event is durable)."""
    key = layout.pending_key(record.event, record.id)
    try:
        for _ in range(4):
            blob = store.read(key)
            had = _read_marker(blob.data)[0] if blob else []
            wanted = sorted(set(work) | set(had))
            if blob is not None and wanted == had:
                return
            try:
                store.replace(key, _marker(record.id, record.key, wanted), blob.version if blob else None)
                return
            except PreconditionFailed:
                continue
        raise StoreUnavailable(f"{key} kept changing")
    except StoreUnavailable as exc:  # `repair` still folds what is missing; an unpublished event waits for replay
        log.error("could not record pending work of event %s: %s", record.id, exc,
                  extra={"event_id": record.id, "work": list(work)})


def repair(pipeline: Derivation, conversation: str | None = None, deadline: float | None = None) -> RepairSummary:
    """Finish pending work and fold stored events missing from their state, in one conversation or all;
    once `time.monotonic()` passes `deadline`, the rest is left for the next run."""
    summary = RepairSummary()
    prefix = pipeline.layout.prefix
    events: dict[str, list[str]] = {}  # conversation id -> its event keys
    markers: dict[str | None, list[str]] = {}  # conversation id (None: replica, video, unrecognized) -> markers
    try:
        for key in pipeline.store.iter_keys(f"{prefix}{conversation}/" if conversation else prefix):
            parts = key[len(prefix):].split("/")
            owner = parts[0] if parts[0] not in _EXTRA_TOP else None
            if len(parts) >= 3 and parts[-2] == "pending" and parts[-1].endswith(".json"):
                markers.setdefault(owner, []).append(key)
            elif owner is not None and len(parts) == 3 and parts[1] == "events" and is_event_key("/".join(parts)):
                events.setdefault(owner, []).append(key)
    except StoreUnavailable as exc:
        log.error("repair could not list the store: %s", exc)
        summary.failures += 1
        return summary
    for cid in sorted(events.keys() | {c for c in markers if c is not None}):
        if deadline is not None and time.monotonic() > deadline:
            summary.failures += len(markers.get(cid, ())) or 1
            continue
        summary.conversations += 1
        try:
            _repair_conversation(pipeline, cid, events.get(cid, []), markers.get(cid, []), summary)
        except StoreUnavailable as exc:
            log.warning("repair could not finish conversation %s: %s", cid, exc)
            summary.failures += len(markers.get(cid, ())) or 1
    for key in markers.get(None, []):
        if deadline is not None and time.monotonic() > deadline:
            summary.failures += 1
            continue
        _finish_marker(pipeline, key, summary)
    return summary


def _repair_conversation(pipeline: Derivation, cid: str, event_keys: list[str], marker_keys: list[str],
                         summary: RepairSummary) -> None:
    """Fold the events the state lacks and those whose fold a marker says is unfinished; then the markers."""
    store = pipeline.store
    state = read_object(store, pipeline.layout.conversation_key(cid)) or {}
    try:
        entries = {e.get("id"): e.get("key") for e in state.get("events", [])}
    except (AttributeError, TypeError):
        state, entries = {}, {}  # unreadable: the fold rebuilds it from the stored events
    missing = [k for k in event_keys if k.rsplit("_", 1)[-1].removesuffix(".json") not in entries]
    to_fold = dict.fromkeys(missing)
    for key in _stale_derived(pipeline, cid, state):  # folding a winner again writes its derived document
        if entries.get(key) in event_keys:
            to_fold[entries[key]] = None
    markers: list[tuple[str, list[str], str]] = []  # (marker key, work, event key)
    for key in marker_keys:
        marker = store.read(key)
        if marker is None:
            continue
        work, event_key = _read_marker(marker.data)
        markers.append((key, work, event_key))
        if FOLD in work:
            to_fold[event_key] = None
    folded = False
    records = [s.record() for s in (read_stored(store, k) for k in to_fold) if s is not None]
    if records:
        try:
            pipeline.folder.apply_all(records)
            folded = True
            summary.folded += len(missing)
        except StoreUnavailable as exc:
            log.warning("repair could not fold conversation %s: %s", cid, exc)
            summary.failures += len(set(missing) - {event_key for _, _, event_key in markers})
    for key, work, _ in markers:
        _finish_marker(pipeline, key, summary, folded=folded or FOLD not in work)


def _stale_derived(pipeline: Derivation, cid: str, state: dict[str, object]) -> list[str]:
    """Ids of the events whose transcript.json / perception.json the state names but the store does not hold
    (written after the state, that write and its marker may both have failed)."""
    stale = []
    for part, key in (("transcript", pipeline.layout.transcript_key(cid)),
                      ("perception", pipeline.layout.perception_key(cid))):
        summary = state.get(part)
        if isinstance(summary, dict) and summary.get("object"):
            written = (read_object(pipeline.store, key) or {}).get("event_id")
            if written != summary.get("event_id"):
                stale.append(str(summary.get("event_id")))
    return stale


def _finish_marker(pipeline: Derivation, key: str, summary: RepairSummary, folded: bool = True) -> None:
    """Publish what a marker says is unpublished, then remove it, or rewrite it with what is still to do."""
    store = pipeline.store
    try:
        marker = store.read(key)
        if marker is None:
            return
        had, event_key = _read_marker(marker.data)
        work = [w for w in had if w != FOLD or not folded]
        stored = read_stored(store, event_key)
        if stored is None:  # the event object is gone (deleted by hand): nothing left to finish
            store.delete(key)
            return
        if PUBLISH in work and pipeline.forwarder is not None:
            try:
                pipeline.forwarder.publish(stored.record(), store.url)
                work.remove(PUBLISH)
                summary.published += 1
            except Exception as exc:  # a bus client's own error types vary by SDK
                log.warning("repair could not publish event %s: %s", stored.id, exc)
        if not work:
            store.delete(key)
            return
        summary.failures += 1
        if work != had:
            store.replace(key, _marker(stored.id, stored.key, work), marker.version)
    except (StoreUnavailable, PreconditionFailed) as exc:
        log.warning("repair could not finish %s: %s", key, exc)
        summary.failures += 1


def _marker(event_id: str, event_key: str, work: Sequence[str]) -> bytes:
    return orjson.dumps({"event_id": event_id, "key": event_key, "work": sorted(work)})


def _read_marker(data: bytes) -> tuple[list[str], str]:
    """(work, event key) of a marker; all the work when it cannot be read."""
    try:
        marker = orjson.loads(data)
    except orjson.JSONDecodeError:
        marker = None
    if not isinstance(marker, dict):
        return [FOLD, PUBLISH], ""
    work = marker.get("work", [])
    return (sorted(str(w) for w in work) if isinstance(work, list) else [FOLD, PUBLISH],
            str(marker["key"]) if "key" in marker else "")
