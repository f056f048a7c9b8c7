"""template.yaml's webhooks: WebhookUrl adds a Standard Webhooks sink beside the bus, its signing secret is
generated once in Secrets Manager (or an existing one is named), and the function may read that secret only."""

from __future__ import annotations

import functools
import json
import secrets
import string
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tavus_callbacks.forward import open_sinks
from tavus_callbacks.forward.webhook import WebhookForwarder
from tavus_callbacks.settings import WebhookSettings, parse_webhook_secrets

from deploy.test_template import SAM_BIN, TEMPLATE, Rendered, run_tool

HOOK = "https://api.example.com/webhooks/tavus?types=system.*"


@pytest.fixture(scope="module")
def render() -> Callable[..., Rendered]:
    """render(**parameters): the template as CloudFormation receives it for those parameters (test_template.py)."""
    if not (SAM_BIN / "python").exists():
        pytest.skip("aws-sam-cli is not installed: run bash tests/install/sam.sh")

    @functools.cache
    def transformed(key: str) -> Rendered:
        done = run_tool(str(SAM_BIN / "python"), str(Path(__file__).parent / "sam_transform.py"), str(TEMPLATE),
                        key, timeout=120)
        assert done.returncode == 0, done.stderr[-3000:]
        return Rendered(json.loads(done.stdout), json.loads(key))

    return lambda **parameters: transformed(json.dumps(parameters, sort_keys=True))


def env_of(rendered: Rendered) -> dict[str, Any]:
    variables: dict[str, Any] = rendered.resources["CallbackFunction"]["Properties"]["Environment"]["Variables"]
    return variables


def test_without_a_webhook_url_there_is_no_webhook_secret_nor_a_right_to_one(render: Callable[..., Rendered]) -> None:
    rendered = render()
    assert "WebhookSigningSecret" not in rendered.resources
    assert "TAVUS_WEBHOOK_SECRETS_SECRET" not in env_of(rendered) and "TAVUS_FORWARD_URL" not in env_of(rendered)
    assert "ReadWebhookSecrets" not in rendered.function_statements()


def test_a_webhook_url_generates_its_secret_once_and_the_function_may_read_that_secret(
        render: Callable[..., Rendered]) -> None:
    rendered = render(WebhookUrl=HOOK)
    generated = rendered.resources["WebhookSigningSecret"]["Properties"]["GenerateSecretString"]
    assert generated == {"PasswordLength": 44, "ExcludePunctuation": True}, "letters and digits: base64 of 33 bytes"
    env = env_of(rendered)
    assert env["TAVUS_FORWARD_URL"] == HOOK
    assert env["TAVUS_WEBHOOK_SECRETS_SECRET"] == "<WebhookSigningSecret>"
    statement = rendered.function_statements()["ReadWebhookSecrets"]
    assert statement["Action"] == "secretsmanager:GetSecretValue" and statement["Resource"] == "<WebhookSigningSecret>"


def test_a_value_as_the_stack_generates_it_is_a_signing_secret() -> None:
    value = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(44))
    assert parse_webhook_secrets(value, bare=True) == (f"whsec_{value}",)


@pytest.mark.parametrize(("named", "resource"), [
    ("tavus-webhook-secrets",
     "arn:aws:secretsmanager:us-east-1:123456789012:secret:tavus-webhook-secrets-??????"),
    ("arn:aws:secretsmanager:us-east-1:123456789012:secret:hooks-AbCdEf",
     "arn:aws:secretsmanager:us-east-1:123456789012:secret:hooks-AbCdEf"),
])
def test_an_existing_secret_is_used_as_named(render: Callable[..., Rendered], named: str, resource: str) -> None:
    rendered = render(WebhookUrl=HOOK, WebhookSecret=named)
    assert "WebhookSigningSecret" not in rendered.resources
    assert env_of(rendered)["TAVUS_WEBHOOK_SECRETS_SECRET"] == named
    assert rendered.function_statements()["ReadWebhookSecrets"]["Resource"] == resource


def test_a_bus_and_a_webhook_are_two_sinks_of_one_forward_url(render: Callable[..., Rendered]) -> None:
    url = env_of(render(WebhookUrl=HOOK, ForwardBusName="default"))["TAVUS_FORWARD_URL"]
    assert url == f"eventbridge://default,{HOOK}"
    sinks = open_sinks(url, WebhookSettings(("whsec_" + "MDEyMzQ1Njc4OWFiY2RlZmdoaWprbG1u",)))
    assert [s.name for s in sinks] == ["eventbridge://default", "https://api.example.com/webhooks/tavus"]
    assert isinstance(sinks[1].forwarder, WebhookForwarder) and sinks[1].types == ("system.*",)
