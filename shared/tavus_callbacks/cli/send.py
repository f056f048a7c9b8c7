"""`tavus-callbacks send`: posts sample callbacks like Tavus would, or JSON files.

The samples are the registry's (each entry's `samples`, files in events/samples/), with fresh ids and times, so
a whole conversation can be replayed against any deployment.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import re
import secrets
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.client import responses
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from tavus_callbacks.cli.post import Answer, post
from tavus_callbacks.errors import ConfigError
from tavus_callbacks.events.catalogue import KINDS
from tavus_callbacks.events.registry import EventKind, Sample
from tavus_callbacks.events.times import EPOCH_MILLISECONDS_FROM, to_utc_iso
from tavus_callbacks.settings import parse_tokens

Payload = dict[str, Any]


def _new_id(letter: str) -> str:
    return letter + secrets.token_hex(6)[:11]


@dataclass(frozen=True, slots=True)
class Ids:
    """The ids one sample conversation shares (new random ones by default)."""

    conversation_id: str = field(default_factory=lambda: _new_id("c"))
    replica_id: str = field(default_factory=lambda: _new_id("r"))
    face_id: str = field(default_factory=lambda: _new_id("f"))
    video_id: str = field(default_factory=lambda: secrets.token_hex(5))


def iso(when: dt.datetime) -> str:
    """The vendor's timestamp form: '2025-07-11T06:45:47.472000Z'."""
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _plain(when: dt.datetime) -> str:
    """The video API's zone-less form: '2024-08-28 15:27:40.824457'."""
    return when.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _about(kind: EventKind, sample: Sample) -> str:
    return f"{kind.event_type}: {sample.about}" if kind.event_type else sample.about


# The registry's samples: those of `send --all` in their order, then the others in the registry's.
_PAIRS = sorted(((k, s) for k in KINDS for s in k.samples), key=lambda ks: (ks[1].step is None, ks[1].step or 0))
_SAMPLES: dict[str, Sample] = {s.name: s for _, s in _PAIRS}
# Every sample by name, with what it shows; CONVERSATION_ORDER is what `send --all` posts.
SAMPLES: dict[str, str] = {s.name: _about(k, s) for k, s in _PAIRS}
CONVERSATION_ORDER = tuple(s.name for s in _SAMPLES.values() if s.step is not None)
_TIMES = ("timestamp", "created_at", "updated_at")  # the fields of a payload that hold a time


