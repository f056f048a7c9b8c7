"""What every bus publisher shares: the thin form of an event, the stored object's URL, the bus URL's parts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qsl, quote, urlsplit

from tavus_callbacks.errors import ConfigError, ForwardError

if TYPE_CHECKING:
    from tavus_callbacks.record import StoredEvent

# CloudEvents context attributes a thin event keeps: everything but the data itself.
THIN_ATTRIBUTES = ("specversion", "id", "type", "source", "subject", "time")


def object_url(store_url: str, key: str) -> str:
    """The URL of a stored object, e.g. `s3://bucket/key`: what a thin event's `dataref` points to."""
    parts = urlsplit(store_url)
    scheme = parts.scheme.lower()
    path = quote(key, safe="/")
    if scheme in ("s3", "gs", "gcs"):
        return f"{'gs' if scheme == 'gcs' else scheme}://{parts.netloc}/{path}"
    if scheme == "azure":
        return f"azure://{parts.netloc}/{path}"
    if scheme == "https" and ".blob." in parts.netloc:
        container = parts.path.strip("/").partition("/")[0]
        return f"https://{parts.netloc}/{container}/{path}"
    return f"{store_url.rstrip('/')}/{path}"


def thin_event(document: dict[str, Any], dataref: str) -> dict[str, Any]:
    """The same event without `data`: same id, type, source, subject and time, plus a CloudEvents `dataref`."""
    return {**{name: document[name] for name in THIN_ATTRIBUTES if name in document}, "dataref": dataref}


def thin_record(record: StoredEvent, store_url: str) -> dict[str, Any]:
    """The thin form of a stored event, pointing to its object: what goes to a bus when the event is too big."""
    return thin_event(record.document, object_url(store_url, record.key))


def publish_failed(what: str, exc: Exception, fix: str) -> ForwardError:
    return ForwardError(f"{what} failed ({type(exc).__name__}: {exc}); {fix}")


def split_bus_url(url: str, scheme: str) -> tuple[str, dict[str, str]]:
    """(the part after `scheme://` without its query, the query parameters) of a bus URL."""
    rest = url[len(scheme) + 3:] if url.lower().startswith(f"{scheme}://") else ""
    target, _, query = rest.partition("?")
    target = target.strip().rstrip("/")
    if not target:
        raise ConfigError(f"TAVUS_FORWARD_URL {url!r} names no {scheme} target after {scheme}://")
    return target, dict(parse_qsl(query))


class Forwarder(Protocol):
    """Publishes a durably stored event to an event bus; raises ForwardError when it cannot."""

    def publish(self, record: StoredEvent, store_url: str) -> None: ...
