"""`tavus-callbacks doctor`: the four store primitives tried on a probe object with the running identity; with an
S3 store, the bucket's region and its EventBridge notifications (the derive step's change feed) and, with
`--role-arn`, the vendor's writer role read from IAM and evaluated against what the vendor asks for (GCS and
Azure trust cannot be checked: their federation fields are not published)."""

from __future__ import annotations

import argparse
import json
import re
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from tavus_callbacks.cli.recording_storage import (
    EXTERNAL_ID,
    MIN_SESSION_SECONDS,
    VENDOR_ACCOUNT,
    VENDOR_PRINCIPAL,
    WRITER_ACTIONS,
    recording_storage,
    role_name,
)
from tavus_callbacks.errors import ConfigError, PreconditionFailed, needs_extra
from tavus_callbacks.stores import Store, normalize_prefix, open_store, split_store_url

PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"
PROBE_FOLDER = "_doctor/"
ASSUME_FAILURE = "unable to assume role with given parameters"
# Which of the writer actions apply to the bucket itself; the others apply to its objects (bucket/*).
BUCKET_ACTIONS = frozenset({"s3:ListBucket", "s3:ListBucketVersions", "s3:ListBucketMultipartUploads"})


@dataclass(frozen=True, slots=True)
class Check:
    """One verdict: PASS, FAIL or SKIP, what was checked, and the fix when it failed."""

    status: str
    what: str
    fix: str = ""

    def line(self) -> str:
        return f"{self.status}  {self.what}" + (f"  fix: {self.fix}" if self.fix else "")


# -- the store ---------------------------------------------------------------------------------------

def _store_fix(url: str) -> str:
    scheme, _ = split_store_url(url)
    return {
        "s3": "check the bucket name and region, the AWS credentials (default chain), and AWS_ENDPOINT_URL "
              "when using an emulator",
        "gs": "check the bucket name and Application Default Credentials (STORAGE_EMULATOR_HOST for an emulator)",
        "azure": "check the container, AZURE_STORAGE_CONNECTION_STRING or AZURE_STORAGE_ACCOUNT_URL and the "
                 "identity's 'Storage Blob Data Contributor' role",
    }.get("gs" if scheme == "gcs" else scheme, "check that the SQLite file's folder exists and is writable")


def check_store(url: str) -> Iterator[Check]:
    try:
        store, prefix = open_store(url, create=False)  # a mistyped SQLite path is "no such store", not a new file
        probe = f"{normalize_prefix(prefix)}{PROBE_FOLDER}{uuid.uuid4().hex}.json"
        store.stat(probe)
    except Exception as exc:
        yield Check(FAIL, f"store {url} answers ({_brief(exc)})", _store_fix(url))
        yield Check(SKIP, "create, read, compare-and-swap and delete a probe object: the store did not answer")
        return
    yield Check(PASS, f"store {url} answers")
    yield from _probe(store, probe, _store_fix(url))


def _probe(store: Store, key: str, fix: str) -> Iterator[Check]:
    body = json.dumps({"probe": "tavus-callbacks doctor", "key": key}).encode()
    version: dict[str, str] = {}

    def create() -> str | None:
        return None if store.create(key, body) else "the probe key already existed"

    def create_again() -> str | None:
        if store.create(key, b"{}"):
            return "a second create-only write replaced the object: exactly-once storage needs conditional writes"
        return None

    def read() -> str | None:
        blob = store.read(key)
        if blob is None:
            return "the probe object was not found after it was written"
        if blob.data != body:
            return "the probe object read back differs from what was written"
        version["v"] = blob.version
        return None

    def cas() -> str | None:
        new = store.replace(key, body + b"\n", version["v"])
        try:
            store.replace(key, body, version["v"])
        except PreconditionFailed:
            version["v"] = new
            return None
        return "a replace at a stale version succeeded: conversation.json updates could be lost"

    def delete() -> str | None:
        store.delete(key)
        return "the probe object is still there after delete" if store.stat(key) is not None else None

    conditional = "use a store backend with conditional writes (create-only and compare-and-swap)"
    steps: list[tuple[str, Callable[[], str | None], str]] = [
        (f"create-only write of probe object {key}", create, fix),
        ("a second create-only write of the same key is refused", create_again, conditional),
        ("read back the probe object with its version", read, fix),
        ("compare-and-swap: replace at the current version succeeds, at a stale version is refused", cas,
         conditional),
        ("delete the probe object", delete, fix),
    ]
    failed = False
    for what, step, semantic_fix in steps:
        if failed and step is not delete:
            yield Check(SKIP, f"{what}: an earlier step failed")
            continue
        try:
            problem, step_fix = step(), semantic_fix
        except Exception as exc:  # the backend refused: usually access or reachability
            problem, step_fix = _brief(exc), fix
        if problem:
            failed = True
            yield Check(FAIL, f"{what} ({problem})", step_fix)
        else:
            yield Check(PASS, what)


