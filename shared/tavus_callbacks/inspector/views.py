"""What the pages show, as data (rows, fields, turns) and as HTML; every string shown goes through
`html.escape`, as payloads are hostile input. The page's script renders the same data on each update."""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from tavus_callbacks.events.catalogue import kind_of, show_lines
from tavus_callbacks.inspector.assets import SCRIPT, STYLE
from tavus_callbacks.inspector.reading import DAMAGED, last_activity

if TYPE_CHECKING:
    from tavus_callbacks.inspector.reading import Conversation, Other, Recent

ROOT = "/_/"
FEED_LIMIT = 200  # callbacks listed on the first page at most
OTHERS_LIMIT = 50  # replica training and video generation callbacks listed at most

CONVERSATION_COLUMNS = ("Conversation", "Status", "Replica", "Joined", "Ended", "Shutdown", "Messages", "Recording",
                        "Events", "Last event")
CALLBACK_COLUMNS = ("Time (UTC)", "Type", "Answer", "Conversation", "What it says", "")
OTHER_COLUMNS = ("Time (UTC)", "Type", "Answer", "Replica or video", "What it says", "")
TIMELINE_COLUMNS = ("Time (UTC)", "Type", "Answer", "What it says", "")


@dataclass(frozen=True, slots=True)
class Row:
    """One table row: its cells' text, which cell links where, and the stored event its payload button shows."""

    id: str
    cells: tuple[str, ...]
    link: int | None = None
    href: str | None = None
    key: str | None = None

    def json(self) -> dict[str, Any]:
        return {"id": self.id, "cells": list(self.cells), "link": self.link, "href": self.href, "key": self.key}


def conversation_href(conversation_id: str) -> str:
    return f"{ROOT}c/{quote(conversation_id, safe='')}"


# -- words -------------------------------------------------------------------------------------------

def text(value: Any) -> str:
    """Any JSON value as a short text: None is '-'."""
    if value is None or value == "":
        return "-"
    return value if isinstance(value, str) else str(value)


def when(iso: Any) -> str:
    """'2025-07-11T06:45:47.472000Z' -> '2025-07-11 06:45:47.472'; '-' for no time."""
    if not isinstance(iso, str) or not iso:
        return "-"
    return f"{iso[:10]} {iso[11:23]}" if len(iso) >= 19 and iso[10] == "T" else iso


def short_type(type_: Any) -> str:
    """'io.tavus.conversation.system.shutdown' -> 'system.shutdown'."""
    return str(type_ or "?").removeprefix("io.tavus.").removeprefix("conversation.")


def answer(valid: Any) -> str:
    """The answer a stored event got: 200, stored (kept whole, marked invalid when it failed its schema)."""
    return "200 stored" if valid is not False else "200 stored, invalid"


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def describe(entry: dict[str, Any]) -> str:
    """A few words on one event of a conversation, from the facts its state keeps (its registry entry's)."""
    facts = _dict(entry.get("facts"))
    if entry.get("valid") is False:
        return "; ".join(str(x) for x in _list(facts.get("errors"))[:2])
    kind = kind_of(str(entry.get("type", "")))
    if kind is not None and kind.describe is not None:
        try:
            return kind.describe(facts)
        except (TypeError, ValueError, AttributeError, KeyError):  # a state written by something else
            pass
    if facts.get("face_id"):
        return f"face {facts['face_id']}"
    if facts.get("replica_id"):
        return f"replica {facts['replica_id']}"
    return ", ".join(f"{k}={v}" for k, v in facts.items() if v is not None)


# -- the data of each page ---------------------------------------------------------------------------

