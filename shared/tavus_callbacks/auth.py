"""The token check: `?token=` or `Authorization: Bearer`, compared in constant time to every configured token."""

from __future__ import annotations

import hmac
import json
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    from .http import Request


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


class TokenRedactor:
    """Takes the configured tokens out of what is stored: payloads may echo the callback URL (`webhook_url`).

    The raw body is searched first (a C-speed scan), so the common case of a body without a token
    costs nothing more; only a body that contains one is walked and rewritten.
    """

    def __init__(self, tokens: tuple[str, ...]) -> None:
        forms = {form for token in tokens for form in (token, quote(token, safe=""))}
        self.forms = tuple(sorted(forms, key=len, reverse=True))
        self.needles = tuple({needle for form in self.forms
                              for needle in (form.encode("utf-8", "surrogatepass"),
                                             json.dumps(form)[1:-1].encode("ascii"))})

    def found_in(self, body: bytes) -> bool:
        return any(needle in body for needle in self.needles)

    def redact_bytes(self, body: bytes) -> bytes:
        """A raw body with every token replaced (for quarantined bodies, which are not JSON)."""
        for needle in self.needles:
            body = body.replace(needle, REDACTED.encode())
        return body

    def redact_value(self, value: Any) -> Any:
        """A decoded JSON value with every token replaced in its strings and keys."""
        if isinstance(value, str):
            for form in self.forms:
                if form in value:
                    value = value.replace(form, REDACTED)
            return value
        if isinstance(value, dict):
            return {self.redact_value(k): self.redact_value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.redact_value(v) for v in value]
        return value
