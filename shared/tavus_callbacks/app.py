"""The application an entry point builds from its settings and hands to its platform's adapter, as Slack Bolt and
Mangum are handed theirs: `handler = lambda_handler(App.from_env(tokens=aws.secret_tokens))`.

It answers requests, derives from stored events and runs the scheduled reconcile with pipelines it builds on first
use (importing an entry point opens no store), and builds again when its tokens source gives other tokens.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from tavus_callbacks.errors import ConfigError, StoreUnavailable
from tavus_callbacks.http import Request, Response
from tavus_callbacks.pipeline import Derived, Pipeline, unavailable
from tavus_callbacks.settings import Settings

if TYPE_CHECKING:
    from tavus_callbacks.reconcile.sweep import Summary

log = logging.getLogger("tavus_callbacks")

Tokens = Callable[[], tuple[str, ...] | None]  # the callback tokens of a secret, or None for the settings' own
Secret = Callable[[], str | None]


class App:
    """One deployment: its settings, where its tokens and API key come from, and the pipelines built of them."""

    def __init__(self, settings: Callable[[], Settings] = Settings.from_env, *, tokens: Tokens | None = None,
                 api_key: Secret | None = None) -> None:
        self._settings, self._tokens, self._api_key = settings, tokens, api_key
        self._answering: Pipeline | None = None
        self._deriving: Pipeline | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls, *, tokens: Tokens | None = None, api_key: Secret | None = None,
                 environ: Mapping[str, str] | None = None) -> App:
        """The App of the TAVUS_* variables (read on first use), its tokens from `tokens()` when that gives any,
        its reconcile API key from `api_key()` when given (else TAVUS_API_KEY)."""
        return cls(lambda: Settings.from_env(environ), tokens=tokens, api_key=api_key)

    def pipeline(self) -> Pipeline:
        """The pipeline answering callbacks: tokens required (ConfigError without), built again when the tokens
        source gives other tokens."""
        tokens = self._tokens() if self._tokens is not None else None
        with self._lock:
            current = self._answering
            if current is None or (tokens is not None and current.settings.tokens != tokens):
                settings = self._settings()
                if tokens is not None:
                    settings = settings.with_tokens(tokens)
                self._answering = current = Pipeline(settings.require_tokens())
            return current

    def deriving(self) -> Pipeline:
        """The pipeline deriving from stored events: no token needed, it answers no caller."""
        with self._lock:
            if self._deriving is None:
                self._deriving = Pipeline(self._settings())
            return self._deriving

    def handle(self, request: Request) -> Response:
        """Answer a request; a configuration error or a store that cannot be opened answers 503 and is logged."""
        try:
            pipeline = self.pipeline()
        except ConfigError as exc:
            log.error("configuration error: %s", exc)
            return unavailable("the endpoint is not configured; see its logs", "config_error")
        except StoreUnavailable as exc:  # opening the store at cold start failed: retry later, never a 500
            log.error("store unavailable, answering 503: %s", exc, extra={"error": str(exc)})
            return unavailable("the store cannot be written; retry later", "store_unavailable")
        return pipeline.handle(request)

    def derive(self, key: str) -> Derived:
        """`Pipeline.derive`; raises when the work could not be finished, so the platform delivers it again."""
        return self.deriving().derive(key)

    def reconcile(self, seconds_left: float | None = None) -> Summary | None:
        """One scheduled sweep within `seconds_left` (when the platform bounds it), or None without an API key."""
        from tavus_callbacks.reconcile.scheduled import run_scheduled

        api_key = self._api_key() if self._api_key is not None else None
        return run_scheduled(self.pipeline, api_key=api_key, seconds_left=seconds_left)

    def reload(self) -> None:
        """Forget the pipelines, so the next use reads the settings again (after the environment changed)."""
        with self._lock:
            self._answering = self._deriving = None