class SampleConversation:
    """The registry's samples as one conversation's callbacks: the ids of each sample file replaced with `ids`, and
    every time moved by the same amount, so that the first sample of `send --all` happens at `start` (default:
    eight minutes ago)."""

    def __init__(self, ids: Ids | None = None, *, start: dt.datetime | None = None,
                 webhook_url: str = "https://example.com/webhook") -> None:
        self.ids = ids or Ids()
        self.start = start or (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=8))
        self.webhook_url = webhook_url
        first = _SAMPLES[CONVERSATION_ORDER[0]].payload()["timestamp"]
        self._shift = self.start - dt.datetime.fromisoformat(to_utc_iso(first))

    def named(self, name: str) -> Payload:
        """One sample by its name (see SAMPLES); a ConfigError lists the names when it is unknown."""
        if name not in _SAMPLES:
            raise ConfigError(f"unknown sample event {name!r}: choose one of {', '.join(SAMPLES)}")
        payload = _SAMPLES[name].payload()
        text = json.dumps(payload)
        for old, new in self._id_changes(payload):  # wherever the id is written: fields, URLs, object keys, names
            written = json.dumps(new)[1:-1]  # as JSON text, whatever characters an id given on the command line has
            text = re.sub(rf"(?<![\w-]){re.escape(old)}(?![\w-])", written.replace("\\", "\\\\"), text)
        fresh: Payload = self._moved(json.loads(text))
        if "webhook_url" in fresh:
            fresh["webhook_url"] = self.webhook_url
        return fresh

    def __getattr__(self, name: str) -> Callable[[], Payload]:
        """`conversation.shutdown()` is `conversation.named("shutdown")`, for every sample name."""
        if name in _SAMPLES:
            return lambda: self.named(name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _id_changes(self, payload: Payload) -> list[tuple[str, str]]:
        """(id in the sample, the one of this conversation) for each id the sample names."""
        properties = payload["properties"] if isinstance(payload.get("properties"), dict) else {}
        found = [(payload.get("conversation_id"), self.ids.conversation_id),
                 (payload.get("replica_id"), self.ids.replica_id),
                 (properties.get("replica_id"), self.ids.replica_id),
                 (properties.get("face_id"), self.ids.face_id),
                 (payload.get("video_id"), self.ids.video_id)]
        return [(old, new) for old, new in found if isinstance(old, str) and old]

    def _moved(self, value: Any, key: str | None = None) -> Any:
        """`value` with every time in it moved by this conversation's shift, each in the form it had."""
        if isinstance(value, dict):
            return {k: self._moved(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [self._moved(v) for v in value]
        if key not in _TIMES or value is None or isinstance(value, bool):
            return value
        if isinstance(value, int | float):  # epoch seconds, or milliseconds
            moved = value + self._shift.total_seconds() * (1000 if value >= EPOCH_MILLISECONDS_FROM else 1)
            return round(moved) if isinstance(value, int) else round(moved, 6)
        when = dt.datetime.fromisoformat(to_utc_iso(value)) + self._shift
        return iso(when) if "T" in str(value) else _plain(when)


# -- `tavus-callbacks send` ----------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("events", nargs="*", metavar="EVENT", help="sample names to send (see --list)")
    parser.add_argument("--all", action="store_true",
                        help="send a whole conversation in order, then a replica and a video callback")
    parser.add_argument("--file", action="append", default=[], metavar="FILE",
                        help="send a JSON file as it is (a JSON array: each element); repeatable")
    parser.add_argument("--url", default=os.environ.get("TAVUS_CALLBACK_URL"),
                        help="the endpoint (env TAVUS_CALLBACK_URL)")
    parser.add_argument("--token", help="the token, added as ?token= (env: the first of TAVUS_CALLBACK_TOKENS); "
                                        "not needed when --url already has one")
    parser.add_argument("--bearer", action="store_true", help="send the token as Authorization: Bearer instead")
    parser.add_argument("--conversation-id", metavar="ID", help="the conversation id of the samples (default: new)")
    parser.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS", help="per request (default 30)")
    parser.add_argument("--list", action="store_true", help="list the sample events and exit")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object: url (token redacted), conversation_id, sent, counts "
                             "({outcome: n}), failed, stopped (why sending stopped early, or null), deliveries "
                             "([{label, status, outcome, answer}]: status 0 when unreachable); with --list, "
                             "{name: description}")


def target(url: str | None, token: str | None, bearer: bool) -> tuple[str, str | None, str]:
    """(URL to post to, Bearer token or None, the URL as it may be shown) for the given options."""
    if not url:
        raise ConfigError("no endpoint: pass --url http://HOST:PORT/ (or set TAVUS_CALLBACK_URL)")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - a port that is not a number raises here
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"--url {url!r} is not an http(s) URL: use e.g. http://127.0.0.1:8080/")
    query = parse_qsl(parts.query, keep_blank_values=True)
    has_token = any(k == "token" for k, _ in query)
    if not token and not has_token:
        raise ConfigError("no token: pass --token, put ?token=... in --url, or set TAVUS_CALLBACK_TOKENS")
    header = token if token and bearer else None
    if token and not bearer and not has_token:
        query.append(("token", token))
    shown = [(k, "[redacted]" if k == "token" else v) for k, v in query]
    return (urlunsplit(parts._replace(query=urlencode(query), fragment="")), header,
            urlunsplit(parts._replace(query=urlencode(shown, safe="[]"), fragment="")))


def deliveries(args: argparse.Namespace, conversation: SampleConversation) -> list[tuple[str, bytes]]:
    """(label, body) for every delivery asked for, in order."""
    names = [*(CONVERSATION_ORDER if args.all else ()), *args.events]
    out = [(name, json.dumps(conversation.named(name)).encode()) for name in names]
    for file in args.file:
        path = Path(file)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"--file {file}: {exc.strerror or exc}") from None
        try:
            value = json.loads(raw)
        except ValueError:
            value = None
        if isinstance(value, list):
            out += [(f"{path.name}[{i}]", json.dumps(item).encode()) for i, item in enumerate(value)]
        else:
            out.append((path.name, raw))
    return out


def describe(answer: Answer) -> str:
    """The answer on one line: status and body (JSON compacted, long bodies cut)."""
    text = answer.body.decode(errors="replace").strip()
    if answer.status == 0:
        return f"unreachable  {text}"
    with contextlib.suppress(ValueError):
        text = json.dumps(json.loads(text), separators=(", ", ": "))
    if len(text) > 240:
        text = text[:237] + "..."
    return f"{answer.status} {responses.get(answer.status, '')}  {text}"


