#!/usr/bin/env python3
"""A stand-in for gcloud, az and func on PATH: logs each call's argv (and working folder) to $FAKE_CLI_LOG and
answers from a JSON state file ($FAKE_CLI_STATE) that the create calls add to, so a second run sees what the
first one made. It knows the JSON shapes the deploy command reads; anything else exits 2 ("unknown command"),
which fails the deploy and so the test."""

from __future__ import annotations

import json
import os
import sys
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


def gcloud(argv: list[str], state: dict[str, Any]) -> None:
    words = [a.removeprefix("gs://") for a in argv if not a.startswith("-")]
    g = state.setdefault("gcp", {"apis": [], "project_policy": {}, "buckets": {}, "service_accounts": [],
                                 "secrets": {}, "functions": {}})
    for part in ("triggers", "topics", "subscriptions", "run_policies", "log_metrics", "alert_policies"):
        g.setdefault(part, {})
    match words[:3]:
        case ["auth", "list", *_]:
            out([{"account": "me@example.com", "status": "ACTIVE"}])
        case ["config", "get-value", "project"]:
            print(state.get("gcloud_project", ""))
        case ["services", "list", *_]:
            out([{"config": {"name": api}} for api in g["apis"]])
        case ["services", "enable", *_]:
            g["apis"] += words[2:]
        case ["projects", "describe", _]:
            out({"projectId": words[2], "projectNumber": PROJECT_NUMBER})
        case ["projects", "get-iam-policy", _]:
            out(g["project_policy"])
        case ["projects", "add-iam-policy-binding", _]:
            add_binding(g["project_policy"], str(flag(argv, "--role")), str(flag(argv, "--member")))
        case ["storage", "buckets", "describe"]:
            out({"name": words[3], "location": str(g["buckets"][words[3]]["location"]).upper()}) \
                if words[3] in g["buckets"] else missing(words[3])
        case ["storage", "service-agent", *_]:
            print(f"service-{PROJECT_NUMBER}@gs-project-accounts.iam.gserviceaccount.com")
        case ["storage", "buckets", "create"]:
            g["buckets"][words[3]] = {"location": flag(argv, "--location"), "policy": {}}
        case ["storage", "buckets", "get-iam-policy"]:
            out(g["buckets"][words[3]]["policy"])
        case ["storage", "buckets", "add-iam-policy-binding"]:
            add_binding(g["buckets"][words[3]]["policy"], str(flag(argv, "--role")), str(flag(argv, "--member")))
        case ["iam", "service-accounts", "describe"]:
            out({"email": words[3]}) if words[3] in g["service_accounts"] else missing(words[3])
        case ["iam", "service-accounts", "create"]:
            project = str(flag(argv, "--project"))
            g["service_accounts"].append(f"{words[3]}@{project}.iam.gserviceaccount.com")
        case ["secrets", "describe", _]:
            out({"name": words[2]}) if words[2] in g["secrets"] else missing(words[2])
        case ["secrets", "create", _]:
            g["secrets"][words[2]] = {"versions": [sys.stdin.read()], "policy": {}}
        case ["secrets", "get-iam-policy", _]:
            out(g["secrets"][words[2]]["policy"])
        case ["secrets", "add-iam-policy-binding", _]:
            add_binding(g["secrets"][words[2]]["policy"], str(flag(argv, "--role")), str(flag(argv, "--member")))
        case ["secrets", "versions", "describe"]:
            versions = g["secrets"][str(flag(argv, "--secret"))]["versions"]
            out({"name": f"projects/p/secrets/{flag(argv, '--secret')}/versions/{len(versions)}"})
        case ["secrets", "versions", "access"]:
            print(g["secrets"][str(flag(argv, "--secret"))]["versions"][int(words[3]) - 1], end="")
        case ["functions", "deploy", _]:
            deploy_function(argv, words, state, g)
        case ["functions", "describe", _]:
            if words[2] not in g["functions"]:
                missing(words[2])
            function = g["functions"][words[2]]
            described: dict[str, Any] = {"name": words[2], "serviceConfig": {"uri": state["endpoint"]}}
            if "trigger" in function:
                described["eventTrigger"] = {"trigger": function["trigger_resource"], "eventType": FINALIZED,
                                             "retryPolicy": "RETRY_POLICY_RETRY" if function["retry"] else
                                             "RETRY_POLICY_DO_NOT_RETRY"}
            out(described)
        case ["run", "services", "update"]:
            g["functions"][words[3]]["invoker_iam_check"] = False
        case ["run", "services", "get-iam-policy"]:
            out(g["run_policies"].get(words[3], {}))
        case ["run", "services", "add-iam-policy-binding"]:
            add_binding(g["run_policies"].setdefault(words[3], {}), str(flag(argv, "--role")),
                        str(flag(argv, "--member")))
        case ["eventarc", "triggers", "describe"]:
            trigger = g["triggers"].get(words[3])
            out({"name": words[3], "transport": {"pubsub": {"subscription": trigger["subscription"]}}}) \
                if trigger and trigger["location"] == flag(argv, "--location") else missing(words[3])
        case ["pubsub", "topics", "describe"]:
            out({"name": words[3]}) if words[3] in g["topics"] else missing(words[3])
        case ["pubsub", "topics", "create"]:
            g["topics"][words[3]] = {"policy": {}}
        case ["pubsub", "topics", "get-iam-policy"]:
            out(g["topics"][words[3]]["policy"])
        case ["pubsub", "topics", "add-iam-policy-binding"]:
            add_binding(g["topics"][words[3]]["policy"], str(flag(argv, "--role")), str(flag(argv, "--member")))
        case ["pubsub", "subscriptions", "describe"]:
            found = g["subscriptions"].get(short(words[3]))
            if found is None:
                missing(words[3])
            out({"name": words[3], "topic": found["topic"], **({"deadLetterPolicy": found["dead_letter"]}
                                                               if "dead_letter" in found else {})})
        case ["pubsub", "subscriptions", "create"]:
            g["subscriptions"][words[3]] = {"topic": flag(argv, "--topic"), "policy": {},
                                            "retention": flag(argv, "--message-retention-duration")}
        case ["pubsub", "subscriptions", "update"]:
            g["subscriptions"][short(words[3])]["dead_letter"] = {
                "deadLetterTopic": flag(argv, "--dead-letter-topic"),
                "maxDeliveryAttempts": int(str(flag(argv, "--max-delivery-attempts")))}
        case ["pubsub", "subscriptions", "get-iam-policy"]:
            out(g["subscriptions"][short(words[3])]["policy"])
        case ["pubsub", "subscriptions", "add-iam-policy-binding"]:
            add_binding(g["subscriptions"][short(words[3])]["policy"], str(flag(argv, "--role")),
                        str(flag(argv, "--member")))
        case ["logging", "metrics", "describe"]:
            out(g["log_metrics"][words[3]]) if words[3] in g["log_metrics"] else missing(words[3])
        case ["logging", "metrics", "create"]:
            g["log_metrics"][words[3]] = {"name": words[3], "filter": flag(argv, "--log-filter")}
        case ["monitoring", "policies", "list"]:
            wanted = str(flag(argv, "--filter")).removeprefix("displayName=").strip('"')
            out([p for p in g["alert_policies"].values() if p["displayName"] == wanted])
        case ["monitoring", "policies", "create"]:
            policy = json.loads(Path(str(flag(argv, "--policy-from-file"))).read_text())
            g["alert_policies"][f"projects/p/alertPolicies/{len(g['alert_policies']) + 1}"] = policy
        case _:
            print(f"fake gcloud: unknown command {argv}", file=sys.stderr)
            sys.exit(2)


