"""A store's stored events in the fold's order, as `replay` sends them again: the whole store or one
conversation, from a time on; objects where events belong that are not events are named and counted."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from tavus_callbacks.layout import Layout
from tavus_callbacks.state.stored import Skipped, StoredRecord, parse_time, read_stored

if TYPE_CHECKING:
    from tavus_callbacks.stores import Store


def load_events(store: Store, prefix: str = "", conversation: str | None = None,
                since: datetime | None = None, skipped: list[Skipped] | None = None) -> tuple[list[StoredRecord], int]:
    """The stored events to replay, sorted by (time, id) like the conversation fold; and how many were left out
    (before `since`, or not events: those are also added to `skipped`, with why)."""
    search = f"{prefix}{conversation}/events/" if conversation else prefix
    layout = Layout(prefix)
    events: list[StoredRecord] = []
    left_out = 0
    for key in store.iter_keys(search):
        if not layout.is_event_key(key):
            continue
        stored = read_stored(store, key, skipped)
        if stored is None:
            left_out += 1
            continue
        if since is not None and (stored.time is None or parse_time(stored.time) < since):
            left_out += 1
            continue
        events.append(stored)
    events.sort(key=lambda e: (e.time or "", e.id))
    return events, left_out
