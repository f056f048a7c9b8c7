"""Configuration from `TAVUS_*` environment variables, read once and validated with clear messages."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace

from .errors import ConfigError

DEFAULT_MAX_BODY_BYTES = 5 * 1024 * 1024
DEFAULT_STORE_URL = "sqlite:///tavus.db"
MIN_TOKEN_LENGTH = 16


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the pipeline needs to know about its deployment."""

    tokens: tuple[str, ...]
    store_url: str = DEFAULT_STORE_URL
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    forward_url: str | None = None
    fold_attempts: int = 8

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Read `TAVUS_CALLBACK_TOKENS`, `TAVUS_STORE_URL`, `TAVUS_MAX_BODY_BYTES`, `TAVUS_FORWARD_URL`."""
        env = os.environ if environ is None else environ
        settings = cls(
            tokens=parse_tokens(env.get("TAVUS_CALLBACK_TOKENS", ""), required=False),
            store_url=env.get("TAVUS_STORE_URL", "").strip() or DEFAULT_STORE_URL,
            max_body_bytes=_positive_int(env, "TAVUS_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES),
            forward_url=env.get("TAVUS_FORWARD_URL", "").strip() or None,
        )
        return replace(settings, **overrides) if overrides else settings  # type: ignore[arg-type]

    def require_tokens(self) -> Settings:
        """Self, or a ConfigError when no token is configured (the endpoint would accept nobody)."""
        if not self.tokens:
            raise ConfigError(
                "TAVUS_CALLBACK_TOKENS is not set: set it to one or more comma-separated secret tokens "
                f"of at least {MIN_TOKEN_LENGTH} characters "
                "(make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        return self


def parse_tokens(value: str, *, required: bool = True, source: str = "TAVUS_CALLBACK_TOKENS") -> tuple[str, ...]:
    """Comma-separated tokens, stripped; each at least MIN_TOKEN_LENGTH characters."""
    tokens = tuple(t.strip() for t in value.split(",") if t.strip())
    if required and not tokens:
        raise ConfigError(f"{source} is empty: give at least one token")
    for i, token in enumerate(tokens, 1):
        if len(token) < MIN_TOKEN_LENGTH:
            raise ConfigError(
                f"{source}: token #{i} is {len(token)} characters long; use at least {MIN_TOKEN_LENGTH} "
                "(make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
    return tokens


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number of bytes") from None
    if value <= 0:
        raise ConfigError(f"{name}={raw!r} must be greater than zero")
    return value