def az(argv: list[str], state: dict[str, Any]) -> None:
    words = [a for a in argv if not a.startswith("-") and not _is_value(argv, a)]
    a = state.setdefault("azure", {"groups": {}, "storage": {}, "containers": [], "apps": {}, "roles": [],
                                   "vaults": {}})
    for part in ("providers", "system_topics", "event_subscriptions", "alerts", "action_groups"):
        a.setdefault(part, {})
    name, group = flag(argv, "--name"), flag(argv, "--resource-group")
    sub = "/subscriptions/00000000-0000-0000-0000-000000000001"
    match words[:4]:
        case ["account", "show", *_]:
            out({"id": "00000000-0000-0000-0000-000000000001", "user": {"name": "me@example.com", "type": "user"}})
        case ["ad", "signed-in-user", "show", *_]:
            out({"id": "user-object-id"})
        case ["group", "show", *_]:
            out(a["groups"][name]) if name in a["groups"] else missing(f"ResourceGroupNotFound {name}")
        case ["group", "create", *_]:
            a["groups"][name] = {"name": name, "location": flag(argv, "--location")}
        case ["storage", "account", "show", *_]:
            out(a["storage"][name]) if name in a["storage"] else missing(f"ResourceNotFound {name}")
        case ["storage", "account", "create", *_]:
            a["storage"][name] = {"id": f"{sub}/resourceGroups/{group}/providers/Microsoft.Storage/"
                                        f"storageAccounts/{name}", "name": name, "location": flag(argv, "--location")}
            out(a["storage"][name])
        case ["storage", "container-rm", "show", *_]:
            key = f"{flag(argv, '--storage-account')}/{name}"
            out({"name": name}) if key in a["containers"] else missing(f"ContainerNotFound {name}")
        case ["storage", "container-rm", "create", *_]:
            a["containers"].append(f"{flag(argv, '--storage-account')}/{name}")
        case ["functionapp", "show", *_]:
            out({"name": name, "defaultHostName": state["endpoint"].split("//", 1)[1].rstrip("/"),
                 "id": f"{sub}/resourceGroups/{group}/providers/Microsoft.Web/sites/{name}"}) \
                if name in a["apps"] else missing(f"ResourceNotFound {name}")
        case ["functionapp", "create", *_]:
            a["apps"][name] = {"settings": {}, "identity": None, "runtime": flag(argv, "--runtime-version")}
        case ["functionapp", "identity", "show"]:
            identity = a["apps"][name]["identity"]
            if identity:
                out({"principalId": identity})
        case ["functionapp", "identity", "assign"]:
            a["apps"][name]["identity"] = f"principal-of-{name}"
            out({"principalId": a["apps"][name]["identity"]})
        case ["functionapp", "config", "appsettings", "list"]:
            out([{"name": k, "value": v, "slotSetting": False} for k, v in a["apps"][name]["settings"].items()])
        case ["functionapp", "config", "appsettings", "set"]:
            listed = json.loads(Path(str(flag(argv, "--settings"))[1:]).read_text())
            a["apps"][name]["settings"].update({s["name"]: s["value"] for s in listed})
            setting = a["apps"][name]["settings"]["TAVUS_CALLBACK_TOKENS"]
            if setting.startswith("@Microsoft.KeyVault("):
                vault = setting.split("VaultName=", 1)[1].split(";", 1)[0]
                setting = a["vaults"][vault]["secrets"]["tavus-callback-tokens"]
            state["live_token"] = setting
        case ["role", "assignment", "list"]:
            key = [flag(argv, "--assignee"), flag(argv, "--role"), flag(argv, "--scope")]
            out([{"roleDefinitionName": key[1]}] if key in a["roles"] else [])
        case ["role", "assignment", "create"]:
            a["roles"].append([flag(argv, "--assignee-object-id"), flag(argv, "--role"), flag(argv, "--scope")])
        case ["keyvault", "show", *_]:
            out(a["vaults"][name]["json"]) if name in a["vaults"] else missing(f"ResourceNotFound {name}")
        case ["keyvault", "create", *_]:
            a["vaults"][name] = {"json": {"id": f"{sub}/resourceGroups/{group}/providers/Microsoft.KeyVault/"
                                                f"vaults/{name}", "name": name}, "secrets": {}}
            out(a["vaults"][name]["json"])
        case ["keyvault", "secret", "show", *_]:
            value = a["vaults"][str(flag(argv, "--vault-name"))]["secrets"].get(name)
            if value is None:
                print("ERROR: (SecretNotFound) A secret with (name/id) was not found", file=sys.stderr)
                sys.exit(3)
            out({"name": name, "value": value})
        case ["keyvault", "secret", "set", *_]:
            value = Path(str(flag(argv, "--file"))).read_text()
            a["vaults"][str(flag(argv, "--vault-name"))]["secrets"][name] = value
            out({"name": name, "value": value})
        case ["provider", "show", *_]:
            out({"namespace": flag(argv, "--namespace"),
                 "registrationState": a["providers"].get(str(flag(argv, "--namespace")), "NotRegistered")})
        case ["provider", "register", *_]:
            a["providers"][str(flag(argv, "--namespace"))] = "Registered"
        case ["eventgrid", "system-topic", "list", *_]:
            out([t for t in a["system_topics"].values() if t["resourceGroup"] == group])
        case ["eventgrid", "system-topic", "create"]:
            assert a["providers"].get("Microsoft.EventGrid") == "Registered", "Microsoft.EventGrid is not registered"
            source = str(flag(argv, "--source"))
            if any(t["source"].lower() == source.lower() for t in a["system_topics"].values()):
                print("ERROR: Only one system topic is allowed per source.", file=sys.stderr)
                sys.exit(1)
            a["system_topics"][name] = {"name": name, "resourceGroup": group, "source": source,
                                        "topicType": flag(argv, "--topic-type"), "location": flag(argv, "--location"),
                                        "id": f"{sub}/resourceGroups/{group}/providers/Microsoft.EventGrid/"
                                              f"systemTopics/{name}"}
            out(a["system_topics"][name])
        case ["eventgrid", "system-topic", "event-subscription", "show"]:
            key = f"{flag(argv, '--system-topic-name')}/{name}"
            out(a["event_subscriptions"][key]) if key in a["event_subscriptions"] else \
                missing(f"ResourceNotFound {name}")
        case ["eventgrid", "system-topic", "event-subscription", "create"]:
            endpoint = str(flag(argv, "--endpoint"))
            app, function = endpoint.split("/sites/", 1)[1].split("/functions/", 1)
            if not a["apps"].get(app, {}).get("published") or a.get("unindexed", 0) > 0:
                a["unindexed"] = max(0, a.get("unindexed", 0) - 1)
                STATE.write_text(json.dumps(state, indent=1))  # the host indexes meanwhile
                print(f"ERROR: The function {function} does not exist in the function app.", file=sys.stderr)
                sys.exit(1)
            start = argv.index("--advanced-filter") + 1
            end = next((i for i in range(start, len(argv)) if argv[i].startswith("--")), len(argv))
            a["event_subscriptions"][f"{flag(argv, '--system-topic-name')}/{name}"] = {
                "name": name, "endpoint": endpoint, "endpointType": flag(argv, "--endpoint-type"),
                "includedEventTypes": flag(argv, "--included-event-types"),
                "subjectBeginsWith": flag(argv, "--subject-begins-with"),
                "subjectEndsWith": flag(argv, "--subject-ends-with"), "advancedFilter": argv[start:end],
                "maxDeliveryAttempts": flag(argv, "--max-delivery-attempts"), "eventTtl": flag(argv, "--event-ttl"),
                "deadLetter": flag(argv, "--deadletter-endpoint")}
        case ["monitor", "metrics", "alert", "show"]:
            out(a["alerts"][name]) if name in a["alerts"] else missing(f"ResourceNotFound {name}")
        case ["monitor", "metrics", "alert", "create"]:
            a["alerts"][name] = {"scopes": flag(argv, "--scopes"), "condition": flag(argv, "--condition"),
                                 "action": flag(argv, "--action")}
        case ["monitor", "action-group", "show", *_]:
            out(a["action_groups"][name]) if name in a["action_groups"] else missing(f"ResourceNotFound {name}")
        case ["monitor", "action-group", "create", *_]:
            start = argv.index("--action") + 1
            a["action_groups"][name] = {"id": f"{sub}/resourceGroups/{group}/providers/microsoft.insights/"
                                              f"actionGroups/{name}", "action": argv[start:start + 3]}
            out(a["action_groups"][name])
        case _:
            print(f"fake az: unknown command {argv}", file=sys.stderr)
            sys.exit(2)


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
