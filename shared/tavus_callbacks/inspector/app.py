"""The inspector as a small ASGI app: the pages under `/_/` and their JSON, only for the callback token (or the
session cookie derived from it) and only at the address it listens on; every answer has a strict CSP."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, urlencode

import orjson

from tavus_callbacks.auth import is_authorized
from tavus_callbacks.errors import TavusCallbacksError
from tavus_callbacks.http import Request
from tavus_callbacks.inspector import views
from tavus_callbacks.inspector.assets import CONTENT_SECURITY_POLICY
from tavus_callbacks.inspector.reading import is_conversation_id
from tavus_callbacks.stores import split_store_url

if TYPE_CHECKING:
    from tavus_callbacks.inspector.reading import Reader

log = logging.getLogger("tavus_callbacks.inspector")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ROOT = views.ROOT
COOKIE = "tavus_inspector_"  # + the port: a browser keeps one cookie jar per host, whatever the port
HTML = "text/html; charset=utf-8"
JSON = "application/json"
_SESSION_CONTEXT = b"tavus-callbacks inspector session\n"
_HEADERS = (
    ("content-security-policy", CONTENT_SECURITY_POLICY),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("cache-control", "no-store"),
    ("x-frame-options", "DENY"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
)
POLL_MS_LOCAL, POLL_MS_BUCKET = 2000, 5000  # how often the page asks for news, by default
_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]"})


@dataclass(frozen=True, slots=True)
class Answer:
    """One response of the inspector."""

    status: int
    body: bytes
    content_type: str = HTML
    headers: tuple[tuple[str, str], ...] = ()


def is_inspector_path(path: str) -> bool:
    """True for the paths the inspector answers: `/_` and everything under `/_/`."""
    return path == ROOT.rstrip("/") or path.startswith(ROOT)


def session_value(token: str, origin: str) -> str:
    """The session cookie's value for a token at an origin: an HMAC of the origin keyed by the token, so it
    is worth nothing elsewhere and gives the token away to nobody."""
    digest = hmac.new(token.encode("utf-8"), _SESSION_CONTEXT + origin.encode("utf-8"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


class InspectorApp:
    """The inspector of one store, for whoever holds one of `tokens`, at the address `host`:`port`."""

    def __init__(self, reader: Reader, tokens: Sequence[str], host: str, port: int, *, read_only: bool,
                 poll_ms: int | None = None) -> None:
        self.reader = reader
        self.tokens = tuple(tokens)
        self.read_only = read_only
        local = split_store_url(reader.url)[0] == "sqlite"
        self.poll_ms = poll_ms or (POLL_MS_LOCAL if local else POLL_MS_BUCKET)  # a bucket's reads cost more
        self.port = port
        self.cookie = f"{COOKIE}{port}"
        name = f"[{host}]" if ":" in host else host
        self.origin = f"http://{name}:{port}"
        self.sessions = tuple(session_value(token, self.origin).encode() for token in self.tokens)
        self.names = {name.lower()}
        self.any_address = host in ("0.0.0.0", "::", "")
        if self.any_address or _is_loopback(host):
            self.names |= _LOOPBACK_NAMES

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        await _send(send, await self.answer(scope))

    async def answer(self, scope: Scope) -> Answer:
        """The answer to one request: refused (wrong address, method or token), redirected, or a page."""
        headers = _headers(scope)
        path = scope.get("path") or "/"
        if not self.host_allowed(headers.get("host", "")):
            return _text(421, f"the inspector answers only at {self.origin}{ROOT}")
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))
        if scope["method"] != "GET":
            return Answer(405, b"method not allowed: the inspector only reads\n", "text/plain; charset=utf-8",
                          (("allow", "GET"),))
        if path == ROOT.rstrip("/"):
            return _redirect(ROOT, query)
        request = Request(scope["method"], path, query, headers)
        api = path.startswith(f"{ROOT}api/")
        if not (is_authorized(request, self.tokens) or self._has_session(headers.get("cookie", ""))):
            if api:
                return _json(401, {"error": "unauthorized"}, (("www-authenticate", "Bearer"),))
            return Answer(401, views.render_refused().encode(), headers=(("www-authenticate", "Bearer"),))
        if "token" in query and not api:  # into a cookie, out of the address bar and the history
            rest = {k: v for k, v in query.items() if k != "token"}
            if not is_authorized(Request("GET", path, {"token": query["token"]}), self.tokens):
                return _redirect(path, rest)  # let in by another credential: the token given is not kept
            cookie = (f"{self.cookie}={session_value(query['token'], self.origin)}; Path={ROOT}; HttpOnly; "
                      "SameSite=Strict")
            return _redirect(path, rest, (("set-cookie", cookie),))
        try:
            return await asyncio.to_thread(self.route, path, query)
        except TavusCallbacksError as exc:  # e.g. the store cannot be read now: the page says so
            log.warning("the inspector could not read the store: %s", exc)
            if api:
                return _json(503, {"error": str(exc)}, (("retry-after", "5"),))
            page = views.render_message("The store cannot be read", str(exc), store_url=self.reader.url,
                                        read_only=self.read_only)
            return Answer(503, page.encode(), headers=(("retry-after", "5"),))

    def route(self, path: str, query: dict[str, str]) -> Answer:
        """The page or JSON a path names (blocking: it reads the store)."""
        if path == ROOT:
            recent = self.reader.recent()
            page = views.render_index(recent, self.reader.others(views.OTHERS_LIMIT), store_url=self.reader.url,
                                      read_only=self.read_only, poll_ms=self.poll_ms)
            return Answer(200, page.encode())
        if path == f"{ROOT}api/recent":
            recent = self.reader.recent()
            if query.get("version") == recent.version:
                return _json(200, {"version": recent.version})
            return _json(200, views.index_data(recent))
        if path == f"{ROOT}api/event":
            document = self.reader.event(query.get("key", ""))
            if document is None:
                return _json(404, {"error": "no stored event at that key"})
            return _json(200, document)
        for base, api in ((f"{ROOT}c/", False), (f"{ROOT}api/c/", True)):
            if path.startswith(base):
                return self._conversation(path[len(base):], query, api)
        return _text(404, f"nothing here: the inspector is at {ROOT}")

    def _conversation(self, cid: str, query: dict[str, str], api: bool) -> Answer:
        conversation = self.reader.conversation(cid) if is_conversation_id(cid) else None
        if conversation is None:
            message = f"no conversation {cid!r} in {self.reader.url}"
            if api:
                return _json(404, {"error": message})
            return Answer(404, views.render_message("No such conversation", message, store_url=self.reader.url,
                                                    read_only=self.read_only).encode())
        if api:
            if query.get("version") == conversation.version:
                return _json(200, {"version": conversation.version})
            return _json(200, views.conversation_data(conversation))
        page = views.render_conversation(conversation, store_url=self.reader.url, read_only=self.read_only,
                                         poll_ms=self.poll_ms)
        return Answer(200, page.encode())

    def host_allowed(self, host: str) -> bool:
        """True when the Host header names the address listened on (so no other name, a DNS rebinding
        attacker's or a tunnel's, reaches the inspector); on 0.0.0.0 or ::, any IP address with the port."""
        name, port = _split_host(host.strip().lower())
        if port != self.port:
            return False
        if name in self.names:
            return True
        return self.any_address and _is_ip(name)

    def _has_session(self, cookie_header: str) -> bool:
        matched = False
        for part in cookie_header.split(";"):
            name, _, value = part.strip().partition("=")
            if name == self.cookie and value:
                given = value.encode("utf-8", "surrogateescape")
                for session in self.sessions:
                    matched |= hmac.compare_digest(given, session)
        return matched


def mount(app: ASGIApp, inspector: InspectorApp) -> ASGIApp:
    """`app` with the inspector answering `/_` and everything under `/_/`."""
    async def routed(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and is_inspector_path(scope.get("path") or ""):
            await inspector(scope, receive, send)
        else:
            await app(scope, receive, send)

    return routed


def standalone(inspector: InspectorApp) -> ASGIApp:
    """The inspector alone (`tavus-callbacks inspect`): `/` leads to it, any other path is not found."""
    async def elsewhere(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))
        found = scope.get("path") == "/"
        await _send(send, _redirect(ROOT, query) if found else _text(404, f"the inspector is at {ROOT}"))

    return mount(elsewhere, inspector)


async def _send(send: Send, answer: Answer) -> None:
    headers = [(b"content-type", answer.content_type.encode()), (b"content-length", str(len(answer.body)).encode())]
    headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in (*_HEADERS, *answer.headers)]
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body})


def _headers(scope: Scope) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in scope.get("headers", ()):
        key, text = name.decode("latin-1").lower(), value.decode("latin-1")
        headers[key] = f"{headers[key]}; {text}" if key == "cookie" and key in headers else text
    return headers


def _split_host(host: str) -> tuple[str, int | None]:
    """('127.0.0.1', 8080) from '127.0.0.1:8080', ('[::1]', 8080) from '[::1]:8080'; port 80 when none."""
    name, sep, port = host.rpartition(":")
    if not sep or name.endswith(":") or (host.startswith("[") and not name.endswith("]")):
        return host, 80
    return name, int(port) if port.isdigit() else None


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _json(status: int, value: Any, headers: tuple[tuple[str, str], ...] = ()) -> Answer:
    return Answer(status, orjson.dumps(value), JSON, headers)


def _text(status: int, message: str) -> Answer:
    return Answer(status, f"{message}\n".encode(), "text/plain; charset=utf-8")


def _redirect(path: str, query: dict[str, str], headers: tuple[tuple[str, str], ...] = ()) -> Answer:
    location = quote(path, safe="/") + (f"?{urlencode(query)}" if query else "")
    return Answer(303, b"", "text/plain; charset=utf-8", (("location", location), *headers))
