"""`tavus-callbacks deploy azure`: resource group, storage, Flex Consumption app, managed identity, Key Vault
secret (the app setting is a reference the platform resolves), roles and the code; then the change feed: the
storage account's Event Grid system topic, a subscription of the derive function to new event blobs (retry policy,
dead-letter container) and an alert on dead-lettered events; created or reused. Globally unique names derive from
the subscription and the group, so any machine finds the same ones again."""

from __future__ import annotations

import argparse
import hashlib
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tavus_callbacks.cli.build import build_bundle
from tavus_callbacks.cli.deploy import webhooks
from tavus_callbacks.cli.deploy.base import (
    Cli,
    DeployError,
    SettingsFile,
    check_endpoint,
    log,
    private_file,
    wait_interval,
)

BLOB_ROLE = "Storage Blob Data Contributor"
SECRET_READER = "Key Vault Secrets User"
SECRET_WRITER = "Key Vault Secrets Officer"
TOKENS_SETTING = "TAVUS_CALLBACK_TOKENS"
WEBHOOK_SETTING = "TAVUS_WEBHOOK_SECRETS"
PROVIDERS = ("Microsoft.EventGrid", "Microsoft.Insights")  # the system topic; the metric alert
DERIVE_FUNCTION = "tavus_derive"  # the Event Grid function of function_app.py
SUBSCRIPTION = "tavus-derive"
BLOB_CREATED = "Microsoft.Storage.BlobCreated"
MAX_DELIVERY_ATTEMPTS = 30  # Event Grid's most; retried with backoff within the event's time to live
EVENT_TTL_MINUTES = 1440  # Event Grid's most (one day); then the event goes to the dead-letter container
ALERT = "tavus-derive-dead-lettered"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--resource-group", help="resource group, created if missing (default: saved)")
    parser.add_argument("--location", help="Azure region, e.g. eastus (needed on the first run)")
    parser.add_argument("--storage-account", help="storage account (default: tavus + a hash of subscription and group)")
    parser.add_argument("--container", help="blob container of the recordings (default: recordings)")
    parser.add_argument("--prefix", help="key prefix of the callback folders inside the container (default: none)")
    parser.add_argument("--app", help="function app name (default: tavus-callbacks- + the same hash)")
    parser.add_argument("--key-vault", help="Key Vault holding the token (default: tavus-kv- + the same hash)")
    parser.add_argument("--no-key-vault", action="store_true",
                        help="keep the token (and a webhook signing secret) in an app setting instead of Key Vault")
    parser.add_argument("--forward", metavar="URL", help=webhooks.FORWARD_HELP)
    parser.add_argument("--dead-letter-container",
                        help="container of the events whose derive kept failing (default: tavus-dead-letter)")
    parser.add_argument("--alert-email", help="an address the dead-letter alert notifies (an action group)")