def outcome(answer: Answer) -> str:
    """What the summary counts the answer as: the `status` it says (stored, duplicate), or why it failed."""
    if not answer.ok:
        return f"HTTP {answer.status}" if answer.status else "unreachable"
    with contextlib.suppress(ValueError, AttributeError):
        return str(json.loads(answer.body).get("status", "accepted"))
    return "accepted"


CONNECTION_FAILURES = 3  # deliveries in a row that reached nobody: the endpoint is down, the rest would fail too


def run(args: argparse.Namespace) -> int:
    """Post each delivery, print each answer; 0 only when every answer is 2xx."""
    if args.list:
        print_samples(args.json)
        return 0
    tokens = parse_tokens(os.environ.get("TAVUS_CALLBACK_TOKENS", ""), required=False)
    token = args.token or next(iter(tokens), None)
    url, bearer, shown = target(args.url, token, args.bearer)
    conversation = SampleConversation(Ids(args.conversation_id) if args.conversation_id else None,
                                      webhook_url=url.split("?", 1)[0])
    if not 0 < args.timeout <= 3600:
        raise ConfigError(f"--timeout {args.timeout:g}: give a number of seconds above 0 and at most 3600")
    todo = deliveries(args, conversation)
    if not todo:
        raise ConfigError("nothing to send: name sample events (see --list), or use --all or --file FILE")
    if not args.json:
        print(f"POST {shown}  conversation {conversation.ids.conversation_id}")
    report = _Report()
    width = max(len(label) for label, _ in todo)
    for i, (label, body) in enumerate(todo, 1):
        answer = post(url, body, bearer=bearer, timeout=args.timeout, agent="tavus-callbacks-send")
        if not args.json:
            print(f"[{i:>2}/{len(todo)}] {label:<{width}}  {describe(answer)}", flush=True)
        if not report.add(label, answer, left=len(todo) - i):
            break
    if args.json:
        print(json.dumps({"url": shown, "conversation_id": conversation.ids.conversation_id, **report.as_dict()},
                         indent=2))
    else:
        summary = ", ".join(f"{n} {what}" for what, n in sorted(report.counts.items()))
        print(f"{len(report.sent)} sent: {summary}")
    if report.stopped:
        print(f"error: {report.stopped}", file=sys.stderr)
    elif report.failed:
        print(f"{report.failed} not accepted (answer not 2xx)", file=sys.stderr)
    return 1 if report.failed else 0


def print_samples(as_json: bool) -> None:
    """`send --list`: each sample's name and what it shows (as one JSON object with --json)."""
    if as_json:
        print(json.dumps(SAMPLES, indent=2))
        return
    width = max(map(len, SAMPLES))
    for name, what in SAMPLES.items():
        marker = "*" if name in CONVERSATION_ORDER else " "
        print(f"{marker} {name:<{width}}  {what}")
    print("(* sent by --all, in this order)")


@dataclass
class _Report:
    """What the deliveries so far were answered: counted by outcome, the failures, and why sending stopped."""

    counts: Counter[str] = field(default_factory=Counter)
    sent: list[dict[str, Any]] = field(default_factory=list)
    failed: int = 0
    unreachable: int = 0  # in a row
    stopped: str | None = None

    def add(self, label: str, answer: Answer, left: int) -> bool:
        """Count one answer; False when the rest should not be sent (the endpoint reached nobody too often)."""
        self.failed += not answer.ok
        self.counts[outcome(answer)] += 1
        self.sent.append({"label": label, "status": answer.status, "outcome": outcome(answer),
                          "answer": _answer(answer)})
        self.unreachable = self.unreachable + 1 if answer.status == 0 else 0
        if self.unreachable >= CONNECTION_FAILURES and left:
            self.stopped = (f"stopped after {self.unreachable} deliveries in a row reached nobody; {left} not sent: "
                            "check --url and that the endpoint runs")
            return False
        return True

    def as_dict(self) -> dict[str, Any]:
        return {"sent": len(self.sent), "counts": dict(sorted(self.counts.items())), "failed": self.failed,
                "stopped": self.stopped, "deliveries": self.sent}


def _answer(answer: Answer) -> Any:
    """The answer's body as JSON when it is, else as text (the reason, when unreachable)."""
    text = answer.body.decode(errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        return text
