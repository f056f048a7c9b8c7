#!/usr/bin/env python3
"""A stand-in for gcloud, az and func on PATH: logs each call's argv (and working folder) to $FAKE_CLI_LOG and
answers from a JSON state file ($FAKE_CLI_STATE) that the create calls add to, so a second run sees what the
first one made. It knows the JSON shapes the deploy command reads; anything else exits 2 ("unknown command"),
which fails the deploy and so the test."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STATE = Path(os.environ["FAKE_CLI_STATE"])
LOG = Path(os.environ["FAKE_CLI_LOG"])
PROJECT_NUMBER = "123456789"
FINALIZED = "google.cloud.storage.object.v1.finalized"


def flag(argv: list[str], name: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def out(value: Any) -> None:
    print(json.dumps(value))


def missing(what: str) -> None:
    print(f"ERROR: {what} NOT_FOUND: not found", file=sys.stderr)
    sys.exit(1)


def add_binding(policy: dict[str, Any], role: str, member: str) -> None:
    for binding in policy.setdefault("bindings", []):
        if binding["role"] == role:
            binding["members"].append(member)
            return
    policy["bindings"].append({"role": role, "members": [member]})


def has_role(policy: dict[str, Any], role: str, member: str) -> bool:
    return any(b["role"] == role and member in b["members"] for b in policy.get("bindings", []))


def short(name: str) -> str:
    """`projects/p/subscriptions/x` and `x` are the same Pub/Sub resource."""
    return name.rsplit("/", 1)[-1]


def deploy_function(argv: list[str], words: list[str], state: dict[str, Any], g: dict[str, Any]) -> None:
    """An HTTP function (its token pinned from a secret version) or an event function (its Eventarc trigger and
    the trigger's Pub/Sub subscription made, as the Functions API does; refused while the Cloud Storage service
    agent may not publish, as the real one is)."""
    name, source, entry = words[2], Path(str(flag(argv, "--source"))), str(flag(argv, "--entry-point"))
    assert (source / "main.py").is_file() and entry in (source / "main.py").read_text(), "the entry point is exported"
    previous = g["functions"].get(name, {})
    function: dict[str, Any] = {"source": str(source), "env": flag(argv, "--update-env-vars"), "entry_point": entry,
                                "service_account": flag(argv, "--service-account"),
                                "revisions": previous.get("revisions", 0) + 1}
    if "--trigger-http" in argv:
        secret, version = str(flag(argv, "--update-secrets")).split("=", 1)[1].rsplit(":", 1)
        function["token"] = g["secrets"][secret]["versions"][int(version) - 1]
        state["live_token"] = function["token"]
    else:
        project, location = str(flag(argv, "--project")), str(flag(argv, "--trigger-location"))
        agent = f"serviceAccount:service-{PROJECT_NUMBER}@gs-project-accounts.iam.gserviceaccount.com"
        if not has_role(g["project_policy"], "roles/pubsub.publisher", agent):
            print("ERROR: The Cloud Storage service account for your bucket is unable to publish to Cloud Pub/Sub "
                  "topics in the specified project.", file=sys.stderr)
            sys.exit(1)
        trigger = previous.get("trigger") or f"{name}-{len(g['triggers']) + 123456}"
        subscription = f"projects/{project}/subscriptions/eventarc-{location}-{trigger}-sub-001"
        g["triggers"][trigger] = {"location": location, "subscription": subscription,
                                  "service_account": flag(argv, "--trigger-service-account"),
                                  "filters": sorted(a.split("=", 1)[1] for a in argv
                                                    if a.startswith("--trigger-event-filters="))}
        g["subscriptions"].setdefault(short(subscription), {"topic": f"eventarc-{location}-{trigger}", "policy": {}})
        function.update(trigger=trigger, retry="--retry" in argv, trigger_resource=(
            f"projects/{project}/locations/{location}/triggers/{trigger}"))
    g["functions"][name] = function


Handler = Callable[["Call"], None]
ONE = "_"
"""In a command's words: any one word (a resource's name)."""
REST = "..."
"""At the end of a command's words: any further words."""


