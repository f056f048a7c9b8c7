"""Forwarding stored events to event buses and HTTP endpoints, chosen by URL; each bus imports its SDK when chosen.

`eventbridge://<bus>`, `pubsub://projects/<project>/topics/<topic>`, `eventgrid://<topic-hostname>`, and
`https://...` (or `http://` to a loopback or private address): a Standard Webhooks endpoint. Several sinks go
comma-separated, each limited to some event types with `?types=a,b` (the one query parameter that is ours).
Every publisher sends the stored CloudEvent with its stored `id`, so consumers can deduplicate (delivery is
at-least-once: the change feed publishes again until every sink took the event).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from tavus_callbacks.bundles import require_part
from tavus_callbacks.errors import ConfigError, needs_extra
from tavus_callbacks.forward.base import (
    FanOutForwarder,
    Sink,
    object_url,
    redact_url,
    split_sinks,
    take_types,
    thin_event,
)
from tavus_callbacks.settings import WebhookSettings

if TYPE_CHECKING:
    from tavus_callbacks.forward.base import Forwarder

__all__ = ["BUS_SCHEMES", "HTTP_SCHEMES", "is_bus_url", "object_url", "open_forwarder", "open_sinks", "thin_event"]

BUS_SCHEMES = ("eventbridge", "pubsub", "eventgrid")
HTTP_SCHEMES = ("https", "http")
# The SDK each bus client is made with (on first publish), the extra that installs it and its distribution.
_SDKS = {"eventbridge": ("boto3", "aws", "boto3"), "pubsub": ("google.cloud.pubsub_v1", "gcp", "google-cloud-pubsub"),
         "eventgrid": ("azure.eventgrid", "azure", "azure-eventgrid")}
# What a function bundle offers in place of a bus it does not hold.
_BUNDLE_BUSES = {"aws": "forward to eventbridge://<bus> or an https:// endpoint",
                 "gcp": "forward to pubsub://projects/<project>/topics/<topic> or an https:// endpoint",
                 "azure": "forward to eventgrid://<topic-hostname> or an https:// endpoint"}


def is_bus_url(url: str) -> bool:
    """True when `url` names an event bus rather than an HTTP endpoint."""
    return url.partition("://")[0].lower() in BUS_SCHEMES


def open_forwarder(url: str, webhooks: WebhookSettings | None = None,
                   source: str = "TAVUS_FORWARD_URL") -> Forwarder:
    """The publisher a forward setting names: one sink's own, or a fan-out over several (or filtered) sinks.
    An HTTP sink is signed with `webhooks` (by default TAVUS_WEBHOOK_SECRETS, read only when one is named)."""
    sinks = open_sinks(url, webhooks, source)
    if len(sinks) == 1 and sinks[0].types is None:
        return sinks[0].forwarder
    return FanOutForwarder(sinks)


def open_sinks(url: str, webhooks: WebhookSettings | None = None, source: str = "TAVUS_FORWARD_URL") -> list[Sink]:
    """Every sink of a comma-separated forward setting, each with its type filter; a bad one is a ConfigError."""
    urls = split_sinks(url)
    if not urls:
        raise ConfigError(f"{source} names no sink: give a bus (eventbridge://, pubsub://, eventgrid://) or an "
                          "https:// endpoint")
    sinks = []
    for one in urls:
        target, types = take_types(one, source)
        if target.partition("://")[0].lower() in HTTP_SCHEMES and webhooks is None:
            webhooks = WebhookSettings.from_env()
        sinks.append(Sink(_name(target), _open_one(target, webhooks, source), types))
    return sinks


def _name(url: str) -> str:
    """A sink as logs show it: a bus URL without its query (which may hold a key), an HTTP URL without secrets."""
    return redact_url(url) if url.partition("://")[0].lower() in HTTP_SCHEMES else url.partition("?")[0]


def _open_one(url: str, webhooks: WebhookSettings | None, source: str) -> Forwarder:
    """The publisher of one sink URL; the bus client itself is created on first use and reused."""
    scheme = url.partition("://")[0].lower()
    if scheme in _SDKS:  # a bus another cloud's bundle holds, or a missing SDK: a configuration error now
        require_part(f"forward.{scheme}", f"{scheme}:// sinks", _BUNDLE_BUSES)
        module, extra, package = _SDKS[scheme]
        with needs_extra(extra, f"forwarding to {scheme}://", package):
            importlib.import_module(module)
    if scheme == "eventbridge":
        from tavus_callbacks.forward.eventbridge import EventBridgeForwarder

        return EventBridgeForwarder.from_url(url)
    if scheme == "pubsub":
        from tavus_callbacks.forward.pubsub import PubSubForwarder

        return PubSubForwarder.from_url(url)
    if scheme == "eventgrid":
        from tavus_callbacks.forward.eventgrid import EventGridForwarder

        return EventGridForwarder.from_url(url)
    if scheme in HTTP_SCHEMES:
        from tavus_callbacks.forward.webhook import WebhookForwarder

        return WebhookForwarder.from_url(url, webhooks, source)
    raise ConfigError(
        f"{source} {_name(url)!r} names no known sink: use eventbridge://<bus-name>, "
        "pubsub://projects/<project>/topics/<topic>, eventgrid://<topic-hostname>, or an https:// endpoint "
        "(http:// to a loopback or private address)"
    )