def conversation_row(state: dict[str, Any]) -> Row:
    """One conversation in the list."""
    cid = text(state.get("conversation_id"))
    shutdown, transcript = _dict(state.get("shutdown")), _dict(state.get("transcript"))
    recording = _dict(state.get("recording"))
    events = _list(state.get("events"))
    invalid = state.get("invalid_events") or 0
    cells = (cid, text(state.get("status")), text(state.get("replica_id")), when(state.get("joined_at")),
             when(state.get("ended_at")), text(shutdown.get("code")), text(transcript.get("messages")),
             text(recording.get("status")), f"{len(events)}" + (f" ({invalid} invalid)" if invalid else ""),
             when(last_activity(state)))
    return Row(cid, cells, link=0, href=conversation_href(cid))


def _entries(state: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in _list(state.get("events")) if isinstance(e, dict)]


def callback_rows(states: Iterable[dict[str, Any]], limit: int = FEED_LIMIT) -> list[Row]:
    """The events of these conversations, newest first; an event without a time of its own (guardrails,
    objectives) sits at its conversation's last activity."""
    ranked: list[tuple[tuple[str, str], Row]] = []
    for state in states:
        cid, last = text(state.get("conversation_id")), last_activity(state)
        for e in _entries(state):
            eid, time = text(e.get("id")), e.get("time")
            cells = (when(time), short_type(e.get("type")), answer(e.get("valid")), cid, describe(e))
            row = Row(eid, cells, link=3, href=conversation_href(cid), key=_key(e))
            ranked.append(((time if isinstance(time, str) else last, eid), row))
    ranked.sort(key=lambda pair: pair[0], reverse=True)
    return [row for _, row in ranked[:limit]]


def other_rows(others: Iterable[Other]) -> list[Row]:
    """Replica training and video generation callbacks, as the reader found them (newest first)."""
    rows = []
    for o in others:
        data = _dict(_dict(o.document).get("data"))
        details = _dict(data.get("details"))
        words = [text(details.get(k)) for k in ("status", "error_message", "status_details", "video_name")
                 if details.get(k)]
        rows.append(Row(o.id, (when(o.time), short_type(f"io.tavus.{o.type}"), answer(data.get("valid")), o.subject,
                               ", ".join(words)), key=o.key))
    return rows


def timeline_rows(state: dict[str, Any]) -> list[Row]:
    """A conversation's events in time order; those without a time of their own last."""
    entries = sorted(_entries(state), key=lambda e: (not isinstance(e.get("time"), str), str(e.get("time") or ""),
                                                     str(e.get("id"))))
    return [Row(text(e.get("id")), (when(e.get("time")) if e.get("time") else "(no time given)",
                                    short_type(e.get("type")), answer(e.get("valid")), describe(e)), key=_key(e))
            for e in entries]


def _key(entry: dict[str, Any]) -> str | None:
    key = entry.get("key")
    return key if isinstance(key, str) else None


