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


def gcloud(argv: list[str], state: dict[str, Any]) -> None:
    words = [a.removeprefix("gs://") for a in argv if not a.startswith("-")]
    g = state.setdefault("gcp", {"apis": [], "project_policy": {}, "buckets": {}, "service_accounts": [],
                                 "secrets": {}, "functions": {}})
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
            out({"projectId": words[2], "projectNumber": "123456789"})
        case ["projects", "get-iam-policy", _]:
            out(g["project_policy"])
        case ["projects", "add-iam-policy-binding", _]:
            add_binding(g["project_policy"], str(flag(argv, "--role")), str(flag(argv, "--member")))
        case ["storage", "buckets", "describe"]:
            out({"name": words[3]}) if words[3] in g["buckets"] else missing(words[3])
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
            name, secret_ref = words[2], str(flag(argv, "--update-secrets")).split("=", 1)[1]
            secret, version = secret_ref.rsplit(":", 1)
            g["functions"][name] = {"source": flag(argv, "--source"), "env": flag(argv, "--update-env-vars"),
                                    "token": g["secrets"][secret]["versions"][int(version) - 1],
                                    "service_account": flag(argv, "--service-account"),
                                    "revisions": g["functions"].get(name, {}).get("revisions", 0) + 1}
            assert Path(str(flag(argv, "--source")), "main.py").is_file()
            state["live_token"] = g["functions"][name]["token"]
        case ["functions", "describe", _]:
            out({"name": words[2], "serviceConfig": {"uri": state["endpoint"]}}) if words[2] in g["functions"] \
                else missing(words[2])
        case ["run", "services", "update"]:
            g["functions"][words[3]]["invoker_iam_check"] = False
        case _:
            print(f"fake gcloud: unknown command {argv}", file=sys.stderr)
            sys.exit(2)


def az(argv: list[str], state: dict[str, Any]) -> None:
    words = [a for a in argv if not a.startswith("-") and not _is_value(argv, a)]
    a = state.setdefault("azure", {"groups": {}, "storage": {}, "containers": [], "apps": {}, "roles": [],
                                   "vaults": {}})
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
                                        f"storageAccounts/{name}", "name": name}
            out(a["storage"][name])
        case ["storage", "container-rm", "show", *_]:
            key = f"{flag(argv, '--storage-account')}/{name}"
            out({"name": name}) if key in a["containers"] else missing(f"ContainerNotFound {name}")
        case ["storage", "container-rm", "create", *_]:
            a["containers"].append(f"{flag(argv, '--storage-account')}/{name}")
        case ["functionapp", "show", *_]:
            out({"name": name, "defaultHostName": state["endpoint"].split("//", 1)[1].rstrip("/")}) \
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
