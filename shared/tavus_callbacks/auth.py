"""The token check: `?token=` or `Authorization: Bearer`, compared in constant time to every configured token."""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

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
