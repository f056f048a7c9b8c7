"""The token check: `?token=` or `Authorization: Bearer`, compared in constant time to every configured token."""

from __future__ import annotations

import hmac
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, unquote_plus

import orjson

if TYPE_CHECKING:
    from tavus_callbacks.http import Request


def presented_token(request: Request) -> str | None:
    """The token the caller sent, from the Authorization header or the `token` query parameter."""
    header = request.header("authorization")
    if header:
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return request.query.get("token") or None


def is_authorized(request: Request, tokens: tuple[str, ...]) -> bool:
    """True when the presented token equals one of `tokens`; every token is compared, in constant time."""
    presented = presented_token(request)
    if presented is None or not tokens:
        return False
    given = presented.encode("utf-8", "surrogatepass")
    matched = False
    for token in tokens:
        matched |= hmac.compare_digest(given, token.encode("utf-8"))
    return matched


REDACTED = "[redacted]"
MAX_DECODE_ROUNDS = 8  # percent-decodings of a query value tried, each as `+` kept and as a space
_MAX_DECODINGS = 64  # distinct decoded forms of one value looked at, at most
_SHORT_ESCAPES = {'"': b'\\"', "\\": b"\\\\", "/": b"\\/", "\b": b"\\b", "\f": b"\\f", "\n": b"\\n", "\r": b"\\r",
                  "\t": b"\\t"}


class TokenRedactor:
    """Takes the configured tokens out of what is stored and logged, however the body wrote them.

    A body may echo the callback URL (`webhook_url`): a token as written, percent-encoded, or behind JSON
    escapes (`\\u0072`, `\\/`). In the decoded payload, an http(s) URL's query is parsed and each value decoded
    until it stops changing, so no mix or depth of percent-encoding hides a token there; other strings are
    searched for the token as written or percent-encoded once. A body stored as received (quarantine) is
    searched byte by byte. A first look at the raw bytes lets a body that cannot hold one skip the rest.
    """

    def __init__(self, tokens: tuple[str, ...]) -> None:
        self.tokens = tuple(sorted({t for t in tokens if t}, key=len, reverse=True))
        forms = {form for token in tokens for form in _url_forms(token)}
        self.forms = tuple(sorted(forms, key=len, reverse=True))
        # A token as a JSON string holds it with only the escapes JSON requires: how orjson writes it.
        self.escaped = tuple({orjson.dumps(form)[1:-1] for form in self.forms})
        self.needles = tuple(set(self.escaped) | {form.encode("utf-8", "surrogatepass") for form in self.forms})
        escapes = (b"\\u", b"\\/") if any("/" in form for form in self.forms) else (b"\\u",)
        # What the first look searches for: a token as written, or an escape that could hide one.
        self.signs = (*self.needles, *escapes) if self.forms else ()
        self.patterns = tuple(_any_encoding(token) for token in self.tokens)
        # What a URL needs to hide a token from the search of its forms: a percent sign, or a `+` standing for
        # a space of a token; written as such, or (looked for only when the body has a `\\u`) JSON-escaped.
        spaced = any(" " in token for token in self.tokens)
        plain, escaped = ((b"%", b"+"), (b"\\u0025", b"\\u002b", b"\\u002B")) if spaced else ((b"%",), (b"\\u0025",))
        self.url_signs = plain if self.tokens else ()
        self.url_signs_escaped = (*plain, *escaped) if self.tokens else ()

    def may_hold(self, body: bytes) -> bool:
        """False when `body` cannot hold a token: neither one as written nor an escape that could hide one."""
        find = body.find  # every body passes here: a plain loop and `find` are the fastest
        for sign in self.signs:  # noqa: SIM110
            if find(sign) >= 0:
                return True
        return False

    def may_hide_in_url(self, body: bytes, escaped: bool = True) -> bool:
        """False when no URL in `body` can hide a token behind percent-encoding: no `%` (nor a `+`, when a
        token holds a space), as written or, with `escaped` (the body has a `\\u`), JSON-escaped."""
        find = body.find
        for sign in self.url_signs_escaped if escaped else self.url_signs:  # noqa: SIM110
            if find(sign) >= 0:
                return True
        return False

    def redact(self, body: bytes, payload: Any) -> tuple[bytes, Any]:
        """`body` and its decoded `payload` (a JSON object, or anything else for a body not stored as JSON)
        with every token replaced by `[redacted]`; both as given when they hold none."""
        if isinstance(payload, dict):
            held = self.may_hold(body)
            if held and self.held_in(payload):
                return self.redact_bytes(body), self.redact_value(payload)
            if self.may_hide_in_url(body, escaped=held):  # a URL may hide one, percent-encoded: parse, compare
                redacted = self.redact_value(payload)
                if redacted != payload:
                    return self.redact_bytes(body), redacted
            return body, payload
        if self.may_hold(body) or (self.signs and b"%" in body):
            return self.redact_bytes(body), payload
        return body, payload

    def held_in(self, payload: Any) -> bool:
        """True when a decoded JSON value holds a token in a string, a key or a number (one C-speed scan)."""
        try:
            text = orjson.dumps(payload)
        except (TypeError, orjson.JSONEncodeError):  # not from orjson.loads: look at every part
            return bool(self.redact_value(payload) != payload)
        return any(needle in text for needle in self.escaped)

    def redact_bytes(self, body: bytes) -> bytes:
        """Raw bytes with every token replaced, whether written as is, JSON-escaped or percent-encoded."""
        for pattern in self.patterns:
            body = pattern.sub(REDACTED.encode(), body)
        return body

    def redact_value(self, value: Any) -> Any:
        """A decoded JSON value with every token replaced in its strings and keys; a number holding one
        becomes the string `[redacted]`; in an http(s) URL, every query parameter whose decoded name or value
        holds one becomes `name=[redacted]`."""
        if isinstance(value, str):
            if "?" in value and value[:8].lower().startswith(("http://", "https://")):
                value = self.redact_query(value)
            for form in self.forms:
                if form in value:
                    value = value.replace(form, REDACTED)
            return value
        if isinstance(value, dict):
            return {self.redact_value(k): self.redact_value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.redact_value(v) for v in value]
        if isinstance(value, int | float) and not isinstance(value, bool):
            text = repr(value)
            return REDACTED if any(form in text for form in self.forms) else value
        return value

    def redact_query(self, url: str) -> str:
        """`url` with each query parameter whose name or value, percent-decoded any number of times (up to
        MAX_DECODE_ROUNDS, `+` read as `+` and as a space), holds a token replaced by `name=[redacted]`; the
        rest of the URL is kept as written."""
        before, _, rest = url.partition("?")
        if "#" in before:  # that `?` is in the fragment: no query
            return url
        query, hash_, fragment = rest.partition("#")
        pieces = query.split("&")
        changed = False
        for i, piece in enumerate(pieces):
            name, equals, value = piece.partition("=")
            if self._hides_token(value):
                name = REDACTED if self._hides_token(name) else name
                pieces[i], changed = f"{name}={REDACTED}" if equals else REDACTED, True
            elif self._hides_token(name):
                pieces[i], changed = f"{REDACTED}{equals}{value}", True
        return f"{before}?{'&'.join(pieces)}{hash_}{fragment}" if changed else url

    def _hides_token(self, text: str) -> bool:
        return any(token in form for form in _decodings(text) for token in self.tokens)


