"""The pages rendered from any JSON a store may hold (a foreign or hand-edited conversation.json, hostile payload
text), read as the inspector's reader reads it: they render, and the only markup in them is the page's own."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st
from tavus_callbacks.events.catalogue import KINDS, kind_of
from tavus_callbacks.events.normalize import normalize
from tavus_callbacks.events.registry import SAMPLES_DIR, Found
from tavus_callbacks.inspector import views
from tavus_callbacks.inspector.assets import SCRIPT, STYLE
from tavus_callbacks.inspector.reading import Conversation, Other, Recent, damaged_state
from tavus_callbacks.state.fold import readable_state

# What the templates write, and nothing a payload could add.
PAGE_TAGS = {"html", "head", "meta", "link", "title", "style", "body", "header", "h1", "h2", "a", "p", "main",
             "section", "table", "thead", "tbody", "tr", "th", "td", "button", "dl", "dt", "dd", "ol", "li", "span",
             "pre", "code", "script"}
MARKUP = "<>&\"'/= scriptimgonerrorjavascript:\\u2028"

words = st.text(alphabet=MARKUP, max_size=24) | st.sampled_from(["<script>x()</script>", "</pre><b>", "\"><x y=\""])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | words,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(words, inner, max_size=4), max_leaves=20)
STATE_FIELDS = ("conversation_id", "status", "replica_id", "face_id", "joined_at", "ended_at", "shutdown",
                "transcript", "recording", "perception", "guardrails", "objectives", "post_call_actions",
                "invalid_events", "events")


def _fact_names() -> list[str]:
    """The names of the facts the fold keeps of the recorded payloads (replica_id, uri, code, ...)."""
    names: set[str] = set()
    for path in SAMPLES_DIR.glob("*.json"):
        event = normalize(json.loads(path.read_text()))
        kind = kind_of(event.type)
        if kind is not None and event.valid:
            names |= set(kind.facts(event.details, Found()))
    return sorted(names)


FACT_NAMES = _fact_names()
entries = st.fixed_dictionaries({}, optional={
    "id": json_values,
    "type": words | st.sampled_from(["io.tavus.conversation.system.shutdown", "io.tavus.guardrail.triggered",
                                     "io.tavus.objective.completed"]),
    "time": words | st.just("2025-07-11T06:45:47.472000Z"), "key": words, "valid": json_values, "facts": json_values})
# Entries of the state's own shape (fold.Entry) whose facts are anything: the reader folds them again.
typed_entries = st.fixed_dictionaries({
    "id": words, "type": st.sampled_from([k.type for k in KINDS if not k.type.endswith("*")]) | words,
    "time": st.none() | words | st.just("2025-07-11T06:45:47.472000Z"), "key": words, "valid": st.booleans(),
    "facts": st.dictionaries(words | st.sampled_from(FACT_NAMES), json_values, max_size=6)})
states = st.fixed_dictionaries({"events": st.lists(typed_entries | entries | json_values, max_size=5)},
                               optional={name: json_values for name in STATE_FIELDS if name != "events"})
documents = st.none() | st.dictionaries(st.sampled_from(["transcript", "analysis"]), json_values)


class Markup(HTMLParser):
    """The tags and attributes of a page, and the text of its script and style elements."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.raw: dict[str, list[str]] = {"script": [], "style": []}
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))
        self._in = tag if tag in self.raw else None

    def handle_data(self, data: str) -> None:
        if self._in:
            self.raw[self._in].append(data)

    def handle_endtag(self, tag: str) -> None:
        self._in = None


def only_the_pages_own_markup(page: str) -> None:
    parsed = Markup()
    parsed.feed(page)
    assert {tag for tag, _ in parsed.tags} <= PAGE_TAGS
    for tag, attributes in parsed.tags:
        for name, value in attributes:
            assert not name.startswith("on") and name in {"lang", "charset", "name", "content", "rel", "href", "class",
                                                          "id", "role", "data-api", "data-version", "data-poll",
                                                          "data-id", "data-key", "data-role", "type"}, (tag, name)
            if name == "href":
                assert value is not None and (value.startswith("/_/") or value == "data:,"), value
    assert [tag for tag, _ in parsed.tags].count("script") <= 1
    assert parsed.raw["script"] in ([SCRIPT], [])
    assert parsed.raw["style"] == [STYLE]


@given(state=states, transcript=documents, perception=documents, store_url=words)
def test_a_conversation_page_from_any_state_has_only_its_own_markup(
        state: dict[str, Any], transcript: dict[str, Any] | None, perception: dict[str, Any] | None,
        store_url: str) -> None:
    shown = readable_state("c1", json.dumps(state).encode()) or damaged_state("c1")  # as Reader.conversation reads
    conversation = Conversation(shown, transcript, perception, "v1")
    only_the_pages_own_markup(views.render_conversation(conversation, store_url=store_url, read_only=True))
    orjson.dumps(views.conversation_data(conversation))


@given(listed=st.lists(states, max_size=3), others=st.lists(st.tuples(words, words, json_values), max_size=3))
def test_the_first_page_from_any_states_has_only_its_own_markup(
        listed: list[dict[str, Any]], others: list[tuple[str, str, Any]]) -> None:
    found = [Other(f"replicas/{subject}/events/x.json", eid, "replica.ready", None, subject,
                   document if isinstance(document, dict) else None) for subject, eid, document in others]
    page = views.render_index(Recent(listed, len(listed), "v1"), found, store_url="s3://b/", read_only=False)
    only_the_pages_own_markup(page)
    orjson.dumps(views.index_data(Recent(listed, len(listed), "v1")))


def test_what_a_payload_says_is_in_the_page_as_escaped_text() -> None:
    hostile = "<script>alert(1)</script>"
    state = {"conversation_id": "c1", "status": "ended", "shutdown": {"code": "internal_error", "reason": hostile},
             "guardrails": [{"name": hostile, "count": 2}], "events": [
                 {"id": "e1", "type": "io.tavus.guardrail.triggered", "time": None, "key": "c1/events/g_e1.json",
                  "valid": True, "facts": {"guardrail": hostile}}]}
    page = views.render_conversation(Conversation(state, None, {"analysis": hostile}, "v"), store_url="x",
                                     read_only=True)
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;"
    assert page.count(escaped) == 4  # the shutdown reason, the guardrail, its timeline row, the perception
    assert f"{escaped} x2" in page and "(no time given)" in page
    only_the_pages_own_markup(page)
