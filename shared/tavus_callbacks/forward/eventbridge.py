"""Amazon EventBridge: `PutEvents` with the CloudEvent as `Detail` and its type as `DetailType`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tavus_callbacks import clients
from tavus_callbacks.errors import ConfigError, ForwardError
from tavus_callbacks.forward.base import publish_failed, split_bus_url, thin_record
from tavus_callbacks.record import canonical_json

if TYPE_CHECKING:
    from tavus_callbacks.record import Record

SOURCE = "tavus-callbacks"
MAX_ENTRY_BYTES = 256 * 1024  # PutEvents entry limit, counted as `entry_size` does
_CLIENT_ENV = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_EVENTBRIDGE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE",
               "AWS_ACCESS_KEY_ID")


def entry_size(entry: dict[str, Any]) -> int:
    """A PutEvents entry's size as EventBridge counts it: Source, DetailType, Detail, Resources, Time (14)."""
    size = 14 if "Time" in entry else 0
    size += sum(len(str(entry.get(name, "")).encode("utf-8")) for name in ("Source", "DetailType", "Detail"))
    return size + sum(len(r.encode("utf-8")) for r in entry.get("Resources", []))


class EventBridgeForwarder:
    """Publishes each stored event to one bus with a stable `Source`, so a rule can match on it."""

    def __init__(self, bus: str, region: str | None = None, source: str = SOURCE) -> None:
        self.bus, self.region, self.source = bus, region, source

    @classmethod
    def from_url(cls, url: str) -> EventBridgeForwarder:
        """`eventbridge://<bus-name or bus ARN>[?region=R&source=S]`."""
        bus, query = split_bus_url(url, "eventbridge")
        region = query.get("region")
        if region is None and bus.startswith("arn:"):
            region = bus.split(":")[3] or None
        return cls(bus, region=region, source=query.get("source", SOURCE))

    def _client(self) -> Any:
        return clients.cached_client((*clients.env_key("events", _CLIENT_ENV), self.region), self._make_client)

    def _make_client(self) -> Any:
        import boto3
        from botocore.config import Config
        from botocore.exceptions import NoRegionError

        config = Config(connect_timeout=clients.CONNECT_TIMEOUT, read_timeout=clients.READ_TIMEOUT,
                        retries={"max_attempts": clients.ATTEMPTS, "mode": "standard"})
        try:
            return boto3.session.Session().client("events", region_name=self.region, config=config)
        except NoRegionError:
            raise ConfigError(
                f"no AWS region for the EventBridge bus {self.bus!r}: set AWS_REGION (or AWS_DEFAULT_REGION) "
                "or add ?region=<region> to TAVUS_FORWARD_URL"
            ) from None

    def entry(self, record: Record, store_url: str) -> dict[str, Any]:
        """The PutEvents entry for a record: the whole CloudEvent, or its thin form when over the limit."""
        entry: dict[str, Any] = {"EventBusName": self.bus, "Source": self.source,
                                 "DetailType": record.document["type"], "Detail": record.body.decode("utf-8")}
        if entry_size(entry) > MAX_ENTRY_BYTES:
            entry["Detail"] = canonical_json(thin_record(record, store_url)).decode("utf-8")
        return entry

    def publish(self, record: Record, store_url: str) -> None:
        """One PutEvents call; a failed entry is a failure (PutEvents answers 200 with FailedEntryCount)."""
        entry = self.entry(record, store_url)
        try:
            answer = self._client().put_events(Entries=[entry])
        except ConfigError:
            raise
        except Exception as exc:
            raise publish_failed(f"EventBridge PutEvents to bus {self.bus!r}", exc, "check that the bus exists in "
                                 "this region and that this identity is allowed events:PutEvents on it") from exc
        if answer.get("FailedEntryCount", 0):
            failed = answer.get("Entries", [{}])[0]
            raise ForwardError(
                f"EventBridge rejected event {record.id} on bus {self.bus!r}: "
                f"{failed.get('ErrorCode', 'unknown error')}: {failed.get('ErrorMessage', '')}".rstrip(": ")
            )