# -- IAM policy evaluation ---------------------------------------------------------------------------

def _as_list(value: Any) -> list[Any]:
    return [] if value is None else value if isinstance(value, list) else [value]


def _document(value: Any) -> dict[str, Any]:
    """A policy document as IAM returns it: already a dict (boto3 decodes it) or URL-encoded JSON."""
    return value if isinstance(value, dict) else dict(json.loads(unquote(str(value))))


def _statements(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in _as_list(doc.get("Statement")) if isinstance(s, dict)]


def glob_match(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    """IAM wildcard matching: `*` any run of characters, `?` one character."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL) is not None


def _covers(statement: dict[str, Any], key: str, value: str, ignore_case: bool = False) -> bool:
    """Whether the statement's `key` (Action, Resource) matches `value`, or its `NotKey` does not."""
    matched = any(glob_match(p, value, ignore_case=ignore_case)
                  for p in _as_list(statement.get(key, statement.get(f"Not{key}"))))
    return matched if key in statement else not matched


def is_allowed(documents: list[dict[str, Any]], action: str, resource: str) -> bool:
    """An Allow covers the action on the resource and no unconditional Deny does (an explicit Deny wins).

    `resource` may itself hold a wildcard (`arn:aws:s3:::b/*`): a pattern covers it only if it covers every
    object, so `b/*` or `*` do and `b/recordings/*` does not.
    """
    allowed = False
    for doc in documents:
        for statement in _statements(doc):
            if not (_covers(statement, "Action", action, True) and _covers(statement, "Resource", resource)):
                continue
            if statement.get("Effect") == "Deny" and not statement.get("Condition"):
                return False
            if statement.get("Effect") == "Allow":
                allowed = True
    return allowed


def _principals(statement: dict[str, Any]) -> list[str]:
    principal = statement.get("Principal")
    if principal == "*":
        return ["*"]
    return [str(p) for p in _as_list(principal.get("AWS"))] if isinstance(principal, dict) else []


def _external_ids(statement: dict[str, Any]) -> list[str]:
    """The values an `sts:ExternalId` condition (StringEquals or StringLike) accepts."""
    found: list[str] = []
    for operator, clause in (statement.get("Condition") or {}).items():
        if not isinstance(clause, dict) or operator.split(":")[-1] not in ("StringEquals", "StringLike"):
            continue
        for key, values in clause.items():
            if key.lower() == "sts:externalid":
                found.extend(str(v) for v in _as_list(values))
    return found


def check_trust(trust: dict[str, Any]) -> Iterator[Check]:
    """Trusted by the vendor's account (and by nobody else), with sts:ExternalId = tavus."""
    assume = [s for s in _statements(trust) if s.get("Effect") == "Allow"
              and any(glob_match(a, "sts:AssumeRole", ignore_case=True) for a in _as_list(s.get("Action")))]
    vendor = [s for s in assume if any(p in (VENDOR_PRINCIPAL, VENDOR_ACCOUNT) for p in _principals(s))]
    yield _principal_check([p for s in assume for p in _principals(s)], bool(vendor))
    yield _external_id_check([i for s in (vendor or assume) for i in _external_ids(s)])


def _principal_check(principals: list[str], trusts_vendor: bool) -> Check:
    """Whom the trust policy's AssumeRole statements trust: the vendor, and not any account."""
    if "*" in principals:
        return Check(FAIL, "trust policy allows any AWS account (Principal \"*\")",
                     f"trust only {VENDOR_PRINCIPAL}: the ExternalId '{EXTERNAL_ID}' is public, so it protects "
                     "nothing on its own")
    if trusts_vendor:
        return Check(PASS, f"trust policy allows sts:AssumeRole for {VENDOR_PRINCIPAL}")
    now = ", ".join(sorted(set(principals))) or "no AWS principal"
    return Check(FAIL, f"trust policy does not trust {VENDOR_PRINCIPAL} (it trusts {now})",
                 f'add a trust statement allowing sts:AssumeRole for {{"AWS": "{VENDOR_PRINCIPAL}"}} '
                 "(the vendor's recording infrastructure)")


def _external_id_check(ids: list[str]) -> Check:
    """The sts:ExternalId values the trust statements accept: the one the vendor sends among them."""
    condition = f'"Condition": {{"StringEquals": {{"sts:ExternalId": "{EXTERNAL_ID}"}}}}'
    if any(glob_match(i, EXTERNAL_ID) for i in ids):
        return Check(PASS, f"trust policy requires sts:ExternalId = {EXTERNAL_ID}")
    if ids:
        return Check(FAIL, f"trust policy requires sts:ExternalId {', '.join(repr(i) for i in ids)}, "
                           f"but the vendor sends '{EXTERNAL_ID}'", f"set {condition} on the trust statement")
    return Check(FAIL, "trust policy has no sts:ExternalId condition",
                 f"add {condition} to the statement that trusts {VENDOR_PRINCIPAL}")


def check_session_duration(seconds: int, name: str) -> Check:
    if seconds >= MIN_SESSION_SECONDS:
        return Check(PASS, f"MaxSessionDuration is {seconds} s (at least {MIN_SESSION_SECONDS})")
    return Check(FAIL, f"MaxSessionDuration is {seconds} s, below {MIN_SESSION_SECONDS}",
                 f"aws iam update-role --role-name {name} --max-session-duration {MIN_SESSION_SECONDS}: the vendor "
                 f"asks for 12-hour sessions, and with less, room creation fails with `{ASSUME_FAILURE}`")


def _writer_resources(bucket: str) -> tuple[str, str]:
    return f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"


def _resource_of(action: str, bucket: str) -> str:
    """What a writer action applies to: the bucket, or every object in it."""
    bucket_arn, objects_arn = _writer_resources(bucket)
    return bucket_arn if action in BUCKET_ACTIONS else objects_arn


def actions_check(missing: list[str], bucket: str, how: str) -> Check:
    """PASS when no writer action is `missing` ("<action> on <resource>"), else FAIL with the statement to attach;
    `how` says how the policies were evaluated."""
    bucket_arn, objects_arn = _writer_resources(bucket)
    if not missing:
        return Check(PASS, f"role policies allow the {len(WRITER_ACTIONS)} writer actions on {bucket_arn} "
                           f"and {objects_arn} ({how})")
    policy = json.dumps({"Effect": "Allow", "Action": list(WRITER_ACTIONS), "Resource": [bucket_arn, objects_arn]})
    return Check(FAIL, f"role policies do not allow {'; '.join(missing)} ({how})",
                 f"attach a policy with the statement {policy}")


def check_actions(documents: list[dict[str, Any]], bucket: str, how: str = "read from the role's policies") -> Check:
    """The eight writer actions evaluated from the policy documents, each on what it applies to."""
    missing = [f"{a} on {_resource_of(a, bucket)}" for a in WRITER_ACTIONS
               if not is_allowed(documents, a, _resource_of(a, bucket))]
    return actions_check(missing, bucket, how)


class SimulatorUnavailable(Exception):
    """IAM's policy simulator cannot be used here: the credentials may not call it, or the endpoint lacks it."""


# Error codes saying the credentials may not call the simulator, or the endpoint does not implement it.
DENIED_CODES = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"})
UNIMPLEMENTED_CODES = frozenset({"NotImplemented", "InvalidAction", "UnknownOperationException",
                                 "UnsupportedOperation"})


def simulate_actions(iam: Any, role_arn: str, bucket: str) -> Check:
    """The eight writer actions as IAM's SimulatePrincipalPolicy evaluates the role's policies (conditions,
    boundaries and explicit denies included); SimulatorUnavailable when it is denied or not implemented."""
    missing = []
    for resource in _writer_resources(bucket):
        actions = [a for a in WRITER_ACTIONS if _resource_of(a, bucket) == resource]
        decisions = _simulate(iam, role_arn, actions, resource)
        for action in actions:
            decision = decisions.get(action, "implicitDeny")
            if decision != "allowed":
                missing.append(f"{action} on {resource}"
                               + (" (explicitly denied)" if decision == "explicitDeny" else ""))
    missing.sort(key=lambda entry: WRITER_ACTIONS.index(entry.split(" ", 1)[0]))
    return actions_check(missing, bucket, "evaluated by IAM's policy simulator")


def _simulate(iam: Any, role_arn: str, actions: list[str], resource: str) -> dict[str, str]:
    """Each action's EvalDecision (allowed, explicitDeny, implicitDeny) on the one resource, for the role."""
    from botocore.exceptions import ClientError
    from botocore.parsers import ResponseParserError

    try:
        return {result["EvalActionName"]: result["EvalDecision"]
                for page in iam.get_paginator("simulate_principal_policy").paginate(
                    PolicySourceArn=role_arn, ActionNames=actions, ResourceArns=[resource])
                for result in page["EvaluationResults"]}
    except ResponseParserError as exc:  # an endpoint without the action (moto) answers what is not IAM's XML
        raise SimulatorUnavailable("with no IAM response: the endpoint does not implement it") from exc
    except ClientError as exc:
        code = _error_code(exc)
        if code in DENIED_CODES:
            raise SimulatorUnavailable(f"{code}: these credentials may not call it") from exc
        if code in UNIMPLEMENTED_CODES or _status_code(exc) in (404, 501):
            raise SimulatorUnavailable(f"{code}: the endpoint does not implement it") from exc
        raise


def _policy_documents(iam: Any, name: str) -> list[dict[str, Any]]:
    """The role's inline policies and the default version of each attached managed policy."""
    documents = [_document(iam.get_role_policy(RoleName=name, PolicyName=policy)["PolicyDocument"])
                 for page in iam.get_paginator("list_role_policies").paginate(RoleName=name)
                 for policy in page["PolicyNames"]]
    for page in iam.get_paginator("list_attached_role_policies").paginate(RoleName=name):
        for attached in page["AttachedPolicies"]:
            version = iam.get_policy(PolicyArn=attached["PolicyArn"])["Policy"]["DefaultVersionId"]
            documents.append(_document(iam.get_policy_version(PolicyArn=attached["PolicyArn"], VersionId=version)
                                       ["PolicyVersion"]["Document"]))
    return documents


IAM_READ_FIX = ("run doctor with credentials that may iam:GetRole and iam:SimulatePrincipalPolicy (or, instead of the "
                "latter, iam:ListRolePolicies, iam:GetRolePolicy, iam:ListAttachedRolePolicies, iam:GetPolicy and "
                "iam:GetPolicyVersion)")


def check_writer_role(iam: Any, role_arn: str, bucket: str) -> Iterator[Check]:
    """The vendor writer role: exists, trust, session duration and the eight actions on the bucket."""
    name = role_name(role_arn)
    try:
        role = iam.get_role(RoleName=name)["Role"]
    except Exception as exc:
        missing = _error_code(exc) == "NoSuchEntity"
        yield Check(FAIL, f"writer role {role_arn} can be read ({_brief(exc)})",
                    "create the role (template.yaml does) or fix the ARN" if missing else IAM_READ_FIX)
        yield Check(SKIP, "trust, session duration and permissions of the writer role: it could not be read")
        return
    yield Check(PASS, f"writer role {role_arn} exists")
    yield from check_trust(_document(role.get("AssumeRolePolicyDocument", {})))
    yield check_session_duration(int(role.get("MaxSessionDuration", 3600)), name)
    yield check_permissions(iam, role_arn, name, bucket)


def check_permissions(iam: Any, role_arn: str, name: str, bucket: str) -> Check:
    """The writer actions by IAM's policy simulator where these credentials may call it; else read from the
    role's policies and evaluated here (conditions not evaluated)."""
    try:
        return simulate_actions(iam, role_arn, bucket)
    except SimulatorUnavailable as exc:
        why = f"iam:SimulatePrincipalPolicy answered {exc}"
    try:
        documents = _policy_documents(iam, name)
    except Exception as exc:
        return Check(FAIL, f"read the writer role's policies ({_brief(exc)})", IAM_READ_FIX)
    return check_actions(documents, bucket, f"read from the role's policies, conditions not evaluated: {why}")


def bucket_region(s3: Any, bucket: str) -> tuple[Check, str | None]:
    """GetBucketLocation: the region to pass as bucket_region."""
    try:
        location = s3.get_bucket_location(Bucket=bucket).get("LocationConstraint")
    except Exception as exc:
        fix = ("create the bucket or fix its name" if _error_code(exc) == "NoSuchBucket"
               else "allow this identity s3:GetBucketLocation on the bucket, or read its region in the console")
        return Check(FAIL, f"region of bucket {bucket} ({_brief(exc)})", fix), None
    region = {None: "us-east-1", "": "us-east-1", "EU": "eu-west-1"}.get(location, location)
    return Check(PASS, f"bucket {bucket} is in region {region}: pass bucket_region \"{region}\""), region


def enable_eventbridge_command(bucket: str) -> str:
    """The commands that turn a bucket's EventBridge notifications on and keep its other notifications (a put
    replaces the whole configuration, so the current one is read and put back with EventBridge added)."""
    return (f"aws s3api get-bucket-notification-configuration --bucket {bucket} "
            "| jq -s '(.[0] // {}) + {\"EventBridgeConfiguration\": {}}' > notification.json && "
            f"aws s3api put-bucket-notification-configuration --bucket {bucket} "
            "--notification-configuration file://notification.json")


def check_eventbridge(s3: Any, bucket: str) -> Check:
    """GetBucketNotificationConfiguration holds EventBridgeConfiguration: the bucket's Object Created events reach
    EventBridge, whose rule (template.yaml) invokes the function's derive step for each new event object."""
    try:
        config = s3.get_bucket_notification_configuration(Bucket=bucket)
    except Exception as exc:
        return Check(FAIL, f"notification configuration of bucket {bucket} ({_brief(exc)})",
                     "allow this identity s3:GetBucketNotification on the bucket")
    if "EventBridgeConfiguration" in config:
        return Check(PASS, f"bucket {bucket} sends its events to EventBridge (the Lambda deployment derives "
                           "conversation.json from them)")
    return Check(FAIL, f"bucket {bucket} does not send its events to EventBridge: on AWS Lambda nothing derives "
                       "conversation.json, the derived documents or the forwarded events from new event objects",
                 enable_eventbridge_command(bucket))


FEDERATION = {
    "gs": "the vendor's Workload Identity Federation access to the bucket (pool, provider, service account)",
    "azure": "the vendor's Entra ID federated credential and its role on the container",
}


def _error_code(exc: Exception) -> str | None:
    response = getattr(exc, "response", None)
    return str(response.get("Error", {}).get("Code") or "") or None if isinstance(response, dict) else None


def _status_code(exc: Exception) -> int | None:
    response = getattr(exc, "response", None)
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode") if isinstance(response, dict) else None
    return int(status) if status is not None else None


def _brief(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__


def _aws_client(service: str) -> Any:
    with needs_extra("aws", "checking the S3 writer role", "boto3"):
        import boto3

    session: Any = boto3.session.Session()
    return session.client(service, region_name=session.region_name or "us-east-1")


def diagnose(store_url: str, role_arn: str | None = None, *, aws_client: Callable[[str], Any] = _aws_client,
             ) -> Iterator[Check]:
    """Every check for a store URL (and an S3 writer role), in order."""
    scheme, _ = split_store_url(store_url)
    if role_arn is not None:
        role_name(role_arn)
        if scheme != "s3":
            raise ConfigError("--role-arn checks the vendor's S3 writer role; use it with an s3:// store")
    yield from check_store(store_url)
    if scheme == "s3":
        bucket = urlsplit(store_url).netloc
        s3 = aws_client("s3")
        check, region = bucket_region(s3, bucket)
        yield check
        if region:
            yield check_eventbridge(s3, bucket)
        if role_arn is None:
            yield Check(SKIP, "the vendor's writer role: give --role-arn ARN to check its trust, session duration "
                              "and permissions")
            return
        role_checks = list(check_writer_role(aws_client("iam"), role_arn, bucket))
        yield from role_checks
        if region and all(c.status == PASS for c in role_checks):
            snippet = json.dumps({"recording_storage": recording_storage(bucket, region, role_arn)})
            yield Check("INFO", f"create conversations with {snippet}")
    elif what := FEDERATION.get("gs" if scheme == "gcs" else scheme):
        yield Check(SKIP, f"{what}: the vendor has not published the federation fields, so they cannot be checked; "
                          "after the first recording, application.recording_ready (or recording_copy_failed with "
                          "its error_code) tells whether the trust works")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", required=True, help="the store URL the deployment writes to (TAVUS_STORE_URL)")
    parser.add_argument("--role-arn", help="for an S3 store: the IAM role the vendor assumes to write recordings")
    parser.add_argument("--json", action="store_true",
                        help="print JSON lines, one object per check as it is done: status (PASS, FAIL, SKIP, "
                             "INFO), what, fix (empty when none)")


def run(args: argparse.Namespace) -> int:
    """Print one line per check; exit 0 when nothing failed, 1 otherwise."""
    failed = 0
    for check in diagnose(args.store, args.role_arn):
        print(json.dumps({"status": check.status, "what": check.what, "fix": check.fix}) if args.json
              else check.line(), flush=True)
        failed += check.status == FAIL
    print(f"{failed} check(s) failed" if failed else "all checks passed", file=sys.stderr)
    return 1 if failed else 0
