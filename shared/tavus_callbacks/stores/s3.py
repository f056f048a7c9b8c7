"""Amazon S3 (and S3-compatible) store: create-only by `If-None-Match: *`, compare-and-swap by `If-Match`.

Endpoint and credentials come from boto3's own chain (`AWS_ENDPOINT_URL`, `AWS_REGION`, role, profile...).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ConnectTimeoutError, NoCredentialsError, ReadTimeoutError

from tavus_callbacks import clients
from tavus_callbacks.errors import ConfigError, PreconditionFailed, StoreUnavailable
from tavus_callbacks.stores.base import Blob, ObjectInfo, normalize_prefix

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from tavus_callbacks.events.recording import RecordingLocation

_CLIENT_ENV = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE",
               "AWS_ACCESS_KEY_ID")
TAGGING_ENV = "TAVUS_S3_OBJECT_TAGGING"  # e.g. `tavus-callbacks=callback`: the tag a bucket lifecycle rule matches
_PRECONDITION = ("PreconditionFailed", "412")
_CONFLICT = ("ConditionalRequestConflict", "409", "OperationAborted")
_CONFLICT_RETRIES = 4
_SMALL_BODY = 1024 * 1024
_FIXES = {
    "NoSuchBucket": "the bucket {b!r} does not exist: create it or fix TAVUS_STORE_URL",
    "AccessDenied": "access denied: allow s3:PutObject, s3:GetObject and s3:ListBucket on arn:aws:s3:::{b} and "
                    "arn:aws:s3:::{b}/* to the function's role (and kms:GenerateDataKey/kms:Decrypt for a bucket "
                    "under a customer KMS key)",
    "InvalidAccessKeyId": "the AWS access key is not valid: check the credentials",
    "SignatureDoesNotMatch": "the AWS secret key does not match: check the credentials",
    "ExpiredToken": "the AWS credentials have expired: renew them",
}


def s3_client() -> S3Client:
    """The process-wide S3 client for the current environment, with bounded timeouts and retries."""
    def make() -> S3Client:
        config = Config(connect_timeout=clients.CONNECT_TIMEOUT, read_timeout=clients.READ_TIMEOUT,
                        retries={"total_max_attempts": clients.ATTEMPTS, "mode": "standard"},
                        max_pool_connections=clients.POOL_SIZE)
        client = boto3.session.Session().client("s3", config=config)
        client.meta.events.register("before-send.s3.PutObject", _no_continue_for_small_bodies)
        return client

    return clients.cached_client(clients.env_key("s3", _CLIENT_ENV), make)


def _no_continue_for_small_bodies(request: Any, **_: Any) -> None:
    """Send small bodies at once: `Expect: 100-continue` costs a round trip per write to save re-sending a few KB."""
    body = request.body
    if isinstance(body, bytes | bytearray):
        size: int | None = len(body)
    else:
        try:
            position = int(body.tell())
            body.seek(0, 2)
            size = int(body.tell()) - position
            body.seek(position)
        except (AttributeError, OSError, ValueError):
            size = None
    if size is not None and size <= _SMALL_BODY:
        request.headers.pop("Expect", None)


def _code(exc: ClientError) -> tuple[str, int]:
    error: Any = exc.response.get("Error", {})
    meta: Any = exc.response.get("ResponseMetadata", {})
    return str(error.get("Code", "")), int(meta.get("HTTPStatusCode", 0) or 0)


class S3Store:
    """One S3 bucket: `s3://bucket/prefix`."""

    def __init__(self, bucket: str, tagging: str = "") -> None:
        self.bucket = bucket
        self.url = f"s3://{bucket}"
        # A lifecycle filter cannot tell `<id>/conversation.json` from the recording beside it; a tag can.
        self._tagging: dict[str, Any] = {"Tagging": tagging} if tagging else {}

    @classmethod
    def from_url(cls, url: str) -> tuple[S3Store, str]:
        """The store for `s3://bucket/prefix` and its normalized key prefix."""
        parts = urlsplit(url)
        if parts.scheme.lower() != "s3" or not parts.netloc:
            raise ConfigError(f"TAVUS_STORE_URL {url!r} is not an S3 URL: use s3://bucket or s3://bucket/prefix")
        return cls(parts.netloc, os.environ.get(TAGGING_ENV, "").strip()), normalize_prefix(parts.path)

    def create(self, key: str, data: bytes, content_type: str = "application/json") -> bool:
        for attempt in range(_CONFLICT_RETRIES + 1):
            try:
                self._put(key, data, content_type, IfNoneMatch="*")
                return True
            except ClientError as exc:
                code, status = _code(exc)
                if code in _PRECONDITION or status == 412:
                    return False
                # 409: another write to the same key is in flight; once it lands, a retry answers 412.
                if (code in _CONFLICT or status == 409) and attempt < _CONFLICT_RETRIES:
                    time.sleep(0.05 * (attempt + 1))
                    continue
                raise self._unavailable("create", key, exc) from exc
            except BotoCoreError as exc:
                raise self._unavailable("create", key, exc) from exc
        raise StoreUnavailable(f"S3 kept answering 409 Conflict for s3://{self.bucket}/{key}; retry later")

    def read(self, key: str) -> Blob | None:
        try:
            response = self._client().get_object(Bucket=self.bucket, Key=key)
            return Blob(response["Body"].read(), response["ETag"])
        except ClientError as exc:
            code, status = _code(exc)
            if code == "NoSuchKey" or (status == 404 and code != "NoSuchBucket"):
                return None
            raise self._unavailable("read", key, exc) from exc
        except (BotoCoreError, OSError) as exc:
            raise self._unavailable("read", key, exc) from exc

    def replace(self, key: str, data: bytes, version: str | None, content_type: str = "application/json") -> str:
        try:
            condition = {"IfNoneMatch": "*"} if version is None else {"IfMatch": version}
            return self._put(key, data, content_type, **condition)
        except ClientError as exc:
            code, status = _code(exc)
            # 412: the ETag moved; 409: a concurrent conditional write won; 404: deleted since it was read.
            if code in (*_PRECONDITION, *_CONFLICT, "NoSuchKey") or status in (409, 412):
                raise PreconditionFailed(f"s3://{self.bucket}/{key} changed since it was read") from exc
            raise self._unavailable("replace", key, exc) from exc
        except BotoCoreError as exc:
            raise self._unavailable("replace", key, exc) from exc

    def stat(self, key: str) -> ObjectInfo | None:
        try:
            head = self._client().head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            code, status = _code(exc)
            if code in ("NoSuchKey", "404", "NotFound") or status == 404:
                return None
            raise self._unavailable("stat", key, exc) from exc
        except BotoCoreError as exc:
            raise self._unavailable("stat", key, exc) from exc
        return ObjectInfo(key, int(head["ContentLength"]), head["ETag"].strip('"') or None, head.get("ContentType"))

    def iter_keys(self, prefix: str) -> Iterator[str]:
        """S3 lists keys in UTF-8 byte order, which is the lexical order of the strings."""
        try:
            for page in self._client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    yield item["Key"]
        except (ClientError, BotoCoreError) as exc:
            raise self._unavailable("list", prefix, exc) from exc

    def delete(self, key: str) -> None:
        try:
            self._client().delete_object(Bucket=self.bucket, Key=key)
        except (ClientError, BotoCoreError) as exc:
            raise self._unavailable("delete", key, exc) from exc

    def locate(self, location: RecordingLocation) -> str | None:
        return location.key if (location.provider, location.bucket) == ("s3", self.bucket) else None

    def _put(self, key: str, data: bytes, content_type: str, **condition: Any) -> str:
        """Write under a condition (`IfNoneMatch`, `IfMatch`); the new ETag."""
        return self._client().put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type,
                                         **condition, **self._tagging)["ETag"]

    def _client(self) -> S3Client:
        try:
            return s3_client()
        except BotoCoreError as exc:
            raise StoreUnavailable(f"cannot make an S3 client: {exc}; check AWS_REGION and AWS_ENDPOINT_URL") from exc

    def _unavailable(self, op: str, key: str, exc: Exception) -> StoreUnavailable:
        """S3's error code (or the client's error) and what to do about it."""
        if isinstance(exc, NoCredentialsError):
            cause = "NoCredentialsError: no AWS credentials found"
            fix = "set AWS_PROFILE or AWS_ACCESS_KEY_ID (or run `aws configure`); a deployed function needs its role"
        elif isinstance(exc, ClientError):
            code, status = _code(exc)
            cause = f"{code or 'error'} (HTTP {status or '?'})"
            fix = _FIXES.get(code, "retry later; if it persists, check the bucket's policy and region").format(
                b=self.bucket)
        elif isinstance(exc, ConnectTimeoutError | ReadTimeoutError):
            cause = f"timed out ({type(exc).__name__})"
            fix = "S3 did not answer in time: check the endpoint (AWS_ENDPOINT_URL, region) and network; retry later"
        else:
            cause = f"{type(exc).__name__}: {exc}"
            fix = "S3 could not be reached: check the endpoint (AWS_ENDPOINT_URL, region) and the network; retry later"
        return StoreUnavailable(f"S3 store could not {op} s3://{self.bucket}/{key}: {cause}: {fix}")
