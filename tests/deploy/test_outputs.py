"""`tavus-callbacks outputs` against a real CloudFormation and Secrets Manager API (moto server): the stack's
outputs as template.yaml names them, the token from the stack's secret."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from typing import Any

import boto3
import pytest
from support.servers import Emulator, emulator_env

TOKEN = "outputs-test-token-0123456789abcdef"
URL = "https://abc123.lambda-url.us-east-1.on.aws/"
STORAGE = {"provider": "s3", "bucket_name": "my-recordings", "bucket_region": "us-east-1",
           "assume_role_arn": "arn:aws:iam::123456789012:role/tavus-callbacks-RecordingWriterRole-x"}


def cli(emulator: Emulator, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **emulator_env(emulator)}
    env.pop("AWS_PROFILE", None)
    return subprocess.run([sys.executable, "-m", "tavus_callbacks.cli", "outputs", *argv], env=env,
                          capture_output=True, text=True, timeout=60)


def deploy_stack(emulator: Emulator, secret_value: str, *, outputs: dict[str, str] | None = None) -> str:
    """A stack whose outputs are shaped as template.yaml's, and its secret; returns the stack name."""
    env = emulator_env(emulator)
    session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                    region_name="us-east-1")
    endpoint = env["AWS_ENDPOINT_URL"]
    secret_arn = session.client("secretsmanager", endpoint_url=endpoint).create_secret(
        Name=f"tavus-tokens-{uuid.uuid4().hex[:8]}", SecretString=secret_value)["ARN"]
    values = {"CallbackUrl": URL, "TokenSecretArn": secret_arn, "RecordingStorage": json.dumps(STORAGE),
              "StoreUrl": "s3://my-recordings/", "AlarmTopicArn": "arn:aws:sns:us-east-1:123456789012:alarms"}
    values = values if outputs is None else outputs
    template = {"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
                "Outputs": {k: {"Value": v} for k, v in values.items()}}
    name = f"tavus-callbacks-{uuid.uuid4().hex[:8]}"
    session.client("cloudformation", endpoint_url=endpoint).create_stack(StackName=name,
                                                                         TemplateBody=json.dumps(template))
    return name


def test_prints_the_callback_url_with_the_first_token_and_the_recording_storage(moto_server: Emulator) -> None:
    stack = deploy_stack(moto_server, f" {TOKEN} , older-token-that-is-being-rotated-out")
    done = cli(moto_server, "--stack", stack, "--region", "us-east-1")
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(":", 1) for line in done.stdout.splitlines())
    assert lines["callback_url"].strip() == f"{URL}?token={TOKEN}"
    assert json.loads(lines["recording_storage"]) == STORAGE
    assert lines["store_url"].strip() == "s3://my-recordings/"
    assert "older-token" not in done.stdout


def test_json_output_and_a_token_that_needs_encoding(moto_server: Emulator) -> None:
    token = "tok+en/with=odd&chars-0123456789"
    stack = deploy_stack(moto_server, token)
    done = cli(moto_server, "--stack", stack, "--json")
    assert done.returncode == 0, done.stderr
    found: dict[str, Any] = json.loads(done.stdout)
    assert found["callback_url"] == URL + "?token=tok%2Ben%2Fwith%3Dodd%26chars-0123456789"
    assert found["recording_storage"] == STORAGE


@pytest.mark.parametrize("case,expected", [
    ("no-stack", "check the stack name and --region"),
    ("not-ours", "has no output CallbackUrl, TokenSecretArn, RecordingStorage"),
    ("short-token", "use at least 16"),
])
def test_errors_say_what_to_do_without_a_traceback(moto_server: Emulator, case: str, expected: str) -> None:
    if case == "no-stack":
        stack = "no-such-stack"
    elif case == "not-ours":
        stack = deploy_stack(moto_server, TOKEN, outputs={"Something": "else"})
    else:
        stack = deploy_stack(moto_server, "short")
    done = cli(moto_server, "--stack", stack)
    assert done.returncode == 2 and expected in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and TOKEN not in done.stderr