@dataclass
class Call:
    """One run of a fake CLI: its arguments, the positional words among them, the whole state and this cloud's part."""

    argv: list[str]
    words: list[str]
    state: dict[str, Any]
    cloud: dict[str, Any]

    def flag(self, name: str) -> str | None:
        return flag(self.argv, name)

    @property
    def name(self) -> str | None:
        return self.flag("--name")

    @property
    def group(self) -> str | None:
        return self.flag("--resource-group")


def matches(command: tuple[str, ...], words: list[str]) -> bool:
    """Whether `words` are `command`'s, word by word (ONE stands for any word; a final REST allows more words)."""
    if command[-1] == REST:
        command, words = command[:-1], words[:len(command) - 1]
    return len(words) == len(command) and all(c in (ONE, w) for c, w in zip(command, words, strict=True))


def dispatch(program: str, commands: dict[tuple[str, ...], Handler], call: Call) -> None:
    """Run the first of `commands` that `call`'s words match; anything else is an unknown command (exit 2)."""
    for command, handler in commands.items():
        if matches(command, call.words):
            handler(call)
            return
    print(f"fake {program}: unknown command {call.argv}", file=sys.stderr)
    sys.exit(2)


def registrar(commands: dict[tuple[str, ...], Handler]) -> Callable[..., Callable[[Handler], Handler]]:
    """A decorator that files a handler under its command's words in `commands`."""
    def command(*words: str) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            commands[words] = handler
            return handler
        return register
    return command


GCLOUD: dict[tuple[str, ...], Handler] = {}
AZ: dict[tuple[str, ...], Handler] = {}
gcloud_command, az_command = registrar(GCLOUD), registrar(AZ)


def gcp_policy(c: Call) -> dict[str, Any]:
    """The IAM policy of the resource a `get-iam-policy` or `add-iam-policy-binding` command names."""
    g, words = c.cloud, c.words
    match words[:2]:
        case ["projects", _]:
            return g["project_policy"]
        case ["secrets", _]:
            return g["secrets"][words[2]]["policy"]
        case ["storage", "buckets"]:
            return g["buckets"][words[3]]["policy"]
        case ["pubsub", "topics"]:
            return g["topics"][words[3]]["policy"]
        case ["pubsub", "subscriptions"]:
            return g["subscriptions"][short(words[3])]["policy"]
    return g["run_policies"].setdefault(words[3], {})  # run services: binding makes the policy


def get_policy(c: Call) -> None:
    out(gcp_policy(c))


def bind(c: Call) -> None:
    add_binding(gcp_policy(c), str(c.flag("--role")), str(c.flag("--member")))


def described(found: bool, answer: Callable[[], Any], what: str) -> None:
    """Print `answer()` when the resource is `found`, else fail as gcloud does for a missing one."""
    if not found:
        missing(what)
    out(answer())


@gcloud_command("auth", "list", REST)
def _auth_list(c: Call) -> None:
    out([{"account": "me@example.com", "status": "ACTIVE"}])


@gcloud_command("config", "get-value", "project", REST)
def _config_project(c: Call) -> None:
    print(c.state.get("gcloud_project", ""))


@gcloud_command("services", "list", REST)
def _services_list(c: Call) -> None:
    out([{"config": {"name": api}} for api in c.cloud["apis"]])


@gcloud_command("services", "enable", REST)
def _services_enable(c: Call) -> None:
    c.cloud["apis"] += c.words[2:]


@gcloud_command("projects", "describe", ONE, REST)
def _project_describe(c: Call) -> None:
    out({"projectId": c.words[2], "projectNumber": PROJECT_NUMBER})


GCLOUD[("projects", "get-iam-policy", ONE, REST)] = get_policy
GCLOUD[("projects", "add-iam-policy-binding", ONE, REST)] = bind