def run(args: argparse.Namespace) -> int:
    settings = SettingsFile(Path(args.settings))
    az = Cli("az", "install the Azure CLI (learn.microsoft.com/cli/azure) and run `az login`")
    func = Cli("func", "install Azure Functions Core Tools v4 (npm i -g azure-functions-core-tools@4)")
    account = az.maybe_json("account", "show", "-o", "json", missing=("az login",))
    if not account:
        raise DeployError("the Azure CLI is not logged in: run `az login`")
    group = settings.pick("RESOURCE_GROUP", args.resource_group)
    if not group:
        raise DeployError("give --resource-group NAME (it is created when missing)")
    suffix = hashlib.sha256(f"{account['id']}/{group}".encode()).hexdigest()[:10]
    storage = settings.pick("STORAGE_ACCOUNT", args.storage_account, lambda: f"tavus{suffix}")
    container = settings.pick("CONTAINER", args.container, lambda: "recordings")
    prefix = settings.pick("PREFIX", args.prefix)
    app = settings.pick("APP", args.app, lambda: f"tavus-callbacks-{suffix}")
    vault = settings.pick("KEY_VAULT", "none" if args.no_key_vault else args.key_vault, lambda: f"tavus-kv-{suffix}")
    forward = settings.pick("FORWARD_URL", args.forward)
    has_webhook = webhooks.check_forward(forward)
    dead_letter = settings.pick("DEAD_LETTER_CONTAINER", args.dead_letter_container, lambda: "tavus-dead-letter")
    alert_email = settings.pick("ALERT_EMAIL", args.alert_email)
    g = ("--resource-group", group)

    existing = az.maybe_json("group", "show", "--name", group, "-o", "json")
    location = settings.pick("LOCATION", args.location, lambda: existing["location"] if existing else None)
    if not location:
        raise DeployError(f"the resource group {group} does not exist yet: give --location (e.g. eastus)")
    settings.save("names used by `tavus-callbacks deploy azure`; the next run reuses them")
    if existing is None:
        az.run("group", "create", "--name", group, "--location", location, "-o", "none")

    account_json = az.maybe_json("storage", "account", "show", "--name", storage, *g, "-o", "json")
    if account_json is None:
        account_json = az.json("storage", "account", "create", "--name", storage, *g, "--location", location,
                               "--sku", "Standard_LRS", "--kind", "StorageV2", "--allow-blob-public-access", "false",
                               "--min-tls-version", "TLS1_2", "-o", "json")
    if az.maybe_json("storage", "container-rm", "show", "--storage-account", storage, *g, "--name", container,
                     "-o", "json") is None:
        az.run("storage", "container-rm", "create", "--storage-account", storage, *g, "--name", container,
               "-o", "none")
    if az.maybe_json("functionapp", "show", "--name", app, *g, "-o", "json") is None:
        az.run("functionapp", "create", "--name", app, *g, "--storage-account", storage,
               "--flexconsumption-location", location, "--runtime", "python", "--runtime-version", "3.13",
               "-o", "none")
    identity = az.maybe_json("functionapp", "identity", "show", "--name", app, *g, "-o", "json")
    if not identity or not identity.get("principalId"):
        identity = az.json("functionapp", "identity", "assign", "--name", app, *g, "-o", "json")
    principal = str(identity["principalId"])
    grant(az, principal, "ServicePrincipal", BLOB_ROLE,
          f"{account_json['id']}/blobServices/default/containers/{container}")

    current = {s["name"]: s.get("value") for s in
               az.json("functionapp", "config", "appsettings", "list", "--name", app, *g, "-o", "json") or []}
    signing, signing_reference = "", ""
    if vault != "none":
        token, reference = vault_secret(az, account, vault, group, location, principal, wait=args.wait)
        if has_webhook:
            signing, signing_reference = vault_secret(az, account, vault, group, location, principal,
                                                      wait=args.wait, name=webhooks.SECRET_NAME,
                                                      make=webhooks.new_secret)
    else:
        kept = current.get(TOKENS_SETTING) or ""
        reference = kept if kept and not kept.startswith("@Microsoft.KeyVault(") else secrets.token_urlsafe(32)
        token = reference.split(",")[0].strip()
        if has_webhook:
            kept = current.get(WEBHOOK_SETTING) or ""
            signing_reference = kept if kept and not kept.startswith("@Microsoft.KeyVault(") else webhooks.new_secret()
    if has_webhook:
        signing = webhooks.newest(signing or signing_reference, f"the webhook secret {webhooks.SECRET_NAME}")
    wanted = {TOKENS_SETTING: reference, "AzureWebJobsDisableHomepage": "true",
              "TAVUS_STORE_URL": f"https://{storage}.blob.core.windows.net/{container}/{prefix}"}
    if forward:
        wanted["TAVUS_FORWARD_URL"] = forward
    if has_webhook:
        wanted[WEBHOOK_SETTING] = signing_reference
    if any(current.get(k) != v for k, v in wanted.items()):
        listed = [{"name": k, "value": v, "slotSetting": False} for k, v in wanted.items()]
        with private_file(json.dumps(listed), ".json") as path:  # a token may be in it: never on the command line
            az.run("functionapp", "config", "appsettings", "set", "--name", app, *g, "--settings", f"@{path}",
                   "-o", "none")

    bundle = build_bundle("azure", Path(args.out) / "azure")
    func.run("azure", "functionapp", "publish", app, "--build", "remote", cwd=bundle.path)
    shown = az.json("functionapp", "show", "--name", app, *g, "-o", "json")
    feed = Feed(az, group, str(account_json.get("location") or location), account_json, container, prefix)
    feed.deploy(f"{shown['id']}/functions/{DERIVE_FUNCTION}", dead_letter, alert_email, wait=args.wait)
    url = f"https://{shown['defaultHostName']}/"
    check_endpoint(url, token, wait=args.wait)
    print(f"callback_url: {url}?token={token}")
    print(f"store_url:    azure://{container}/{prefix}  (account {storage})")
    if signing:
        print(f"webhook_url:    {forward}")
        print(f"webhook_secret: {signing}  (give it to the receiver; it signs every delivery)")
    return 0


