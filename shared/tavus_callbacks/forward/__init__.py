"""Forwarding stored events to a cloud event bus, chosen by URL; each backend imports its SDK when chosen.

`eventbridge://<bus>`, `pubsub://projects/<project>/topics/<topic>`, `eventgrid://<topic-hostname>`.
Every publisher sends the stored CloudEvent with its stored `id`, so consumers can deduplicate
(delivery to a bus is at-least-once: a retried callback publishes again).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from tavus_callbacks.errors import ConfigError, needs_extra
from tavus_callbacks.forward.base import object_url, thin_event

if TYPE_CHECKING:
    from tavus_callbacks.forward.base import Forwarder

__all__ = ["BUS_SCHEMES", "is_bus_url", "object_url", "open_forwarder", "thin_event"]

BUS_SCHEMES = ("eventbridge", "pubsub", "eventgrid")
# The SDK each bus client is made with (on first publish), the extra that installs it and its distribution.
_SDKS = {"eventbridge": ("boto3", "aws", "boto3"), "pubsub": ("google.cloud.pubsub_v1", "gcp", "google-cloud-pubsub"),
         "eventgrid": ("azure.eventgrid", "azure", "azure-eventgrid")}


def is_bus_url(url: str) -> bool:
    """True when `url` names an event bus rather than an HTTP endpoint."""
    return url.partition("://")[0].lower() in BUS_SCHEMES


def open_forwarder(url: str) -> Forwarder:
    """The publisher a forward URL names; the bus client itself is created on first use and reused."""
    scheme = url.partition("://")[0].lower()
    if scheme in _SDKS:  # a missing SDK is a configuration error now, not a failed publish later
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
    raise ConfigError(
        f"TAVUS_FORWARD_URL {url!r} names no known bus: use eventbridge://<bus-name>, "
        "pubsub://projects/<project>/topics/<topic> or eventgrid://<topic-hostname>"
    )