@gcloud_command("storage", "buckets", "describe", REST)
def _bucket_describe(c: Call) -> None:
    name, buckets = c.words[3], c.cloud["buckets"]
    described(name in buckets, lambda: {"name": name, "location": str(buckets[name]["location"]).upper()}, name)


@gcloud_command("storage", "service-agent", REST)
def _storage_agent(c: Call) -> None:
    print(f"service-{PROJECT_NUMBER}@gs-project-accounts.iam.gserviceaccount.com")


@gcloud_command("storage", "buckets", "create", REST)
def _bucket_create(c: Call) -> None:
    c.cloud["buckets"][c.words[3]] = {"location": c.flag("--location"), "policy": {}}


GCLOUD[("storage", "buckets", "get-iam-policy", REST)] = get_policy
GCLOUD[("storage", "buckets", "add-iam-policy-binding", REST)] = bind


@gcloud_command("iam", "service-accounts", "describe", REST)
def _service_account_describe(c: Call) -> None:
    email = c.words[3]
    described(email in c.cloud["service_accounts"], lambda: {"email": email}, email)


@gcloud_command("iam", "service-accounts", "create", REST)
def _service_account_create(c: Call) -> None:
    c.cloud["service_accounts"].append(f"{c.words[3]}@{c.flag('--project')}.iam.gserviceaccount.com")


@gcloud_command("secrets", "describe", ONE, REST)
def _secret_describe(c: Call) -> None:
    name = c.words[2]
    described(name in c.cloud["secrets"], lambda: {"name": name}, name)


@gcloud_command("secrets", "create", ONE, REST)
def _secret_create(c: Call) -> None:
    c.cloud["secrets"][c.words[2]] = {"versions": [sys.stdin.read()], "policy": {}}


GCLOUD[("secrets", "get-iam-policy", ONE, REST)] = get_policy
GCLOUD[("secrets", "add-iam-policy-binding", ONE, REST)] = bind


@gcloud_command("secrets", "versions", "describe", REST)
def _secret_version_describe(c: Call) -> None:
    versions = c.cloud["secrets"][str(c.flag("--secret"))]["versions"]
    out({"name": f"projects/p/secrets/{c.flag('--secret')}/versions/{len(versions)}"})


@gcloud_command("secrets", "versions", "access", REST)
def _secret_version_access(c: Call) -> None:
    print(c.cloud["secrets"][str(c.flag("--secret"))]["versions"][int(c.words[3]) - 1], end="")


@gcloud_command("functions", "deploy", ONE, REST)
def _function_deploy(c: Call) -> None:
    deploy_function(c.argv, c.words, c.state, c.cloud)


@gcloud_command("functions", "describe", ONE, REST)
def _function_describe(c: Call) -> None:
    name = c.words[2]
    if name not in c.cloud["functions"]:
        missing(name)
    function = c.cloud["functions"][name]
    answer: dict[str, Any] = {"name": name, "serviceConfig": {"uri": c.state["endpoint"]}}
    if "trigger" in function:
        retry = "RETRY_POLICY_RETRY" if function["retry"] else "RETRY_POLICY_DO_NOT_RETRY"
        answer["eventTrigger"] = {"trigger": function["trigger_resource"], "eventType": FINALIZED,
                                  "retryPolicy": retry}
    out(answer)


@gcloud_command("run", "services", "update", REST)
def _run_update(c: Call) -> None:
    c.cloud["functions"][c.words[3]]["invoker_iam_check"] = False


@gcloud_command("run", "services", "get-iam-policy", REST)
def _run_policy(c: Call) -> None:
    out(c.cloud["run_policies"].get(c.words[3], {}))  # asking makes no policy


GCLOUD[("run", "services", "add-iam-policy-binding", REST)] = bind


