"""Store backends, chosen by URL; each imports its cloud SDK only when it is chosen."""

from __future__ import annotations

from urllib.parse import urlsplit

from tavus_callbacks.bundles import require_part
from tavus_callbacks.errors import ConfigError, needs_extra
from tavus_callbacks.stores.base import Blob, ObjectInfo, Store, normalize_prefix

__all__ = ["Blob", "ObjectInfo", "Store", "normalize_prefix", "open_store", "split_store_url"]

# What a function bundle offers in place of a store it does not hold.
_BUNDLE_STORES = {"aws": "use an s3://bucket/prefix store", "gcp": "use a gs://bucket/prefix store",
                  "azure": "use an azure://container/prefix store"}


def split_store_url(url: str) -> tuple[str, str]:
    """(scheme, rest) of a store URL, with `https://<account>.blob.core.windows.net/...` as 'azure'."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. an unclosed [ in the host
        raise ConfigError(f"TAVUS_STORE_URL {url!r} is not a URL ({exc}): use sqlite:///tavus.db, s3://bucket/prefix, "
                          "gs://bucket/prefix or azure://container/prefix") from None
    scheme = parts.scheme.lower()
    if scheme in ("http", "https") and ".blob." in parts.netloc:
        return "azure", url
    return scheme, url


def open_store(url: str, *, read_only: bool = False, create: bool = True) -> tuple[Store, str]:
    """The store a URL names and the key prefix it carries (empty or ending in '/').

    `read_only` (for tools that only read: conversations, export, replay) and `create=False` (doctor) open an
    embedded store only when its file exists, a ConfigError "no such store" otherwise, and `read_only` opens it
    so that nothing can be written. A bucket is never created by opening it, so both change nothing there.
    """
    scheme, _ = split_store_url(url)
    if scheme == "sqlite":
        require_part("stores.sqlite", "sqlite:// stores", _BUNDLE_STORES)
        from tavus_callbacks.stores.sqlite import SQLiteStore

        return SQLiteStore.from_url(url, create=create and not read_only, read_only=read_only)
    if scheme in ("", "file"):
        raise ConfigError(
            f"TAVUS_STORE_URL {url!r}: the folder store is gone; store in a SQLite file instead "
            "(sqlite:///tavus.db, or sqlite:////absolute/path/tavus.db) and write its objects out as plain files "
            "with `tavus-callbacks export --store sqlite:///tavus.db --to DIR`"
        )
    if scheme == "s3":
        require_part("stores.s3", "s3:// stores", _BUNDLE_STORES)
        with needs_extra("aws", "an s3:// store", "boto3"):
            from tavus_callbacks.stores.s3 import S3Store

        return S3Store.from_url(url)
    if scheme in ("gs", "gcs"):
        require_part("stores.gcs", f"{scheme}:// stores", _BUNDLE_STORES)
        with needs_extra("gcp", "a gs:// store", "google-cloud-storage"):
            from tavus_callbacks.stores.gcs import GCSStore

        return GCSStore.from_url(url)
    if scheme == "azure":
        require_part("stores.azure_blob", "Azure Blob stores", _BUNDLE_STORES)
        with needs_extra("azure", "an Azure Blob store", "azure-storage-blob"):
            from tavus_callbacks.stores.azure_blob import AzureBlobStore

        return AzureBlobStore.from_url(url)
    raise ConfigError(
        f"TAVUS_STORE_URL {url!r} has an unknown scheme {scheme!r}: use sqlite:///tavus.db, s3://bucket/prefix, "
        "gs://bucket/prefix, azure://container/prefix or https://<account>.blob.core.windows.net/<container>/<prefix>"
    )
