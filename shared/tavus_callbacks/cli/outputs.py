"""`tavus-callbacks outputs`: what a deployed AWS stack gives you to paste into Tavus: the callback URL with the
token from the stack's secret, and the `recording_storage` JSON; with a webhook, the endpoint and the secret that
signs for it, for the receiver."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import quote

from tavus_callbacks.errors import ConfigError, needs_extra
from tavus_callbacks.settings import parse_tokens, parse_webhook_secrets


@dataclass(frozen=True, slots=True)
class StackOutputs:
    """The values a deployment of template.yaml hands to the user."""

    callback_url: str
    recording_storage: dict[str, Any]
    store_url: str | None
    alarm_topic_arn: str | None
    webhook_url: str | None = None
    webhook_secret: str | None = None  # the newest of the secrets that sign the deliveries to webhook_url


def read_outputs(stack: str, region: str | None = None) -> StackOutputs:
    """The stack's callback URL (first token of its secret appended) and its recording_storage object."""
    with needs_extra("aws", "reading a stack's outputs", "boto3"):
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

    try:
        session = boto3.session.Session(region_name=region)
        cloudformation, secrets = session.client("cloudformation"), session.client("secretsmanager")
    except NoRegionError:
        raise ConfigError("no AWS region: pass --region (the one sam deploy used, e.g. us-east-1), or set "
                          "AWS_REGION or a region in the AWS CLI's profile (aws configure)") from None
    except (BotoCoreError, ValueError) as exc:  # e.g. a region name that is not one
        raise ConfigError(f"cannot use AWS with --region {region!r}: {exc}; pass a region such as us-east-1")\
            from None

    where = f"stack {stack!r}" + (f" in {region}" if region else "")
    try:
        (described,) = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    except ClientError as exc:
        raise ConfigError(f"cannot read {where}: {exc}; check the stack name and --region "
                          "(sam deploy prints both)") from None
    except NoCredentialsError:
        raise ConfigError("no AWS credentials: run `aws configure` (or `aws sso login`), or set AWS_PROFILE or "
                          "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY") from None
    except BotoCoreError as exc:
        raise ConfigError(f"cannot reach CloudFormation for {where}: {exc}; check --region, the network and "
                          "the credentials") from None
    outputs = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
    missing = [k for k in ("CallbackUrl", "TokenSecretArn", "RecordingStorage") if k not in outputs]
    if missing:
        raise ConfigError(f"{where} has no output {', '.join(missing)}: is it a tavus-callbacks stack, and is its "
                          f"deployment complete (status {described.get('StackStatus', '?')})?")
    try:
        secret = secrets.get_secret_value(SecretId=outputs["TokenSecretArn"])["SecretString"]
    except (ClientError, BotoCoreError) as exc:
        raise ConfigError(f"cannot read the token secret {outputs['TokenSecretArn']}: {exc}; this identity needs "
                          "secretsmanager:GetSecretValue on it") from None
    token = parse_tokens(secret, source=f"the secret {outputs['TokenSecretArn']}")[0]
    try:
        recording_storage = json.loads(outputs["RecordingStorage"])
    except ValueError as exc:
        raise ConfigError(f"the RecordingStorage output of {where} is not JSON: {exc}") from None
    webhook_secret = None
    if outputs.get("WebhookSecretArn"):
        arn = outputs["WebhookSecretArn"]
        try:
            value = secrets.get_secret_value(SecretId=arn)["SecretString"]
        except (ClientError, BotoCoreError) as exc:
            raise ConfigError(f"cannot read the webhook secret {arn}: {exc}; this identity needs "
                              "secretsmanager:GetSecretValue on it") from None
        webhook_secret = parse_webhook_secrets(value, source=f"the secret {arn}", bare=True)[0]
    url = outputs["CallbackUrl"]
    return StackOutputs(callback_url=f"{url}{'&' if '?' in url else '?'}token={quote(token, safe='')}",
                        recording_storage=recording_storage,
                        store_url=outputs.get("StoreUrl"), alarm_topic_arn=outputs.get("AlarmTopicArn"),
                        webhook_url=outputs.get("WebhookUrl"), webhook_secret=webhook_secret)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stack", required=True, help="the stack name given to sam deploy (e.g. tavus-callbacks)")
    parser.add_argument("--region", help="the stack's region (default: the AWS CLI's configured region)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object instead of labelled lines: callback_url, recording_storage "
                             "(object), store_url, alarm_topic_arn, webhook_url, webhook_secret (null when the stack "
                             "has none)")


def run(args: argparse.Namespace) -> int:
    """Print the callback URL to paste into Tavus, the recording_storage JSON, the store URL and, with a webhook,
    its endpoint and signing secret (for the receiver's TAVUS_WEBHOOK_SECRET)."""
    found = asdict(read_outputs(args.stack, args.region))
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    for name, value in found.items():
        if value:
            text = json.dumps(value, separators=(",", ":")) if isinstance(value, dict) else value
            print(f"{name + ':':<18} {text}")
    return 0