@gcloud_command("eventarc", "triggers", "describe", REST)
def _trigger_describe(c: Call) -> None:
    name = c.words[3]
    trigger = c.cloud["triggers"].get(name)
    described(bool(trigger) and trigger["location"] == c.flag("--location"),
              lambda: {"name": name, "transport": {"pubsub": {"subscription": trigger["subscription"]}}}, name)


@gcloud_command("pubsub", "topics", "describe", REST)
def _topic_describe(c: Call) -> None:
    name = c.words[3]
    described(name in c.cloud["topics"], lambda: {"name": name}, name)


@gcloud_command("pubsub", "topics", "create", REST)
def _topic_create(c: Call) -> None:
    c.cloud["topics"][c.words[3]] = {"policy": {}}


GCLOUD[("pubsub", "topics", "get-iam-policy", REST)] = get_policy
GCLOUD[("pubsub", "topics", "add-iam-policy-binding", REST)] = bind


@gcloud_command("pubsub", "subscriptions", "describe", REST)
def _subscription_describe(c: Call) -> None:
    name = c.words[3]
    found = c.cloud["subscriptions"].get(short(name))
    if found is None:
        missing(name)
    dead_letter = {"deadLetterPolicy": found["dead_letter"]} if "dead_letter" in found else {}
    out({"name": name, "topic": found["topic"], **dead_letter})


@gcloud_command("pubsub", "subscriptions", "create", REST)
def _subscription_create(c: Call) -> None:
    c.cloud["subscriptions"][c.words[3]] = {"topic": c.flag("--topic"), "policy": {},
                                            "retention": c.flag("--message-retention-duration")}


@gcloud_command("pubsub", "subscriptions", "update", REST)
def _subscription_update(c: Call) -> None:
    c.cloud["subscriptions"][short(c.words[3])]["dead_letter"] = {
        "deadLetterTopic": c.flag("--dead-letter-topic"),
        "maxDeliveryAttempts": int(str(c.flag("--max-delivery-attempts")))}


GCLOUD[("pubsub", "subscriptions", "get-iam-policy", REST)] = get_policy
GCLOUD[("pubsub", "subscriptions", "add-iam-policy-binding", REST)] = bind


@gcloud_command("logging", "metrics", "describe", REST)
def _log_metric_describe(c: Call) -> None:
    name, metrics = c.words[3], c.cloud["log_metrics"]
    described(name in metrics, lambda: metrics[name], name)


@gcloud_command("logging", "metrics", "create", REST)
def _log_metric_create(c: Call) -> None:
    c.cloud["log_metrics"][c.words[3]] = {"name": c.words[3], "filter": c.flag("--log-filter")}


@gcloud_command("monitoring", "policies", "list", REST)
def _alert_policies_list(c: Call) -> None:
    wanted = str(c.flag("--filter")).removeprefix("displayName=").strip('"')
    out([p for p in c.cloud["alert_policies"].values() if p["displayName"] == wanted])


@gcloud_command("monitoring", "policies", "create", REST)
def _alert_policy_create(c: Call) -> None:
    policies = c.cloud["alert_policies"]
    policies[f"projects/p/alertPolicies/{len(policies) + 1}"] = json.loads(
        Path(str(c.flag("--policy-from-file"))).read_text())


def gcloud(argv: list[str], state: dict[str, Any]) -> None:
    words = [a.removeprefix("gs://") for a in argv if not a.startswith("-")]
    g = state.setdefault("gcp", {"apis": [], "project_policy": {}, "buckets": {}, "service_accounts": [],
                                 "secrets": {}, "functions": {}})
    for part in ("triggers", "topics", "subscriptions", "run_policies", "log_metrics", "alert_policies"):
        g.setdefault(part, {})
    dispatch("gcloud", GCLOUD, Call(argv, words, state, g))


SUBSCRIPTION = "/subscriptions/00000000-0000-0000-0000-000000000001"


