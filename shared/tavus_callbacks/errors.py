"""The exception hierarchy: every error says what went wrong and what to do about it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class TavusCallbacksError(Exception):
    """Base of every error this package raises on purpose."""

    exit_status = 2  # what the command line exits with: by default a usage or configuration mistake


class Failed(TavusCallbacksError):
    """Something the command relies on failed (not the user's input): the command line exits 1."""

    exit_status = 1


class ConfigError(TavusCallbacksError):
    """A setting is missing or malformed; the message names the variable or option."""


class MissingDependency(ConfigError):
    """A cloud SDK the configuration needs is not installed; the message names the extra that installs it."""


@contextlib.contextmanager
def needs_extra(extra: str, purpose: str, package: str) -> Iterator[None]:
    """Turn an ImportError inside the block into a MissingDependency naming the distribution to install
    (`package`, e.g. boto3) and the extra of this project that brings it, as a source checkout installs it."""
    try:
        yield
    except ImportError:
        raise MissingDependency(f"{purpose} needs {package}, which is not installed: pip install {package} "
                                f"(or, from the project's folder, pip install -e '.[{extra}]')") from None


class MalformedRequest(TavusCallbacksError):
    """A platform handed an adapter an HTTP request it cannot read (a field missing or of the wrong type);
    the adapter answers 400 with this message instead of failing the invocation."""


class StoreError(Failed):
    """A store operation failed for a reason that is not the caller's input."""


class StoreUnavailable(StoreError):
    """The store cannot be reached or refused the operation; the caller should answer 503 and retry later."""


class PreconditionFailed(StoreError):
    """A compare-and-swap lost the race: the object changed (or appeared) since it was read."""


class ForwardError(Failed):
    """Publishing an event to the configured bus failed; the sender should retry."""
