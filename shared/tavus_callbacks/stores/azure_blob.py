"""Azure Blob Storage store: create-only upload (`If-None-Match: *`), compare-and-swap by ETag.

The account comes from `AZURE_STORAGE_CONNECTION_STRING`, or from the URL / `AZURE_STORAGE_ACCOUNT_URL`
with DefaultAzureCredential (managed identity, workload identity, environment, Azure CLI...).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import requests
from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestTimeoutError,
    ServiceResponseTimeoutError,
)
from azure.core.pipeline.transport import RequestsTransport
from azure.storage.blob import BlobClient, BlobServiceClient, ContainerClient, ContentSettings, LinearRetry
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from tavus_callbacks import clients
from tavus_callbacks.errors import ConfigError, PreconditionFailed, StoreUnavailable
from tavus_callbacks.stores.base import Blob, ObjectInfo, normalize_prefix

if TYPE_CHECKING:
    from tavus_callbacks.events.recording import RecordingLocation

CONNECTION_STRING_ENV = "AZURE_STORAGE_CONNECTION_STRING"
ACCOUNT_URL_ENV = "AZURE_STORAGE_ACCOUNT_URL"
_BLOB_HOST = ".blob.core.windows.net"


@dataclass(frozen=True, slots=True)
class AzureAccount:
    """Which storage account to talk to and how: a connection string, or an account URL + Entra ID."""

    name: str
    url: str
    connection_string: str | None = None

    @classmethod
    def from_connection_string(cls, value: str) -> AzureAccount:
        fields = {k.strip(): v.strip() for k, v in (p.split("=", 1) for p in value.split(";") if "=" in p)}
        name = fields.get("AccountName", "")
        endpoint = fields.get("BlobEndpoint", "").rstrip("/")
        if not endpoint and name:
            scheme = fields.get("DefaultEndpointsProtocol", "https")
            endpoint = f"{scheme}://{name}.blob.{fields.get('EndpointSuffix', 'core.windows.net')}"
        if not endpoint:
            raise ConfigError(f"{CONNECTION_STRING_ENV} names no account: copy it from the storage account's "
                              "'Access keys' page (it holds AccountName=...;AccountKey=...)")
        return cls(name or (urlsplit(endpoint).hostname or "").split(".", 1)[0], endpoint, value)

    @classmethod
    def from_url(cls, url: str) -> AzureAccount:
        host = urlsplit(url).hostname or ""
        if not host:
            raise ConfigError(f"{ACCOUNT_URL_ENV}={url!r} is not a URL: use https://<account>.blob.core.windows.net")
        return cls(host.split(".", 1)[0], url.rstrip("/"))


def blob_service(account: AzureAccount) -> BlobServiceClient:
    """The process-wide client of one storage account, with bounded timeouts and retries."""
    def make() -> BlobServiceClient:
        session = requests.Session()
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=clients.POOL_SIZE,
                              max_retries=Retry(total=False, redirect=False, raise_on_status=False))
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        options: dict[str, Any] = {
            "transport": RequestsTransport(session=session, session_owner=False,
                                           connection_timeout=clients.CONNECT_TIMEOUT,
                                           read_timeout=clients.READ_TIMEOUT),
            "retry_policy": LinearRetry(backoff=1, random_jitter_range=0, retry_total=clients.ATTEMPTS - 1),
        }
        if account.connection_string:
            return BlobServiceClient.from_connection_string(account.connection_string, **options)
        from azure.identity import DefaultAzureCredential

        return BlobServiceClient(account.url, credential=DefaultAzureCredential(), **options)

    return clients.cached_client(("azure", account), make)


class AzureBlobStore:
    """One blob container: `azure://container/prefix` or `https://<account>.blob.core.windows.net/<container>/<prefix>`."""

    def __init__(self, account: AzureAccount, container: str) -> None:
        self.account = account.name
        self.container = container
        self.url = f"{account.url}/{container}"
        self._account = account

    @classmethod
    def from_url(cls, url: str) -> tuple[AzureBlobStore, str]:
        """The store for an Azure URL and its normalized key prefix; the account as the module doc says."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        connection_string = os.environ.get(CONNECTION_STRING_ENV, "").strip()
        account_url = os.environ.get(ACCOUNT_URL_ENV, "").strip()
        if scheme == "azure":
            container, path = parts.netloc, parts.path
            if not (connection_string or account_url):
                raise ConfigError(
                    f"TAVUS_STORE_URL {url!r} names no storage account: set {CONNECTION_STRING_ENV}, or "
                    f"{ACCOUNT_URL_ENV}=https://<account>{_BLOB_HOST} with a managed identity, or use "
                    f"https://<account>{_BLOB_HOST}/<container>/<prefix>")
            account = (AzureAccount.from_connection_string(connection_string) if connection_string
                       else AzureAccount.from_url(account_url))
        elif scheme in ("https", "http") and parts.hostname:
            container, _, path = unquote(parts.path).lstrip("/").partition("/")
            account = AzureAccount.from_url(f"{scheme}://{parts.netloc}")
            keyed = AzureAccount.from_connection_string(connection_string) if connection_string else None
            if keyed and keyed.name == account.name:  # keys instead of Entra ID for the same account
                account = keyed
        else:
            raise ConfigError(f"TAVUS_STORE_URL {url!r} is not an Azure Blob URL")
        if not container:
            raise ConfigError(f"TAVUS_STORE_URL {url!r} names no container: use azure://<container>/<prefix> "
                              f"or https://<account>{_BLOB_HOST}/<container>/<prefix>")
        return cls(account, container), normalize_prefix(path)

    def create(self, key: str, data: bytes, content_type: str = "application/json") -> bool:
        try:
            self._blob(key).upload_blob(data, overwrite=False,
                                        content_settings=ContentSettings(content_type=content_type))
        except (ResourceExistsError, ResourceModifiedError):
            return False
        except AzureError as exc:
            raise self._unavailable("create", key, exc) from exc
        return True

    def read(self, key: str) -> Blob | None:
        try:
            downloader = self._container().download_blob(key)
            return Blob(downloader.readall(), str(downloader.properties.etag))
        except ResourceNotFoundError as exc:
            if _code(exc) == "ContainerNotFound":
                raise self._unavailable("read", key, exc) from exc
            return None
        except AzureError as exc:
            raise self._unavailable("read", key, exc) from exc

    def replace(self, key: str, data: bytes, version: str | None, content_type: str = "application/json") -> str:
        if version is None:
            condition: dict[str, Any] = {"match_condition": MatchConditions.IfMissing}
        else:
            condition = {"etag": version, "match_condition": MatchConditions.IfNotModified}
        try:
            result = self._blob(key).upload_blob(
                data, overwrite=True, content_settings=ContentSettings(content_type=content_type), **condition)
        except (ResourceExistsError, ResourceModifiedError) as exc:
            raise PreconditionFailed(f"{self.url}/{key} changed since it was read") from exc
        except ResourceNotFoundError as exc:
            if _code(exc) == "ContainerNotFound":
                raise self._unavailable("replace", key, exc) from exc
            raise PreconditionFailed(f"{self.url}/{key} was deleted since it was read") from exc
        except AzureError as exc:
            raise self._unavailable("replace", key, exc) from exc
        return str(result["etag"])

    def stat(self, key: str) -> ObjectInfo | None:
        try:
            props = self._blob(key).get_blob_properties()
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise self._unavailable("stat", key, exc) from exc
        return ObjectInfo(key, int(props.size), str(props.etag).strip('"') or None, props.content_settings.content_type)

    def iter_keys(self, prefix: str) -> Iterator[str]:
        """Blob Storage lists blob names in lexical order."""
        try:
            yield from self._container().list_blob_names(name_starts_with=prefix or None)
        except AzureError as exc:
            raise self._unavailable("list", prefix, exc) from exc

    def delete(self, key: str) -> None:
        try:
            self._container().delete_blob(key)
        except ResourceNotFoundError:
            pass
        except AzureError as exc:
            raise self._unavailable("delete", key, exc) from exc

    def locate(self, location: RecordingLocation) -> str | None:
        """The recording's key when it is a blob in this account and container."""
        if (location.provider == "azure_blob" and location.bucket == self.container
                and (location.account or "").lower() == self.account.lower()):
            return location.key
        return None

    def _container(self) -> ContainerClient:
        try:
            return blob_service(self._account).get_container_client(self.container)
        except (AzureError, ValueError) as exc:
            raise StoreUnavailable(f"cannot make an Azure Blob client for {self.url}: {exc}; check "
                                   f"{CONNECTION_STRING_ENV} or {ACCOUNT_URL_ENV}") from exc

    def _blob(self, key: str) -> BlobClient:
        return self._container().get_blob_client(key)

    def _unavailable(self, op: str, key: str, exc: AzureError) -> StoreUnavailable:
        """Azure's error code and HTTP status (or the client's error) and what to do about it."""
        code = _code(exc)
        status = getattr(exc, "status_code", None)
        cause = f"{code or type(exc).__name__} (HTTP {status})" if status else type(exc).__name__
        if code == "ContainerNotFound":
            fix = f"the container {self.container!r} does not exist: create it or fix TAVUS_STORE_URL"
        elif isinstance(exc, ClientAuthenticationError) and not status:
            fix = ("no Azure credential could be had: give the function a managed identity, or set "
                   f"{CONNECTION_STRING_ENV}")
        elif code in ("AuthorizationPermissionMismatch", "AuthorizationFailure", "AuthenticationFailed") \
                or status in (401, 403):
            fix = ("access denied: give the function's identity the 'Storage Blob Data Contributor' role on "
                   f"the container {self.container!r} (a new role takes a few minutes to apply), or check the "
                   "account key")
        elif status:
            fix = "retry later; if it persists, check the storage account's network rules"
        elif isinstance(exc, ServiceRequestTimeoutError | ServiceResponseTimeoutError):
            cause = f"timed out ({type(exc).__name__})"
            fix = "Azure Blob Storage did not answer in time: check the network and the account URL; retry later"
        else:
            fix = "Azure Blob Storage could not be reached: check the network and the account URL; retry later"
        return StoreUnavailable(f"Azure Blob store could not {op} {self.url}/{key}: {cause}: {fix}")


def _code(exc: AzureError) -> str:
    """The service's error code (e.g. ContainerNotFound), whether the SDK gives it as text or as an enum."""
    code = getattr(exc, "error_code", None) or ""
    return str(getattr(code, "value", code))
