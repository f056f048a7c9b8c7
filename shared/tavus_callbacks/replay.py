"""`tavus-callbacks replay`: re-send stored events, in time order, to an endpoint or an event bus.

Each stored CloudEvent holds the original payload in `data.payload`; replay posts it again (as its
canonical JSON, so the receiver computes the same event id) or publishes the stored CloudEvent to a bus.
The receiver stores each event once, so running a replay twice only adds duplicates to the summary.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any

import orjson

from .client import post
from .errors import ConfigError, TavusCallbacksError
from .events import Event
from .record import StoredEvent, canonical_json
from .settings import parse_tokens
from .stores import open_store

if TYPE_CHECKING:
    from .pipeline import Forwarder
    from .stores import Store

HTTP_TIMEOUT_SECONDS = 15.0
HTTP_ATTEMPTS = 5
MAX_RETRY_WAIT_SECONDS = 10.0


class ReplayError(TavusCallbacksError):
    """The replay cannot go on (e.g. the endpoint refuses the token); nothing more would succeed."""


@dataclass(frozen=True, slots=True)
class Stored:
    """One stored event as replay needs it: where it is, its id and time, and the bytes to send."""

    key: str
    id: str
    time: str | None
    payload: Any
    document: dict[str, Any]
    body: bytes

    def record(self) -> StoredEvent:
        """The StoredEvent a bus forwarder publishes: the stored document and bytes as they are."""
        fields = {k: v for k, v in self.document["data"].items() if k != "payload"}
        return StoredEvent(id=self.id, key=self.key, event=Event.model_validate(fields), document=self.document,
                           body=self.body)


def is_event_key(relative: str) -> bool:
    """True for the keys of stored events (SPEC §4), not state, transcripts, recordings or quarantine."""
    return relative.endswith(".json") and ("/events/" in relative or (
        relative.startswith("unrecognized/") and not relative.startswith("unrecognized/pending/")))


def parse_time(text: str) -> datetime:
    """An ISO-8601 date or time; without a zone it is UTC."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(f"--since {text!r} is not an ISO-8601 date or time such as 2025-07-11 or "
                          "2025-07-11T06:45:47Z") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def read_stored(store: Store, key: str) -> Stored | None:
    """The stored event at `key`, or None when it is gone or is not a CloudEvent this package wrote."""
    blob = store.read(key)
    if blob is None:
        return None
    try:
        document = orjson.loads(blob.data)
        return Stored(key, str(document["id"]), document.get("time"), document["data"]["payload"], document,
                      blob.data)
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None


def load_events(store: Store, prefix: str = "", conversation: str | None = None,
                since: datetime | None = None) -> tuple[list[Stored], int]:
    """The stored events to replay, sorted by (time, id) like the conversation fold; and how many were left out."""
    search = f"{prefix}{conversation}/events/" if conversation else prefix
    events: list[Stored] = []
    left_out = 0
    for key in store.iter_keys(search):
        if not is_event_key(key[len(prefix):]):
            continue
        stored = read_stored(store, key)
        if stored is None:
            left_out += 1
            continue
        if since is not None and (stored.time is None or parse_time(stored.time) < since):
            left_out += 1
            continue
        events.append(stored)
    events.sort(key=lambda e: (e.time or "", e.id))
    return events, left_out


@dataclass
class Summary:
    """What happened to each event sent."""

    total: int = 0
    stored: int = 0
    duplicate: int = 0
    published: int = 0
    failed: int = 0
    left_out: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def sent(self) -> int:
        return self.stored + self.duplicate + self.published + self.failed

    def line(self, target: str) -> str:
        parts = [f"{self.sent} sent to {target}", f"{self.stored} stored", f"{self.duplicate} duplicate"]
        if self.published:
            parts.append(f"{self.published} published")
        parts.append(f"{self.failed} failed")
        if self.left_out:
            parts.append(f"{self.left_out} left out (not events, or before --since)")
        return "replay: " + ", ".join(parts)


class Progress:
    """A bar on a terminal; plain `n/total` lines (every tenth) when stderr is not a terminal."""

    def __init__(self, total: int, stream: IO[str] | None = None) -> None:
        self.total = total
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.step = max(1, total // 10)

    def update(self, done: int, summary: Summary) -> None:
        if self.tty:
            width = 30
            filled = width * done // max(self.total, 1)
            self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} "
                              f"failed {summary.failed}")
            if done == self.total:
                self.stream.write("\n")
            self.stream.flush()
        elif done == self.total or done % self.step == 0:
            print(f"replay: {done}/{self.total} sent, {summary.failed} failed", file=self.stream, flush=True)


