"""Where a recording lives: parse `storage_uri` (or the legacy bucket + key) into a location."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

PROVIDERS = ("s3", "gcs", "azure_blob")


@dataclass(frozen=True, slots=True)
class RecordingLocation:
    """A recording object: provider, bucket (container for Azure), key, and the Azure account."""

    provider: str
    bucket: str
    key: str
    account: str | None = None

    @property
    def uri(self) -> str:
        if self.provider == "s3":
            return f"s3://{self.bucket}/{self.key}"
        if self.provider == "gcs":
            return f"gs://{self.bucket}/{self.key}"
        return f"https://{self.account}.blob.core.windows.net/{self.bucket}/{self.key}"


def parse_storage_uri(uri: str) -> RecordingLocation | None:
    """The location a `storage_uri` names, or None when it is not one of the three documented forms."""
    try:
        parts = urlsplit(uri.strip())
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    path = unquote(parts.path).lstrip("/")
    if scheme in ("s3", "gs") and parts.netloc and path:
        return RecordingLocation("s3" if scheme == "s3" else "gcs", parts.netloc, path)
    host = parts.hostname or ""
    if scheme == "https" and host.endswith(".blob.core.windows.net"):
        container, _, blob = path.partition("/")
        if container and blob:
            return RecordingLocation("azure_blob", container, blob, account=host.split(".", 1)[0])
    return None


def legacy_location(bucket_name: str, s3_key: str) -> RecordingLocation | None:
    """The location of the legacy `bucket_name` + `s3_key` form (always S3)."""
    key = s3_key.lstrip("/")
    if not bucket_name or not key:
        return None
    return RecordingLocation("s3", bucket_name, key)
