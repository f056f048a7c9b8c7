"""`tavus-callbacks deploy gcp`: bucket, service account, secret, roles and the callback function (`gcloud
functions deploy --gen2`), then the derive function on the bucket's `finalized` events (Eventarc, with retries),
its dead-letter topic and alert; created or reused. The callback function reads the token secret's version that
is `latest` at each run, so a rotation (add a version, deploy again) is explicit."""

from __future__ import annotations

import argparse
import json
import secrets
from collections.abc import Callable, Sequence
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

APIS = ("cloudfunctions.googleapis.com", "run.googleapis.com", "cloudbuild.googleapis.com",
        "artifactregistry.googleapis.com", "secretmanager.googleapis.com", "storage.googleapis.com",
        "iam.googleapis.com", "eventarc.googleapis.com", "pubsub.googleapis.com", "logging.googleapis.com",
        "monitoring.googleapis.com")
BUILDER_ROLE = "roles/cloudbuild.builds.builder"
BUCKET_ROLE = "roles/storage.objectUser"
SECRET_ROLE = "roles/secretmanager.secretAccessor"
ACCESS = ("allusers", "no-invoker-check")
# The change feed: the bucket's `finalized` events through Eventarc (a Pub/Sub push subscription underneath).
FINALIZED = "google.cloud.storage.object.v1.finalized"
PUBLISHER_ROLE = "roles/pubsub.publisher"  # the Cloud Storage service agent publishes the bucket's events
RECEIVER_ROLE = "roles/eventarc.eventReceiver"  # the trigger's service account receives them
INVOKER_ROLE = "roles/run.invoker"  # and invokes the derive function with them
SUBSCRIBER_ROLE = "roles/pubsub.subscriber"  # the Pub/Sub service agent moves a dead letter off the subscription
DELIVERY_ATTEMPTS = 10  # deliveries of one event (retried with backoff) before it goes to the dead-letter topic
DEAD_LETTER_RETENTION = "7d"
FAILURES_METRIC = "tavus-derive-failures"
ALERT_NAME = "tavus-callbacks: derived work is failing"


