"""A fake of the vendor's conversations API, from its documented shapes, served on a free loopback port.

`GET /v2/conversations` pages (`limit`, `page`, `status`; `{"data": [...], "total_count": N}`), newest
first; `GET /v2/conversations/{id}?verbose=true` gives the conversation with its `events` and top-level
`shutdown_reason`. The API's copy of an event is not the callback's bytes: no `webhook_url`, other key
order, another timestamp form, at times no `conversation_id`. Faults are planned per path: a status (429
with Retry-After, 500s), a body that is not JSON, a slow answer, or one sent a byte at a time. Used by the tests
(fixture `fake_tavus`), bench/bench_reconcile.py and bench/bench_reconcile_budget.py.
"""

from __future__ import annotations

import contextlib
import json
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from support.servers import serving

API_KEY = "fake-tavus-api-key-0123456789"


@dataclass
class Fault:
    """What the next `times` requests whose path contains `path` get instead of their answer."""

    path: str
    status: int = 500
    times: int = 1
    retry_after: str | None = None
    delay: float = 0.0  # a slow answer: wait this long, then answer normally (status 0) or with `status`
    drip: float = 0.0  # seconds between the bytes of the answer (head and body), sent one at a time
    body: bytes | None = None  # the answer's body as given (with `status`), instead of a JSON message


