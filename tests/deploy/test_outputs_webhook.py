"""`tavus-callbacks outputs` of a stack with a webhook (moto server's CloudFormation and Secrets Manager): the
endpoint and the secret that signs for it, as whsec_ even when the stack generated the base64 alone."""

from __future__ import annotations

import json
import uuid

import boto3
import standardwebhooks
from support.servers import Emulator, emulator_env

from deploy.test_outputs import STORAGE, TOKEN, URL, cli, deploy_stack

HOOK = "https://api.example.com/webhooks/tavus"
GENERATED = "Q2hhbmdlZEJ5VGhlU3RhY2tPbmNlQW5kS2VwdEhlcmUx"  # 44 letters and digits, as the stack makes them


def stack_with_webhook(emulator: Emulator, webhook_secret: str) -> str:
    endpoint = emulator_env(emulator)["AWS_ENDPOINT_URL"]
    client = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                   region_name="us-east-1").client("secretsmanager", endpoint_url=endpoint)
    token_arn = client.create_secret(Name=f"tavus-tokens-{uuid.uuid4().hex[:8]}", SecretString=TOKEN)["ARN"]
    hook_arn = client.create_secret(Name=f"tavus-hooks-{uuid.uuid4().hex[:8]}", SecretString=webhook_secret)["ARN"]
    return deploy_stack(emulator, TOKEN, outputs={
        "CallbackUrl": URL, "TokenSecretArn": token_arn, "RecordingStorage": json.dumps(STORAGE),
        "WebhookUrl": HOOK, "WebhookSecretArn": hook_arn})


def test_prints_the_webhook_endpoint_and_the_secret_that_signs_for_it(moto_server: Emulator) -> None:
    done = cli(moto_server, "--stack", stack_with_webhook(moto_server, GENERATED), "--json")
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["webhook_url"] == HOOK and found["webhook_secret"] == f"whsec_{GENERATED}"
    standardwebhooks.Webhook(found["webhook_secret"])  # what a receiver is given, it can use as it is


def test_during_a_rotation_the_newest_secret_is_the_one_printed(moto_server: Emulator) -> None:
    newest = "whsec_" + "TmV3ZXN0U2VjcmV0T2ZUaGVSb3RhdGlvbjAxMjM0NTY3"
    done = cli(moto_server, "--stack", stack_with_webhook(moto_server, f"{newest},{GENERATED}"))
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(":", 1) for line in done.stdout.splitlines())
    assert lines["webhook_url"].strip() == HOOK and lines["webhook_secret"].strip() == newest
    assert GENERATED not in done.stdout


def test_a_webhook_secret_that_is_not_one_is_a_clear_error(moto_server: Emulator) -> None:
    done = cli(moto_server, "--stack", stack_with_webhook(moto_server, "short"))
    assert done.returncode == 2 and "secret #1 is not whsec_ followed by base64" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
