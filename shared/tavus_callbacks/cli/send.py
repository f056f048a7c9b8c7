"""Realistic sample callbacks of every family, and `tavus-callbacks send`, which posts them like Tavus would.

The samples follow the vendor's documented shapes (docs/SPEC.md §1) with fresh ids and times, so a whole
conversation can be replayed against any deployment.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
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
from tavus_callbacks.events.catalogue import (
    PAL_JOINED,
    PERCEPTION_ANALYSIS,
    PERCEPTION_UNAVAILABLE,
    POST_CALL_ACTION,
    RECORDING_COPY_FAILED,
    RECORDING_READY,
    REPLICA_JOINED,
    SHUTDOWN,
    TRANSCRIPTION_READY,
)
from tavus_callbacks.events.registry import EventKind
from tavus_callbacks.settings import parse_tokens

Payload = dict[str, Any]

TRANSCRIPT = [
    ("system", "You are Maya, a friendly onboarding assistant for Acme Cloud."),
    ("assistant", "Hi, I'm Maya. Welcome to Acme Cloud! What would you like to set up today?"),
    ("user", "Hi. I'd like to connect our storage bucket so recordings land there."),
    ("assistant", "Sure. Which provider do you use: S3, Google Cloud Storage or Azure?"),
    ("user", "S3, in eu-west-1."),
    ("assistant", "Great. I'll send you the role setup. Could I have an email to send it to?"),
    ("user", "Yes, it's jordan@example.com."),
    ("assistant", "Thanks Jordan, it's on its way. Anything else?"),
    ("user", "No, that's all. Thanks!"),
]

PERCEPTION = """## Visual summary
- **Participant**: one adult, seated, in a well-lit home office; looked at the camera most of the call.
- **Engagement**: attentive; nodded while the setup steps were explained.
- **Objects**: a laptop and a notebook on the desk; a bookshelf behind.
- **Screen share**: none.