def conversation_fields(state: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """The state at a glance: label and lines, as `conversations show` gives them (the registry's lines)."""
    if state.get(DAMAGED) is True:
        cid = text(state.get("conversation_id"))
        return [("Status", ["damaged: its conversation.json cannot be read (damaged, or written by something else); "
                            f"`tavus-callbacks repair --conversation {cid}` rebuilds it from its stored events"])]
    return [("Status", [text(state.get("status"))]), *show_lines(state)]


def transcript_turns(transcript: dict[str, Any] | None) -> list[tuple[str, str, str]]:
    """(role, when, content) for each turn of transcript.json."""
    turns = []
    for turn in _list(_dict(transcript).get("transcript")):
        turn = _dict(turn)
        at = turn.get("timestamp")
        offset = turn.get("seconds_from_start")
        said = when(at) if isinstance(at, str) else (f"{at}" if at is not None else "")
        if isinstance(offset, int | float) and not isinstance(offset, bool):
            said = f"{said} (+{offset:g} s)".strip()
        turns.append((text(turn.get("role")), said, text(turn.get("content"))))
    return turns


def perception_text(conversation: Conversation) -> str:
    """The perception analysis (markdown, shown as text), or why there is none."""
    analysis = _dict(conversation.perception).get("analysis")
    if analysis is not None:
        return analysis if isinstance(analysis, str) else str(analysis)
    perception = _dict(conversation.state.get("perception"))
    if perception.get("status") == "unavailable" or perception.get("reason"):
        return f"unavailable: {text(perception.get('reason'))}"
    return "-"


def index_data(recent: Recent) -> dict[str, Any]:
    """What the first page shows and its script updates: the recent conversations and their callbacks."""
    shown = len(recent.states)
    scope = f" {recent.scope}" if recent.scope else ""
    note = (f"{recent.total} conversation{'s' if recent.total != 1 else ''}{scope}"
            + (f"; the {shown} with the latest activity first" if shown < recent.total else ", latest activity first"))
    callbacks = callback_rows(recent.states)
    return {
        "version": recent.version,
        "tables": {"conversations": [r.json() for r in map(conversation_row, recent.states)],
                   "callbacks": [r.json() for r in callbacks]},
        "notes": {"conversations": note if recent.total else f"No conversation{scope or ' in this store'} yet.",
                  "callbacks": f"the latest {len(callbacks)} events of these conversations, newest first "
                               "(time from the payload; guardrails and objectives carry none and sit at their "
                               "conversation's last event)" if callbacks else "No callbacks yet."},
    }


def conversation_data(conversation: Conversation) -> dict[str, Any]:
    """What a conversation's page shows and its script updates."""
    state = conversation.state
    turns = transcript_turns(conversation.transcript)
    return {
        "version": conversation.version,
        "fields": conversation_fields(state),
        "turns": turns,
        "perception": perception_text(conversation),
        "tables": {"timeline": [r.json() for r in timeline_rows(state)]},
        "notes": {"timeline": f"{len(_entries(state))} events, in time order (UTC)",
                  "transcript": f"{len(turns)} turns" if turns else "No transcript yet."},
    }


# -- HTML ----------------------------------------------------------------------------------------------

def e(value: Any) -> str:
    """Escaped for HTML text and attribute values alike."""
    return html.escape(str(value), quote=True)


def _row_html(row: Row) -> str:
    cells = []
    for i, cell in enumerate(row.cells):
        if i == row.link and row.href:
            cells.append(f'<td><a href="{e(row.href)}">{e(cell)}</a></td>')
        else:
            cells.append(f"<td>{e(cell)}</td>")
    attributes = f' data-id="{e(row.id)}"'
    if row.key:
        attributes += f' data-key="{e(row.key)}"'
        cells.append('<td><button type="button" class="show">payload</button></td>')
    return f"<tr{attributes}>{''.join(cells)}</tr>"


def table(name: str, columns: Sequence[str], rows: Iterable[dict[str, Any] | Row]) -> str:
    """A table whose body the script can refill (its id is the name of its rows in the JSON)."""
    head = "".join(f"<th>{e(c)}</th>" for c in columns)
    body = "".join(_row_html(r if isinstance(r, Row) else _row_of(r)) for r in rows)
    return f'<table><thead><tr>{head}</tr></thead><tbody id="{e(name)}">{body}</tbody></table>'


def _row_of(data: dict[str, Any]) -> Row:
    return Row(data["id"], tuple(data["cells"]), data["link"], data["href"], data["key"])


def _fields_html(fields: Sequence[tuple[str, Sequence[str]]]) -> str:
    parts = []
    for label, lines in fields:
        parts.append(f"<dt>{e(label)}</dt>" + "".join(f"<dd>{e(line)}</dd>" for line in lines))
    return f'<dl id="fields">{"".join(parts)}</dl>'


def _turns_html(turns: Sequence[tuple[str, str, str]]) -> str:
    items = "".join(f'<li data-role="{e(role)}"><span class="who">{e(role)}</span><span class="when">{e(said)}'
                    f"</span><p>{e(content)}</p></li>" for role, said, content in turns)
    return f'<ol id="turns" class="turns">{items}</ol>'


def page(title: str, body: str, *, store_url: str, read_only: bool, api: str | None = None,
         version: str = "", poll_ms: int = 2000) -> str:
    """A whole page: the header, `body` in <main> (updated from `api` when given), the style and the script."""
    mode = "read-only" if read_only else "live from serve"
    main = (f'<main data-api="{e(api)}" data-version="{e(version)}" data-poll="{poll_ms}">' if api else "<main>")
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer"><link rel="icon" href="data:,">'
        f"<title>{e(title)}</title><style>{STYLE}</style></head><body>"
        f'<header><h1><a href="{ROOT}">tavus-callbacks inspector</a></h1>'
        f'<p class="where">{e(store_url)} ({mode})</p><p id="live" role="status"></p></header>'
        f"{main}{body}</main><script>{SCRIPT}</script></body></html>"
    )


