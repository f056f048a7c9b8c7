"""`tavus-callbacks conversations list|show`: a store's conversations, their state and timeline, readably.

Reads what derive writes (`<prefix><id>/conversation.json`, see state/fold.py) and nothing else, the store
opened read-only: `list` finds the recent conversations through the time index (state/index.py), `--all` walks
the store; `--json` gives the same facts to machines.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from typing import Any

from tavus_callbacks.errors import ConfigError
from tavus_callbacks.events.catalogue import kind_of, show_lines
from tavus_callbacks.events.display import when
from tavus_callbacks.layout import Layout
from tavus_callbacks.pipeline import Pipeline
from tavus_callbacks.reconcile.scheduled import parse_since
from tavus_callbacks.settings import DEFAULT_STORE_URL, Settings
from tavus_callbacks.state.fold import readable_state
from tavus_callbacks.state.index import recent_conversations
from tavus_callbacks.state.repair import missing_events
from tavus_callbacks.stores import Store, open_store

STATE_FILE = "conversation.json"
DEFAULT_SINCE = "7d"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`conversations list` and `conversations show ID`, each with --store and --json."""
    store_url = os.environ.get("TAVUS_STORE_URL", "").strip() or DEFAULT_STORE_URL
    actions = parser.add_subparsers(dest="action", required=True)
    for name, text in (("list", "one line per conversation in the store"),
                       ("show", "one conversation's state and the timeline of its events")):
        sub = actions.add_parser(name, help=text, description=text)
        if name == "show":
            sub.add_argument("conversation_id", metavar="ID", help="the conversation id, e.g. c123456")
        else:
            sub.add_argument("--since", metavar="WHEN", default=DEFAULT_SINCE,
                             help=f"conversations active since then: 24h, 7d, or an ISO-8601 time (default "
                                  f"{DEFAULT_SINCE}; from the time index)")
            sub.add_argument("--limit", metavar="N", type=int, help="at most N conversations, the most recent")
            sub.add_argument("--all", action="store_true",
                             help="every conversation in the store, whenever it was active (reads the whole store)")
        sub.add_argument("--store", metavar="URL", default=store_url,
                         help=f"the store to read (env TAVUS_STORE_URL; default {DEFAULT_STORE_URL})")
        sub.add_argument("--json", action="store_true",
                         help="print JSON instead of text: list, an array of {conversation_id, status, replica_id, "
                              "joined_at, ended_at, shutdown_code, messages, recording, events, invalid_events}; "
                              "show, the conversation.json state as stored")


def run(args: argparse.Namespace) -> int:
    """List the conversations or show one."""
    store, prefix = open_store(args.store, read_only=True)
    layout = Layout(prefix)
    if args.action == "list":
        states = list(iter_states(store, layout) if args.all else recent_states(store, layout, args))
        if args.json:
            print(json.dumps([summary(s) for s in states], indent=2))
        else:
            print(render_list(states, store.url, None if args.all else args.since))
        return 0
    state = read_state(store, layout, args.conversation_id)
    if state is None and store.stat(layout.conversation_key(args.conversation_id)) is not None:
        return 1  # damaged: the warning said how to rebuild it
    if state is None:
        print(f"error: no conversation {args.conversation_id!r} in {store.url} "
              f"(looked for {layout.conversation_key(args.conversation_id)}); "
              "`tavus-callbacks conversations list` shows the ones there are", file=sys.stderr)
        return 1
    print(json.dumps(state, indent=2, sort_keys=True) if args.json else render_show(state))
    missing = missing_events(Pipeline(Settings.from_env(os.environ, store_url=store.url), store=store,
                                      prefix=layout.prefix), args.conversation_id)
    if missing:
        print(f"note: {len(missing)} stored event{'s' if len(missing) != 1 else ''} of this conversation "
              f"{'are' if len(missing) != 1 else 'is'} not in its state yet; "
              f"`tavus-callbacks repair --conversation {args.conversation_id}` folds them", file=sys.stderr)
    return 0


# -- reading -------------------------------------------------------------------------------------

