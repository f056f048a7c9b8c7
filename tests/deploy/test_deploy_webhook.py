"""`deploy gcp|azure --forward https://...`: the webhook signing secret is made once in Secret Manager or Key Vault,
only the function's identity may read it, the function that derives gets it and the forward setting, and the deploy
prints it once beside the endpoint it signs for; with the fake CLIs of test_deploy.py."""

from __future__ import annotations

from typing import Any

import pytest
import standardwebhooks

from deploy.test_deploy import Cloud, assert_documented, creating
from deploy.test_deploy import cloud as fake_cloud  # noqa: F401 - the fixture, taken with getfixturevalue below

HOOK = "https://api.example.com/webhooks/tavus?types=system.*,application.transcription_ready"
GCP = ("gcp", "--project", "p1", "--region", "europe-west1")
AZURE = ("azure", "--resource-group", "tavus-rg", "--location", "westeurope")


@pytest.fixture
def cloud(request: pytest.FixtureRequest) -> Cloud:
    made: Cloud = request.getfixturevalue("fake_cloud")
    return made


def printed(stdout: str, name: str) -> str:
    [line] = [line for line in stdout.splitlines() if line.startswith(f"{name}:")]
    return line.split(":", 1)[1].split("  (", 1)[0].strip()


def assert_secret_kept(cloud: Cloud, stdout: str, secret: str) -> None:
    assert all(secret not in arg for call in cloud.calls() for arg in call.argv), "a secret on a command line"
    assert [line for line in stdout.splitlines() if secret in line] == [
        f"webhook_secret: {secret}  (give it to the receiver; it signs every delivery)"], "printed once"
    assert all(secret not in p.read_text() for p in (cloud.root / "work").glob(".tavus-deploy-*.env"))
    standardwebhooks.Webhook(secret)  # what the receiver is given, it can use as it is


def test_gcp_forward_makes_the_signing_secret_once_and_hands_it_to_the_function(cloud: Cloud) -> None:
    done = cloud.deploy(*GCP, "--forward", HOOK)
    assert done.returncode == 0, done.stderr[-3000:]
    calls = cloud.calls()
    assert_documented(calls)
    gcp: dict[str, Any] = cloud.state()["gcp"]
    [secret] = gcp["secrets"]["tavus-webhook-secrets"]["versions"]
    assert secret.startswith("whsec_") and printed(done.stdout, "webhook_secret") == secret
    assert printed(done.stdout, "webhook_url") == HOOK
    assert_secret_kept(cloud, done.stdout, secret)
    email = "tavus-callbacks@p1.iam.gserviceaccount.com"
    assert gcp["secrets"]["tavus-webhook-secrets"]["policy"]["bindings"] == [
        {"role": "roles/secretmanager.secretAccessor", "members": [f"serviceAccount:{email}"]}]
    deployed = {c.argv[2]: c.argv for c in calls if c.command() == ("functions", "deploy")}
    derive = deployed["tavus-derive"]  # it publishes; the callback function only stores
    assert f"--update-env-vars=^|^TAVUS_FORWARD_URL={HOOK}" in derive, "its commas kept by gcloud's ^|^"
    assert "--update-secrets=TAVUS_WEBHOOK_SECRETS=tavus-webhook-secrets:1" in derive, "its version pinned"
    assert not [a for a in deployed["tavus-callback"] if "FORWARD" in a or "WEBHOOK" in a]

    before = len(cloud.calls())
    again = cloud.deploy("gcp")
    assert again.returncode == 0, again.stderr[-3000:]
    assert creating(cloud.calls()[before:]) == [], "a second run creates nothing"
    assert printed(again.stdout, "webhook_secret") == secret, "the same secret, read back"


def test_gcp_without_forward_makes_no_webhook_secret(cloud: Cloud) -> None:
    done = cloud.deploy(*GCP)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "tavus-webhook-secrets" not in cloud.state()["gcp"]["secrets"]
    assert "webhook_secret" not in done.stdout
    deployed = [c for c in cloud.calls() if c.command() == ("functions", "deploy")]
    assert len(deployed) == 2 and not [a for c in deployed for a in c.argv if "FORWARD" in a or "WEBHOOK" in a]


@pytest.mark.parametrize("target", GCP[:1] + AZURE[:1])
def test_plain_http_to_a_public_host_is_refused_before_anything_is_created(cloud: Cloud, target: str) -> None:
    argv = GCP if target == "gcp" else AZURE
    done = cloud.deploy(*argv, "--forward", "http://8.8.8.8/hook")
    assert done.returncode == 2 and "unencrypted to a public host" in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and creating(cloud.calls()) == []


def test_azure_forward_keeps_the_signing_secret_in_key_vault(cloud: Cloud) -> None:
    done = cloud.deploy(*AZURE, "--forward", HOOK)
    assert done.returncode == 0, done.stderr[-3000:]
    assert_documented(cloud.calls())
    azure: dict[str, Any] = cloud.state()["azure"]
    (vault,) = azure["vaults"]
    secret = azure["vaults"][vault]["secrets"]["tavus-webhook-secrets"]
    assert secret.startswith("whsec_") and printed(done.stdout, "webhook_secret") == secret
    assert printed(done.stdout, "webhook_url") == HOOK
    assert_secret_kept(cloud, done.stdout, secret)
    (app,) = azure["apps"]
    settings = azure["apps"][app]["settings"]
    assert settings["TAVUS_FORWARD_URL"] == HOOK
    reference = f"@Microsoft.KeyVault(VaultName={vault};SecretName=tavus-webhook-secrets)"
    assert settings["TAVUS_WEBHOOK_SECRETS"] == reference
    principal = azure["apps"][app]["identity"]
    roles = {(who, role, scope.rsplit("/", 1)[-1]) for who, role, scope in azure["roles"]}
    assert (principal, "Key Vault Secrets User", "tavus-webhook-secrets") in roles, "on that secret only"

    before = len(cloud.calls())
    again = cloud.deploy("azure")
    assert again.returncode == 0, again.stderr[-3000:]
    assert creating(cloud.calls()[before:]) == [], "a second run creates nothing"
    assert printed(again.stdout, "webhook_secret") == secret


def test_azure_without_key_vault_keeps_the_signing_secret_in_an_app_setting(cloud: Cloud) -> None:
    done = cloud.deploy(*AZURE, "--no-key-vault", "--forward", HOOK)
    assert done.returncode == 0, done.stderr[-3000:]
    (app,) = cloud.state()["azure"]["apps"]
    secret = cloud.state()["azure"]["apps"][app]["settings"]["TAVUS_WEBHOOK_SECRETS"]
    assert_secret_kept(cloud, done.stdout, secret)
    again = cloud.deploy("azure")
    assert again.returncode == 0 and printed(again.stdout, "webhook_secret") == secret, "kept, not made again"