def render_index(recent: Recent, others: Sequence[Other], *, store_url: str, read_only: bool,
                 poll_ms: int = 2000) -> str:
    """The first page: recent conversations, their callbacks (both live), and the replica and video ones."""
    data = index_data(recent)
    body = (
        f'<section><h2>Conversations</h2><p class="note" id="note-conversations">{e(data["notes"]["conversations"])}'
        f'</p>{table("conversations", CONVERSATION_COLUMNS, data["tables"]["conversations"])}</section>'
        f'<section><h2>Callbacks</h2><p class="note" id="note-callbacks">{e(data["notes"]["callbacks"])}</p>'
        f'{table("callbacks", CALLBACK_COLUMNS, data["tables"]["callbacks"])}</section>'
        '<section><h2>Replica training and video generation</h2><p class="note">'
        + e(f"the latest {len(others)}, as the page was loaded (reload to see newer ones)" if others
            else "None in this store.")
        + f'</p>{table("others", OTHER_COLUMNS, other_rows(others))}</section>'
    )
    return page("tavus-callbacks inspector", body, store_url=store_url, read_only=read_only,
                api=f"{ROOT}api/recent", version=recent.version, poll_ms=poll_ms)


def render_conversation(conversation: Conversation, *, store_url: str, read_only: bool, poll_ms: int = 2000) -> str:
    """A conversation's page: its state, transcript, perception and the timeline of its events, live."""
    data = conversation_data(conversation)
    cid = text(conversation.state.get("conversation_id"))
    body = (
        f'<p><a href="{ROOT}">all conversations</a></p><h2>Conversation {e(cid)}</h2>'
        f'{_fields_html(data["fields"])}'
        f'<section><h2>Transcript</h2><p class="note" id="note-transcript">{e(data["notes"]["transcript"])}</p>'
        f'{_turns_html(data["turns"])}</section>'
        f'<section><h2>Perception</h2><pre id="perception">{e(data["perception"])}</pre></section>'
        f'<section><h2>Timeline</h2><p class="note" id="note-timeline">{e(data["notes"]["timeline"])}</p>'
        f'{table("timeline", TIMELINE_COLUMNS, data["tables"]["timeline"])}</section>'
    )
    return page(f"Conversation {cid}", body, store_url=store_url, read_only=read_only,
                api=f"{ROOT}api/c/{quote(cid, safe='')}", version=conversation.version, poll_ms=poll_ms)


def render_message(title: str, message: str, *, store_url: str = "", read_only: bool = True) -> str:
    """A page that only says something (no such conversation, the store cannot be read)."""
    return page(title, f"<h2>{e(title)}</h2><p>{e(message)}</p>", store_url=store_url, read_only=read_only)


def render_refused() -> str:
    """The answer without the token: how to get in, and nothing about the store."""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,">'
        f"<title>Token needed</title><style>{STYLE}</style></head><body><h1>Token needed</h1>"
        "<p>The inspector shows what the callbacks carried, so it asks for the callback token: open the "
        "address <code>serve</code> or <code>inspect</code> printed (it ends in <code>/_/?token=...</code>), "
        "or send <code>Authorization: Bearer</code>.</p></body></html>"
    )