# The flags naming what is created or reused (kept in the settings file), as --help lists them.
NAMES = {
    "--project": "Google Cloud project id (default: saved, else gcloud's configured one)",
    "--region": "region of the function and the bucket (default: saved, else us-central1)",
    "--bucket": "recording bucket (default: <project>-tavus-recordings)",
    "--prefix": "key prefix of the callback folders inside the bucket (default: none)",
    "--function": "function name (default: tavus-callback)",
    "--derive-function": "name of the function deriving from the bucket's events (default: tavus-derive)",
    "--dead-letter-topic": "Pub/Sub topic of events whose derive kept failing (default: tavus-derive-dead-letter)",
    "--service-account": "name of the function's service account (default: tavus-callbacks)",
    "--secret": "Secret Manager secret holding the token(s) (default: tavus-callback-tokens)",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_names(parser, NAMES)
    parser.add_argument("--access", choices=ACCESS,
                        help="allusers: grant roles/run.invoker to allUsers (default); no-invoker-check: turn the "
                             "Cloud Run invoker check off instead, where an organization policy refuses allUsers")
    parser.add_argument("--forward", metavar="URL", help=webhooks.FORWARD_HELP + " (set on the derive function)")
    add_names(parser, {"--webhook-secret": "Secret Manager secret holding the webhook signing secret(s) "
                                           f"(default: {webhooks.SECRET_NAME})"})


@dataclass
class Names:
    """What `deploy gcp` creates or reuses, from the flags, else the settings file, else the defaults."""

    project: str
    region: str
    bucket: str
    prefix: str
    function: str
    derive_function: str
    dead_letter: str
    account_name: str
    secret: str
    access: str
    forward: str
    webhook_secret: str
    has_webhook: bool

    @property
    def p(self) -> str:
        return f"--project={self.project}"

    @property
    def member(self) -> str:
        """The functions' service account, as an IAM member."""
        return f"serviceAccount:{self.account_name}@{self.project}.iam.gserviceaccount.com"

    @property
    def email(self) -> str:
        return self.member.split(":", 1)[1]

    @classmethod
    def pick(cls, args: argparse.Namespace, gcloud: Cli) -> Names:
        """The names of this run, saved for the next one; a DeployError when there is no login or project."""
        settings = SettingsFile(Path(args.settings))
        if not gcloud.json("auth", "list", "--filter=status:ACTIVE", "--format=json"):
            raise DeployError("gcloud has no active account: run `gcloud auth login`")
        project = settings.pick("PROJECT", args.project,
                                lambda: (gcloud.run("config", "get-value", "project") or "").strip())
        if not project:
            raise DeployError("no project: give --project PROJECT_ID (or run `gcloud config set project PROJECT_ID`)")
        names = cls(
            project=project,
            region=settings.pick("REGION", args.region, lambda: "us-central1"),
            bucket=settings.pick("BUCKET", args.bucket, lambda: f"{project}-tavus-recordings"),
            prefix=settings.pick("PREFIX", args.prefix),
            function=settings.pick("FUNCTION", args.function, lambda: "tavus-callback"),
            derive_function=settings.pick("DERIVE_FUNCTION", args.derive_function, lambda: "tavus-derive"),
            dead_letter=settings.pick("DEAD_LETTER_TOPIC", args.dead_letter_topic,
                                      lambda: "tavus-derive-dead-letter"),
            account_name=settings.pick("SERVICE_ACCOUNT", args.service_account, lambda: "tavus-callbacks"),
            secret=settings.pick("SECRET", args.secret, lambda: "tavus-callback-tokens"),
            access=settings.pick("ACCESS", args.access, lambda: "allusers"),
            forward=settings.pick("FORWARD_URL", args.forward),
            webhook_secret=settings.pick("WEBHOOK_SECRET", args.webhook_secret, lambda: webhooks.SECRET_NAME),
            has_webhook=False)
        names.has_webhook = webhooks.check_forward(names.forward)
        settings.save("names used by `tavus-callbacks deploy gcp`; the next run reuses them")
        return names


def run(args: argparse.Namespace) -> int:
    gcloud = Cli("gcloud", "install the Google Cloud CLI (cloud.google.com/sdk) and run `gcloud auth login`")
    names = Names.pick(args, gcloud)
    p = names.p
    number = enable_project(gcloud, names)
    bucket_location = bucket_and_account(gcloud, names)
    version, token = secret_version(gcloud, names, names.secret, lambda: secrets.token_urlsafe(32))
    token = token.split(",")[0].strip()
    forwarding = [f"--update-env-vars=^|^TAVUS_FORWARD_URL={names.forward}"] if names.forward else []  # commas
    signing = ""
    if names.has_webhook:
        signing_version, signing = secret_version(gcloud, names, names.webhook_secret, webhooks.new_secret)
        signing = webhooks.newest(signing, f"the secret {names.webhook_secret}")
        forwarding.append(f"--update-secrets=TAVUS_WEBHOOK_SECRETS={names.webhook_secret}:{signing_version}")

    bundle = build_bundle("gcp", Path(args.out) / "gcp")
    deploy_callback(gcloud, names, bundle.path, version)
    feed = Feed(gcloud, names.project, str(number), names.region, names.member, names.derive_function,
                names.dead_letter)
    feed.deploy(names.bucket, bucket_location, names.prefix, bundle.path, wait=args.wait, forwarding=forwarding)
    described = gcloud.json("functions", "describe", names.function, "--gen2", p, f"--region={names.region}",
                            "--format=json")
    url = str(described["serviceConfig"]["uri"]).rstrip("/") + "/"
    check_endpoint(url, token, wait=args.wait)
    print_urls(url, token, f"gs://{names.bucket}/{names.prefix}", names.forward, signing)
    return 0


def enable_project(gcloud: Cli, names: Names) -> str:
    """Enable the APIs the deploy uses and let Cloud Build's account build; the project number."""
    p = names.p
    enabled = {s["config"]["name"] for s in gcloud.json("services", "list", "--enabled", p, "--format=json") or []}
    missing = [api for api in APIS if api not in enabled]
    if missing:
        gcloud.run("services", "enable", *missing, p)
    number = str(gcloud.json("projects", "describe", names.project, "--format=json")["projectNumber"])
    builder = f"serviceAccount:{number}-compute@developer.gserviceaccount.com"
    bind(gcloud, ("projects",), (names.project,), BUILDER_ROLE, builder, "--condition=None", "--format=none")
    return number


def bucket_and_account(gcloud: Cli, names: Names) -> str:
    """The recording bucket and the functions' service account, made when missing, the account granted the
    bucket; the bucket's location."""
    p = names.p
    described = gcloud.maybe_json("storage", "buckets", "describe", f"gs://{names.bucket}", p, "--format=json")
    if described is None:
        gcloud.run("storage", "buckets", "create", f"gs://{names.bucket}", p, f"--location={names.region}",
                   "--uniform-bucket-level-access", "--public-access-prevention")
        described = {"location": names.region}
    if gcloud.maybe_json("iam", "service-accounts", "describe", names.email, p, "--format=json") is None:
        gcloud.run("iam", "service-accounts", "create", names.account_name, p,
                   "--display-name=tavus-callbacks function")
    bind(gcloud, ("storage", "buckets"), (f"gs://{names.bucket}", p), BUCKET_ROLE, names.member)
    return str(described.get("location") or names.region)


def secret_version(gcloud: Cli, names: Names, secret: str, make: Callable[[], str]) -> tuple[str, str]:
    """The latest version of the Secret Manager secret (made with `make` when missing, readable by the functions'
    service account) and its value."""
    p = names.p
    if gcloud.maybe_json("secrets", "describe", secret, p, "--format=json") is None:
        gcloud.run("secrets", "create", secret, p, "--replication-policy=automatic", "--data-file=-", stdin=make())
    bind(gcloud, ("secrets",), (secret, p), SECRET_ROLE, names.member)
    latest = gcloud.json("secrets", "versions", "describe", "latest", f"--secret={secret}", p, "--format=json")
    version = str(latest["name"]).rsplit("/", 1)[-1]
    return version, gcloud.run("secrets", "versions", "access", version, f"--secret={secret}", p) or ""


def deploy_callback(gcloud: Cli, names: Names, source: Path, token_version: str) -> None:
    """The callback function, open to unauthenticated callers as --access says (the token guards it)."""
    p, region = names.p, f"--region={names.region}"
    gcloud.run("functions", "deploy", names.function, "--gen2", p, region, "--runtime=python313",
               f"--source={source}", "--entry-point=tavus_callback", "--trigger-http",
               "--allow-unauthenticated" if names.access == "allusers" else "--no-allow-unauthenticated",
               f"--service-account={names.email}", f"--update-env-vars=TAVUS_STORE_URL=gs://{names.bucket}/{names.prefix}",
               f"--update-secrets=TAVUS_CALLBACK_TOKENS={names.secret}:{token_version}", "--memory=512Mi",
               "--timeout=15s", "--quiet")
    if names.access == "no-invoker-check":
        gcloud.run("run", "services", "update", names.function, p, region, "--no-invoker-iam-check", "--quiet")


def bind(gcloud: Cli, group: tuple[str, ...], target: tuple[str, ...], role: str, member: str, *extra: str) -> None:
    """Grant `role` on a resource to `member` unless its IAM policy already does without a condition."""
    policy = gcloud.json(*group, "get-iam-policy", *target, "--format=json") or {}
    if not any(b.get("role") == role and member in b.get("members", []) and not b.get("condition")
               for b in policy.get("bindings", [])):
        gcloud.run(*group, "add-iam-policy-binding", *target, f"--member={member}", f"--role={role}", *extra)


@dataclass
class Feed:
    """The derive function on the bucket's `finalized` events, what Eventarc needs to deliver them, and what
    happens to an event whose derive keeps failing: a dead-letter topic (kept by a subscription) and an alert."""

    gcloud: Cli
    project: str
    number: str
    region: str
    member: str  # the service account both functions and the trigger run as
    function: str
    dead_letter: str

    @property
    def p(self) -> str:
        return f"--project={self.project}"

    def deploy(self, bucket: str, bucket_location: str, prefix: str, source: Path, *, wait: float,
               forwarding: Sequence[str] = ()) -> None:
        gcloud, p = self.gcloud, self.p
        agent = (gcloud.run("storage", "service-agent", p) or "").strip()
        if not agent:
            raise DeployError("`gcloud storage service-agent` printed no Cloud Storage service agent")
        bind(gcloud, ("projects",), (self.project,), PUBLISHER_ROLE, f"serviceAccount:{agent}",
             "--condition=None", "--format=none")
        bind(gcloud, ("projects",), (self.project,), RECEIVER_ROLE, self.member, "--condition=None",
             "--format=none")
        email = self.member.split(":", 1)[1]
        deploy = ("functions", "deploy", self.function, "--gen2", p, f"--region={self.region}",
                  "--runtime=python313", f"--source={source}", "--entry-point=tavus_derive",
                  f"--trigger-event-filters=type={FINALIZED}", f"--trigger-event-filters=bucket={bucket}",
                  f"--trigger-location={bucket_location.lower()}", f"--trigger-service-account={email}", "--retry",
                  f"--service-account={email}", f"--update-env-vars=TAVUS_STORE_URL=gs://{bucket}/{prefix}",
                  *forwarding, "--memory=512Mi", "--timeout=60s", "--quiet")
        # A project's first Eventarc trigger waits for the roles of Google's service agents to propagate.
        retrying(lambda: gcloud.run(*deploy), ("Eventarc Service Agent", "unable to publish", "propagated"),
                 "Google's service agents do not have their roles yet", wait=wait)
        bind(gcloud, ("run", "services"), (self.function, p, f"--region={self.region}"), INVOKER_ROLE, self.member)
        self.dead_letter_for(self.subscription())
        self.alert()

    def subscription(self) -> str:
        """The Pub/Sub subscription Eventarc made for the derive function's trigger."""
        described = self.gcloud.json("functions", "describe", self.function, "--gen2", self.p,
                                     f"--region={self.region}", "--format=json")
        trigger = str((described.get("eventTrigger") or {}).get("trigger") or "")
        if "/triggers/" not in trigger:
            raise DeployError(f"the function {self.function} has no Eventarc trigger: deploy again")
        location = trigger.split("/locations/", 1)[1].split("/", 1)[0]
        shown = self.gcloud.json("eventarc", "triggers", "describe", trigger.rsplit("/", 1)[1],
                                 f"--location={location}", self.p, "--format=json")
        subscription = str(((shown.get("transport") or {}).get("pubsub") or {}).get("subscription") or "")
        if not subscription:
            raise DeployError(f"the Eventarc trigger {trigger} has no Pub/Sub subscription yet: deploy again")
        return subscription

    def dead_letter_for(self, subscription: str) -> None:
        """The dead-letter topic, a subscription keeping what reaches it, and the trigger's subscription sending
        there after DELIVERY_ATTEMPTS; the Pub/Sub service agent may publish and acknowledge them."""
        gcloud, p = self.gcloud, self.p
        topic = f"projects/{self.project}/topics/{self.dead_letter}"
        if gcloud.maybe_json("pubsub", "topics", "describe", self.dead_letter, p, "--format=json") is None:
            gcloud.run("pubsub", "topics", "create", self.dead_letter, p)
        if gcloud.maybe_json("pubsub", "subscriptions", "describe", self.dead_letter, p, "--format=json") is None:
            gcloud.run("pubsub", "subscriptions", "create", self.dead_letter, f"--topic={self.dead_letter}", p,
                       f"--message-retention-duration={DEAD_LETTER_RETENTION}")
        agent = f"serviceAccount:service-{self.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
        bind(gcloud, ("pubsub", "topics"), (self.dead_letter, p), PUBLISHER_ROLE, agent)
        bind(gcloud, ("pubsub", "subscriptions"), (subscription, p), SUBSCRIBER_ROLE, agent)
        policy = gcloud.json("pubsub", "subscriptions", "describe", subscription, p, "--format=json")
        wanted = {"deadLetterTopic": topic, "maxDeliveryAttempts": DELIVERY_ATTEMPTS}
        if (policy or {}).get("deadLetterPolicy") != wanted:  # Eventarc remakes it when the trigger changes
            gcloud.run("pubsub", "subscriptions", "update", subscription, p, f"--dead-letter-topic={topic}",
                       f"--max-delivery-attempts={DELIVERY_ATTEMPTS}")

    def alert(self) -> None:
        """A log-based metric counting failed derives, and an alert policy on it and on dead letters kept."""
        gcloud, p = self.gcloud, self.p
        if gcloud.maybe_json("logging", "metrics", "describe", FAILURES_METRIC, p, "--format=json") is None:
            # Every ERROR line of the derive function is a derive that raised (the core logs key and cause).
            log_filter = (f'resource.type="cloud_run_revision" AND resource.labels.service_name="{self.function}" '
                          'AND severity>=ERROR')
            gcloud.run("logging", "metrics", "create", FAILURES_METRIC, p, f"--log-filter={log_filter}",
                       "--description=tavus-callbacks: a derive that raised (the event is delivered again)")
        found = gcloud.json("monitoring", "policies", "list", p, f'--filter=displayName="{ALERT_NAME}"',
                            "--format=json")
        if not found:
            with private_file(json.dumps(self.policy()), ".json") as path:
                gcloud.run("monitoring", "policies", "create", p, f"--policy-from-file={path}")

    def policy(self) -> dict[str, Any]:
        def condition(name: str, metric_filter: str, aligner: str) -> dict[str, Any]:
            return {"displayName": name, "conditionThreshold": {
                "filter": metric_filter, "comparison": "COMPARISON_GT", "thresholdValue": 0, "duration": "0s",
                "aggregations": [{"alignmentPeriod": "300s", "perSeriesAligner": aligner}]}}

        return {"displayName": ALERT_NAME, "combiner": "OR", "documentation": {"mimeType": "text/markdown", "content": (
            f"Events whose derive (conversation.json, derived documents, bus) keeps failing: the function "
            f"`{self.function}` logs each failure with the event key and the cause; after {DELIVERY_ATTEMPTS} "
            f"deliveries an event goes to the Pub/Sub topic `{self.dead_letter}` (subscription of the same name). "
            "Fix the cause, then run `tavus-callbacks repair`.")},
            "conditions": [
                condition("events in the dead-letter subscription",
                          'resource.type="pubsub_subscription" AND '
                          f'resource.labels.subscription_id="{self.dead_letter}" AND '
                          'metric.type="pubsub.googleapis.com/subscription/num_undelivered_messages"', "ALIGN_MAX"),
                condition("derive failures", 'resource.type="cloud_run_revision" AND '
                          f'metric.type="logging.googleapis.com/user/{FAILURES_METRIC}"', "ALIGN_SUM"),
            ]}
