"""The sweep: compare each conversation of the window with the vendor's event log and store what is missing.

A conversation whose state is *complete* (`Sweep._complete`) costs no fetch. Any other is fetched once
(`?verbose=true`); each event its state lacks (same id, or same type and time) goes through `Pipeline.ingest`
marked `tavusorigin: api`, then the conversation gets its `reconciled` mark. A window sweep resumes at the
page where the last run stopped (`<prefix>reconcile/cursor.json`). A deployed function leaves what it stored to the
store's change feed; from the command line (`derive=True`) the sweep derives it itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from tavus_callbacks.errors import PreconditionFailed, TavusCallbacksError
from tavus_callbacks.events.catalogue import WHOLE
from tavus_callbacks.events.normalize import is_plain_id, normalize
from tavus_callbacks.events.times import format_utc, to_utc_iso_or_none
from tavus_callbacks.reconcile.client import DeadlineReached, KeyRefused, TavusAPIError, TavusClient
from tavus_callbacks.record import identity
from tavus_callbacks.state.fold import RECONCILED
from tavus_callbacks.state.stored import read_object

if TYPE_CHECKING:
    from tavus_callbacks.pipeline import Pipeline

log = logging.getLogger("tavus_callbacks")

ORIGIN = "api"
DEFAULT_PAGE_SIZE = 100
CURSOR_SCHEMA = 1
# An ended conversation whose state holds one type of each group has nothing more to come from the vendor (the
# registry's entries say which part of a whole conversation they complete).
TERMINAL = WHOLE


@dataclass
class Summary:
    """What one sweep did; `failures` lists what went wrong, one line each."""

    checked: int = 0
    complete: int = 0
    fetched: int = 0
    recovered: int = 0
    missing: int = 0  # events the store lacked (a dry run counts them without storing them)
    new_conversations: int = 0
    outside_window: int = 0
    pages: int = 0
    finished: bool = False  # the whole window was swept (False: stopped early, resumes next run)
    stopped: str = ""  # why the run stopped early: the budget, a rate limit, a refused key, an API failing
    failures: list[str] = field(default_factory=list)

    def line(self) -> str:
        parts = [f"{self.checked} conversations checked", f"{self.complete} already complete",
                 f"{self.fetched} fetched", f"{self.recovered} events recovered"]
        if self.missing != self.recovered:
            parts.append(f"{self.missing} missing")
        if self.new_conversations:
            parts.append(f"{self.new_conversations} new to the store")
        parts.append(f"{len(self.failures)} failures")
        if not self.finished:
            parts.append(self.stopped or "stopped at the time budget; the next run resumes")
        return "reconcile: " + ", ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "outside_window"}


class Sweep:
    """One reconcile run over a pipeline's store, against the vendor's API."""

    def __init__(self, pipeline: Pipeline, client: TavusClient, *, since: datetime | None = None,
                 deadline: float | None = None, dry_run: bool = False, thorough: bool = False,
                 page_size: int = DEFAULT_PAGE_SIZE, resume: bool = True, derive: bool = True,
                 progress: Callable[[Summary], None] | None = None) -> None:
        self.pipeline, self.client, self.derive = pipeline, client, derive
        self.since = since.astimezone(UTC) if since else None
        self.deadline, self.dry_run, self.thorough, self.page_size = deadline, dry_run, thorough, page_size
        self.resume = resume and not dry_run
        self.progress = progress or (lambda summary: None)
        self.summary = Summary()
        self.cursor_key = f"{pipeline.layout.prefix}reconcile/cursor.json"

    def run(self, conversation: str | None = None) -> Summary:
        """Sweep one conversation, or the window; never raises for one conversation."""
        try:
            if conversation is not None:
                self._conversation({"conversation_id": conversation}, listed=False)
                self.summary.finished = True
            else:
                self._window()
        except DeadlineReached as exc:  # the budget, or a rate limit beyond it: not a failure
            log.info("reconcile stopped: %s", exc)
            self.summary.stopped = f"stopped: {exc}; the next run resumes"
        except TavusAPIError as exc:  # a refused key, an API failing or answering nonsense
            self.summary.failures.append(str(exc))
            self.summary.stopped = f"stopped: {exc}"
        finally:
            self.client.close()
        self.progress(self.summary)
        return self.summary

    def _spent(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def _window(self) -> None:
        page = self._cursor_page() if self.resume else 1
        newest_first = True
        previous: str | None = None
        while True:
            self._save_cursor(page)
            listing = self.client.list_conversations(page, self.page_size, deadline=self.deadline)
            self.summary.pages += 1
            in_window = 0
            for item in listing.conversations:
                when = to_utc_iso_or_none(item.get("created_at"))
                if when and previous and when > previous:
                    newest_first = False
                previous = when or previous
                if not self._in_window(item):
                    self.summary.outside_window += 1
                    continue
                in_window += 1
                if self._spent():
                    raise DeadlineReached("the run's time budget is spent")
                self._conversation(item, listed=True)
            done = not listing.conversations or page * self.page_size >= listing.total_count
            # A listing that is newest first and whose whole page is older than the window has no more to give.
            if done or (newest_first and in_window == 0 and self.since is not None):
                break
            page += 1
        self.summary.finished = True
        self._save_cursor(None)

    def _in_window(self, item: dict[str, Any]) -> bool:
        if self.since is None:
            return True
        when = to_utc_iso_or_none(item.get("updated_at")) or to_utc_iso_or_none(item.get("created_at"))
        return when is None or when >= format_utc(self.since)

    def _conversation(self, item: dict[str, Any], *, listed: bool) -> None:
        cid = item.get("conversation_id")
        self.summary.checked += 1
        if not is_plain_id(cid):
            self.summary.failures.append(f"the API listed a conversation whose id is not plain: {cid!r}")
            return
        assert isinstance(cid, str)
        try:
            state = read_object(self.pipeline.store, self.pipeline.layout.conversation_key(cid))
            if listed and self._complete(state, item):
                self.summary.complete += 1
                return
            conversation = self.client.conversation(cid, deadline=self.deadline)
            self.summary.fetched += 1
            self._recover(cid, state, conversation, listed=listed)
        except (DeadlineReached, KeyRefused):  # no other conversation would do better in this run
            raise
        except (TavusCallbacksError, OSError) as exc:
            self.summary.failures.append(f"conversation {cid}: {exc}")
            log.error("reconcile: conversation %s: %s", cid, exc, extra={"conversation_id": cid})
        finally:
            if self.summary.checked % 10 == 0:
                self.progress(self.summary)

    def _complete(self, state: dict[str, Any] | None, item: dict[str, Any]) -> bool:
        """True when the state's `reconciled` mark has the listing's `updated_at` and `status` (nothing changed
        since a sweep found every event stored), or the conversation ended and its state holds TERMINAL."""
        if state is None:
            return False
        mark = state.get(RECONCILED)
        if isinstance(mark, dict) and item.get("updated_at") and mark.get("updated_at") == item.get("updated_at") \
                and mark.get("status") == item.get("status"):
            return True
        events = state.get("events")
        if self.thorough or item.get("status") != "ended" or not isinstance(events, list):  # unreadable: fetch
            return False
        types = {e.get("type") for e in events if isinstance(e, dict)}
        return all(not group.isdisjoint(types) for group in TERMINAL)

    def _recover(self, cid: str, state: dict[str, Any] | None, conversation: dict[str, Any], *,
                 listed: bool) -> None:
        """Store the events the state lacks (and derive them, when asked), then mark it reconciled."""
        if state is None:
            self.summary.new_conversations += 1
        events = conversation.get("events") or []
        if not isinstance(events, list):
            raise TavusAPIError(f"GET /v2/conversations/{cid} answered `events` that is not a list")
        objects = [item for item in events if isinstance(item, dict)]
        for _ in range(len(events) - len(objects)):
            self.summary.failures.append(f"conversation {cid}: an item of `events` is not an object")
        stored = self._store_missing(cid, state, conversation, objects)
        if self.derive and stored:
            for key, result in zip(stored, self.pipeline.derive_many(stored), strict=True):
                if isinstance(result, Exception):
                    self.summary.failures.append(f"conversation {cid}: {key} is stored but not derived: {result}")
        if len(objects) < len(events) or self.dry_run:
            return
        mark = {"updated_at": conversation.get("updated_at"), "status": conversation.get("status"),
                "events": len(events), "at": format_utc(datetime.now(UTC))}
        self.pipeline.folder.mark_reconciled(cid, mark)

    def _store_missing(self, cid: str, state: dict[str, Any] | None, conversation: dict[str, Any],
                       items: list[dict[str, Any]]) -> list[str]:
        """Store each API event item the state does not hold (by id, or by type and time); the keys stored."""
        held = (state or {}).get("events")
        entries = [e for e in held if isinstance(e, dict)] if isinstance(held, list) else []
        have_ids = {e.get("id") for e in entries}
        have_times = {(e.get("type"), e.get("time")) for e in entries if e.get("time")}
        stored: list[str] = []
        for item in items:
            fields = completed(item, conversation, cid)
            event = normalize(fields)
            eid = hashlib.sha256(identity(fields, event)).hexdigest()
            if eid in have_ids or (event.time and (event.type, event.time) in have_times):
                continue
            have_ids.add(eid)
            self.summary.missing += 1
            if self.dry_run:
                continue
            record, created = self.pipeline.ingest(item, origin=ORIGIN, fields=fields)
            if created:
                self.summary.recovered += 1
                stored.append(record.key)
        return stored

    def _cursor_page(self) -> int:
        cursor = read_object(self.pipeline.store, self.cursor_key) or {}
        page = cursor.get("page")
        if cursor.get("page_size") != self.page_size or not isinstance(page, int) or page < 1:
            return 1
        log.info("reconcile resumes at page %d", page)
        return page

    def _save_cursor(self, page: int | None) -> None:
        """Where the next run starts: the page being swept, or None when the window was swept to its end."""
        if not self.resume:
            return
        store = self.pipeline.store
        cursor = {"schema": CURSOR_SCHEMA, "page": page or 1, "page_size": self.page_size,
                  "finished": page is None, "at": format_utc(datetime.now(UTC))}
        blob = store.read(self.cursor_key)
        with contextlib.suppress(PreconditionFailed):  # another sweep moved it: it knows better where it is
            store.replace(self.cursor_key, orjson.dumps(cursor, option=orjson.OPT_INDENT_2),
                          blob.version if blob else None)


def completed(item: dict[str, Any], conversation: dict[str, Any], cid: str) -> dict[str, Any]:
    """An API event item as a callback would carry it, for normalizing (the item itself is stored verbatim):
    plus `conversation_id`, `message_type`, and for `system.shutdown` the conversation's `shutdown_reason`."""
    fields = dict(item)
    fields.setdefault("conversation_id", cid)
    event_type = fields.get("event_type")
    if isinstance(event_type, str) and "message_type" not in fields:
        kind = event_type.split(".", 1)[0]
        if kind in ("system", "application"):
            fields["message_type"] = kind
    reason = conversation.get("shutdown_reason")
    if event_type == "system.shutdown" and isinstance(reason, str):
        properties = fields.get("properties")
        properties = dict(properties) if isinstance(properties, dict) else {}
        if not properties.get("shutdown_reason"):
            properties["shutdown_reason"] = reason
            fields["properties"] = properties
    return fields
