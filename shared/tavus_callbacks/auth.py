"""The token check: `?token=` or `Authorization: Bearer`, compared in constant time to every configured token."""

from __future__ import annotations

import hmac
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

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
_SHORT_ESCAPES = {'"': b'\\"', "\\": b"\\\\", "/": b"\\/", "\b": b"\\b", "\f": b"\\f", "\n": b"\\n", "\r": b"\\r",
                  "\t": b"\\t"}


class TokenRedactor:
    """Takes the configured tokens out of what is stored and logged, however the body wrote them.

    A body may echo the callback URL (`webhook_url`): a token as written, percent-encoded, or behind JSON
    escapes (`\\u0072`, `\\/`). The decoded payload is searched, and a body stored as received (quarantine)
    byte by byte; a first look at the raw bytes lets a body that cannot hold one skip the rest.
    """

    def __init__(self, tokens: tuple[str, ...]) -> None:
        forms = {form for token in tokens for form in _url_forms(token)}
        self.forms = tuple(sorted(forms, key=len, reverse=True))
        # A token as a JSON string holds it with only the escapes JSON requires: how orjson writes it.
        self.escaped = tuple({orjson.dumps(form)[1:-1] for form in self.forms})
        self.needles = tuple(set(self.escaped) | {form.encode("utf-8", "surrogatepass") for form in self.forms})
        escapes = (b"\\u", b"\\/") if any("/" in form for form in self.forms) else (b"\\u",)
        # What the first look searches for: a token as written, or an escape that could hide one.
        self.signs = (*self.needles, *escapes) if self.forms else ()
        self.patterns = tuple(_any_encoding(token) for token in sorted(set(tokens), key=len, reverse=True))

    def may_hold(self, body: bytes) -> bool:
        """False when `body` cannot hold a token: neither one as written nor an escape that could hide one."""
        find = body.find  # every body passes here: a plain loop and `find` are the fastest
        for sign in self.signs:  # noqa: SIM110
            if find(sign) >= 0:
                return True
        return False

    def redact(self, body: bytes, payload: Any) -> tuple[bytes, Any]:
        """`body` and its decoded `payload` (a JSON object, or anything else for a body not stored as JSON)
        with every token replaced by `[redacted]`; both as given when they hold none."""
        if isinstance(payload, dict):
            if self.may_hold(body) and self.held_in(payload):
                return self.redact_bytes(body), self.redact_value(payload)
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
        becomes the string `[redacted]`."""
        if isinstance(value, str):
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
