"""A configured token that is no secret (an unresolved platform reference, a placeholder) fails closed: a
configuration error naming the fix, answered 503 "not configured", never accepted as a valid token."""

from __future__ import annotations

import json
import logging
import secrets
from pathlib import Path

import pytest
from conftest import load_event
from hypothesis import given, settings
from hypothesis import strategies as st
from tavus_callbacks.app import App
from tavus_callbacks.errors import ConfigError
from tavus_callbacks.http import Request
from tavus_callbacks.settings import Settings, not_a_secret, parse_tokens

KEY_VAULT = "@Microsoft.KeyVault(VaultName=tavus-kv;SecretName=tavus-callback-tokens)"
# (configured value, words the log line must hold: what is wrong and what to check)
NOT_SECRETS = {
    "key-vault": (KEY_VAULT, ["Key Vault reference", "Key Vault Secrets User", "SecretUri="]),
    "key-vault-uri": ("@Microsoft.KeyVault(SecretUri=https://tavus-kv.vault.azure.net/secrets/tokens/)",
                      ["Key Vault reference", "firewall"]),
    "app-configuration": ("@Microsoft.AppConfiguration(Endpoint=https://x.azconfig.io; Key=tokens)",
                          ["App Configuration reference", "Data Reader"]),
    "shell-braces": ("${TAVUS_CALLBACK_TOKEN_VALUE}", ["variable reference", "never expanded"]),
    "shell-command": ("$(gcloud secrets versions access latest)", ["variable reference"]),
    "shell-name": ("$TAVUS_SECRET_TOKEN_VALUE", ["variable reference"]),
    "windows-variable": ("%TAVUS_SECRET_TOKEN_VALUE%", ["variable reference"]),
    "secret-manager-name": ("projects/my-project/secrets/tavus-callback-tokens/versions/latest",
                            ["Secret Manager", "--set-secrets", "secretAccessor"]),
    "secrets-manager-arn": ("arn:aws:secretsmanager:us-east-1:123456789012:secret:tavus-tokens-AbCdEf",
                            ["ARN of a secret", "TAVUS_CALLBACK_TOKENS_SECRET"]),
    "cloudformation-resolve": ("{{resolve:secretsmanager:tavus-tokens:SecretString}}",
                               ["dynamic reference", "TAVUS_CALLBACK_TOKENS_SECRET"]),
    "changeme": ("changeme", ["placeholder"]),
    "angle-brackets": ("<token>", ["placeholder"]),
    "your-token-here": ("your-token-here", ["placeholder"]),
    "TOKEN": ("TOKEN", ["placeholder"]),
    "variable-name": ("TAVUS_CALLBACK_TOKENS", ["placeholder"]),
    "all-same-character": ("x" * 32, ["placeholder"]),
    "two-characters": ("ab" * 16, ["placeholder"]),
    "words-and-digits": ("replace-with-a-long-random-secret-123", ["placeholder"]),
    "square-brackets": ("[your callback token goes here]", ["placeholder"]),
}


@pytest.mark.parametrize("name", sorted(NOT_SECRETS))
def test_a_token_that_is_no_secret_is_a_configuration_error_that_never_repeats_it(name: str) -> None:
    value, words = NOT_SECRETS[name]
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"TAVUS_CALLBACK_TOKENS": f"{secrets.token_urlsafe(32)},{value}"})
    message = str(caught.value)
    assert message.startswith("TAVUS_CALLBACK_TOKENS: token #2 ")
    assert all(word in message for word in words), message
    assert value not in message.replace("TAVUS_CALLBACK_TOKENS", ""), "the value itself is never repeated"


@pytest.mark.parametrize("name", sorted(NOT_SECRETS))
def test_through_the_pipeline_it_answers_503_not_configured_and_logs_the_fix(
        name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    value, words = NOT_SECRETS[name]
    monkeypatch.setenv("TAVUS_CALLBACK_TOKENS", value)
    monkeypatch.setenv("TAVUS_STORE_URL", f"sqlite:///{tmp_path}/tavus.db")
    with caplog.at_level(logging.ERROR, logger="tavus_callbacks"):
        response = App.from_env().handle(Request("POST", "/", {"token": value}, {},
                                                 json.dumps(load_event("guardrail")).encode()))
    assert response.status == 503 and response.json_body() == {"error": "the endpoint is not configured; see its logs"}
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("configuration error")]
    assert all(word in line for word in words) and value not in line.replace("TAVUS_CALLBACK_TOKENS", "")
    assert not (tmp_path / "tavus.db").exists(), "nothing is stored, not even the store opened"


@given(st.sampled_from([secrets.token_urlsafe, secrets.token_hex]), st.integers(12, 64))
@settings(max_examples=500)
def test_property_random_tokens_are_never_taken_for_placeholders(make: object, size: int) -> None:
    token = make(size)  # type: ignore[operator]
    assert not_a_secret(token) is None
    assert parse_tokens(token) == (token,)


def test_the_secrets_manager_value_is_checked_the_same_way() -> None:
    with pytest.raises(ConfigError, match=r"the secret X: token #1 is a placeholder"):
        parse_tokens("changeme-changeme-changeme", source="the secret X")
