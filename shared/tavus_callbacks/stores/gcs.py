"""Google Cloud Storage store: create-only by `if_generation_match=0`, compare-and-swap by generation.

Credentials are Application Default Credentials; with `STORAGE_EMULATOR_HOST` set, the client talks to that
emulator anonymously.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from google.api_core import exceptions as gexc
from google.auth.exceptions import GoogleAuthError
from google.cloud import storage
from google.cloud.storage.exceptions import DataCorruption, InvalidResponse
from google.cloud.storage.retry import DEFAULT_RETRY
from requests.adapters import HTTPAdapter
from requests.exceptions import RequestException, Timeout

from tavus_callbacks import clients
from tavus_callbacks.errors import ConfigError, PreconditionFailed, StoreUnavailable
from tavus_callbacks.stores.base import Blob, ObjectInfo, normalize_prefix

if TYPE_CHECKING:
    from tavus_callbacks.events.recording import RecordingLocation

_CLIENT_ENV = ("STORAGE_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT", "GOOGLE_APPLICATION_CREDENTIALS")
_TIMEOUT = (clients.CONNECT_TIMEOUT, clients.READ_TIMEOUT)
# Retries stop after about ATTEMPTS tries: the deadline leaves room for one backoff, not more.
_RETRY = DEFAULT_RETRY.with_delay(initial=clients.BACKOFF, maximum=2 * clients.BACKOFF).with_timeout(
    clients.BACKOFF * 2 * (clients.ATTEMPTS - 1))
_FAILURES = (gexc.GoogleAPIError, GoogleAuthError, RequestException, InvalidResponse, DataCorruption, OSError)


def gcs_client() -> Any:
    """The process-wide google-cloud-storage client for the current environment."""
    def make() -> Any:
        # Object calls need no project: without GOOGLE_CLOUD_PROJECT, skip looking one up.
        client = storage.Client(project=os.environ.get("GOOGLE_CLOUD_PROJECT") or None)
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=clients.POOL_SIZE)
        client._http.mount("https://", adapter)  # the authorized requests session the client sends through
        client._http.mount("http://", adapter)
        return client

    return clients.cached_client(clients.env_key("gcs", _CLIENT_ENV), make)


class GCSStore:
    """One Cloud Storage bucket: `gs://bucket/prefix`."""

    def __init__(self, bucket: str) -> None:
        self.bucket = bucket
        self.url = f"gs://{bucket}"

    @classmethod
    def from_url(cls, url: str) -> tuple[GCSStore, str]:
        """The store for `gs://bucket/prefix` and its normalized key prefix."""
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("gs", "gcs") or not parts.netloc:
            raise ConfigError(f"TAVUS_STORE_URL {url!r} is not a Cloud Storage URL: use gs://bucket or "
                              "gs://bucket/prefix")
        return cls(parts.netloc), normalize_prefix(parts.path)

    def create(self, key: str, data: bytes, content_type: str = "application/json") -> bool:
        try:
            self._upload(key, data, content_type, generation=0)
        except PreconditionFailed:
            return False
        return True

    def read(self, key: str) -> Blob | None:
        blob = self._bucket().blob(key)
        try:
            return Blob(blob.download_as_bytes(timeout=_TIMEOUT, retry=_RETRY), str(blob.generation))
        except gexc.NotFound:
            return None
        except _FAILURES as exc:
            raise self._unavailable("read", key, exc) from exc

    def replace(self, key: str, data: bytes, version: str | None, content_type: str = "application/json") -> str:
        return self._upload(key, data, content_type, generation=0 if version is None else int(version))

    def stat(self, key: str) -> ObjectInfo | None:
        try:
            blob = self._bucket().get_blob(key, timeout=_TIMEOUT, retry=_RETRY)
        except gexc.NotFound:
            return None
        except _FAILURES as exc:
            raise self._unavailable("stat", key, exc) from exc
        return None if blob is None else ObjectInfo(key, int(blob.size or 0), blob.etag, blob.content_type)

    def iter_keys(self, prefix: str) -> Iterator[str]:
        """Cloud Storage lists object names in lexical order."""
        try:
            for blob in self._bucket().list_blobs(prefix=prefix or None, timeout=_TIMEOUT, retry=_RETRY):
                yield blob.name
        except _FAILURES as exc:
            raise self._unavailable("list", prefix, exc) from exc

    def delete(self, key: str) -> None:
        try:
            self._bucket().delete_blob(key, timeout=_TIMEOUT, retry=_RETRY)
        except gexc.NotFound:
            pass
        except _FAILURES as exc:
            raise self._unavailable("delete", key, exc) from exc

    def locate(self, location: RecordingLocation) -> str | None:
        return location.key if (location.provider, location.bucket) == ("gcs", self.bucket) else None

    def _upload(self, key: str, data: bytes, content_type: str, generation: int) -> str:
        """Write `data` if the object is at `generation` (0: absent); the new generation."""
        blob = self._bucket().blob(key)
        try:
            blob.upload_from_string(data, content_type=content_type, if_generation_match=generation,
                                    timeout=_TIMEOUT, retry=_RETRY)
        except gexc.PreconditionFailed as exc:
            raise PreconditionFailed(f"gs://{self.bucket}/{key} changed since it was read") from exc
        except _FAILURES as exc:
            raise self._unavailable("write", key, exc) from exc
        return str(blob.generation)

    def _bucket(self) -> Any:
        try:
            return gcs_client().bucket(self.bucket)
        except _FAILURES as exc:
            raise StoreUnavailable(
                f"cannot make a Cloud Storage client: {exc}; run on a service account, set "
                "GOOGLE_APPLICATION_CREDENTIALS, or `gcloud auth application-default login`") from exc

    def _unavailable(self, op: str, key: str, exc: BaseException) -> StoreUnavailable:
        """Cloud Storage's HTTP status (or the client's error) and what to do about it."""
        cause = f"{exc.code} {type(exc).__name__}" if isinstance(exc, gexc.GoogleAPICallError) else type(exc).__name__
        if isinstance(exc, gexc.NotFound):
            fix = f"the bucket {self.bucket!r} does not exist: create it or fix TAVUS_STORE_URL"
        elif isinstance(exc, gexc.Forbidden | gexc.Unauthorized):
            fix = f"permission denied: grant the function's service account roles/storage.objectUser on gs://{self.bucket}"
        elif isinstance(exc, GoogleAuthError):
            fix = f"credentials failed ({exc}): check Application Default Credentials"
        elif isinstance(exc, gexc.GoogleAPICallError):
            fix = f"Cloud Storage answered {exc.message}: retry later"
        elif isinstance(exc, Timeout | gexc.RetryError | TimeoutError):
            cause = f"timed out ({type(exc).__name__})"
            fix = "Cloud Storage did not answer in time: check the network (or STORAGE_EMULATOR_HOST); retry later"
        else:
            fix = "Cloud Storage could not be reached: check the network (or STORAGE_EMULATOR_HOST); retry later"
        return StoreUnavailable(f"Cloud Storage store could not {op} gs://{self.bucket}/{key}: {cause}: {fix}")
