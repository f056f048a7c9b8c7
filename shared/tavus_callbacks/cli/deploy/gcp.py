"""`tavus-callbacks deploy gcp`: bucket, service account, secret, roles and the function (`gcloud functions
deploy --gen2`), created or reused. The function reads the token secret's version that is `latest` at each run,
so a rotation (add a version, deploy again) is explicit."""

from __future__ import annotations

import argparse
import secrets
from pathlib import Path

from tavus_callbacks.cli.build import build_bundle
from tavus_callbacks.cli.deploy.base import Cli, DeployError, SettingsFile, check_endpoint

APIS = ("cloudfunctions.googleapis.com", "run.googleapis.com", "cloudbuild.googleapis.com",
        "artifactregistry.googleapis.com", "secretmanager.googleapis.com", "storage.googleapis.com",
        "iam.googleapis.com")
BUILDER_ROLE = "roles/cloudbuild.builds.builder"
BUCKET_ROLE = "roles/storage.objectUser"
SECRET_ROLE = "roles/secretmanager.secretAccessor"
ACCESS = ("allusers", "no-invoker-check")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--project", help="Google Cloud project id (default: saved, else gcloud's configured one)")
    parser.add_argument("--region", help="region of the function and the bucket (default: saved, else us-central1)")
    parser.add_argument("--bucket", help="recording bucket (default: <project>-tavus-recordings)")
    parser.add_argument("--prefix", help="key prefix of the callback folders inside the bucket (default: none)")
    parser.add_argument("--function", help="function name (default: tavus-callback)")
    parser.add_argument("--service-account", help="name of the function's service account (default: tavus-callbacks)")
    parser.add_argument("--secret", help="Secret Manager secret holding the token(s) (default: tavus-callback-tokens)")
    parser.add_argument("--access", choices=ACCESS,
                        help="allusers: grant roles/run.invoker to allUsers (default); no-invoker-check: turn the "
                             "Cloud Run invoker check off instead, where an organization policy refuses allUsers")


def run(args: argparse.Namespace) -> int:
    settings = SettingsFile(Path(args.settings))
    gcloud = Cli("gcloud", "install the Google Cloud CLI (cloud.google.com/sdk) and run `gcloud auth login`")
    accounts = gcloud.json("auth", "list", "--filter=status:ACTIVE", "--format=json") or []
    if not accounts:
        raise DeployError("gcloud has no active account: run `gcloud auth login`")

    project = settings.pick("PROJECT", args.project,
                            lambda: (gcloud.run("config", "get-value", "project") or "").strip())
    if not project:
        raise DeployError("no project: give --project PROJECT_ID (or run `gcloud config set project PROJECT_ID`)")
    region = settings.pick("REGION", args.region, lambda: "us-central1")
    bucket = settings.pick("BUCKET", args.bucket, lambda: f"{project}-tavus-recordings")
    prefix = settings.pick("PREFIX", args.prefix)
    function = settings.pick("FUNCTION", args.function, lambda: "tavus-callback")
    account_name = settings.pick("SERVICE_ACCOUNT", args.service_account, lambda: "tavus-callbacks")
    secret = settings.pick("SECRET", args.secret, lambda: "tavus-callback-tokens")
    access = settings.pick("ACCESS", args.access, lambda: "allusers")
    settings.save("names used by `tavus-callbacks deploy gcp`; the next run reuses them")
    p = f"--project={project}"
    member = f"serviceAccount:{account_name}@{project}.iam.gserviceaccount.com"
    email = member.split(":", 1)[1]

    enabled = {s["config"]["name"] for s in gcloud.json("services", "list", "--enabled", p, "--format=json") or []}
    missing = [api for api in APIS if api not in enabled]
    if missing:
        gcloud.run("services", "enable", *missing, p)
    number = gcloud.json("projects", "describe", project, "--format=json")["projectNumber"]
    builder = f"serviceAccount:{number}-compute@developer.gserviceaccount.com"
    bind(gcloud, ("projects",), (project,), BUILDER_ROLE, builder, "--condition=None", "--format=none")

    if gcloud.maybe_json("storage", "buckets", "describe", f"gs://{bucket}", p, "--format=json") is None:
        gcloud.run("storage", "buckets", "create", f"gs://{bucket}", p, f"--location={region}",
                   "--uniform-bucket-level-access", "--public-access-prevention")
    if gcloud.maybe_json("iam", "service-accounts", "describe", email, p, "--format=json") is None:
        gcloud.run("iam", "service-accounts", "create", account_name, p,
                   "--display-name=tavus-callbacks function")
    bind(gcloud, ("storage", "buckets"), (f"gs://{bucket}", p), BUCKET_ROLE, member)

    if gcloud.maybe_json("secrets", "describe", secret, p, "--format=json") is None:
        gcloud.run("secrets", "create", secret, p, "--replication-policy=automatic", "--data-file=-",
                   stdin=secrets.token_urlsafe(32))
    bind(gcloud, ("secrets",), (secret, p), SECRET_ROLE, member)
    latest = gcloud.json("secrets", "versions", "describe", "latest", f"--secret={secret}", p, "--format=json")
    version = str(latest["name"]).rsplit("/", 1)[-1]
    token = (gcloud.run("secrets", "versions", "access", version, f"--secret={secret}", p) or "").split(",")[0].strip()

    bundle = build_bundle("gcp", Path(args.out) / "gcp")
    gcloud.run("functions", "deploy", function, "--gen2", p, f"--region={region}", "--runtime=python313",
               f"--source={bundle.path}", "--entry-point=tavus_callback", "--trigger-http",
               "--allow-unauthenticated" if access == "allusers" else "--no-allow-unauthenticated",
               f"--service-account={email}", f"--update-env-vars=TAVUS_STORE_URL=gs://{bucket}/{prefix}",
               f"--update-secrets=TAVUS_CALLBACK_TOKENS={secret}:{version}", "--memory=512Mi", "--timeout=15s",
               "--quiet")
    if access == "no-invoker-check":
        gcloud.run("run", "services", "update", function, p, f"--region={region}", "--no-invoker-iam-check",
                   "--quiet")
    described = gcloud.json("functions", "describe", function, "--gen2", p, f"--region={region}", "--format=json")
    url = str(described["serviceConfig"]["uri"]).rstrip("/") + "/"
    check_endpoint(url, token, wait=args.wait)
    print(f"callback_url: {url}?token={token}")
    print(f"store_url:    gs://{bucket}/{prefix}")
    return 0


def bind(gcloud: Cli, group: tuple[str, ...], target: tuple[str, ...], role: str, member: str, *extra: str) -> None:
    """Grant `role` on a resource to `member` unless its IAM policy already does without a condition."""
    policy = gcloud.json(*group, "get-iam-policy", *target, "--format=json") or {}
    if not any(b.get("role") == role and member in b.get("members", []) and not b.get("condition")
               for b in policy.get("bindings", [])):
        gcloud.run(*group, "add-iam-policy-binding", *target, f"--member={member}", f"--role={role}", *extra)
