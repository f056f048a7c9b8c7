"""Azure Event Grid: the CloudEvents 1.0 schema, sent with azure-eventgrid's EventGridPublisherClient.

`eventgrid://<topic-hostname>` publishes to `https://<topic-hostname>/api/events`; the key comes from
`TAVUS_EVENTGRID_KEY` (sent as `aeg-sas-key`), otherwise `DefaultAzureCredential` (managed identity).
`?scheme=http` targets a plain-HTTP endpoint such as a local test sink.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from tavus_callbacks import clients
from tavus_callbacks.errors import ConfigError
from tavus_callbacks.forward.base import publish_failed, split_bus_url, thin_record

if TYPE_CHECKING:
    from tavus_callbacks.record import Record

MAX_EVENT_BYTES = 1024 * 1024
KEY_VARIABLE = "TAVUS_EVENTGRID_KEY"


class EventGridForwarder:
    """Publishes each stored event to one Event Grid topic in the CloudEvents schema."""

    def __init__(self, endpoint: str, key: str | None = None) -> None:
        self.endpoint, self._key = endpoint, key

    @classmethod
    def from_url(cls, url: str, environ: dict[str, str] | None = None) -> EventGridForwarder:
        """`eventgrid://<topic-hostname>[/path][?scheme=http]`; the path defaults to `/api/events`."""
        target, query = split_bus_url(url, "eventgrid")
        scheme = query.get("scheme", "https")
        if scheme not in ("https", "http"):
            raise ConfigError(f"TAVUS_FORWARD_URL {url!r}: scheme= must be https (the default) or http")
        host, slash, path = target.partition("/")
        endpoint = f"{scheme}://{host}/{path if slash else 'api/events'}"
        env = os.environ if environ is None else environ
        return cls(endpoint, key=env.get(KEY_VARIABLE, "").strip() or None)

    def _client(self) -> Any:
        return clients.cached_client(("eventgrid", self.endpoint, self._key), self._make_client)

    def _make_client(self) -> Any:
        # The basic-topic client takes our retry and timeout bounds and sends a CloudEvent dict as it is; the
        # package's top-level EventGridPublisherClient wraps it but drops those options and re-encodes `time`.
        try:
            from azure.eventgrid._legacy import EventGridPublisherClient
        except ImportError:  # a future azure-eventgrid without it: the public client, with its defaults
            from azure.eventgrid import EventGridPublisherClient  # type: ignore[assignment]

        credential: Any
        if self._key:
            from azure.core.credentials import AzureKeyCredential

            credential = AzureKeyCredential(self._key)
        else:
            from azure.identity import DefaultAzureCredential

            credential = DefaultAzureCredential()
        return EventGridPublisherClient(self.endpoint, credential, retry_total=clients.ATTEMPTS - 1,
                                        retry_backoff_factor=clients.BACKOFF,
                                        connection_timeout=clients.CONNECT_TIMEOUT, read_timeout=clients.READ_TIMEOUT)

    def event(self, record: Record, store_url: str) -> dict[str, Any]:
        """The stored document, or its thin form when the JSON the client sends (ASCII-escaped) is over 1 MB."""
        if len(record.body) * 6 > MAX_EVENT_BYTES and len(json.dumps(record.document)) > MAX_EVENT_BYTES:
            return thin_record(record, store_url)
        return record.document

    def publish(self, record: Record, store_url: str) -> None:
        event = self.event(record, store_url)
        try:
            self._client().send([event])
        except Exception as exc:
            raise publish_failed(f"Event Grid publish to {self.endpoint}", exc, "check the topic endpoint and its "
                                 f"access key in {KEY_VARIABLE}, or give this identity the 'EventGrid Data Sender' "
                                 "role on the topic") from exc

