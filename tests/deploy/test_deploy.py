"""`tavus-callbacks deploy gcp|azure` with gcloud, az and func replaced on PATH by a recorder
(tests/deploy/fake_cli.py) that answers from a state file, and the deployed endpoint played by the real core
on a loopback port. Every command and flag is checked against the vendors' documented ones, and a second run
must create nothing."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from support.servers import serving
from tavus_callbacks.app import App
from tavus_callbacks.http import Request
from tavus_callbacks.stores import open_store

FAKE = Path(__file__).parent / "fake_cli.py"

# Commands and flags as documented in each CLI's reference (cloud.google.com/sdk/gcloud/reference,
# learn.microsoft.com/cli/azure, the Azure Functions Core Tools reference). gcloud-wide: --project, --format,
# --quiet; az-wide: -o/--output.
GCLOUD_WIDE = {"--project", "--format", "--quiet"}
GCLOUD = {
    ("auth", "list"): {"--filter"},
    ("config", "get-value"): set(),
    ("services", "list"): {"--enabled"},
    ("services", "enable"): set(),
    ("projects", "describe"): set(),
    ("projects", "get-iam-policy"): set(),
    ("projects", "add-iam-policy-binding"): {"--member", "--role", "--condition"},
    ("storage", "buckets", "describe"): set(),
    ("storage", "buckets", "create"): {"--location", "--uniform-bucket-level-access", "--public-access-prevention"},
    ("storage", "buckets", "get-iam-policy"): set(),
    ("storage", "buckets", "add-iam-policy-binding"): {"--member", "--role"},
    ("iam", "service-accounts", "describe"): set(),
    ("iam", "service-accounts", "create"): {"--display-name"},
    ("secrets", "describe"): set(),
    ("secrets", "create"): {"--replication-policy", "--data-file"},
    ("secrets", "get-iam-policy"): set(),
    ("secrets", "add-iam-policy-binding"): {"--member", "--role"},
    ("secrets", "versions", "describe"): {"--secret"},
    ("secrets", "versions", "access"): {"--secret"},
    ("functions", "deploy"): {"--gen2", "--region", "--runtime", "--source", "--entry-point", "--trigger-http",
                              "--allow-unauthenticated", "--no-allow-unauthenticated", "--service-account",
                              "--update-env-vars", "--update-secrets", "--memory", "--timeout",
                              "--trigger-event-filters", "--trigger-location", "--trigger-service-account", "--retry"},
    ("functions", "describe"): {"--gen2", "--region"},
    ("run", "services", "update"): {"--region", "--no-invoker-iam-check"},
    ("run", "services", "get-iam-policy"): {"--region"},
    ("run", "services", "add-iam-policy-binding"): {"--region", "--member", "--role"},
    ("storage", "service-agent"): set(),
    ("eventarc", "triggers", "describe"): {"--location"},
    ("pubsub", "topics", "describe"): set(),
    ("pubsub", "topics", "create"): set(),
    ("pubsub", "topics", "get-iam-policy"): set(),
    ("pubsub", "topics", "add-iam-policy-binding"): {"--member", "--role"},
    ("pubsub", "subscriptions", "describe"): set(),
    ("pubsub", "subscriptions", "create"): {"--topic", "--message-retention-duration"},
    ("pubsub", "subscriptions", "update"): {"--dead-letter-topic", "--max-delivery-attempts"},
    ("pubsub", "subscriptions", "get-iam-policy"): set(),
    ("pubsub", "subscriptions", "add-iam-policy-binding"): {"--member", "--role"},
    ("logging", "metrics", "describe"): set(),
    ("logging", "metrics", "create"): {"--log-filter", "--description"},
    ("monitoring", "policies", "list"): {"--filter"},
    ("monitoring", "policies", "create"): {"--policy-from-file"},
}
AZ_WIDE = {"-o", "--output"}
AZ = {
    ("account", "show"): set(),
    ("ad", "signed-in-user", "show"): set(),
    ("ad", "sp", "show"): {"--id"},
    ("group", "show"): {"--name"},
    ("group", "create"): {"--name", "--location"},
    ("storage", "account", "show"): {"--name", "--resource-group"},
    ("storage", "account", "create"): {"--name", "--resource-group", "--location", "--sku", "--kind",
                                       "--allow-blob-public-access", "--min-tls-version"},
    ("storage", "container-rm", "show"): {"--storage-account", "--resource-group", "--name"},
    ("storage", "container-rm", "create"): {"--storage-account", "--resource-group", "--name"},
    ("functionapp", "show"): {"--name", "--resource-group"},
    ("functionapp", "create"): {"--name", "--resource-group", "--storage-account", "--flexconsumption-location",
                                "--runtime", "--runtime-version"},
    ("functionapp", "identity", "show"): {"--name", "--resource-group"},
    ("functionapp", "identity", "assign"): {"--name", "--resource-group"},
    ("functionapp", "config", "appsettings", "list"): {"--name", "--resource-group"},
    ("functionapp", "config", "appsettings", "set"): {"--name", "--resource-group", "--settings"},
    ("role", "assignment", "list"): {"--assignee", "--role", "--scope"},
    ("role", "assignment", "create"): {"--assignee-object-id", "--assignee-principal-type", "--role", "--scope"},
    ("keyvault", "show"): {"--name", "--resource-group"},
    ("keyvault", "create"): {"--name", "--resource-group", "--location", "--enable-rbac-authorization"},
    ("keyvault", "secret", "show"): {"--vault-name", "--name"},
    ("keyvault", "secret", "set"): {"--vault-name", "--name", "--file", "--encoding"},
    ("provider", "show"): {"--namespace"},
    ("provider", "register"): {"--namespace", "--wait"},
    ("eventgrid", "system-topic", "list"): {"--resource-group"},
    ("eventgrid", "system-topic", "create"): {"--name", "--resource-group", "--location", "--topic-type", "--source"},
    ("eventgrid", "system-topic", "event-subscription", "show"): {"--name", "--resource-group", "--system-topic-name"},
    ("eventgrid", "system-topic", "event-subscription", "create"): {
        "--name", "--resource-group", "--system-topic-name", "--endpoint-type", "--endpoint", "--included-event-types",
        "--subject-begins-with", "--subject-ends-with", "--advanced-filter", "--max-delivery-attempts", "--event-ttl",
        "--deadletter-endpoint"},
    ("monitor", "metrics", "alert", "show"): {"--name", "--resource-group"},
    ("monitor", "metrics", "alert", "create"): {"--name", "--resource-group", "--scopes", "--condition",
                                                "--window-size", "--evaluation-frequency", "--severity", "--action",
                                                "--description"},
    ("monitor", "action-group", "show"): {"--name", "--resource-group"},
    ("monitor", "action-group", "create"): {"--name", "--resource-group", "--short-name", "--action"},
}
FUNC = {("azure", "functionapp", "publish"): {"--build"}}
DOCUMENTED = {"gcloud": (GCLOUD, GCLOUD_WIDE), "az": (AZ, AZ_WIDE), "func": (FUNC, set())}
# What changes a cloud: the second run of a deploy calls none of these.
CREATING = ("create", "enable", "add-iam-policy-binding", "assign", "set", "update", "register")


@dataclass
class Call:
    program: str
    argv: list[str]
    cwd: str

    def command(self) -> tuple[str, ...]:
        """The longest documented command this call starts with (its positional words)."""
        known, _ = DOCUMENTED[self.program]
        for size in (4, 3, 2):
            if tuple(self.argv[:size]) in known:
                return tuple(self.argv[:size])
        raise AssertionError(f"undocumented command: {self.program} {self.argv}")

    def flags(self) -> set[str]:
        return {a.split("=", 1)[0] for a in self.argv if a.startswith("-")}

    def flag(self, name: str) -> str | None:
        for i, arg in enumerate(self.argv):
            if arg.startswith(name + "="):
                return arg.split("=", 1)[1]
            if arg == name and i + 1 < len(self.argv) and not self.argv[i + 1].startswith("--"):
                return self.argv[i + 1]
        return None


@dataclass
class Cloud:
    """The fake CLIs' folder, state and log, the endpoint they point at, and how to run the deploy command."""

    root: Path
    endpoint: str
    store_url: str
    unavailable: list[int]

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    def state(self) -> dict[str, Any]:
        return json.loads(self.state_file.read_text()) if self.state_file.exists() else {}

    def set_state(self, **values: Any) -> None:
        self.state_file.write_text(json.dumps({**self.state(), **values}))

    def calls(self) -> list[Call]:
        log = self.root / "calls.jsonl"
        return [Call(**json.loads(line)) for line in log.read_text().splitlines()] if log.exists() else []

    def deploy(self, *argv: str,
               programs: tuple[str, ...] = ("gcloud", "az", "func")) -> subprocess.CompletedProcess[str]:
        bin_dir = self.root / f"bin-{'-'.join(programs)}"
        if not bin_dir.exists():
            bin_dir.mkdir()
            for program in programs:
                (bin_dir / program).symlink_to(FAKE)
        path = os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent)])  # no real CLI can be reached
        env = {**os.environ, "PATH": path, "FAKE_CLI_STATE": str(self.state_file),
               "FAKE_CLI_LOG": str(self.root / "calls.jsonl"), "SSL_CERT_FILE": str(self.root / "cert.pem")}
        return subprocess.run([sys.executable, "-m", "tavus_callbacks.cli", "deploy", *argv, "--wait", "20",
                               "--out", str(self.root / "build")], cwd=self.root / "work", env=env,
                              capture_output=True, text=True, timeout=120)

    def stored_keys(self) -> list[str]:
        store, prefix = open_store(self.store_url)
        return list(store.iter_keys(prefix))


