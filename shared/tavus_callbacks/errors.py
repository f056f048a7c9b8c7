"""The exception hierarchy: every error says what went wrong and what to do about it."""

from __future__ import annotations


class TavusCallbacksError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(TavusCallbacksError):
    """A setting is missing or malformed; the message names the variable or option."""


class StoreError(TavusCallbacksError):
    """A store operation failed for a reason that is not the caller's input."""


class StoreUnavailable(StoreError):
    """The store cannot be reached or refused the operation; the caller should answer 503 and retry later."""


class PreconditionFailed(StoreError):
    """A compare-and-swap lost the race: the object changed (or appeared) since it was read."""


class ForwardError(TavusCallbacksError):
    """Publishing an event to the configured bus failed; the sender should retry."""