def resource_id(c: Call, provider: str, kind: str) -> str:
    return f"{SUBSCRIPTION}/resourceGroups/{c.group}/providers/{provider}/{kind}/{c.name}"


def shown(c: Call, part: str, key: str | None = None, error: str = "ResourceNotFound") -> None:
    """Print the resource that the state's `part` holds under `key` (the call's --name), else fail as az does."""
    found = c.cloud[part]
    key = c.name if key is None else key
    if key not in found:
        missing(f"{error} {c.name}")
    out(found[key])


@az_command("account", "show", REST)
def _account_show(c: Call) -> None:
    out({"id": "00000000-0000-0000-0000-000000000001", "user": {"name": "me@example.com", "type": "user"}})


@az_command("ad", "signed-in-user", "show", REST)
def _signed_in_user(c: Call) -> None:
    out({"id": "user-object-id"})


@az_command("group", "show", REST)
def _group_show(c: Call) -> None:
    shown(c, "groups", error="ResourceGroupNotFound")


@az_command("group", "create", REST)
def _group_create(c: Call) -> None:
    c.cloud["groups"][c.name] = {"name": c.name, "location": c.flag("--location")}


@az_command("storage", "account", "show", REST)
def _storage_account_show(c: Call) -> None:
    shown(c, "storage")


@az_command("storage", "account", "create", REST)
def _storage_account_create(c: Call) -> None:
    c.cloud["storage"][c.name] = {"id": resource_id(c, "Microsoft.Storage", "storageAccounts"), "name": c.name,
                                  "location": c.flag("--location")}
    out(c.cloud["storage"][c.name])


@az_command("storage", "container-rm", "show", REST)
def _container_show(c: Call) -> None:
    if f"{c.flag('--storage-account')}/{c.name}" not in c.cloud["containers"]:
        missing(f"ContainerNotFound {c.name}")
    out({"name": c.name})


@az_command("storage", "container-rm", "create", REST)
def _container_create(c: Call) -> None:
    c.cloud["containers"].append(f"{c.flag('--storage-account')}/{c.name}")


@az_command("functionapp", "show", REST)
def _app_show(c: Call) -> None:
    if c.name not in c.cloud["apps"]:
        missing(f"ResourceNotFound {c.name}")
    out({"name": c.name, "defaultHostName": c.state["endpoint"].split("//", 1)[1].rstrip("/"),
         "id": resource_id(c, "Microsoft.Web", "sites")})


@az_command("functionapp", "create", REST)
def _app_create(c: Call) -> None:
    c.cloud["apps"][c.name] = {"settings": {}, "identity": None, "runtime": c.flag("--runtime-version")}


@az_command("functionapp", "identity", "show")
def _app_identity_show(c: Call) -> None:
    identity = c.cloud["apps"][c.name]["identity"]
    if identity:
        out({"principalId": identity})


@az_command("functionapp", "identity", "assign")
def _app_identity_assign(c: Call) -> None:
    c.cloud["apps"][c.name]["identity"] = f"principal-of-{c.name}"
    out({"principalId": c.cloud["apps"][c.name]["identity"]})


@az_command("functionapp", "config", "appsettings", "list", REST)
def _app_settings_list(c: Call) -> None:
    out([{"name": k, "value": v, "slotSetting": False} for k, v in c.cloud["apps"][c.name]["settings"].items()])


@az_command("functionapp", "config", "appsettings", "set", REST)
def _app_settings_set(c: Call) -> None:
    """Sets the settings (from the @file --settings names) and notes the token the app now answers with, read
    from Key Vault when the setting refers to it."""
    listed = json.loads(Path(str(c.flag("--settings"))[1:]).read_text())
    settings = c.cloud["apps"][c.name]["settings"]
    settings.update({s["name"]: s["value"] for s in listed})
    setting = settings["TAVUS_CALLBACK_TOKENS"]
    if setting.startswith("@Microsoft.KeyVault("):
        vault = setting.split("VaultName=", 1)[1].split(";", 1)[0]
        setting = c.cloud["vaults"][vault]["secrets"]["tavus-callback-tokens"]
    c.state["live_token"] = setting