@pytest.fixture
def cloud(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cloud]:
    """The fake cloud, with the core answering at its endpoint with whatever token the fake last deployed."""
    (tmp_path / "work").mkdir()
    store_url = f"sqlite:///{tmp_path}/tavus.db"
    monkeypatch.setenv("TAVUS_STORE_URL", store_url)
    monkeypatch.setenv("TAVUS_CALLBACK_TOKENS", "not-deployed-yet-0123456789")
    app = App.from_env()
    unavailable = [0]
    holder: list[Cloud] = []
    lock = threading.Lock()

    class Endpoint(BaseHTTPRequestHandler):
        def answer(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with lock:
                token = holder[0].state().get("live_token")
                if token and os.environ["TAVUS_CALLBACK_TOKENS"] != token:
                    os.environ["TAVUS_CALLBACK_TOKENS"] = token
                    app.reload()
                if self.command == "POST" and unavailable[0] > 0:  # roles not propagated yet
                    unavailable[0] -= 1
                    status, headers, payload = 503, {}, b'{"error": "store unavailable"}'
                else:
                    path, _, query = self.path.partition("?")
                    params = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
                    from urllib.parse import unquote
                    response = app.handle(Request(self.command, path, {k: unquote(v) for k, v in params.items()},
                                              dict(self.headers.items()), body))
                    status, headers, payload = response.status, response.headers, response.body
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = answer

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Endpoint)
    # Cloud endpoints are https: serve TLS with a certificate the deploy command is told to trust.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*self_signed(tmp_path))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    with serving(server) as url:
        holder.append(Cloud(tmp_path, url.replace("http://", "https://") + "/", store_url, unavailable))
        holder[0].set_state(endpoint=holder[0].endpoint, gcloud_project="configured-project")
        yield holder[0]


