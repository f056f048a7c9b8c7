"""Google Cloud Pub/Sub: the CloudEvents binary mode (`ce-*` attributes, data = the event's data as JSON).

Messages carry `ordering_key` = the event's subject (the conversation id for conversation events),
so a subscription with message ordering sees a conversation's events in publish order.
`PUBSUB_EMULATOR_HOST` is honoured by the client library itself.
"""

from __future__ import annotations

import contextlib
import re
from typing import TYPE_CHECKING, Any

from tavus_callbacks import clients
from tavus_callbacks.errors import ConfigError
from tavus_callbacks.forward.base import publish_failed, split_bus_url, thin_record
from tavus_callbacks.record import canonical_json

if TYPE_CHECKING:
    from tavus_callbacks.record import Record

MAX_MESSAGE_BYTES = 10_000_000
PUBLISH_TIMEOUT_SECONDS = 10.0
_CLIENT_ENV = ("PUBSUB_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT")
_TOPIC = re.compile(r"^projects/[^/\s]+/topics/[^/\s]+$")
# CloudEvents context attributes sent as `ce-<name>` message attributes.
ATTRIBUTES = ("specversion", "id", "type", "source", "subject", "time", "dataref")


def message_size(data: bytes, attributes: dict[str, str], ordering_key: str) -> int:
    """A message's size as Pub/Sub counts it: data, attribute names and values, ordering key."""
    return len(data) + len(ordering_key.encode()) + sum(len(k.encode() + v.encode()) for k, v in attributes.items())


def message_for(document: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """(data, attributes) of a CloudEvent in binary content mode."""
    attributes = {f"ce-{name}": str(document[name]) for name in ATTRIBUTES if name in document}
    if "data" not in document:
        return b"", attributes
    attributes["content-type"] = str(document.get("datacontenttype", "application/json"))
    return canonical_json(document["data"]), attributes


class PubSubForwarder:
    """Publishes each stored event to one topic and waits for the server's acknowledgement."""

    def __init__(self, topic: str, timeout: float = PUBLISH_TIMEOUT_SECONDS) -> None:
        if not _TOPIC.match(topic):
            raise ConfigError(
                f"TAVUS_FORWARD_URL names the Pub/Sub topic {topic!r}: use pubsub://projects/<project>/topics/<topic>"
            )
        self.topic, self.timeout = topic, timeout

    @classmethod
    def from_url(cls, url: str) -> PubSubForwarder:
        """`pubsub://projects/<project>/topics/<topic>`."""
        topic, _ = split_bus_url(url, "pubsub")
        return cls(topic)

    def _client(self) -> Any:
        """The process-wide publisher (made on first publish, so after any fork)."""
        return clients.cached_client((*clients.env_key("pubsub", _CLIENT_ENV), self.timeout), self._make_client)

    def _make_client(self) -> Any:
        from google.api_core.retry import Retry
        from google.cloud import pubsub_v1

        # Bounded retries so a failed publish surfaces before the caller's own timeout.
        retry = Retry(initial=0.1, maximum=2.0, multiplier=2.0, timeout=self.timeout * 0.8)
        options = pubsub_v1.types.PublisherOptions(enable_message_ordering=True, retry=retry,
                                                   timeout=self.timeout / 2)
        batch = pubsub_v1.types.BatchSettings(max_latency=0.005)
        return pubsub_v1.PublisherClient(batch_settings=batch, publisher_options=options)

    def message(self, record: Record, store_url: str) -> tuple[bytes, dict[str, str], str]:
        """(data, attributes, ordering key) for a record, thin when the message would be over the limit."""
        ordering_key = record.document.get("subject") or ""
        data, attributes = message_for(record.document)
        if message_size(data, attributes, ordering_key) > MAX_MESSAGE_BYTES:
            data, attributes = message_for(thin_record(record, store_url))
        return data, attributes, ordering_key

    def publish(self, record: Record, store_url: str) -> None:
        data, attributes, ordering_key = self.message(record, store_url)
        client = self._client()
        for attempt in (1, 2):
            try:
                future = client.publish(self.topic, data, ordering_key=ordering_key, **attributes)
                future.result(timeout=self.timeout)
                return
            except Exception as exc:
                if ordering_key:
                    # A failed ordered publish pauses its key; resume it so the sender's retry can publish again.
                    # Best effort: after a timeout (or a concurrent resume) the key is not paused and resuming raises.
                    with contextlib.suppress(Exception):
                        client.resume_publish(self.topic, ordering_key)
                # An earlier publish that timed out may have failed since and paused the key: resumed, try again.
                if attempt == 1 and type(exc).__name__ == "PublishToPausedOrderingKeyException":
                    continue
                raise publish_failed(f"Pub/Sub publish to {self.topic}", exc, "check that the topic exists and "
                                     "that this identity has roles/pubsub.publisher on it") from exc