def grant(az: Cli, principal: str, kind: str, role: str, scope: str) -> None:
    """Assign `role` on `scope` to the principal unless it already has it."""
    found = az.json("role", "assignment", "list", "--assignee", principal, "--role", role, "--scope", scope,
                    "-o", "json")
    if not found:
        az.run("role", "assignment", "create", "--assignee-object-id", principal, "--assignee-principal-type", kind,
               "--role", role, "--scope", scope, "-o", "none")


def signed_in_object(az: Cli, account: dict[str, Any]) -> tuple[str, str]:
    """The object id and principal type of whoever is logged in to the Azure CLI."""
    user = account.get("user") or {}
    if user.get("type") == "servicePrincipal":
        return str(az.json("ad", "sp", "show", "--id", user["name"], "-o", "json")["id"]), "ServicePrincipal"
    return str(az.json("ad", "signed-in-user", "show", "-o", "json")["id"]), "User"


def vault_secret(az: Cli, account: dict[str, Any], vault: str, group: str, location: str, principal: str, *,
                 wait: float, name: str = "tavus-callback-tokens",
                 make: Callable[[], str] = lambda: secrets.token_urlsafe(32)) -> tuple[str, str]:
    """The first value of the vault's secret `name` (made with `make` and stored on the first run) and the app
    setting's Key Vault reference to it."""
    shown = az.maybe_json("keyvault", "show", "--name", vault, "--resource-group", group, "-o", "json")
    if shown is None:
        shown = az.json("keyvault", "create", "--name", vault, "--resource-group", group, "--location", location,
                        "--enable-rbac-authorization", "true", "-o", "json")
    me, kind = signed_in_object(az, account)
    grant(az, me, kind, SECRET_WRITER, str(shown["id"]))
    grant(az, principal, "ServicePrincipal", SECRET_READER, f"{shown['id']}/secrets/{name}")
    deadline = time.monotonic() + wait
    while True:  # a role just granted to the deployer takes a while to apply to the vault's data plane
        try:
            secret = az.maybe_json("keyvault", "secret", "show", "--vault-name", vault, "--name", name, "-o", "json",
                                   missing=("SecretNotFound",))
            if secret is None:
                with private_file(make()) as path:
                    secret = az.json("keyvault", "secret", "set", "--vault-name", vault, "--name", name,
                                     "--file", str(path), "--encoding", "utf-8", "-o", "json")
            break
        except DeployError as exc:
            if "Forbidden" not in str(exc) or time.monotonic() > deadline:
                raise
            log("  the vault does not accept this login's new role yet; waiting")
            time.sleep(wait_interval(wait))
    token = str(secret["value"]).split(",")[0].strip()
    return token, f"@Microsoft.KeyVault(VaultName={vault};SecretName={name})"


