"""`tavus-callbacks replay`: re-send stored events in time order, each payload as its canonical JSON (so the
receiver computes the same event id and a second replay only adds duplicates), publish them to a bus, or deliver
them to Standard Webhooks endpoints as the forwarder does (the same body and `webhook-id`, signed afresh)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import IO, TYPE_CHECKING
from urllib.parse import urlsplit

import orjson

from tavus_callbacks.cli.history import load_events
from tavus_callbacks.cli.post import post
from tavus_callbacks.errors import ConfigError, Failed
from tavus_callbacks.forward import is_bus_url, open_forwarder, open_sinks
from tavus_callbacks.forward.webhook import WebhookForwarder
from tavus_callbacks.record import Record, canonical_json
from tavus_callbacks.settings import parse_tokens
from tavus_callbacks.state.stored import Skipped, StoredRecord, parse_time
from tavus_callbacks.stores import open_store

if TYPE_CHECKING:
    from tavus_callbacks.forward.base import Forwarder, Sink

HTTP_TIMEOUT_SECONDS = 15.0
HTTP_ATTEMPTS = 5
MAX_RETRY_WAIT_SECONDS = 10.0
CONNECTION_FAILURES = 3  # tries in a row that reached nobody: the endpoint is down, the rest would fail too


class ReplayError(Failed):
    """The replay cannot go on (the endpoint is not there); nothing more would succeed."""


@dataclass
class Summary:
    """What happened to each event sent."""

    total: int = 0
    stored: int = 0
    duplicate: int = 0
    published: int = 0
    delivered: int = 0  # events every sink of --webhook took
    failed: int = 0
    left_out: int = 0
    filtered: int = 0  # events no sink's ?types= admits
    skipped: list[Skipped] = field(default_factory=list)  # objects where events belong that are not events
    errors: list[str] = field(default_factory=list)
    unreachable: int = 0  # tries in a row that reached nobody
    webhook: bool = False  # counted as deliveries to Standard Webhooks endpoints

    @property
    def sent(self) -> int:
        return self.stored + self.duplicate + self.published + self.delivered + self.failed

    def line(self, target: str) -> str:
        before = self.left_out - len(self.skipped)
        counts = [f"{self.delivered} delivered"] if self.webhook else [f"{self.stored} stored",
                                                                         f"{self.duplicate} duplicate"]
        unsent = self.total - self.sent - self.filtered
        parts = [f"{self.sent} sent to {target}", *counts, f"{self.published} published" if self.published else "",
                 f"{self.failed} failed",
                 f"{self.filtered} not of the types asked for" if self.filtered else "",
                 f"{before} left out (before --since)" if before else "",
                 f"{len(self.skipped)} skipped (not events this package wrote, each named above)"
                 if self.skipped else "",
                 f"{unsent} not sent" if unsent > 0 else ""]
        return "replay: " + ", ".join(p for p in parts if p)

    def as_dict(self, target: str) -> dict[str, object]:
        """The fields `--json` prints."""
        fields = asdict(self)
        fields.pop("unreachable")
        fields.pop("webhook")
        return {"to": target, "sent": self.sent, **fields}


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
    try:
        wait = float(retry_after or "")
    except ValueError:
        wait = 0.5 * 2 ** attempt
    return min(max(wait, 0.1), MAX_RETRY_WAIT_SECONDS)


def _count_reach(summary: Summary, reached: bool, problem: str, then: str) -> None:
    """Count a try that reached nobody; after CONNECTION_FAILURES in a row a ReplayError stops the replay (`then`
    says what a second replay does with what the first one sent)."""
    summary.unreachable = 0 if reached else summary.unreachable + 1
    if summary.unreachable >= CONNECTION_FAILURES:
        summary.failed += 1
        raise ReplayError(f"stopped after {summary.unreachable} tries in a row reached nobody ({problem}); "
                          f"check that the endpoint runs and --to is its URL, then replay again ({then})")


def _count_stored(answer_body: bytes, event: StoredRecord, summary: Summary) -> str:
    """Count a 200 as stored or duplicate; the problem when it names another event ("" when it is this one)."""
    result = orjson.loads(answer_body) if answer_body else {}
    if result.get("event_id") != event.id:
        return f"the endpoint answered event_id {result.get('event_id')!r}, expected {event.id}"
    if result.get("status") == "duplicate":
        summary.duplicate += 1
    else:
        summary.stored += 1
    return ""


def send_http(event: StoredRecord, url: str, token: str | None, summary: Summary) -> None:
    """Post one payload, retrying 429/5xx and connection errors; count it as stored, duplicate or failed."""
    body = canonical_json(event.payload)
    problem = ""
    for attempt in range(HTTP_ATTEMPTS):
        answer = post(url, body, bearer=token, timeout=HTTP_TIMEOUT_SECONDS, agent="tavus-callbacks-replay")
        if answer.status == 200:
            problem = _count_stored(answer.body, event, summary)
            if not problem:
                return
            break
        if answer.status == 401:
            raise ConfigError(f"{url} answered 401: give the endpoint's token with --token (or TAVUS_CALLBACK_TOKENS)")
        problem = answer.body.decode("utf-8", "replace") if answer.status == 0 else \
            f"HTTP {answer.status}: {answer.body[:200].decode('utf-8', 'replace')}"
        _count_reach(summary, answer.status != 0, problem, "what was stored already answers duplicate")
        if 0 < answer.status < 500 and answer.status != 429:
            break
        time.sleep(_retry_wait(answer.header("Retry-After"), attempt))
    summary.failed += 1
    summary.errors.append(f"{event.key}: {problem}")


def _deliver(sink: Sink, record: Record, store_url: str, summary: Summary) -> str | None:
    """Deliver to one sink, retrying what may succeed later (a new signature each time, the same webhook-id);
    the problem when it did not take the event, else None."""
    assert isinstance(sink.forwarder, WebhookForwarder)
    for attempt in range(HTTP_ATTEMPTS):
        delivery = sink.forwarder.deliver(record, store_url)
        _count_reach(summary, delivery.status != 0, delivery.problem,
                     "the receiver skips the webhook-ids it already has")
        if delivery.delivered or not delivery.retryable:
            break
        if attempt + 1 < HTTP_ATTEMPTS:
            time.sleep(_retry_wait(delivery.retry_after, attempt))
    return None if delivery.delivered else delivery.problem


def send_webhook(event: StoredRecord, sinks: list[Sink], store_url: str, summary: Summary) -> None:
    """Deliver one event to each sink whose filter admits it; the event counts as delivered when every such sink
    took it."""
    record = event.record()
    admitting = [sink for sink in sinks if sink.admits(record.document["type"])]
    if not admitting:
        summary.filtered += 1
        return
    outcomes = [_deliver(sink, record, store_url, summary) for sink in admitting]
    problems = [problem for problem in outcomes if problem is not None]
    if problems:
        summary.failed += 1
        summary.errors.append(f"{event.key}: {'; '.join(problems)}")
    else:
        summary.delivered += 1


def replay(events: list[StoredRecord], target: str, *, store_url: str, token: str | None = None,
           forwarder: Forwarder | None = None, sinks: list[Sink] | None = None, progress: Progress | None = None,
           summary: Summary | None = None) -> Summary:
    """Send every event, in order, to an endpoint of this bundle, to an event bus (`forwarder`) or to Standard
    Webhooks endpoints (`sinks`); a ReplayError stops it when nothing more would succeed (`summary`, when given,
    holds what was done by then)."""
    summary = summary or Summary(total=len(events), webhook=sinks is not None)
    for done, event in enumerate(events, 1):
        if sinks is not None:
            send_webhook(event, sinks, store_url, summary)
        elif forwarder is not None:
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
                        help="an endpoint of this bundle (http:// or https://), a bus: eventbridge://, pubsub://, "
                             "eventgrid://, or with --webhook your own endpoint(s), as TAVUS_FORWARD_URL takes them")
    parser.add_argument("--token", help="the endpoint's token (default: the first of TAVUS_CALLBACK_TOKENS)")
    parser.add_argument("--webhook", action="store_true",
                        help="deliver to --to as Standard Webhooks, as the forwarder does: the stored CloudEvent, "
                             "webhook-id = the event id, signed with TAVUS_WEBHOOK_SECRETS")
    parser.add_argument("--conversation", metavar="ID", help="only this conversation's events")
    parser.add_argument("--since", metavar="TIME", help="only events at or after this ISO-8601 date or time")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object at the end: to, sent, total, stored, duplicate, published, "
                             "delivered, failed, left_out, filtered, skipped ([{key, why}]), errors ([text])")


def _http_url(text: str) -> bool:
    try:
        parts = urlsplit(text)
        return parts.scheme.lower() in ("http", "https") and bool(parts.hostname) and (parts.port or 1) > 0
    except ValueError:  # e.g. an unclosed [ or a port that is not a number
        return False


@dataclass
class Target:
    """Where `--to` sends: Standard Webhooks sinks, a bus forwarder, or else an endpoint of this bundle."""

    url: str
    sinks: list[Sink] | None = None
    forwarder: Forwarder | None = None

    @classmethod
    def parse(cls, url: str, webhook: bool) -> Target:
        """The target `--to` names; a ConfigError says what `--to` takes when it names none."""
        if webhook:
            sinks = open_sinks(url, source="--to")
            if not all(isinstance(s.forwarder, WebhookForwarder) for s in sinks):
                raise ConfigError(f"--to {url.split('?')[0]!r}: --webhook delivers to http(s):// endpoints; replay "
                                  "to a bus without --webhook")
            return cls(url, sinks=sinks)
        if is_bus_url(url):
            return cls(url, forwarder=open_forwarder(url))
        if not _http_url(url):
            raise ConfigError(f"--to {url!r}: give an http(s):// endpoint or an eventbridge://, pubsub:// or "
                              "eventgrid:// bus")
        return cls(url)

    @property
    def endpoint(self) -> bool:
        return self.sinks is None and self.forwarder is None

    @property
    def where(self) -> str:
        """The target as the summary names it (a query may hold a key: left out)."""
        return ", ".join(s.name for s in self.sinks) if self.sinks else self.url.split("?")[0]

    def token(self, given: str | None) -> str | None:
        """The endpoint's token: `given`, else the first of TAVUS_CALLBACK_TOKENS (none for a bus or webhook)."""
        if given is not None or not self.endpoint:
            return given
        configured = parse_tokens(os.environ.get("TAVUS_CALLBACK_TOKENS", ""), required=False)
        return configured[0] if configured else None


def run(args: argparse.Namespace) -> int:
    """Replay, print the summary and each failure; exit 0 when nothing failed."""
    target = Target.parse(args.to, args.webhook)
    token = target.token(args.token)
    store, prefix = open_store(args.store, read_only=True)
    since = parse_time(args.since, "--since") if args.since else None
    skipped: list[Skipped] = []
    events, left_out = load_events(store, prefix, args.conversation, since, skipped)
    summary = Summary(total=len(events), left_out=left_out, skipped=skipped, webhook=target.sinks is not None)
    stopped: ReplayError | None = None
    try:
        replay(events, target.url if target.endpoint else target.where, store_url=store.url, token=token,
               forwarder=target.forwarder, sinks=target.sinks, progress=Progress(len(events)), summary=summary)
    except ReplayError as exc:
        stopped = exc
    for error in summary.errors:
        print(f"failed: {error}", file=sys.stderr)
    if stopped is not None:
        print(f"error: {stopped}", file=sys.stderr)
    print(json.dumps(summary.as_dict(target.where), indent=2) if args.json else summary.line(target.where))
    return 1 if summary.failed or summary.skipped or stopped else 0
