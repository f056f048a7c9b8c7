"""Amazon S3 (and S3-compatible) store: create-only by `If-None-Match: *`, compare-and-swap by `If-Match`.

boto3 is imported here only, so a deployment that stores elsewhere never loads it. The endpoint
and credentials come from boto3's own chain (`AWS_ENDPOINT_URL`, `AWS_REGION`, role, profile...).
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

from tavus_callbacks import sdk
from tavus_callbacks.errors import ConfigError, PreconditionFailed, StoreUnavailable
from tavus_callbacks.stores.base import Blob, ObjectInfo, normalize_prefix

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from tavus_callbacks.events.recording import RecordingLocation

_CLIENT_ENV = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE",
               "AWS_ACCESS_KEY_ID")
_PRECONDITION = ("PreconditionFailed", "412")
_CONFLICT = ("ConditionalRequestConflict", "409", "OperationAborted")
_MISSING = ("NoSuchKey", "404", "NotFound")
TAGGING_ENV = "TAVUS_S3_OBJECT_TAGGING"  # e.g. `tavus-callbacks=callback`: the tag a bucket lifecycle rule matches
_CONFLICT_RETRIES = 4
_SMALL_BODY = 1024 * 1024


def s3_client() -> S3Client:
    """The process-wide S3 client for the current environment, with bounded timeouts and retries."""
    def make() -> S3Client:
        config = Config(connect_timeout=sdk.CONNECT_TIMEOUT, read_timeout=sdk.READ_TIMEOUT,
                        retries={"total_max_attempts": sdk.ATTEMPTS, "mode": "standard"},
                        max_pool_connections=sdk.POOL_SIZE)
        client = boto3.session.Session().client("s3", config=config)
        client.meta.events.register("before-send.s3.PutObject", _no_continue_for_small_bodies)
        return client

    return sdk.cached_client(sdk.env_key("s3", _CLIENT_ENV), make)


def _no_continue_for_small_bodies(request: Any, **_: Any) -> None:
    """Send small bodies at once: `Expect: 100-continue` costs a round trip per write (and a second
    of waiting per try when the store hangs) to save re-sending a few kilobytes."""
    body = request.body
    size = len(body) if isinstance(body, bytes | bytearray) else _length(body)
    if size is not None and size <= _SMALL_BODY:
        request.headers.pop("Expect", None)


def _length(body: Any) -> int | None:
    try:
        position = int(body.tell())
        body.seek(0, 2)
        end = int(body.tell())
        body.seek(position)
        return end - position
    except (AttributeError, OSError, ValueError):
        return None


def _code(exc: ClientError) -> tuple[str, int]:
    error: Any = exc.response.get("Error", {})
    meta: Any = exc.response.get("ResponseMetadata", {})
    return str(error.get("Code", "")), int(meta.get("HTTPStatusCode", 0) or 0)


class S3Store:
    """One S3 bucket: `s3://bucket/prefix`."""

    def __init__(self, bucket: str, tagging: str = "") -> None:
        self.bucket = bucket
        self.url = f"s3://{bucket}"
        # Every object written carries the tag, so a lifecycle rule can expire old versions of ours
        # (a filter cannot tell `<id>/conversation.json` from the recording beside it; a tag can).
        self._tagging: dict[str, Any] = {"Tagging": tagging} if tagging else {}

    @classmethod
    def from_url(cls, url: str) -> tuple[S3Store, str]:
        """The store for `s3://bucket/prefix` and its normalized key prefix."""
        parts = urlsplit(url)
        if parts.scheme.lower() != "s3" or not parts.netloc:
            raise ConfigError(f"TAVUS_STORE_URL {url!r} is not an S3 URL: use s3://bucket or s3://bucket/prefix")
        return cls(parts.netloc, os.environ.get(TAGGING_ENV, "").strip()), normalize_prefix(parts.path)

    # -- the four primitives -----------------------------------------------------------
    def create(self, key: str, data: bytes, content_type: str = "application/json") -> bool:
        for attempt in range(_CONFLICT_RETRIES + 1):
            try:
                self._client().put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type,
                                          IfNoneMatch="*", **self._tagging)
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
            data = response["Body"].read()
        except ClientError as exc:
            code, status = _code(exc)
            if code == "NoSuchKey" or (status == 404 and code != "NoSuchBucket"):
                return None
            raise self._unavailable("read", key, exc) from exc
        except (BotoCoreError, OSError) as exc:
            raise self._unavailable("read", key, exc) from exc
        return Blob(data, response["ETag"])

    def replace(self, key: str, data: bytes, version: str | None, content_type: str = "application/json") -> str:
        client = self._client()
        try:
            if version is None:
                response = client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type,
                                             IfNoneMatch="*", **self._tagging)
            else:
                response = client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type,
                                             IfMatch=version, **self._tagging)
        except ClientError as exc:
            code, status = _code(exc)
            # 412: the ETag moved; 409: a concurrent conditional write won; 404: deleted since it was read.
            if code in _PRECONDITION + _CONFLICT or status in (409, 412) or code == "NoSuchKey":
                raise PreconditionFailed(f"s3://{self.bucket}/{key} changed since it was read") from exc
            raise self._unavailable("replace", key, exc) from exc
        except BotoCoreError as exc:
            raise self._unavailable("replace", key, exc) from exc
        return response["ETag"]

    def stat(self, key: str) -> ObjectInfo | None:
        try:
            head = self._client().head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            code, status = _code(exc)
            if code in _MISSING or status == 404:
                return None
            raise self._unavailable("stat", key, exc) from exc
        except BotoCoreError as exc:
            raise self._unavailable("stat", key, exc) from exc
        return ObjectInfo(key=key, size=int(head["ContentLength"]), etag=head["ETag"].strip('"') or None,
                          content_type=head.get("ContentType"))

    # -- tools -------------------------------------------------------------------------
    def iter_keys(self, prefix: str) -> Iterator[str]:
        """S3 lists keys in UTF-8 byte order, which is the lexical order of the strings."""
        paginator = self._client().get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
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
        """The recording's key when it is an S3 object in this bucket."""
        if location.provider == "s3" and location.bucket == self.bucket:
            return location.key
        return None

    # -- helpers -----------------------------------------------------------------------
    def _client(self) -> S3Client:
        try:
            return s3_client()
        except BotoCoreError as exc:
            raise StoreUnavailable(f"cannot make an S3 client: {exc}; check AWS_REGION and AWS_ENDPOINT_URL") from exc

    def _unavailable(self, op: str, key: str, exc: Exception) -> StoreUnavailable:
        """The error to raise for a failed call: S3's error code (or the client's) and what to do about it."""
        where = f"s3://{self.bucket}/{key}"
        if isinstance(exc, NoCredentialsError):
            cause = "NoCredentialsError: no AWS credentials found"
            hint = "give the function a role, or set AWS_PROFILE or AWS_ACCESS_KEY_ID"
        elif isinstance(exc, ClientError):
            code, status = _code(exc)
            cause = f"{code or 'error'} (HTTP {status or '?'})"
            hint = {
                "NoSuchBucket": f"the bucket {self.bucket!r} does not exist: create it or fix TAVUS_STORE_URL",
                "AccessDenied": f"access denied: allow s3:PutObject, s3:GetObject and s3:ListBucket on "
                                f"arn:aws:s3:::{self.bucket} and arn:aws:s3:::{self.bucket}/* to the function's "
                                "role (and kms:GenerateDataKey/kms:Decrypt for a bucket under a customer KMS key)",
                "InvalidAccessKeyId": "the AWS access key is not valid: check the credentials",
                "SignatureDoesNotMatch": "the AWS secret key does not match: check the credentials",
                "ExpiredToken": "the AWS credentials have expired: renew them",
            }.get(code, "retry later; if it persists, check the bucket's policy and region")
        elif isinstance(exc, ConnectTimeoutError | ReadTimeoutError):
            cause = f"timed out ({type(exc).__name__})"
            hint = "S3 did not answer in time: check the endpoint (AWS_ENDPOINT_URL, region) and network; retry later"
        else:
            cause = f"{type(exc).__name__}: {exc}"
            hint = "S3 could not be reached: check the endpoint (AWS_ENDPOINT_URL, region) and the network; retry later"
        return StoreUnavailable(f"S3 store could not {op} {where}: {cause}: {hint}")
