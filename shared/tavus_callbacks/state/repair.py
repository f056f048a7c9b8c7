"""Repair: fold a conversation's state again from its events folder, when asked (a damaged state, an event whose
derive went to the dead letter, a store written by an older version), and finish the `pending/` markers older
versions left. Nothing routine runs it: the change feed derives every stored event."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import orjson

from tavus_callbacks.errors import StoreUnavailable
from tavus_callbacks.state.fold import event_id_of
from tavus_callbacks.state.stored import read_object, read_record

if TYPE_CHECKING:
    from tavus_callbacks.forward.base import Forwarder
    from tavus_callbacks.layout import Layout
    from tavus_callbacks.state.fold import ConversationFolder
    from tavus_callbacks.stores import Store

log = logging.getLogger("tavus_callbacks")

_OTHER_TOP = frozenset({"replicas", "videos", "unrecognized", "quarantine", "index", "reconcile"})


class Derivation(Protocol):
    """What repair works with (a Pipeline)."""

    store: Store
    layout: Layout
    folder: ConversationFolder

    @property
    def forwarder(self) -> Forwarder | None: ...


@dataclass
class RepairSummary:
    """What one `repair` run did."""

    conversations: int = 0  # conversations folded again
    folded: int = 0  # events their state did not list before
    markers: int = 0  # markers of older versions finished
    failures: int = 0  # conversations or markers that could not be finished (the log says why)

    def line(self) -> str:
        return (f"{self.conversations} conversations folded again, {self.folded} events newly folded, "
                f"{self.markers} old pending markers finished, {self.failures} failures")


def missing_events(pipeline: Derivation, cid: str) -> list[str]:
    """Keys of the conversation's stored events its state does not list (a read of the state and of its events
    folder only)."""
    state = read_object(pipeline.store, pipeline.layout.conversation_key(cid)) or {}
    events = state.get("events")
    listed = {e.get("id") for e in events if isinstance(e, dict)} if isinstance(events, list) else set()
    return [k for k in pipeline.folder.event_keys(cid) if event_id_of(k) not in listed]


def repair(pipeline: Derivation, conversations: Iterable[str], markers: Iterable[str] = (),
           progress: Callable[[RepairSummary], None] | None = None) -> RepairSummary:
    """Fold each conversation again from all of its stored events (rebuilding a damaged state, writing its derived
    documents), then finish the old `pending/` markers given."""
    summary = RepairSummary()
    for cid in conversations:
        try:
            missing = len(missing_events(pipeline, cid))
            records = [r for r in (read_record(pipeline.store, k) for k in pipeline.folder.event_keys(cid)) if r]
            if records:
                pipeline.folder.apply_all(records)
            summary.conversations += 1
            summary.folded += missing
        except StoreUnavailable as exc:
            log.error("repair could not fold conversation %s: %s", cid, exc, extra={"conversation_id": cid})
            summary.failures += 1
        if progress is not None and summary.conversations % 100 == 0:
            progress(summary)
    for key in markers:
        try:
            _finish_marker(pipeline, key)
            summary.markers += 1
        except Exception as exc:  # a store or a bus, whose error types vary by SDK
            log.error("repair could not finish %s: %s", key, exc, extra={"key": key})
            summary.failures += 1
    return summary


def walk(store: Store, layout: Layout) -> tuple[list[str], list[str]]:
    """Every conversation with stored events, and every old `pending/` marker: the whole store, read once."""
    conversations: dict[str, None] = {}
    markers: list[str] = []
    for key in store.iter_keys(layout.prefix):
        parts = key[len(layout.prefix):].split("/")
        if len(parts) >= 3 and parts[-2] == "pending" and parts[-1].endswith(".json"):
            markers.append(key)
            if len(parts) == 3 and parts[0] not in _OTHER_TOP:  # its fold is done by folding the conversation
                conversations.setdefault(parts[0])
        elif parts[0] not in _OTHER_TOP and layout.is_event_key(key):
            conversations.setdefault(parts[0])
    return list(conversations), markers


def _finish_marker(pipeline: Derivation, key: str) -> None:
    """Publish the event an old marker names when its publish was unfinished (its fold is done by folding its
    conversation again), then remove the marker."""
    blob = pipeline.store.read(key)
    if blob is None:
        return
    try:
        marker = orjson.loads(blob.data)
    except orjson.JSONDecodeError:
        marker = None
    if isinstance(marker, dict) and "publish" in (marker.get("work") or ()) and pipeline.forwarder is not None:
        record = read_record(pipeline.store, str(marker.get("key")))
        if record is not None:
            pipeline.forwarder.publish(record, pipeline.store.url)
    pipeline.store.delete(key)
