"""`tavus-callbacks deploy gcp`: bucket, service account, secret, roles and the callback function (`gcloud
functions deploy --gen2`), then the derive function on the bucket's `finalized` events (Eventarc, with retries),
its dead-letter topic and alert; created or reused. The callback function reads the token secret's version that
is `latest` at each run, so a rotation (add a version, deploy again) is explicit."""

from __future__ import annotations

import argparse
import json
import secrets
import time
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
    check_endpoint,
    log,
    private_file,
    wait_interval,
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--project", help="Google Cloud project id (default: saved, else gcloud's configured one)")
    parser.add_argument("--region", help="region of the function and the bucket (default: saved, else us-central1)")
    parser.add_argument("--bucket", help="recording bucket (default: <project>-tavus-recordings)")
    parser.add_argument("--prefix", help="key prefix of the callback folders inside the bucket (default: none)")
    parser.add_argument("--function", help="function name (default: tavus-callback)")
    parser.add_argument("--derive-function",
                        help="name of the function deriving from the bucket's events (default: tavus-derive)")
    parser.add_argument("--dead-letter-topic",
                        help="Pub/Sub topic of events whose derive kept failing (default: tavus-derive-dead-letter)")
    parser.add_argument("--service-account", help="name of the function's service account (default: tavus-callbacks)")
    parser.add_argument("--secret", help="Secret Manager secret holding the token(s) (default: tavus-callback-tokens)")
    parser.add_argument("--access", choices=ACCESS,
                        help="allusers: grant roles/run.invoker to allUsers (default); no-invoker-check: turn the "
                             "Cloud Run invoker check off instead, where an organization policy refuses allUsers")
    parser.add_argument("--forward", metavar="URL", help=webhooks.FORWARD_HELP + " (set on the derive function)")
    parser.add_argument("--webhook-secret",
                        help=f"Secret Manager secret holding the webhook signing secret(s) (default: "
                             f"{webhooks.SECRET_NAME})")


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
    derive_function = settings.pick("DERIVE_FUNCTION", args.derive_function, lambda: "tavus-derive")
    dead_letter = settings.pick("DEAD_LETTER_TOPIC", args.dead_letter_topic, lambda: "tavus-derive-dead-letter")
    account_name = settings.pick("SERVICE_ACCOUNT", args.service_account, lambda: "tavus-callbacks")
    secret = settings.pick("SECRET", args.secret, lambda: "tavus-callback-tokens")
    access = settings.pick("ACCESS", args.access, lambda: "allusers")
    forward = settings.pick("FORWARD_URL", args.forward)
    webhook_secret = settings.pick("WEBHOOK_SECRET", args.webhook_secret, lambda: webhooks.SECRET_NAME)
    has_webhook = webhooks.check_forward(forward)
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

    described_bucket = gcloud.maybe_json("storage", "buckets", "describe", f"gs://{bucket}", p, "--format=json")
    if described_bucket is None:
        gcloud.run("storage", "buckets", "create", f"gs://{bucket}", p, f"--location={region}",
                   "--uniform-bucket-level-access", "--public-access-prevention")
        described_bucket = {"location": region}
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

    forwarding = [f"--update-env-vars=^|^TAVUS_FORWARD_URL={forward}"] if forward else []  # commas are its own
    signing = ""
    if has_webhook:
        if gcloud.maybe_json("secrets", "describe", webhook_secret, p, "--format=json") is None:
            gcloud.run("secrets", "create", webhook_secret, p, "--replication-policy=automatic", "--data-file=-",
                       stdin=webhooks.new_secret())
        bind(gcloud, ("secrets",), (webhook_secret, p), SECRET_ROLE, member)
        latest = gcloud.json("secrets", "versions", "describe", "latest", f"--secret={webhook_secret}", p,
                             "--format=json")
        signing_version = str(latest["name"]).rsplit("/", 1)[-1]
        signing = webhooks.newest(gcloud.run("secrets", "versions", "access", signing_version,
                                             f"--secret={webhook_secret}", p) or "", f"the secret {webhook_secret}")
        forwarding.append(f"--update-secrets=TAVUS_WEBHOOK_SECRETS={webhook_secret}:{signing_version}")

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
    feed = Feed(gcloud, project, str(number), region, member, derive_function, dead_letter)
    feed.deploy(bucket, str(described_bucket.get("location") or region), prefix, bundle.path, wait=args.wait,
                forwarding=forwarding)
    described = gcloud.json("functions", "describe", function, "--gen2", p, f"--region={region}", "--format=json")
    url = str(described["serviceConfig"]["uri"]).rstrip("/") + "/"
    check_endpoint(url, token, wait=args.wait)
    print(f"callback_url: {url}?token={token}")
    print(f"store_url:    gs://{bucket}/{prefix}")
    if signing:
        print(f"webhook_url:    {forward}")
        print(f"webhook_secret: {signing}  (give it to the receiver; it signs every delivery)")
    return 0


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
        retrying(lambda: gcloud.run(*deploy), ("Eventarc Service Agent", "unable to publish", "propagated"), wait=wait)
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


def retrying(step: Callable[[], object], words: tuple[str, ...], *, wait: float) -> None:
    """Run `step` again while it fails saying one of `words`, for up to `wait` seconds."""
    deadline = time.monotonic() + wait
    while True:
        try:
            step()
            return
        except DeployError as exc:
            if not any(w.lower() in str(exc).lower() for w in words) or time.monotonic() > deadline:
                raise
            log("  Google's service agents do not have their roles yet; waiting")
            time.sleep(wait_interval(wait))
