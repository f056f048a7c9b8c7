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
    add_names,
    check_endpoint,
    print_urls,
    private_file,
    retrying,
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


# The flags naming what is created or reused (kept in the settings file), as --help lists them.
NAMES = {
    "--resource-group": "resource group, created if missing (default: saved)",
    "--location": "Azure region, e.g. eastus (needed on the first run)",
    "--storage-account": "storage account (default: tavus + a hash of subscription and group)",
    "--container": "blob container of the recordings (default: recordings)",
    "--prefix": "key prefix of the callback folders inside the container (default: none)",
    "--app": "function app name (default: tavus-callbacks- + the same hash)",
    "--key-vault": "Key Vault holding the token (default: tavus-kv- + the same hash)",
}
FEED_NAMES = {
    "--dead-letter-container": "container of the events whose derive kept failing (default: tavus-dead-letter)",
    "--alert-email": "an address the dead-letter alert notifies (an action group)",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_names(parser, NAMES)
    parser.add_argument("--no-key-vault", action="store_true",
                        help="keep the token (and a webhook signing secret) in an app setting instead of Key Vault")
    parser.add_argument("--forward", metavar="URL", help=webhooks.FORWARD_HELP)
    add_names(parser, FEED_NAMES)


@dataclass
class Names:
    """What `deploy azure` creates or reuses, from the flags, else the settings file, else derived defaults."""

    account: dict[str, Any]  # the logged-in subscription, as `az account show` prints it
    group: str
    group_exists: bool
    location: str
    storage: str
    container: str
    prefix: str
    app: str
    vault: str  # "none": the secrets are app settings
    forward: str
    has_webhook: bool
    dead_letter: str
    alert_email: str

    @property
    def g(self) -> tuple[str, str]:
        return ("--resource-group", self.group)

    @classmethod
    def pick(cls, args: argparse.Namespace, az: Cli) -> Names:
        """The names of this run, saved for the next one; a DeployError when there is no login, group or region."""
        settings = SettingsFile(Path(args.settings))
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
        vault = settings.pick("KEY_VAULT", "none" if args.no_key_vault else args.key_vault,
                              lambda: f"tavus-kv-{suffix}")
        forward = settings.pick("FORWARD_URL", args.forward)
        has_webhook = webhooks.check_forward(forward)
        dead_letter = settings.pick("DEAD_LETTER_CONTAINER", args.dead_letter_container, lambda: "tavus-dead-letter")
        alert_email = settings.pick("ALERT_EMAIL", args.alert_email)
        existing = az.maybe_json("group", "show", "--name", group, "-o", "json")
        location = settings.pick("LOCATION", args.location, lambda: existing["location"] if existing else None)
        if not location:
            raise DeployError(f"the resource group {group} does not exist yet: give --location (e.g. eastus)")
        settings.save("names used by `tavus-callbacks deploy azure`; the next run reuses them")
        return cls(account, group, existing is not None, location, storage, container, prefix, app, vault, forward,
                   has_webhook, dead_letter, alert_email)


def run(args: argparse.Namespace) -> int:
    az = Cli("az", "install the Azure CLI (learn.microsoft.com/cli/azure) and run `az login`")
    func = Cli("func", "install Azure Functions Core Tools v4 (npm i -g azure-functions-core-tools@4)")
    names = Names.pick(args, az)
    storage_account = storage_and_app(az, names)
    principal = app_identity(az, names, storage_account)
    token, signing = app_settings(az, names, principal, wait=args.wait)
    bundle = build_bundle("azure", Path(args.out) / "azure")
    func.run("azure", "functionapp", "publish", names.app, "--build", "remote", cwd=bundle.path)
    shown = az.json("functionapp", "show", "--name", names.app, *names.g, "-o", "json")
    feed = Feed(az, names.group, str(storage_account.get("location") or names.location), storage_account,
                names.container, names.prefix)
    feed.deploy(f"{shown['id']}/functions/{DERIVE_FUNCTION}", names.dead_letter, names.alert_email, wait=args.wait)
    url = f"https://{shown['defaultHostName']}/"
    check_endpoint(url, token, wait=args.wait)
    print_urls(url, token, f"azure://{names.container}/{names.prefix}  (account {names.storage})",
               names.forward, signing)
    return 0


def storage_and_app(az: Cli, names: Names) -> dict[str, Any]:
    """The resource group, storage account, recording container and function app, made when missing; the
    storage account as `az storage account show` prints it."""
    g = names.g
    if not names.group_exists:
        az.run("group", "create", "--name", names.group, "--location", names.location, "-o", "none")
    account = az.maybe_json("storage", "account", "show", "--name", names.storage, *g, "-o", "json")
    if account is None:
        account = az.json("storage", "account", "create", "--name", names.storage, *g, "--location", names.location,
                          "--sku", "Standard_LRS", "--kind", "StorageV2", "--allow-blob-public-access", "false",
                          "--min-tls-version", "TLS1_2", "-o", "json")
    if az.maybe_json("storage", "container-rm", "show", "--storage-account", names.storage, *g, "--name",
                     names.container, "-o", "json") is None:
        az.run("storage", "container-rm", "create", "--storage-account", names.storage, *g, "--name",
               names.container, "-o", "none")
    if az.maybe_json("functionapp", "show", "--name", names.app, *g, "-o", "json") is None:
        az.run("functionapp", "create", "--name", names.app, *g, "--storage-account", names.storage,
               "--flexconsumption-location", names.location, "--runtime", "python", "--runtime-version", "3.13",
               "-o", "none")
    return dict(account)


def app_identity(az: Cli, names: Names, storage_account: dict[str, Any]) -> str:
    """The principal id of the app's managed identity (assigned when missing), granted the recording container."""
    identity = az.maybe_json("functionapp", "identity", "show", "--name", names.app, *names.g, "-o", "json")
    if not identity or not identity.get("principalId"):
        identity = az.json("functionapp", "identity", "assign", "--name", names.app, *names.g, "-o", "json")
    principal = str(identity["principalId"])
    grant(az, principal, "ServicePrincipal", BLOB_ROLE,
          f"{storage_account['id']}/blobServices/default/containers/{names.container}")
    return principal


def app_settings(az: Cli, names: Names, principal: str, *, wait: float) -> tuple[str, str]:
    """Set the app settings the function reads (the secrets as Key Vault references, or as values with
    --no-key-vault) when they differ; the callback token and the webhook signing secret ("" without one)."""
    current = {s["name"]: s.get("value") for s in
               az.json("functionapp", "config", "appsettings", "list", "--name", names.app, *names.g,
                       "-o", "json") or []}
    if names.vault != "none":
        token, reference, signing, signing_reference = vault_secrets(az, names, principal, wait=wait)
    else:
        reference = _kept(current, TOKENS_SETTING) or secrets.token_urlsafe(32)
        token = reference.split(",")[0].strip()
        signing = ""
        signing_reference = (_kept(current, WEBHOOK_SETTING) or webhooks.new_secret()) if names.has_webhook else ""
    if names.has_webhook:
        signing = webhooks.newest(signing or signing_reference, f"the webhook secret {webhooks.SECRET_NAME}")
    wanted = {TOKENS_SETTING: reference, "AzureWebJobsDisableHomepage": "true",
              "TAVUS_STORE_URL": f"https://{names.storage}.blob.core.windows.net/{names.container}/{names.prefix}"}
    if names.forward:
        wanted["TAVUS_FORWARD_URL"] = names.forward
    if names.has_webhook:
        wanted[WEBHOOK_SETTING] = signing_reference
    update_settings(az, names, current, wanted)
    return token, signing


def update_settings(az: Cli, names: Names, current: dict[str, str | None], wanted: dict[str, str]) -> None:
    """Set the app settings when one of `wanted` differs from `current`, through a private file (a token may be
    in it: never on the command line)."""
    if all(current.get(k) == v for k, v in wanted.items()):
        return
    listed = [{"name": k, "value": v, "slotSetting": False} for k, v in wanted.items()]
    with private_file(json.dumps(listed), ".json") as path:
        az.run("functionapp", "config", "appsettings", "set", "--name", names.app, *names.g, "--settings",
               f"@{path}", "-o", "none")


def _kept(current: dict[str, str | None], setting: str) -> str:
    """The app setting's value when it holds the secret itself (not a Key Vault reference), else ""."""
    kept = current.get(setting) or ""
    return "" if kept.startswith("@Microsoft.KeyVault(") else kept


def vault_secrets(az: Cli, names: Names, principal: str, *, wait: float) -> tuple[str, str, str, str]:
    """The token and its Key Vault reference; the signing secret and its reference ("" without a webhook)."""
    token, reference = vault_secret(az, names.account, names.vault, names.group, names.location, principal,
                                    wait=wait)
    signing, signing_reference = "", ""
    if names.has_webhook:
        signing, signing_reference = vault_secret(az, names.account, names.vault, names.group, names.location,
                                                  principal, wait=wait, name=webhooks.SECRET_NAME,
                                                  make=webhooks.new_secret)
    return token, reference, signing, signing_reference


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
    def read_or_make() -> Any:
        secret = az.maybe_json("keyvault", "secret", "show", "--vault-name", vault, "--name", name, "-o", "json",
                               missing=("SecretNotFound",))
        if secret is not None:
            return secret
        with private_file(make()) as path:
            return az.json("keyvault", "secret", "set", "--vault-name", vault, "--name", name, "--file", str(path),
                           "--encoding", "utf-8", "-o", "json")

    # a role just granted to the deployer takes a while to apply to the vault's data plane
    secret = retrying(read_or_make, ("Forbidden",), "the vault does not accept this login's new role yet",
                      wait=wait)
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
            # the function is listed a while after the publish (the host indexes it)
            retrying(lambda: az.run(*create), (DERIVE_FUNCTION,), f"the app does not list {DERIVE_FUNCTION} yet",
                     wait=wait)
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