## Notable moments
1. 00:41 - smiled when the storage options were listed.
2. 03:12 - wrote something down while the email address was confirmed.
"""


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


class SampleConversation:
    """A conversation's worth of callbacks with shared ids, timed from `start` (default: eight minutes ago)."""

    def __init__(self, ids: Ids | None = None, *, start: dt.datetime | None = None,
                 webhook_url: str = "https://example.com/webhook") -> None:
        self.ids = ids or Ids()
        self.start = start or (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=8))
        self.webhook_url = webhook_url

    def _at(self, seconds: float) -> str:
        return iso(self.start + dt.timedelta(seconds=seconds))

    def _conversation(self, kind: EventKind, seconds: float, properties: Payload) -> Payload:
        event_type = str(kind.event_type)
        return {
            "properties": properties,
            "conversation_id": self.ids.conversation_id,
            "webhook_url": self.webhook_url,
            "event_type": event_type,
            "message_type": event_type.split(".", 1)[0],
            "timestamp": self._at(seconds),
        }

    # -- conversation callbacks -----------------------------------------------------------
    def replica_joined(self) -> Payload:
        return self._conversation(REPLICA_JOINED, 0.0, {"replica_id": self.ids.replica_id})

    def pal_joined(self) -> Payload:
        return self._conversation(PAL_JOINED, 0.35, {"face_id": self.ids.face_id})

    def shutdown(self) -> Payload:
        return self._conversation(SHUTDOWN, 312.8, {
            "replica_id": self.ids.replica_id, "shutdown_reason": "participant_left_timeout reached"})

    def shutdown_internal_error(self) -> Payload:  # its own instant: one shutdown per time (see record.identity)
        return self._conversation(SHUTDOWN, 312.9, {
            "replica_id": self.ids.replica_id, "shutdown_reason": "internal error occurred at step 3"})

    def transcription_ready(self) -> Payload:
        turns = []
        for i, (role, content) in enumerate(TRANSCRIPT):
            turn: Payload = {"role": role, "content": content}
            if role != "system":
                offset = 4.0 + 33.0 * i
                turn.update({"timestamp": self._at(offset), "seconds_from_start": round(offset, 3),
                             "duration": round(2.5 + len(content) / 18, 2)})
            turns.append(turn)
        return self._conversation(TRANSCRIPTION_READY, 316.1,
                                  {"replica_id": self.ids.replica_id, "transcript": turns})

    def recording_ready(self) -> Payload:
        key = f"{self.ids.conversation_id}/{self.ids.conversation_id}-{int(self.start.timestamp() * 1000)}.mp4"
        return self._conversation(RECORDING_READY, 338.4, {
            "replica_id": self.ids.replica_id, "storage_provider": "s3",
            "storage_uri": f"s3://acme-tavus-recordings/{key}", "duration": 309})

    def recording_ready_legacy(self) -> Payload:
        return self._conversation(RECORDING_READY, 338.5, {
            "replica_id": self.ids.replica_id, "bucket_name": "acme-tavus-recordings",
            "s3_key": f"{self.ids.conversation_id}/{self.ids.conversation_id}.mp4", "duration": 309})

    def recording_copy_failed(self) -> Payload:
        return self._conversation(RECORDING_COPY_FAILED, 401.0, {
            "replica_id": self.ids.replica_id, "storage_provider": "gcs", "error_code": "DESTINATION_AUTH_FAILED",
            "error_message": "Permission 'storage.objects.create' denied on resource (or it may not exist)."})

    def perception_analysis(self) -> Payload:
        return self._conversation(PERCEPTION_ANALYSIS, 351.9,
                                  {"replica_id": self.ids.replica_id, "analysis": PERCEPTION})

    def perception_unavailable(self) -> Payload:
        return self._conversation(PERCEPTION_UNAVAILABLE, 352.0,
                                  {"replica_id": self.ids.replica_id, "reason": "no_vision_history"})

    def post_call_action_executed(self) -> Payload:
        return self._conversation(POST_CALL_ACTION, 355.2, {
            "replica_id": self.ids.replica_id, "tool_id": "t" + self.ids.video_id, "tool_name": "send_setup_email",
            "status": "success", "request": {"email": "jordan@example.com", "provider": "s3"},
            "response": {"status_code": 202, "body": "queued"}})

    # -- guardrail and objective callbacks (no event_type, no timestamp) ---------------------
    def guardrail(self) -> Payload:
        return {"conversation_id": self.ids.conversation_id, "properties": {"guardrail": "no_pricing_commitments"}}

    def objective(self) -> Payload:
        return {"conversation_id": self.ids.conversation_id, "objective_name": "collect_email",
                "output_variables": {"email": "jordan@example.com", "storage_provider": "s3"}}

    # -- replica training and video generation -------------------------------------------------
    def replica_training(self) -> Payload:
        return {"replica_id": self.ids.replica_id, "status": "ready"}

    def replica_training_error(self) -> Payload:
        return {"replica_id": self.ids.replica_id, "status": "error",
                "error_message": "The training video has less than one minute of speech; upload a longer video."}

    def video_generation(self) -> Payload:
        vid, mux = self.ids.video_id, secrets.token_urlsafe(24).replace("-", "x").replace("_", "y")
        created = self.start - dt.timedelta(hours=2)
        return {
            "created_at": _plain(created),
            "data": {"script": "Hi Jordan, here is how to connect your S3 bucket to Acme Cloud in two minutes."},
            "download_url": f"https://stream.mux.com/{mux}/high.mp4?download={vid}",
            "generation_progress": "100/100",
            "hosted_url": f"https://videos.tavus.io/video/{vid}",
            "replica_id": self.ids.replica_id,
            "status": "ready",
            "status_details": "Your request has processed successfully!",
            "stream_url": f"https://stream.mux.com/{mux}.m3u8",
            "updated_at": _plain(created + dt.timedelta(seconds=98.97)),
            "video_id": vid,
            "video_name": f"replica_id: {self.ids.replica_id} - {created:%B %d, %Y} - video: {vid}",
        }

    def video_error(self) -> Payload:
        created = self.start - dt.timedelta(hours=2)
        return {"video_id": self.ids.video_id, "video_name": "onboarding", "replica_id": self.ids.replica_id,
                "status": "error", "status_details": "The script is empty.", "generation_progress": "0/100",
                "created_at": _plain(created), "updated_at": _plain(created + dt.timedelta(seconds=3))}

    # -- by name ----------------------------------------------------------------------------------
    def named(self, name: str) -> Payload:
        """One sample by its name (see SAMPLES); a ConfigError lists the names when it is unknown."""
        if name not in SAMPLES:
            raise ConfigError(f"unknown sample event {name!r}: choose one of {', '.join(SAMPLES)}")
        method: Callable[[], Payload] = getattr(self, name)
        return method()