@az_command("role", "assignment", "list")
def _role_assignment_list(c: Call) -> None:
    key = [c.flag("--assignee"), c.flag("--role"), c.flag("--scope")]
    out([{"roleDefinitionName": key[1]}] if key in c.cloud["roles"] else [])


@az_command("role", "assignment", "create")
def _role_assignment_create(c: Call) -> None:
    c.cloud["roles"].append([c.flag("--assignee-object-id"), c.flag("--role"), c.flag("--scope")])


@az_command("keyvault", "show", REST)
def _vault_show(c: Call) -> None:
    if c.name not in c.cloud["vaults"]:
        missing(f"ResourceNotFound {c.name}")
    out(c.cloud["vaults"][c.name]["json"])


@az_command("keyvault", "create", REST)
def _vault_create(c: Call) -> None:
    c.cloud["vaults"][c.name] = {"json": {"id": resource_id(c, "Microsoft.KeyVault", "vaults"), "name": c.name},
                                 "secrets": {}}
    out(c.cloud["vaults"][c.name]["json"])


@az_command("keyvault", "secret", "show", REST)
def _secret_show(c: Call) -> None:
    value = c.cloud["vaults"][str(c.flag("--vault-name"))]["secrets"].get(c.name)
    if value is None:
        print("ERROR: (SecretNotFound) A secret with (name/id) was not found", file=sys.stderr)
        sys.exit(3)
    out({"name": c.name, "value": value})


@az_command("keyvault", "secret", "set", REST)
def _secret_set(c: Call) -> None:
    value = Path(str(c.flag("--file"))).read_text()
    c.cloud["vaults"][str(c.flag("--vault-name"))]["secrets"][c.name] = value
    out({"name": c.name, "value": value})


@az_command("provider", "show", REST)
def _provider_show(c: Call) -> None:
    namespace = c.flag("--namespace")
    out({"namespace": namespace, "registrationState": c.cloud["providers"].get(str(namespace), "NotRegistered")})


@az_command("provider", "register", REST)
def _provider_register(c: Call) -> None:
    c.cloud["providers"][str(c.flag("--namespace"))] = "Registered"


@az_command("eventgrid", "system-topic", "list", REST)
def _system_topic_list(c: Call) -> None:
    out([t for t in c.cloud["system_topics"].values() if t["resourceGroup"] == c.group])


@az_command("eventgrid", "system-topic", "create")
def _system_topic_create(c: Call) -> None:
    """Refused while Event Grid is not registered, or when the source has a system topic already (as Azure does)."""
    topics = c.cloud["system_topics"]
    assert c.cloud["providers"].get("Microsoft.EventGrid") == "Registered", "Microsoft.EventGrid is not registered"
    source = str(c.flag("--source"))
    if any(t["source"].lower() == source.lower() for t in topics.values()):
        print("ERROR: Only one system topic is allowed per source.", file=sys.stderr)
        sys.exit(1)
    topics[c.name] = {"name": c.name, "resourceGroup": c.group, "source": source,
                      "topicType": c.flag("--topic-type"), "location": c.flag("--location"),
                      "id": resource_id(c, "Microsoft.EventGrid", "systemTopics")}
    out(topics[c.name])


@az_command("eventgrid", "system-topic", "event-subscription", "show", REST)
def _event_subscription_show(c: Call) -> None:
    shown(c, "event_subscriptions", f"{c.flag('--system-topic-name')}/{c.name}")