@dataclass
class FakeTavus:
    """The server's state: conversations (newest first), planned faults, and every request it was sent."""

    conversations: dict[str, dict[str, Any]] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    keys_seen: set[str] = field(default_factory=set)
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, conversation_id: str, callbacks: list[dict[str, Any]], *, status: str = "ended",
            updated_at: str | None = None, shutdown_reason: str | None = None, seed: int = 0) -> dict[str, Any]:
        """A conversation whose event log is the API's copy of these callbacks; listed first (again, if known)."""
        rng = random.Random(f"{conversation_id}/{seed}")
        events = [api_copy(c, rng) for c in callbacks]
        times = sorted(str(c.get("timestamp")) for c in callbacks) or ["2025-07-11T06:00:00.000000Z"]
        conversation = {"conversation_id": conversation_id, "conversation_name": f"Meeting {conversation_id}",
                        "conversation_url": f"https://tavus.daily.co/{conversation_id}",
                        "callback_url": "https://example.com/webhook", "status": status,
                        "replica_id": "r5f0577fc829", "persona_id": "p5317866",
                        "created_at": times[0], "updated_at": updated_at or times[-1]}
        verbose = {**conversation, "events": events}
        if shutdown_reason is not None:
            verbose["shutdown_reason"] = shutdown_reason
        with self.lock:
            others = {k: v for k, v in self.conversations.items() if k != conversation_id}
            self.conversations = {conversation_id: verbose, **others}
        return verbose

    def fail(self, path: str, status: int = 500, times: int = 1, retry_after: str | None = None,
             delay: float = 0.0, drip: float = 0.0, body: bytes | None = None) -> None:
        with self.lock:
            self.faults.append(Fault(path, status, times, retry_after, delay, drip, body))

    def count(self, fragment: str) -> int:
        """How many requests had `fragment` in their path and query."""
        return sum(fragment in r for r in self.requests)

    def _fault(self, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.path in path and fault.times > 0:
                    fault.times -= 1
                    return fault
        return None


def api_copy(callback: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """The API's copy of a callback: no webhook_url, keys reversed, another timestamp form, at times no
    conversation_id; transcript turns with epoch-float timestamps."""
    item = {k: v for k, v in reversed(list(callback.items())) if k != "webhook_url"}
    if rng.random() < 0.5:
        item.pop("conversation_id", None)
    stamp = item.get("timestamp")
    if isinstance(stamp, str) and stamp.endswith("Z"):
        when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        item["timestamp"] = rng.choice([when.timestamp(), when.strftime("%Y-%m-%d %H:%M:%S.%f"),
                                        when.isoformat()])
    props = item.get("properties")
    if isinstance(props, dict) and isinstance(props.get("transcript"), list):
        turns = []
        for turn in props["transcript"]:
            turn = dict(turn)
            if isinstance(turn.get("timestamp"), str):
                turn["timestamp"] = datetime.fromisoformat(turn["timestamp"].replace("Z", "+00:00")).timestamp()
            turns.append(turn)
        item["properties"] = {**props, "transcript": turns}
    return item


def conversation_callbacks(conversation_id: str, start: datetime, *, extra: tuple[str, ...] = ()) -> list[
        dict[str, Any]]:
    """The callbacks of one ended conversation, as Tavus sends them: joined, shutdown, transcript (turns with
    ISO timestamps), perception, recording; plus one event of each type in `extra` (e.g. unknown types)."""
    def at(seconds: float) -> str:
        return (start + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def callback(event_type: str, seconds: float, properties: dict[str, Any]) -> dict[str, Any]:
        return {"properties": {"replica_id": "r5f0577fc829", **properties}, "conversation_id": conversation_id,
                "webhook_url": "https://example.com/webhook", "event_type": event_type,
                "message_type": event_type.split(".")[0], "timestamp": at(seconds)}

    turns = [{"role": "user" if i % 2 else "assistant", "content": f"turn {i}", "timestamp": at(5 + i)}
             for i in range(4)]
    callbacks = [
        callback("system.replica_joined", 1.25, {}),
        callback("system.shutdown", 300.5, {"shutdown_reason": "participant_left_timeout reached"}),
        callback("application.transcription_ready", 302.125, {"transcript": turns}),
        callback("application.perception_analysis", 305.0, {"analysis": "The user smiled."}),
        callback("application.recording_ready", 320.75, {
            "storage_provider": "s3", "storage_uri": f"s3://recordings/{conversation_id}/1.mp4"}),
    ]
    callbacks += [callback(t, 10.0 + i, {"note": t}) for i, t in enumerate(extra)]
    return callbacks


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    drip = 0.0

    def do_GET(self) -> None:
        fake = self.server.fake
        parts = urlsplit(self.path)
        with fake.lock:
            fake.requests.append(self.path)
        key = self.headers.get("x-api-key")
        fake.keys_seen.add(str(key))
        fault = fake._fault(self.path)
        self.drip = fault.drip if fault is not None else 0.0
        if fault is not None:
            time.sleep(fault.delay)
            if fault.status:
                headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
                return self._send(fault.status, fault.body or {"message": "planned fault"}, headers)
        if key != API_KEY:
            return self._send(401, {"message": "Invalid access token"})
        query = parse_qs(parts.query)
        segments = [s for s in parts.path.split("/") if s]
        if segments == ["v2", "conversations"]:
            limit = int(query.get("limit", ["10"])[0])
            page = int(query.get("page", ["1"])[0])
            status = query.get("status", [None])[0]
            with fake.lock:
                listed = [{k: v for k, v in c.items() if k not in ("events", "shutdown_reason")}
                          for c in fake.conversations.values() if status in (None, c["status"])]
            return self._send(200, {"data": listed[(page - 1) * limit:page * limit], "total_count": len(listed)})
        if len(segments) == 3 and segments[:2] == ["v2", "conversations"]:
            with fake.lock:
                conversation = fake.conversations.get(segments[2])
            if conversation is None:
                return self._send(404, {"message": "Conversation not found"})
            if query.get("verbose") == ["true"]:
                return self._send(200, conversation)
            return self._send(200, {k: v for k, v in conversation.items() if k not in ("events", "shutdown_reason")})
        return self._send(404, {"message": "not found"})

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {"Content-Type": "application/json", "Content-Length": str(len(data)), **(headers or {})}
        if self.drip:  # the whole answer, head included, a byte at a time
            head = f"{self.protocol_version} {status} {HTTPStatus(status).phrase}\r\n" + "".join(
                f"{name}: {value}\r\n" for name, value in headers.items()) + "\r\n"
            answer = head.encode() + data
            with contextlib.suppress(OSError):  # the client gave up
                for i in range(len(answer)):
                    self.wfile.write(answer[i:i + 1])
                    self.wfile.flush()
                    time.sleep(self.drip)
            self.close_connection = True
            return
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        with contextlib.suppress(OSError):  # the client may have given up on a slow answer
            self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeTavus


@contextlib.contextmanager
def running_fake_tavus() -> Iterator[FakeTavus]:
    """The fake API on a free loopback port (port 0: the system picks), stopped on exit."""
    fake = FakeTavus()
    server = _Server(("127.0.0.1", 0), _Handler)
    server.fake = fake
    with serving(server) as url:
        fake.url = url
        yield fake


@pytest.fixture
def fake_tavus(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeTavus]:
    """A fresh fake API, with TAVUS_API_KEY and TAVUS_API_URL pointing at it and no request cap."""
    with running_fake_tavus() as fake:
        monkeypatch.setenv("TAVUS_API_KEY", API_KEY)
        monkeypatch.setenv("TAVUS_API_URL", fake.url)
        monkeypatch.setenv("TAVUS_API_MAX_RPM", "0")
        yield fake