def recent_states(store: Store, layout: Layout, args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    """The states of the conversations the time index holds since `--since`, newest first, at most `--limit`."""
    if args.limit is not None and args.limit < 1:
        raise ConfigError("--limit must be at least 1")
    since = parse_since(args.since)
    shown = 0
    for cid in recent_conversations(store, layout, since):
        if args.limit is not None and shown >= args.limit:
            return
        state = _load(store, layout.conversation_key(cid))
        if state is not None:
            shown += 1
            yield state


def iter_states(store: Store, layout: Layout) -> Iterator[dict[str, Any]]:
    """Every conversation state in the store (one folder level under the prefix), in key order."""
    depth = layout.prefix.count("/") + 1
    for key in store.iter_keys(layout.prefix):
        if key.endswith("/" + STATE_FILE) and key.count("/") == depth:
            state = _load(store, key)
            if state is not None:
                yield state


def read_state(store: Store, layout: Layout, conversation_id: str) -> dict[str, Any] | None:
    """One conversation's state, or None when the store has none for that id."""
    if not conversation_id or "/" in conversation_id or conversation_id in (".", ".."):
        raise ConfigError(f"{conversation_id!r} is not a conversation id (e.g. c123456)")
    return _load(store, layout.conversation_key(conversation_id))


def _load(store: Store, key: str) -> dict[str, Any] | None:
    """The state at `key` as the fold reads it; None when there is none, and a warning when it is damaged."""
    blob = store.read(key)
    if blob is None:
        return None
    cid = key.rsplit("/", 2)[-2]
    state = readable_state(cid, blob.data)
    if state is None:
        print(f"warning: {key} could not be read (damaged or written by something else); "
              f"`tavus-callbacks repair --conversation {cid}` rebuilds it from its stored events", file=sys.stderr)
    return state


# -- what is shown -------------------------------------------------------------------------------

def summary(state: dict[str, Any]) -> dict[str, Any]:
    """The facts `list` shows for one conversation."""
    shutdown = state.get("shutdown") or {}
    transcript = state.get("transcript") or {}
    recording = state.get("recording") or {}
    return {
        "conversation_id": state.get("conversation_id"),
        "status": state.get("status"),
        "replica_id": state.get("replica_id"),
        "joined_at": state.get("joined_at"),
        "ended_at": state.get("ended_at"),
        "shutdown_code": shutdown.get("code"),
        "messages": transcript.get("messages"),
        "recording": recording.get("status"),
        "events": len(state.get("events") or []),
        "invalid_events": state.get("invalid_events", 0),
    }


def _clock(iso: str | None) -> str:
    """The time of day to the millisecond, or a dash for events that carry no time."""
    if not iso or len(iso) < 19:
        return "-".center(12)
    return iso[11:23].ljust(12)


def render_list(states: list[dict[str, Any]], store_url: str, since: str | None = None) -> str:
    """A table: one row per conversation, oldest first."""
    if not states:
        if since:
            return (f"No conversations active in the last {since} in {store_url} "
                    "(--since 30d looks further back, --all reads the whole store).")
        return f"No conversations in {store_url} yet."
    rows = [summary(s) for s in states]
    rows.sort(key=lambda r: (r["joined_at"] or r["ended_at"] or "", r["conversation_id"] or ""))
    header = ("CONVERSATION", "STATUS", "REPLICA", "JOINED", "ENDED", "SHUTDOWN", "MSGS", "RECORDING", "EVENTS")
    table = [header] + [(
        str(r["conversation_id"]), str(r["status"]), r["replica_id"] or "-", when(r["joined_at"]),
        when(r["ended_at"]), r["shutdown_code"] or "-", "-" if r["messages"] is None else str(r["messages"]),
        r["recording"] or "-", str(r["events"]) + (f" ({r['invalid_events']} invalid)" if r["invalid_events"] else ""),
    ) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in table]
    window = f" active in the last {since}" if since else ""
    lines.append(f"{len(rows)} conversation{'s' if len(rows) != 1 else ''}{window} in {store_url}")
    return "\n".join(lines)


def render_show(state: dict[str, Any]) -> str:
    """One conversation: its state (the lines of the registry's entries, events/catalogue.py show_lines), then its
    events in time order.

    Guardrail and objective callbacks carry no time, so when they happened is unknown: they come after the
    dated events (in the state's order), with a dash for their time, rather than first as an empty time sorts.
    """
    out: list[str] = [f"Conversation {state.get('conversation_id')}  ({state.get('status')})"]
    for label, values in show_lines(state):
        out += [f"  {label if i == 0 else '':<12} {value}" for i, value in enumerate(values)]
    events = state.get("events") or []
    dated = sorted((e for e in events if e.get("time")), key=lambda e: str(e["time"]))
    undated = [e for e in events if not e.get("time")]
    out.append("")
    out.append(f"Timeline ({len(events)} event{'s' if len(events) != 1 else ''}, UTC"
               + (f"; {len(undated)} without a time of their own, last)" if undated else ")"))
    for e in [*dated, *undated]:
        kind = str(e.get("type", "")).removeprefix("io.tavus.").removeprefix("conversation.")
        mark = "" if e.get("valid", True) else "  [invalid]"
        out.append(f"  {_clock(e.get('time'))}  {kind:<40} {_describe(e)}{mark}".rstrip())
    return "\n".join(out)


def _describe(entry: dict[str, Any]) -> str:
    """A few words on one timeline entry, from the facts the fold kept (its registry entry's `describe`)."""
    facts: dict[str, Any] = entry.get("facts") or {}
    if not entry.get("valid", True):
        errors = facts.get("errors") or []
        return "; ".join(str(x) for x in errors[:2])
    kind = kind_of(str(entry.get("type", "")))
    if kind is not None and kind.describe is not None:
        return kind.describe(facts)
    if facts.get("face_id"):
        return f"face {facts['face_id']}"
    if facts.get("replica_id"):
        return f"replica {facts['replica_id']}"
    parts = [f"{k}={v}" for k, v in facts.items() if v is not None]
    return ", ".join(parts)
