"""What every publisher shares: the thin form of an event, the stored object's URL, a forward URL's parts, and
the fan-out to several sinks, each limited to some event types."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from tavus_callbacks.errors import ConfigError, ForwardError

if TYPE_CHECKING:
    from tavus_callbacks.record import Record

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


def thin_record(record: Record, store_url: str) -> dict[str, Any]:
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
    """Publishes a durably stored event to a bus or an HTTP sink. Raises when the publish must be tried again (the
    change feed redelivers); returns once delivered, or once a sink refused it for good (logged as an error)."""

    def publish(self, record: Record, store_url: str) -> None: ...


# A comma followed by `scheme://` starts the next sink; any other comma belongs to the sink before it (`types=a,b`).
_NEXT_SINK = re.compile(r",\s*(?=[A-Za-z][A-Za-z0-9+.-]*://)")
TYPES_PARAMETER = "types"  # the one query parameter of a sink URL that is ours; every other one is the sink's
_TYPE_PATTERN = re.compile(r"^[A-Za-z0-9_.*?-]+$")
# The names a filter may give a type by: io.tavus.conversation.system.shutdown is also conversation.system.shutdown
# and system.shutdown (the vendor's event_type).
_TYPE_PREFIXES = ("io.tavus.conversation.", "io.tavus.")


def split_sinks(value: str) -> list[str]:
    """The sink URLs of a comma-separated forward setting, e.g. `https://a/hook?types=x,y,eventbridge://bus`."""
    return [part.strip() for part in _NEXT_SINK.split(value) if part.strip()]


def take_types(url: str, source: str = "TAVUS_FORWARD_URL") -> tuple[str, tuple[str, ...] | None]:
    """(the URL without its `types` parameter, the type patterns it named or None). The rest of the query is kept
    as written, so a sink's own parameters reach it unchanged."""
    base, mark, query = url.partition("?")
    if not mark:
        return url, None
    kept: list[str] = []
    types: list[str] = []
    found = False
    for part in query.split("&"):
        name, _, value = part.partition("=")
        if unquote(name) != TYPES_PARAMETER:
            kept.append(part)
            continue
        found = True
        types.extend(t.strip() for t in unquote(value).split(",") if t.strip())
    if not found:
        return url, None
    where = redact_url(url)
    if not types:
        raise ConfigError(f"{source}: {where} has an empty ?{TYPES_PARAMETER}=; name the event types to send, "
                          "e.g. ?types=application.transcription_ready,system.shutdown, or leave it out for all")
    for pattern in types:
        if not _TYPE_PATTERN.match(pattern):
            raise ConfigError(f"{source}: {where}: {pattern!r} in ?{TYPES_PARAMETER}= is not an event type "
                              "(letters, digits, '.', '_', '-', and '*' as a wildcard)")
    rest = "&".join(p for p in kept if p)
    return (f"{base}?{rest}" if rest else base), tuple(types)


def type_admitted(patterns: Sequence[str], type_: str) -> bool:
    """Whether a CloudEvents type matches one of the patterns, by its full name or without `io.tavus.`
    (and `io.tavus.conversation.`); `*` matches any run of characters."""
    names = [type_, *(type_.removeprefix(p) for p in _TYPE_PREFIXES if type_.startswith(p))]
    return any(fnmatchcase(name, pattern) for pattern in patterns for name in names)


def redact_url(url: str) -> str:
    """A URL as logs and errors may show it: scheme, host, port and path; no credentials and no query."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


@dataclass(frozen=True, slots=True)
class Sink:
    """One destination of a fan-out: its publisher, its name for logs (no secret) and the types it takes."""

    name: str
    forwarder: Forwarder
    types: tuple[str, ...] | None = None

    def admits(self, type_: str) -> bool:
        return self.types is None or type_admitted(self.types, type_)


class FanOutForwarder:
    """Publishes each event to every sink whose filter admits its type. A sink that fails does not keep the event
    from the others; the publish then raises, and its retry delivers to every sink again (at-least-once each)."""

    def __init__(self, sinks: Sequence[Sink]) -> None:
        self.sinks = tuple(sinks)

    def publish(self, record: Record, store_url: str) -> None:
        failures: list[str] = []
        tried = 0
        for sink in self.sinks:
            if not sink.admits(record.document["type"]):
                continue
            tried += 1
            try:
                sink.forwarder.publish(record, store_url)
            except Exception as exc:  # a bus client's own error types vary by SDK
                failures.append(f"{sink.name}: {exc}" if isinstance(exc, ForwardError) else
                                f"{sink.name}: {type(exc).__name__}: {exc}")
        if failures:
            raise ForwardError(f"event {record.id} failed on {len(failures)} of {tried} sinks: " + "; ".join(failures))