def self_signed(folder: Path) -> tuple[str, str]:
    """A certificate for 127.0.0.1 and its key, as PEM files in `folder`."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_file), str(key_file)


def assert_documented(calls: list[Call]) -> None:
    for call in calls:
        known, wide = DOCUMENTED[call.program]
        command = call.command()
        undocumented = call.flags() - known[command] - wide
        assert not undocumented, f"{call.program} {' '.join(command)}: undocumented flags {undocumented}"


def assert_token_kept_secret(cloud: Cloud, done: subprocess.CompletedProcess[str], token: str) -> None:
    assert all(token not in arg for call in cloud.calls() for arg in call.argv), "a token on a command line"
    assert token not in done.stderr
    assert [line for line in done.stdout.splitlines() if token in line] == [
        f"callback_url: {cloud.endpoint}?token={token}"]
    assert all(token not in p.read_text() for p in (cloud.root / "work").glob(".tavus-deploy-*.env"))


def creating(calls: list[Call]) -> list[Call]:
    return [c for c in calls if c.program != "func" and any(word in CREATING for word in c.command())]


def deploy_check_keys(cloud: Cloud) -> list[str]:
    return [k for k in cloud.stored_keys() if k.startswith("unrecognized/undated/")]


# -- Google Cloud --------------------------------------------------------------------------------------------

def test_gcp_first_run_creates_everything_and_prints_a_working_callback_url(cloud: Cloud) -> None:
    cloud.unavailable[0] = 2  # the first test callbacks meet roles that have not propagated yet
    done = cloud.deploy("gcp", "--project", "p1", "--region", "europe-west1")
    assert done.returncode == 0, done.stderr[-3000:]
    calls = cloud.calls()
    assert_documented(calls)
    gcp = cloud.state()["gcp"]
    token = gcp["secrets"]["tavus-callback-tokens"]["versions"][0]
    assert len(token) >= 40
    assert_token_kept_secret(cloud, done, token)
    email = "tavus-callbacks@p1.iam.gserviceaccount.com"
    assert {"cloudfunctions.googleapis.com", "run.googleapis.com", "cloudbuild.googleapis.com",
            "artifactregistry.googleapis.com", "secretmanager.googleapis.com"} <= set(gcp["apis"])
    assert {"role": "roles/cloudbuild.builds.builder",
            "members": ["serviceAccount:123456789-compute@developer.gserviceaccount.com"]} in \
        gcp["project_policy"]["bindings"]
    assert gcp["buckets"]["p1-tavus-recordings"]["location"] == "europe-west1"
    assert {"role": "roles/storage.objectUser", "members": [f"serviceAccount:{email}"]} in \
        gcp["buckets"]["p1-tavus-recordings"]["policy"]["bindings"]
    assert {"role": "roles/secretmanager.secretAccessor", "members": [f"serviceAccount:{email}"]} in \
        gcp["secrets"]["tavus-callback-tokens"]["policy"]["bindings"]
    deployed, derive = [c for c in calls if c.command() == ("functions", "deploy")]
    assert deployed.argv[2] == "tavus-callback"
    assert {deployed.flag(f) for f in ("--runtime", "--entry-point", "--service-account", "--update-secrets",
                                       "--update-env-vars", "--region")} == {
        "python313", "tavus_callback", email, "TAVUS_CALLBACK_TOKENS=tavus-callback-tokens:1",
        "TAVUS_STORE_URL=gs://p1-tavus-recordings/", "europe-west1"}
    assert "--allow-unauthenticated" in deployed.argv and "--trigger-http" in deployed.argv
    assert Path(str(deployed.flag("--source")), "tavus_callbacks", "pipeline.py").is_file(), "the built bundle"
    assert derive.flag("--source") == deployed.flag("--source"), "both functions come from the same bundle"
    assert len(deploy_check_keys(cloud)) == 1, "the test callback reached the core and was stored"
    saved = (cloud.root / "work" / ".tavus-deploy-gcp.env").read_text()
    assert "PROJECT=p1" in saved and "REGION=europe-west1" in saved and "BUCKET=p1-tavus-recordings" in saved


def test_gcp_second_run_reads_the_names_back_and_creates_nothing(cloud: Cloud) -> None:
    first = cloud.deploy("gcp", "--project", "p1", "--region", "europe-west1")
    assert first.returncode == 0, first.stderr[-3000:]
    before, state = len(cloud.calls()), cloud.state()
    second = cloud.deploy("gcp")  # no names typed: they come from .tavus-deploy-gcp.env
    assert second.returncode == 0, second.stderr[-3000:]
    calls = cloud.calls()[before:]
    assert_documented(calls)
    assert creating(calls) == [], [c.argv for c in creating(calls)]
    assert [c.argv[2] for c in calls if c.command() == ("functions", "deploy")] == ["tavus-callback", "tavus-derive"]
    after = cloud.state()
    assert after["gcp"]["secrets"] == state["gcp"]["secrets"] and after["gcp"]["buckets"] == state["gcp"]["buckets"]
    assert first.stdout.splitlines()[0] == second.stdout.splitlines()[0], "the same callback URL and token"
    assert len(deploy_check_keys(cloud)) == 1, "the second test callback is a duplicate"


def test_gcp_a_rotated_secret_is_pinned_on_the_next_run(cloud: Cloud) -> None:
    assert cloud.deploy("gcp", "--project", "p1").returncode == 0
    state = cloud.state()
    rotated = "rotated-token-0123456789abcdefghij"
    old = state["gcp"]["secrets"]["tavus-callback-tokens"]["versions"][0]
    state["gcp"]["secrets"]["tavus-callback-tokens"]["versions"].append(f"{rotated},{old}")  # versions add
    cloud.state_file.write_text(json.dumps(state))
    done = cloud.deploy("gcp")
    assert done.returncode == 0, done.stderr[-3000:]
    (deployed,) = [c for c in cloud.calls() if c.command() == ("functions", "deploy")][-2:-1]
    assert deployed.flag("--update-secrets") == "TAVUS_CALLBACK_TOKENS=tavus-callback-tokens:2"
    assert f"?token={rotated}" in done.stdout


def test_gcp_without_allusers_turns_the_invoker_check_off(cloud: Cloud) -> None:
    done = cloud.deploy("gcp", "--project", "p1", "--access", "no-invoker-check")
    assert done.returncode == 0, done.stderr[-3000:]
    calls = cloud.calls()
    deployed, _derive = [c for c in calls if c.command() == ("functions", "deploy")]
    assert "--no-allow-unauthenticated" in deployed.argv and "--allow-unauthenticated" not in deployed.argv
    (update,) = [c for c in calls if c.command() == ("run", "services", "update")]
    assert update.argv[3] == "tavus-callback" and "--no-invoker-iam-check" in update.argv
    assert cloud.state()["gcp"]["functions"]["tavus-callback"]["invoker_iam_check"] is False


def test_gcp_uses_the_configured_project_and_says_what_to_do_without_one(cloud: Cloud) -> None:
    done = cloud.deploy("gcp")
    assert done.returncode == 0 and "BUCKET=configured-project-tavus-recordings" in \
        (cloud.root / "work" / ".tavus-deploy-gcp.env").read_text()
    (cloud.root / "work" / ".tavus-deploy-gcp.env").unlink()
    cloud.set_state(gcloud_project="")
    done = cloud.deploy("gcp")
    assert done.returncode == 2 and "give --project" in done.stderr and "Traceback" not in done.stderr


def test_gcp_the_bucket_feeds_a_derive_function_with_retries_a_dead_letter_and_an_alert(cloud: Cloud) -> None:
    done = cloud.deploy("gcp", "--project", "p1", "--region", "europe-west1", "--prefix", "tavus/")
    assert done.returncode == 0, done.stderr[-3000:]
    calls = cloud.calls()
    assert_documented(calls)
    gcp = cloud.state()["gcp"]
    email = "tavus-callbacks@p1.iam.gserviceaccount.com"
    member = f"serviceAccount:{email}"
    assert {"eventarc.googleapis.com", "pubsub.googleapis.com"} <= set(gcp["apis"])
    (derive,) = [c for c in calls if c.command() == ("functions", "deploy") and c.argv[2] == "tavus-derive"]
    filters = sorted(a.split("=", 1)[1] for a in derive.argv if a.startswith("--trigger-event-filters="))
    assert filters == ["bucket=p1-tavus-recordings", "type=google.cloud.storage.object.v1.finalized"]
    assert {derive.flag(f) for f in ("--entry-point", "--trigger-location", "--trigger-service-account",
                                     "--service-account", "--update-env-vars", "--runtime")} == {
        "tavus_derive", "europe-west1", email, "TAVUS_STORE_URL=gs://p1-tavus-recordings/tavus/", "python313"}
    assert "--retry" in derive.argv and "--trigger-http" not in derive.argv
    assert derive.flag("--update-secrets") is None, "derive needs no callback token"
    # What an Eventarc storage trigger needs: the storage agent publishes, the trigger's account receives and invokes.
    project_roles = {(b["role"], m) for b in gcp["project_policy"]["bindings"] for m in b["members"]}
    assert ("roles/pubsub.publisher", "serviceAccount:service-123456789@gs-project-accounts.iam.gserviceaccount.com") \
        in project_roles
    assert ("roles/eventarc.eventReceiver", member) in project_roles
    assert {"role": "roles/run.invoker", "members": [member]} in gcp["run_policies"]["tavus-derive"]["bindings"]
    # The dead letter: a topic kept by a subscription, where the trigger's subscription sends after 10 deliveries.
    agent = "serviceAccount:service-123456789@gcp-sa-pubsub.iam.gserviceaccount.com"
    (trigger,) = gcp["triggers"].values()
    assert trigger["service_account"] == email
    subscription = gcp["subscriptions"][trigger["subscription"].rsplit("/", 1)[1]]
    assert subscription["dead_letter"] == {"deadLetterTopic": "projects/p1/topics/tavus-derive-dead-letter",
                                           "maxDeliveryAttempts": 10}
    assert {"role": "roles/pubsub.subscriber", "members": [agent]} in subscription["policy"]["bindings"]
    assert {"role": "roles/pubsub.publisher", "members": [agent]} in \
        gcp["topics"]["tavus-derive-dead-letter"]["policy"]["bindings"]
    assert gcp["subscriptions"]["tavus-derive-dead-letter"]["topic"] == "tavus-derive-dead-letter"
    # The alert: a log-based metric on the adapter's failure line, and a policy on it and on dead letters.
    log_filter = gcp["log_metrics"]["tavus-derive-failures"]["filter"]
    assert 'resource.labels.service_name="tavus-derive"' in log_filter and "severity>=ERROR" in log_filter
    (policy,) = gcp["alert_policies"].values()
    conditions = [c["conditionThreshold"]["filter"] for c in policy["conditions"]]
    assert any('subscription_id="tavus-derive-dead-letter"' in c and "num_undelivered_messages" in c
               for c in conditions)
    assert any("logging.googleapis.com/user/tavus-derive-failures" in c for c in conditions)
    # (The Cloud Storage service agent's role is granted before the trigger is made: the fake refuses otherwise.)


def test_gcp_a_trigger_subscription_remade_without_its_dead_letter_gets_it_again(cloud: Cloud) -> None:
    assert cloud.deploy("gcp", "--project", "p1").returncode == 0
    state = cloud.state()
    (trigger,) = state["gcp"]["triggers"].values()
    del state["gcp"]["subscriptions"][trigger["subscription"].rsplit("/", 1)[1]]["dead_letter"]  # Eventarc remade it
    cloud.state_file.write_text(json.dumps(state))
    before = len(cloud.calls())
    done = cloud.deploy("gcp")
    assert done.returncode == 0, done.stderr[-3000:]
    assert [c.command() for c in creating(cloud.calls()[before:])] == [("pubsub", "subscriptions", "update")]


def test_a_missing_cli_is_named_with_how_to_install_it(cloud: Cloud) -> None:
    done = cloud.deploy("azure", "--resource-group", "rg", "--location", "eastus", programs=("az",))
    assert done.returncode == 2 and "`func` is not on PATH" in done.stderr and "Core Tools" in done.stderr
    assert cloud.calls() == []


# -- Azure ---------------------------------------------------------------------------------------------------

def test_azure_first_run_creates_everything_with_the_token_in_key_vault(cloud: Cloud) -> None:
    cloud.unavailable[0] = 1  # the Key Vault reference and the blob role are still propagating
    done = cloud.deploy("azure", "--resource-group", "tavus-rg", "--location", "westeurope")
    assert done.returncode == 0, done.stderr[-3000:]
    calls = cloud.calls()
    assert_documented(calls)
    azure = cloud.state()["azure"]
    (vault,) = azure["vaults"]
    token = azure["vaults"][vault]["secrets"]["tavus-callback-tokens"]
    assert_token_kept_secret(cloud, done, token)
    (app,) = azure["apps"]
    (storage,) = azure["storage"]
    assert azure["groups"]["tavus-rg"]["location"] == "westeurope"
    assert azure["apps"][app]["runtime"] == "3.13" and azure["apps"][app]["published"] == 1
    settings = azure["apps"][app]["settings"]
    reference = f"@Microsoft.KeyVault(VaultName={vault};SecretName=tavus-callback-tokens)"
    assert settings["TAVUS_CALLBACK_TOKENS"] == reference
    assert settings["TAVUS_STORE_URL"] == f"https://{storage}.blob.core.windows.net/recordings/"
    principal = azure["apps"][app]["identity"]
    roles = {(who, role, scope.rsplit("/", 2)[-1]) for who, role, scope in azure["roles"]}
    assert (principal, "Storage Blob Data Contributor", "recordings") in roles
    assert (principal, "Key Vault Secrets User", "tavus-callback-tokens") in roles
    assert ("user-object-id", "Key Vault Secrets Officer", vault) in roles
    (created,) = [c for c in calls if c.command() == ("functionapp", "create")]
    assert created.flag("--flexconsumption-location") == "westeurope" and created.flag("--runtime") == "python"
    (vault_created,) = [c for c in calls if c.command() == ("keyvault", "create")]
    assert vault_created.flag("--enable-rbac-authorization") == "true"
    (publish,) = [c for c in calls if c.program == "func"]
    assert publish.argv[3] == app and Path(publish.cwd, "function_app.py").is_file()
    assert len(deploy_check_keys(cloud)) == 1
    assert len(storage) <= 24 and len(vault) <= 24 and storage.isalnum()


def test_azure_second_run_reads_the_names_back_and_creates_nothing(cloud: Cloud) -> None:
    first = cloud.deploy("azure", "--resource-group", "tavus-rg", "--location", "westeurope")
    assert first.returncode == 0, first.stderr[-3000:]
    before = len(cloud.calls())
    second = cloud.deploy("azure")
    assert second.returncode == 0, second.stderr[-3000:]
    calls = cloud.calls()[before:]
    assert_documented(calls)
    assert creating(calls) == [], [c.argv for c in creating(calls)]
    assert [c.program for c in calls].count("func") == 1, "the code is published again"
    assert first.stdout.splitlines()[0] == second.stdout.splitlines()[0]
    assert len(deploy_check_keys(cloud)) == 1


def test_azure_names_are_the_same_from_another_machine(cloud: Cloud) -> None:
    first = cloud.deploy("azure", "--resource-group", "tavus-rg", "--location", "westeurope")
    assert first.returncode == 0, first.stderr[-3000:]
    (cloud.root / "work" / ".tavus-deploy-azure.env").unlink()  # a fresh checkout elsewhere
    before = len(cloud.calls())
    second = cloud.deploy("azure", "--resource-group", "tavus-rg")
    assert second.returncode == 0, second.stderr[-3000:]
    assert creating(cloud.calls()[before:]) == []
    assert first.stdout.splitlines()[0] == second.stdout.splitlines()[0]


def test_azure_without_key_vault_keeps_the_token_in_an_app_setting_never_on_a_command_line(cloud: Cloud) -> None:
    done = cloud.deploy("azure", "--resource-group", "rg2", "--location", "eastus", "--no-key-vault")
    assert done.returncode == 0, done.stderr[-3000:]
    azure = cloud.state()["azure"]
    assert azure["vaults"] == {}
    (app,) = azure["apps"].values()
    token = app["settings"]["TAVUS_CALLBACK_TOKENS"]
    assert_token_kept_secret(cloud, done, token)
    before = len(cloud.calls())
    again = cloud.deploy("azure")
    assert again.returncode == 0 and creating(cloud.calls()[before:]) == []
    assert cloud.state()["azure"]["apps"] == azure["apps"] | {next(iter(azure["apps"])): {**app, "published": 2}}


def test_azure_needs_a_location_for_a_new_group(cloud: Cloud) -> None:
    done = cloud.deploy("azure", "--resource-group", "new-rg")
    assert done.returncode == 2 and "give --location" in done.stderr
    assert creating(cloud.calls()) == []


def test_azure_new_event_blobs_feed_the_derive_function_with_retries_a_dead_letter_and_an_alert(
        cloud: Cloud) -> None:
    cloud.set_state(azure={"groups": {}, "storage": {}, "containers": [], "apps": {}, "roles": [], "vaults": {},
                           "unindexed": 1})  # the host lists the new function a moment after the publish
    done = cloud.deploy("azure", "--resource-group", "tavus-rg", "--location", "westeurope", "--prefix", "tavus/",
                        "--alert-email", "ops@example.com")
    assert done.returncode == 0, done.stderr[-3000:]
    calls = cloud.calls()
    assert_documented(calls)
    azure = cloud.state()["azure"]
    (storage,) = azure["storage"].values()
    (app,) = azure["apps"]
    assert azure["providers"] == {"Microsoft.EventGrid": "Registered", "Microsoft.Insights": "Registered"}
    assert f"{storage['name']}/tavus-dead-letter" in azure["containers"]
    (topic,) = azure["system_topics"].values()
    assert topic["source"] == storage["id"] and topic["topicType"] == "Microsoft.Storage.StorageAccounts"
    assert topic["location"] == "westeurope"
    (subscription,) = azure["event_subscriptions"].values()
    blobs = "/blobServices/default/containers/recordings/blobs/tavus/"
    group_id = storage["id"].split("/providers/")[0]
    assert subscription == {
        "name": "tavus-derive", "endpointType": "azurefunction",
        "endpoint": f"{group_id}/providers/Microsoft.Web/sites/{app}/functions/tavus_derive",
        "includedEventTypes": "Microsoft.Storage.BlobCreated", "subjectBeginsWith": blobs, "subjectEndsWith": ".json",
        "advancedFilter": ["Subject", "StringContains", "/events/", f"{blobs}unrecognized/"],
        "maxDeliveryAttempts": "30", "eventTtl": "1440",
        "deadLetter": f"{storage['id']}/blobServices/default/containers/tavus-dead-letter"}
    alert = azure["alerts"]["tavus-derive-dead-lettered"]
    assert alert["scopes"] == topic["id"] and alert["condition"] == "total DeadLetteredCount > 0"
    (group,) = azure["action_groups"].values()
    assert group["action"] == ["email", "operator", "ops@example.com"] and alert["action"] == group["id"]
    order = [c.program if c.program == "func" else c.command()[-1] for c in calls]
    first_subscription = next(i for i, c in enumerate(calls) if c.command()[-2:] == ("event-subscription", "create"))
    assert "func" in order[:first_subscription], "the subscription is made once the function is published"
    assert len([c for c in calls if c.command()[-2:] == ("event-subscription", "create")]) == 2, "retried once"
    assert len(deploy_check_keys(cloud)) == 1


def test_azure_the_storage_accounts_existing_system_topic_is_reused(cloud: Cloud) -> None:
    first = cloud.deploy("azure", "--resource-group", "tavus-rg", "--location", "westeurope")
    assert first.returncode == 0, first.stderr[-3000:]
    state = cloud.state()
    (topic,) = state["azure"]["system_topics"].values()
    state["azure"]["system_topics"] = {"made-by-hand": {**topic, "name": "made-by-hand"}}  # one per account at most
    state["azure"]["event_subscriptions"] = {}
    cloud.state_file.write_text(json.dumps(state))
    before = len(cloud.calls())
    again = cloud.deploy("azure")
    assert again.returncode == 0, again.stderr[-3000:]
    assert [c.command() for c in creating(cloud.calls()[before:])] == [
        ("eventgrid", "system-topic", "event-subscription", "create")]
    assert list(cloud.state()["azure"]["event_subscriptions"]) == ["made-by-hand/tavus-derive"]