@dataclass
class Feed:
    """The storage account's change feed to the derive function: its Event Grid system topic, a subscription to
    the BlobCreated events of event blobs with a retry policy and a dead-letter container, and a metric alert on
    dead-lettered events."""

    az: Cli
    group: str
    location: str
    account: dict[str, Any]  # the storage account, as `az storage account show` prints it
    container: str
    prefix: str

    @property
    def g(self) -> tuple[str, str]:
        return ("--resource-group", self.group)

    def deploy(self, endpoint: str, dead_letter: str, alert_email: str, *, wait: float) -> None:
        az, storage = self.az, str(self.account["name"])
        for namespace in PROVIDERS:  # a new subscription has them unregistered
            shown = az.maybe_json("provider", "show", "--namespace", namespace, "-o", "json") or {}
            if shown.get("registrationState") != "Registered":
                az.run("provider", "register", "--namespace", namespace, "--wait", "-o", "none")
        if az.maybe_json("storage", "container-rm", "show", "--storage-account", storage, *self.g, "--name",
                         dead_letter, "-o", "json") is None:
            az.run("storage", "container-rm", "create", "--storage-account", storage, *self.g, "--name",
                   dead_letter, "-o", "none")
        topic = self.system_topic()
        if az.maybe_json("eventgrid", "system-topic", "event-subscription", "show", "--name", SUBSCRIPTION, *self.g,
                         "--system-topic-name", topic["name"], "-o", "json") is None:
            blobs = f"/blobServices/default/containers/{self.container}/blobs/{self.prefix}"
            create = ("eventgrid", "system-topic", "event-subscription", "create", "--name", SUBSCRIPTION, *self.g,
                      "--system-topic-name", str(topic["name"]), "--endpoint-type", "azurefunction",
                      "--endpoint", endpoint, "--included-event-types", BLOB_CREATED,
                      "--subject-begins-with", blobs, "--subject-ends-with", ".json",
                      # <prefix><folder>/events/<event>.json and <prefix>unrecognized/..., not the derived documents
                      "--advanced-filter", "Subject", "StringContains", "/events/", f"{blobs}unrecognized/",
                      "--max-delivery-attempts", str(MAX_DELIVERY_ATTEMPTS), "--event-ttl", str(EVENT_TTL_MINUTES),
                      "--deadletter-endpoint", f"{self.account['id']}/blobServices/default/containers/{dead_letter}",
                      "-o", "none")
            deadline = time.monotonic() + wait
            while True:  # the function is listed a while after the publish (the host indexes it)
                try:
                    az.run(*create)
                    break
                except DeployError as exc:
                    if DERIVE_FUNCTION not in str(exc) or time.monotonic() > deadline:
                        raise
                    log(f"  the app does not list {DERIVE_FUNCTION} yet; waiting")
                    time.sleep(wait_interval(wait))
        self.alert(str(topic["id"]), alert_email)

    def system_topic(self) -> dict[str, Any]:
        """The storage account's system topic (an account has at most one, whatever its name), made if missing."""
        source = str(self.account["id"]).lower()
        for topic in self.az.json("eventgrid", "system-topic", "list", *self.g, "-o", "json") or []:
            if str(topic.get("source", "")).lower() == source:
                return dict(topic)
        return dict(self.az.json("eventgrid", "system-topic", "create", "--name", f"{self.account['name']}-events",
                                 *self.g, "--location", self.location, "--topic-type",
                                 "Microsoft.Storage.StorageAccounts", "--source", str(self.account["id"]),
                                 "-o", "json"))

    def alert(self, topic_id: str, email: str) -> None:
        """A metric alert on the system topic's dead-lettered events, notifying `email` when one is given."""
        az = self.az
        if az.maybe_json("monitor", "metrics", "alert", "show", "--name", ALERT, *self.g, "-o", "json") is not None:
            return
        action: tuple[str, ...] = ()
        if email:
            group = az.maybe_json("monitor", "action-group", "show", "--name", "tavus-callbacks", *self.g,
                                  "-o", "json")
            if group is None:
                group = az.json("monitor", "action-group", "create", "--name", "tavus-callbacks", *self.g,
                                "--short-name", "tavus", "--action", "email", "operator", email, "-o", "json")
            action = ("--action", str(group["id"]))
        az.run("monitor", "metrics", "alert", "create", "--name", ALERT, *self.g, "--scopes", topic_id,
               "--condition", "total DeadLetteredCount > 0", "--window-size", "5m", "--evaluation-frequency", "5m",
               "--severity", "2", *action, "--description",
               "tavus-callbacks: events whose derive kept failing went to the dead-letter container; fix the "
               "cause, then run tavus-callbacks repair", "-o", "none")
