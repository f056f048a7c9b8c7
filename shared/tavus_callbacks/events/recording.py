"""Where a recording lives: parse `storage_uri` (or the legacy bucket + key) into a location."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit


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


# What to fix when the vendor could not copy a recording into the bucket, per destination provider.
REMEDIATION: dict[str, str] = {
    "s3": (
        "Check the IAM role given as assume_role_arn: its trust policy must allow sts:AssumeRole for "
        "arn:aws:iam::291871421005:root with the condition sts:ExternalId = 'tavus'; its MaxSessionDuration "
        "must be 43200; its policy must allow s3:PutObject, s3:GetObject, s3:ListBucketMultipartUploads, "
        "s3:AbortMultipartUpload, s3:ListBucketVersions, s3:ListBucket, s3:GetObjectVersion and "
        "s3:ListMultipartUploadParts on the bucket and bucket/*; and bucket_region must be the bucket's region. "
        "Run `tavus-callbacks doctor --store s3://BUCKET --role-arn ARN`."
    ),
    "gcs": (
        "Check the Workload Identity Federation setup: the pool and its provider must still trust the vendor's "
        "identity, and the service account it impersonates must keep its role on the bucket "
        "(e.g. roles/storage.objectAdmin) and the roles/iam.workloadIdentityUser binding for the pool's principal."
    ),
    "azure_blob": (
        "Check the Entra ID app registration's federated credential (issuer and subject must still match the "
        "vendor's) and that its service principal keeps the 'Storage Blob Data Contributor' role on the "
        "storage account or container."
    ),
}
GENERIC_REMEDIATION = (
    "The vendor could not write to the bucket: DESTINATION_AUTH_FAILED is almost always a trust-policy problem. "
    "The vendor keeps failed copies recoverable for about 30 days."
)


def remediation(provider: str | None) -> str:
    """What to fix for a failed copy into `provider`'s storage."""
    return REMEDIATION.get(provider or "", GENERIC_REMEDIATION)