def _retry_wait(retry_after: str | None, attempt: int) -> float:
    raw = retry_after or ""
    try:
        wait = float(raw)
    except ValueError:
        wait = 0.5 * 2 ** attempt
    return min(max(wait, 0.1), MAX_RETRY_WAIT_SECONDS)


def send_http(event: Stored, url: str, token: str | None, summary: Summary) -> None:
    """Post one payload, retrying 429/5xx and connection errors; count it as stored, duplicate or failed."""
    body = canonical_json(event.payload)
    problem = ""
    for attempt in range(HTTP_ATTEMPTS):
        answer = post(url, body, bearer=token, timeout=HTTP_TIMEOUT_SECONDS, agent="tavus-callbacks-replay")
        if answer.status == 0:
            problem = answer.body.decode("utf-8", "replace")
        else:
            if answer.status == 200:
                result = orjson.loads(answer.body) if answer.body else {}
                if result.get("event_id") != event.id:
                    problem = f"the endpoint answered event_id {result.get('event_id')!r}, expected {event.id}"
                    break
                if result.get("status") == "duplicate":
                    summary.duplicate += 1
                else:
                    summary.stored += 1
                return
            if answer.status == 401:
                raise ReplayError(f"{url} answered 401: give the endpoint's token with --token "
                                  "(or TAVUS_CALLBACK_TOKENS)")
            problem = f"HTTP {answer.status}: {answer.body[:200].decode('utf-8', 'replace')}"
            if answer.status != 429 and answer.status < 500:
                break
        time.sleep(_retry_wait(answer.header("Retry-After"), attempt))
    summary.failed += 1
    summary.errors.append(f"{event.key}: {problem}")


def replay(events: list[Stored], target: str, *, store_url: str, token: str | None = None,
           forwarder: Forwarder | None = None, progress: Progress | None = None) -> Summary:
    """Send every event, in order, to an HTTP endpoint or (with `forwarder`) an event bus."""
    summary = Summary(total=len(events))
    for done, event in enumerate(events, 1):
        if forwarder is not None:
            try:
                forwarder.publish(event.record(), store_url)
                summary.published += 1
            except Exception as exc:
                summary.failed += 1
                summary.errors.append(f"{event.key}: {type(exc).__name__}: {exc}")
        else:
            send_http(event, target, token, summary)
        if progress is not None:
            progress.update(done, summary)
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", required=True, help="the store to read events from (TAVUS_STORE_URL form)")
    parser.add_argument("--to", required=True, metavar="URL|BUS",
                        help="an endpoint URL (http:// or https://) or a bus: eventbridge://, pubsub://, eventgrid://")
    parser.add_argument("--token", help="the endpoint's token (default: the first of TAVUS_CALLBACK_TOKENS)")
    parser.add_argument("--conversation", metavar="ID", help="only this conversation's events")
    parser.add_argument("--since", metavar="TIME", help="only events at or after this ISO-8601 date or time")


def run(args: argparse.Namespace) -> int:
    """Replay, print the summary and each failure; exit 0 when nothing failed."""
    from .forward import is_bus_url, open_forwarder

    target: str = args.to
    forwarder = open_forwarder(target) if is_bus_url(target) else None
    if forwarder is None and not target.lower().startswith(("http://", "https://")):
        raise ConfigError(f"--to {target!r}: give an http(s):// endpoint or an eventbridge://, pubsub:// or "
                          "eventgrid:// bus")
    token = args.token
    if token is None and forwarder is None:
        configured = parse_tokens(os.environ.get("TAVUS_CALLBACK_TOKENS", ""), required=False)
        token = configured[0] if configured else None
    store, prefix = open_store(args.store)
    since = parse_time(args.since) if args.since else None
    events, left_out = load_events(store, prefix, args.conversation, since)
    summary = replay(events, target.split("?")[0] if forwarder else target, store_url=store.url, token=token,
                     forwarder=forwarder, progress=Progress(len(events)))
    summary.left_out = left_out
    for error in summary.errors:
        print(f"failed: {error}", file=sys.stderr)
    print(summary.line(target.split("?")[0]))
    return 1 if summary.failed else 0
