"""A minimal HTTP client for posting callbacks to an endpoint (standard library only, so it runs anywhere)."""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Answer:
    """What the endpoint said to one delivery (status 0 when it could not be reached, with the reason as body)."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)


def post(url: str, body: bytes, *, bearer: str | None = None, timeout: float = 30.0,
         agent: str = "tavus-callbacks") -> Answer:
    """POST a body as JSON; the answer whatever its status, or status 0 with the reason when unreachable."""
    headers = {"Content-Type": "application/json", "User-Agent": agent}
    if bearer:
        headers["Authorization"] = f"Bearer {bearer}"
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Answer(response.status, response.read(), dict(response.headers))
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, exc.read(), dict(exc.headers or {}))
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return Answer(0, f"cannot reach the endpoint: {reason}".encode())