def _decodings(text: str) -> set[str]:
    """`text` and what percent-decoding it again and again gives, `+` taken as itself and as a space."""
    seen = {text}
    frontier = [text]
    for _ in range(MAX_DECODE_ROUNDS):
        found = []
        for form in frontier:
            if "%" in form:
                found.append(unquote(form))
            if "+" in form:
                found.append(unquote_plus(form))
        frontier = [form for form in found if form not in seen]
        if not frontier:
            break
        seen.update(frontier)
        if len(seen) >= _MAX_DECODINGS:
            break
    return seen


def _url_forms(token: str) -> tuple[str, ...]:
    """A token as written and percent-encoded (upper- and lower-case hex), as a URL in a payload holds it."""
    quoted = quote(token, safe="")
    return token, quoted, re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), quoted)


def _any_encoding(token: str) -> re.Pattern[bytes]:
    """A pattern of `token` in raw bytes, each character as is, JSON-escaped (`\\uXXXX` in any case, a
    surrogate pair, a short escape such as `\\/`) or percent-encoded."""
    parts = []
    for char in token:
        raw = char.encode("utf-8", "surrogatepass")
        code = ord(char)
        units = [code] if code < 0x10000 else [0xD800 + ((code - 0x10000) >> 10), 0xDC00 + ((code - 0x10000) & 0x3FF)]
        options = [re.escape(raw), b"".join(b"\\\\u" + _any_case(f"{unit:04x}") for unit in units),
                   b"".join(b"%" + _any_case(f"{byte:02x}") for byte in raw)]
        if char in _SHORT_ESCAPES:
            options.append(re.escape(_SHORT_ESCAPES[char]))
        parts.append(b"(?:" + b"|".join(options) + b")")
    return re.compile(b"".join(parts))


def _any_case(hex_digits: str) -> bytes:
    return "".join(f"[{d}{d.upper()}]" if d.isalpha() else d for d in hex_digits).encode()