# Every sample by name, with what it shows; CONVERSATION_ORDER is what `send --all` posts.
SAMPLES: dict[str, str] = {
    "replica_joined": f"{REPLICA_JOINED.event_type}: the replica is ready in the room",
    "pal_joined": f"{PAL_JOINED.event_type}: observed beside replica_joined, with a face_id",
    "objective": "objective completed, with its output variables",
    "guardrail": "guardrail triggered",
    "shutdown": f"{SHUTDOWN.event_type}: participant_left_timeout reached",
    "transcription_ready": f"{TRANSCRIPTION_READY.event_type}: the transcript, with per-turn timing",
    "recording_ready": f"{RECORDING_READY.event_type}: storage_provider + storage_uri (s3)",
    "perception_analysis": f"{PERCEPTION_ANALYSIS.event_type}: a markdown visual summary",
    "post_call_action_executed": f"{POST_CALL_ACTION.event_type}: a tool call after the conversation",
    "replica_training": "replica training finished (status ready)",
    "video_generation": "video generation finished (status ready)",
    "shutdown_internal_error": f"{SHUTDOWN.event_type}: internal error occurred at step 3",
    "recording_ready_legacy": f"{RECORDING_READY.event_type}, legacy form: bucket_name + s3_key",
    "recording_copy_failed": f"{RECORDING_COPY_FAILED.event_type}: DESTINATION_AUTH_FAILED",
    "perception_unavailable": f"{PERCEPTION_UNAVAILABLE.event_type}: no_vision_history",
    "replica_training_error": "replica training failed",
    "video_error": "video generation failed",
}
CONVERSATION_ORDER = (
    "replica_joined", "pal_joined", "objective", "guardrail", "shutdown", "transcription_ready",
    "recording_ready", "perception_analysis", "post_call_action_executed", "replica_training", "video_generation",
)


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
    if args.list and args.json:
        print(json.dumps(SAMPLES, indent=2))
        return 0
    if args.list:
        width = max(map(len, SAMPLES))
        for name, what in SAMPLES.items():
            marker = "*" if name in CONVERSATION_ORDER else " "
            print(f"{marker} {name:<{width}}  {what}")
        print("(* sent by --all, in this order)")
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
    width = max(len(label) for label, _ in todo)
    counts: Counter[str] = Counter()
    failed = unreachable = 0
    sent: list[dict[str, Any]] = []
    stopped = None
    for i, (label, body) in enumerate(todo, 1):
        answer = post(url, body, bearer=bearer, timeout=args.timeout, agent="tavus-callbacks-send")
        if not args.json:
            print(f"[{i:>2}/{len(todo)}] {label:<{width}}  {describe(answer)}", flush=True)
        failed += not answer.ok
        counts[outcome(answer)] += 1
        sent.append({"label": label, "status": answer.status, "outcome": outcome(answer), "answer": _answer(answer)})
        unreachable = unreachable + 1 if answer.status == 0 else 0
        if unreachable >= CONNECTION_FAILURES and i < len(todo):
            stopped = (f"stopped after {unreachable} deliveries in a row reached nobody; {len(todo) - i} not sent: "
                       "check --url and that the endpoint runs")
            break
    if args.json:
        print(json.dumps({"url": shown, "conversation_id": conversation.ids.conversation_id, "sent": len(sent),
                          "counts": dict(sorted(counts.items())), "failed": failed, "stopped": stopped,
                          "deliveries": sent}, indent=2))
    else:
        summary = ", ".join(f"{n} {what}" for what, n in sorted(counts.items()))
        print(f"{len(sent)} sent: {summary}")
    if stopped:
        print(f"error: {stopped}", file=sys.stderr)
    elif failed:
        print(f"{failed} not accepted (answer not 2xx)", file=sys.stderr)
    return 1 if failed else 0


def _answer(answer: Answer) -> Any:
    """The answer's body as JSON when it is, else as text (the reason, when unreachable)."""
    text = answer.body.decode(errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        return text
