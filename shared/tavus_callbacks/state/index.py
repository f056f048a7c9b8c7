"""The time index: `<prefix>index/<yyyy>/<mm>/<dd>/<conversation_id>`, one empty object per conversation and day
of activity, written create-only by derive, so `--since` and the scheduled sweep touch recent conversations only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tavus_callbacks.layout import Layout
    from tavus_callbacks.stores import Store


def recent_conversations(store: Store, layout: Layout, since: datetime, now: datetime | None = None) -> list[str]:
    """The conversations with events on the days from `since` to today (and tomorrow, for a sender's clock ahead of
    ours), newest day first; the cost is those days' activity, never the store's history."""
    today = (now or datetime.now(UTC)).astimezone(UTC).date()
    first = since.astimezone(UTC).date()
    found: dict[str, None] = {}
    day = today + timedelta(days=1)
    while day >= first:
        prefix = layout.index_prefix(day.strftime("%Y/%m/%d"))
        for key in store.iter_keys(prefix):
            cid = key[len(prefix):]
            if cid and "/" not in cid:
                found.setdefault(cid)
        day -= timedelta(days=1)
    return list(found)
