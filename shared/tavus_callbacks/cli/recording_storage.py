"""`tavus-callbacks recording-storage`: the `recording_storage` JSON for a create-conversation call (S3 only:
the vendor has not published the GCS and Azure Blob fields, so none are made up)."""

from __future__ import annotations

import argparse
import json
import re
from typing import Any

from tavus_callbacks.errors import ConfigError

VENDOR_ACCOUNT = "291871421005"
VENDOR_PRINCIPAL = f"arn:aws:iam::{VENDOR_ACCOUNT}:root"
EXTERNAL_ID = "tavus"
MIN_SESSION_SECONDS = 43200
WRITER_ACTIONS = ("s3:PutObject", "s3:GetObject", "s3:ListBucketMultipartUploads", "s3:AbortMultipartUpload",
                  "s3:ListBucketVersions", "s3:ListBucket", "s3:GetObjectVersion", "s3:ListMultipartUploadParts")

_ROLE_ARN = re.compile(r"^arn:aws(?:-[a-z]+)*:iam::(\d{12}):role/(?:[\w+=,.@-]+/)*([\w+=,.@-]{1,64})$")
_REGION = re.compile(r"^[a-z]{2}(?:-[a-z]+)+-\d{1,2}$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
UNDOCUMENTED = ("gcs", "azure_blob")


def role_name(role_arn: str) -> str:
    """The role name in an IAM role ARN, or a ConfigError saying what a role ARN looks like."""
    match = _ROLE_ARN.match(role_arn.strip())
    if not match:
        raise ConfigError(f"{role_arn!r} is not an IAM role ARN: it looks like "
                          "arn:aws:iam::123456789012:role/TavusRecordingWriter")
    return match.group(2)


def recording_storage(bucket: str, region: str, role_arn: str, *, legacy: bool = False) -> dict[str, Any]:
    """The S3 `recording_storage` object (or, with `legacy`, the older flat conversation properties)."""
    bucket, region, role_arn = bucket.strip(), region.strip(), role_arn.strip()
    if not _BUCKET.match(bucket) or ".." in bucket:
        raise ConfigError(f"{bucket!r} is not an S3 bucket name: 3 to 63 lower-case letters, digits, dots and hyphens")
    if not _REGION.match(region):
        raise ConfigError(f"{region!r} is not an AWS region name such as us-east-1 or eu-west-2")
    role_name(role_arn)
    if legacy:
        return {"enable_recording": True, "recording_s3_bucket_name": bucket,
                "recording_s3_bucket_region": region, "aws_assume_role_arn": role_arn}
    return {"provider": "s3", "bucket_name": bucket, "bucket_region": region, "assume_role_arn": role_arn}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--provider", default="s3", choices=("s3", *UNDOCUMENTED),
                        help="the recording destination (only s3 has documented fields)")
    parser.add_argument("--bucket", required=True, help="the bucket the vendor writes recordings to")
    parser.add_argument("--region", required=True, help="the bucket's region, e.g. us-east-1")
    parser.add_argument("--role-arn", required=True, help="the writer role the vendor assumes")
    parser.add_argument("--legacy", action="store_true",
                        help="print the older flat properties (enable_recording, recording_s3_bucket_name, ...)")


def run(args: argparse.Namespace) -> int:
    """Print the JSON to put under `properties` of a create-conversation request."""
    if args.provider in UNDOCUMENTED:
        raise ConfigError(f"the vendor has not documented the recording_storage fields for {args.provider} yet, so "
                          "this command does not guess them; use --provider s3, or take the fields from the vendor's "
                          "storage page once published")
    print(json.dumps(recording_storage(args.bucket, args.region, args.role_arn, legacy=args.legacy), indent=2))
    return 0