@az_command("eventgrid", "system-topic", "event-subscription", "create", REST)
def _event_subscription_create(c: Call) -> None:
    """Refused until the function app is published and its host has indexed the function, as Azure does."""
    a, argv = c.cloud, c.argv
    endpoint = str(c.flag("--endpoint"))
    app, function = endpoint.split("/sites/", 1)[1].split("/functions/", 1)
    if not a["apps"].get(app, {}).get("published") or a.get("unindexed", 0) > 0:
        a["unindexed"] = max(0, a.get("unindexed", 0) - 1)
        STATE.write_text(json.dumps(c.state, indent=1))  # the host indexes meanwhile
        print(f"ERROR: The function {function} does not exist in the function app.", file=sys.stderr)
        sys.exit(1)
    start = argv.index("--advanced-filter") + 1
    end = next((i for i in range(start, len(argv)) if argv[i].startswith("--")), len(argv))
    a["event_subscriptions"][f"{c.flag('--system-topic-name')}/{c.name}"] = {
        "name": c.name, "endpoint": endpoint, "endpointType": c.flag("--endpoint-type"),
        "includedEventTypes": c.flag("--included-event-types"),
        "subjectBeginsWith": c.flag("--subject-begins-with"),
        "subjectEndsWith": c.flag("--subject-ends-with"), "advancedFilter": argv[start:end],
        "maxDeliveryAttempts": c.flag("--max-delivery-attempts"), "eventTtl": c.flag("--event-ttl"),
        "deadLetter": c.flag("--deadletter-endpoint")}


@az_command("monitor", "metrics", "alert", "show", REST)
def _alert_show(c: Call) -> None:
    shown(c, "alerts")


@az_command("monitor", "metrics", "alert", "create", REST)
def _alert_create(c: Call) -> None:
    c.cloud["alerts"][c.name] = {"scopes": c.flag("--scopes"), "condition": c.flag("--condition"),
                                 "action": c.flag("--action")}


@az_command("monitor", "action-group", "show", REST)
def _action_group_show(c: Call) -> None:
    shown(c, "action_groups")


@az_command("monitor", "action-group", "create", REST)
def _action_group_create(c: Call) -> None:
    start = c.argv.index("--action") + 1
    c.cloud["action_groups"][c.name] = {"id": resource_id(c, "microsoft.insights", "actionGroups"),
                                        "action": c.argv[start:start + 3]}
    out(c.cloud["action_groups"][c.name])


def az(argv: list[str], state: dict[str, Any]) -> None:
    words = [a for a in argv if not a.startswith("-") and not _is_value(argv, a)]
    a = state.setdefault("azure", {"groups": {}, "storage": {}, "containers": [], "apps": {}, "roles": [],
                                   "vaults": {}})
    for part in ("providers", "system_topics", "event_subscriptions", "alerts", "action_groups"):
        a.setdefault(part, {})
    dispatch("az", AZ, Call(argv, words, state, a))


def _is_value(argv: list[str], word: str) -> bool:
    """Whether `word` is the value of the flag before it (az flags take separate values)."""
    indexes = [i for i, a in enumerate(argv) if a == word]
    return all(i > 0 and argv[i - 1].startswith("-") and "=" not in argv[i - 1] for i in indexes)


def func(argv: list[str], state: dict[str, Any]) -> None:
    if argv[:3] != ["azure", "functionapp", "publish"]:
        print(f"fake func: unknown command {argv}", file=sys.stderr)
        sys.exit(2)
    assert Path("function_app.py").is_file() and Path("host.json").is_file(), "publish runs in the bundle"
    state["azure"]["apps"][argv[3]]["published"] = state["azure"]["apps"][argv[3]].get("published", 0) + 1


def main() -> None:
    program, argv = Path(sys.argv[0]).name, sys.argv[1:]
    with LOG.open("a") as log:
        log.write(json.dumps({"program": program, "argv": argv, "cwd": os.getcwd()}) + "\n")
    state = json.loads(STATE.read_text()) if STATE.exists() else {}
    {"gcloud": gcloud, "az": az, "func": func}[program](argv, state)
    STATE.write_text(json.dumps(state, indent=1))


if __name__ == "__main__":
    main()
