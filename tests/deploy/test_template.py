"""template.yaml: linted and validated by the AWS tools, built by a real `sam build`, and checked for what the
vendor's storage guide asks of the writer role and what the endpoint needs of its function.

sam and cfn-lint live in their own virtualenv under tests/.tools/sam (tests/install/sam.sh).
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
SAM_BIN = Path(__file__).parents[1] / ".tools" / "sam" / "bin"
SAM_CACHE = Path(__file__).parents[1] / ".tools" / "sam-cache"
WRITER_ACTIONS = {
    "s3:PutObject", "s3:GetObject", "s3:ListBucketMultipartUploads", "s3:AbortMultipartUpload",
    "s3:ListBucketVersions", "s3:ListBucket", "s3:GetObjectVersion", "s3:ListMultipartUploadParts",
}
needs_sam = pytest.mark.skipif(not (SAM_BIN / "sam").exists(),
                               reason="aws-sam-cli is not installed: run bash tests/install/sam.sh")


class CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags (!Ref, !Sub, !If, ...) read as their long JSON forms."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


CfnLoader.add_multi_constructor("!", _tag)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    data: dict[str, Any] = yaml.load(TEMPLATE.read_text(), Loader=CfnLoader)
    return data


def resources_of(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def tool_env() -> dict[str, str]:
    """sam finds python3.13 (the runtime) first on PATH; no telemetry; a region for validation."""
    runtime_python = Path(getattr(sys, "_base_executable", sys.executable)).parent
    return {**os.environ, "PATH": f"{runtime_python}{os.pathsep}{SAM_BIN}{os.pathsep}{os.environ['PATH']}",
            "SAM_CLI_TELEMETRY": "0", "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}


def run_tool(*argv: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, env=tool_env(), capture_output=True, text=True, timeout=timeout)


# -- the AWS tools ---------------------------------------------------------------------------------

@needs_sam
def test_cfn_lint_finds_nothing() -> None:
    done = run_tool(str(SAM_BIN / "cfn-lint"), str(TEMPLATE))
    assert done.returncode == 0, done.stdout + done.stderr


@needs_sam
def test_sam_validate_with_lint() -> None:
    done = run_tool(str(SAM_BIN / "sam"), "validate", "--lint", "--template", str(TEMPLATE))
    assert done.returncode == 0, done.stdout + done.stderr


@needs_sam
def test_sam_validate() -> None:
    done = run_tool(str(SAM_BIN / "sam"), "validate", "--template", str(TEMPLATE))
    assert done.returncode == 0 and "is a valid SAM Template" in done.stdout, done.stdout + done.stderr


@needs_sam
def test_sam_build_packs_the_adapter_the_core_and_arm64_dependencies(tmp_path: Path) -> None:
    if shutil.which("python3.13", path=tool_env()["PATH"]) is None:
        pytest.skip("sam build needs python3.13 on PATH for the python3.13 runtime")
    build_dir = tmp_path / "build"
    done = run_tool(str(SAM_BIN / "sam"), "build", "--template", str(TEMPLATE), "--build-dir", str(build_dir),
                    "--cached", "--cache-dir", str(SAM_CACHE), timeout=600)
    assert done.returncode == 0 and "Build Succeeded" in done.stdout, done.stdout[-3000:] + done.stderr[-3000:]
    function = build_dir / "CallbackFunction"
    assert (function / "app.py").read_text() == (ROOT / "functions" / "aws" / "app.py").read_text()
    core = function / "tavus_callbacks"
    assert core.is_dir() and not core.is_symlink(), "the core is copied into the artifact, not linked"
    assert (core / "pipeline.py").read_bytes() == (ROOT / "shared" / "tavus_callbacks" / "pipeline.py").read_bytes()
    for package in ("pydantic", "orjson", "boto3", "aws_lambda_powertools", "aws_xray_sdk"):
        assert (function / package).is_dir(), package
    native = list((function / "pydantic_core").glob("*.so"))
    assert native and all("aarch64" in so.name for so in native), native
    built = yaml.load((build_dir / "template.yaml").read_text(), Loader=CfnLoader)
    assert built["Resources"]["CallbackFunction"]["Properties"]["CodeUri"] == "CallbackFunction"


# -- what the vendor's storage guide asks of the writer role -------------------------------------------------

def test_the_writer_role_trusts_the_vendor_account_with_its_external_id(template: dict[str, Any]) -> None:
    role = template["Resources"]["RecordingWriterRole"]["Properties"]
    (statement,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Effect"] == "Allow" and statement["Action"] == "sts:AssumeRole"
    assert statement["Principal"] == {"AWS": "arn:aws:iam::291871421005:root"}
    assert statement["Condition"] == {"StringEquals": {"sts:ExternalId": "tavus"}}


def test_the_writer_role_allows_twelve_hour_sessions(template: dict[str, Any]) -> None:
    assert template["Resources"]["RecordingWriterRole"]["Properties"]["MaxSessionDuration"] == 43200


def test_the_writer_role_has_exactly_the_eight_actions_on_the_bucket_and_its_objects(
        template: dict[str, Any]) -> None:
    (policy,) = template["Resources"]["RecordingWriterRole"]["Properties"]["Policies"]
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Allow" and set(statement["Action"]) == WRITER_ACTIONS
    assert len(statement["Action"]) == 8
    bucket_arn, objects_arn = statement["Resource"]
    assert bucket_arn == {"Fn::If": ["CreateBucketCondition", {"Fn::GetAtt": ["RecordingBucket", "Arn"]},
                                     {"Fn::Sub": "arn:${AWS::Partition}:s3:::${BucketName}"}]}
    assert objects_arn["Fn::Sub"][0] == "arn:${AWS::Partition}:s3:::${Bucket}/*"


# -- the bucket, the secret, the function --------------------------------------------------------------------

def test_a_created_bucket_is_encrypted_private_versioned_and_kept(template: dict[str, Any]) -> None:
    bucket = template["Resources"]["RecordingBucket"]
    assert bucket["Condition"] == "CreateBucketCondition" and bucket["DeletionPolicy"] == "Retain"
    props = bucket["Properties"]
    (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms")
    assert all(props["PublicAccessBlockConfiguration"][k] is True for k in
               ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"))
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}


def test_an_existing_bucket_must_be_named(template: dict[str, Any]) -> None:
    rule = template["Rules"]["ExistingBucketNeedsAName"]
    assert rule["RuleCondition"] == {"Fn::Equals": [{"Ref": "CreateBucket"}, "false"]}
    assert rule["Assertions"][0]["Assert"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "BucketName"}, ""]}]}


def test_without_a_secret_one_is_created_with_a_url_safe_generated_token(template: dict[str, Any]) -> None:
    secret = template["Resources"]["CallbackTokenSecret"]
    assert secret["Condition"] == "CreateSecret"
    assert template["Conditions"]["CreateSecret"] == {"Fn::Equals": [{"Ref": "TokenSecret"}, ""]}
    generate = secret["Properties"]["GenerateSecretString"]
    assert generate["PasswordLength"] >= 32 and generate["ExcludePunctuation"] is True


def test_the_function_is_python_313_on_arm64_with_a_short_timeout(template: dict[str, Any]) -> None:
    props = template["Resources"]["CallbackFunction"]["Properties"]
    assert props["Runtime"] == "python3.13" and props["Architectures"] == ["arm64"]
    assert props["Timeout"] <= 30 and props["Handler"] == "app.handler"
    assert template["Parameters"]["MemorySize"]["Default"] >= 512
    code = ROOT / props["CodeUri"]
    assert (code / "app.py").is_file() and (code / "requirements.txt").is_file()
    assert (code / "tavus_callbacks").resolve() == (ROOT / "shared" / "tavus_callbacks").resolve()


def test_the_function_url_needs_no_aws_auth_because_the_token_is_the_auth(template: dict[str, Any]) -> None:
    assert template["Resources"]["CallbackFunction"]["Properties"]["FunctionUrlConfig"] == {"AuthType": "NONE"}


def test_the_function_reads_its_tokens_from_the_secret_and_stores_in_the_bucket(template: dict[str, Any]) -> None:
    env = template["Resources"]["CallbackFunction"]["Properties"]["Environment"]["Variables"]
    assert env["TAVUS_CALLBACK_TOKENS_SECRET"] == {
        "Fn::If": ["CreateSecret", {"Ref": "CallbackTokenSecret"}, {"Ref": "TokenSecret"}]}
    assert env["TAVUS_STORE_URL"]["Fn::Sub"][0] == "s3://${Bucket}/${KeyPrefix}"
    assert env["POWERTOOLS_TRACE_DISABLED"] == {"Fn::If": ["TracingEnabled", "false", "true"]}
    assert "TAVUS_CALLBACK_TOKENS" not in env, "the token is never in plain configuration"


def test_the_function_logs_to_a_group_with_retention(template: dict[str, Any]) -> None:
    props = template["Resources"]["CallbackFunction"]["Properties"]
    assert props["LoggingConfig"]["LogGroup"] == {"Ref": "CallbackLogGroup"}
    group = template["Resources"]["CallbackLogGroup"]["Properties"]
    assert group["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_the_outputs_give_the_url_the_role_and_a_ready_recording_storage(template: dict[str, Any]) -> None:
    outputs = template["Outputs"]
    assert outputs["CallbackUrl"]["Value"] == {"Fn::GetAtt": ["CallbackFunctionUrl", "FunctionUrl"]}
    assert "token" in outputs["CallbackUrl"]["Description"]
    assert outputs["RecordingWriterRoleArn"]["Value"] == {"Fn::GetAtt": ["RecordingWriterRole", "Arn"]}
    text, variables = outputs["RecordingStorage"]["Value"]["Fn::Sub"]
    assert set(variables) == {"Bucket"}
    filled = re.sub(r"\$\{([^}]+)\}", lambda m: {"Bucket": "my-bucket", "AWS::Region": "us-east-1",
                                                 "RecordingWriterRole.Arn": "arn:aws:iam::1:role/w"}[m[1]], text)
    assert json.loads(filled) == {"provider": "s3", "bucket_name": "my-bucket", "bucket_region": "us-east-1",
                                  "assume_role_arn": "arn:aws:iam::1:role/w"}
    command = outputs["CallbackUrlWithTokenCommand"]["Value"]["Fn::Sub"][0]
    assert "secretsmanager get-secret-value" in command and "?token=" in command


# -- the template as CloudFormation receives it, for given parameters ----------------------------------------
# The SAM transform is run by the SAM CLI's own translator (tests/deploy/sam_transform.py); conditions and intrinsic
# functions are then evaluated here, so each test reads the resources and policies a deployment would get.

PSEUDO = {"AWS::Partition": "aws", "AWS::Region": "us-east-1", "AWS::AccountId": "123456789012",
          "AWS::StackName": "tavus-callbacks", "AWS::URLSuffix": "amazonaws.com"}
NO_VALUE = object()
RECORDING_KEYS = ("c123/recording.mp4", "c123/c123.mp4", "c0123456789abcdef/1720000000.mp4", "c123/recording.webm",
                  "recording.mp4")


class Rendered:
    """A transformed template with its parameters applied: conditions decided, intrinsics evaluated."""

    def __init__(self, transformed: dict[str, Any], parameters: dict[str, str]) -> None:
        defaults = {name: str(p.get("Default", "")) for name, p in transformed["Parameters"].items()}
        self.parameters = {**defaults, **parameters}
        self.raw = transformed
        self.conditions: dict[str, bool] = {}
        for name in transformed.get("Conditions", {}):
            self.condition(name)
        self.resources = {name: self.value(r) for name, r in transformed["Resources"].items()
                          if "Condition" not in r or self.condition(r["Condition"])}

    def condition(self, name: str) -> bool:
        if name not in self.conditions:
            self.conditions[name] = bool(self.value(self.raw["Conditions"][name]))
        return self.conditions[name]

    def value(self, node: Any) -> Any:
        if isinstance(node, list):
            return [v for v in (self.value(n) for n in node) if v is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (key, arg), = node.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Condition":
                return self.condition(arg)
            if key == "Fn::If":
                return self.value(arg[1] if self.condition(arg[0]) else arg[2])
            if key == "Fn::Equals":
                left, right = (self.value(a) for a in arg)
                return str(left) == str(right)
            if key == "Fn::Not":
                return not self.value(arg[0])
            if key == "Fn::And":
                return all(self.value(a) for a in arg)
            if key == "Fn::Or":
                return any(self.value(a) for a in arg)
            if key == "Fn::GetAtt":
                resource, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                return f"<{resource}.{attribute}>"
            if key == "Fn::Sub":
                text, names = (arg, {}) if isinstance(arg, str) else (arg[0], self.value(arg[1]))
                return re.sub(r"\$\{([^}!]+)\}", lambda m: str(names[m[1]] if m[1] in names else self.sub(m[1])),
                              text)
            if key == "Fn::Split":
                return str(self.value(arg[1])).split(arg[0])
            if key == "Fn::Select":
                return self.value(arg[1])[int(arg[0])]
            if key == "Fn::Join":
                return arg[0].join(str(v) for v in self.value(arg[1]))
        return {k: v for k, v in ((k, self.value(v)) for k, v in node.items()) if v is not NO_VALUE}

    def ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in PSEUDO:
            return PSEUDO[name]
        if name in self.parameters:
            return self.parameters[name]
        assert name in self.raw["Resources"], f"Ref to an unknown name {name}"
        return f"<{name}>"

    def sub(self, name: str) -> str:
        if "." in name:
            return str(self.value({"Fn::GetAtt": name.split(".", 1)}))
        return str(self.ref(name))

    def of_type(self, kind: str) -> dict[str, dict[str, Any]]:
        return {name: r for name, r in self.resources.items() if r["Type"] == kind}

    def function_statements(self) -> dict[str, dict[str, Any]]:
        (policy,) = self.resources["CallbackFunctionRole"]["Properties"]["Policies"]
        return {s["Sid"]: s for s in policy["PolicyDocument"]["Statement"]}

    def bucket(self) -> str:
        create = self.parameters["CreateBucket"] == "true"
        return "<RecordingBucket>" if create else self.parameters["BucketName"]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def iam_matches(pattern: str, arn: str) -> bool:
    """IAM's resource wildcards: `*` any run of characters (`/` included), `?` one character."""
    return fnmatch.fnmatchcase(arn, pattern)


@pytest.fixture(scope="module")
def render() -> Callable[..., Rendered]:
    """render(**parameters): the transformed template for those parameters (transforms cached per parameters)."""
    if not (SAM_BIN / "python").exists():
        pytest.skip("aws-sam-cli is not installed: run bash tests/install/sam.sh")
    cache: dict[str, Rendered] = {}

    def make(**parameters: str) -> Rendered:
        key = json.dumps(parameters, sort_keys=True)
        if key not in cache:
            done = run_tool(str(SAM_BIN / "python"), str(Path(__file__).parent / "sam_transform.py"),
                            str(TEMPLATE), key, timeout=120)
            assert done.returncode == 0, done.stderr[-3000:]
            cache[key] = Rendered(json.loads(done.stdout), parameters)
        return cache[key]

    return make


@pytest.fixture(scope="module")
def written_keys(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Every key the core writes for the recorded payloads, a body that is not JSON and one of no family."""
    from conftest import EVENTS_DIR
    from tavus_callbacks.http import Request
    from tavus_callbacks.pipeline import handle, reset_default_pipeline
    from tavus_callbacks.stores import open_store

    url = f"sqlite:///{tmp_path_factory.mktemp('written')}/tavus.db"
    saved = {name: os.environ.get(name) for name in ("TAVUS_STORE_URL", "TAVUS_CALLBACK_TOKENS")}
    os.environ.update(TAVUS_STORE_URL=url, TAVUS_CALLBACK_TOKENS="template-test-token-0123456789")
    reset_default_pipeline()
    try:
        bodies = [p.read_bytes() for p in sorted(EVENTS_DIR.glob("*.json"))] + [b"[not an object]", b"\xff"]
        for body in bodies:
            answer = handle(Request("POST", "/", {"token": "template-test-token-0123456789"}, {}, body))
            assert answer.status in (200, 400), answer.body
        store, prefix = open_store(url)
        keys = list(store.iter_keys(prefix))
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        reset_default_pipeline()
    families = {key.split("/", 1)[0] for key in keys}
    assert {"quarantine", "unrecognized", "replicas", "videos"} <= families, families
    assert any(k.endswith("/conversation.json") for k in keys) and any("/events/" in k for k in keys)
    assert any(k.endswith("/transcript.json") for k in keys) and any(k.endswith("/perception.json") for k in keys)
    return keys


PARAMETER_SETS = [
    {},
    {"KeyPrefix": "callbacks/"},
    {"CreateBucket": "false", "BucketName": "my-recordings", "KeyPrefix": "tavus/x/"},
]


@pytest.mark.parametrize("parameters", PARAMETER_SETS, ids=["default", "prefix", "existing-bucket"])
def test_the_function_may_write_every_key_it_writes_and_no_recording(
        render: Callable[..., Rendered], written_keys: list[str], parameters: dict[str, str]) -> None:
    rendered = render(**parameters)
    statements = rendered.function_statements()
    write = statements["WriteCallbackObjects"]
    assert set(write["Action"]) == {"s3:PutObject", "s3:PutObjectTagging"}
    patterns = as_list(write["Resource"])
    bucket, prefix = rendered.bucket(), rendered.parameters["KeyPrefix"]
    for key in written_keys:
        arn = f"arn:aws:s3:::{bucket}/{prefix}{key}"
        assert any(iam_matches(p, arn) for p in patterns), f"{key} is written but not allowed: {patterns}"
    # Whichever statement allows a write or a delete, a recording (at <conversation_id>/<file>) is not in it.
    writes = [s for s in statements.values()
              if any(a.startswith(("s3:Put", "s3:Delete")) or a == "s3:*" for a in as_list(s["Action"]))]
    assert writes, "no write statement found"
    for recording in RECORDING_KEYS:
        arn = f"arn:aws:s3:::{bucket}/{recording}"
        for statement in writes:
            assert not any(iam_matches(p, arn) for p in as_list(statement["Resource"])), (statement["Sid"], recording)
    # Not even a recording whose conversation folder happens to sit under the prefix.
    if prefix:
        assert not any(iam_matches(p, f"arn:aws:s3:::{bucket}/{prefix}c123/recording.mp4")
                       for s in writes for p in as_list(s["Resource"]))


def test_the_function_reads_any_object_to_stat_recordings_but_deletes_only_pending_markers(
        render: Callable[..., Rendered]) -> None:
    statements = render().function_statements()
    assert statements["StatRecordings"]["Action"] == "s3:GetObject"
    assert statements["StatRecordings"]["Resource"] == "arn:aws:s3:::<RecordingBucket>/*"
    assert statements["ListForNotFound"] == {"Sid": "ListForNotFound", "Effect": "Allow", "Action": "s3:ListBucket",
                                             "Resource": "arn:aws:s3:::<RecordingBucket>"}
    (marker,) = as_list(statements["ClearPendingMarkers"]["Resource"])
    assert statements["ClearPendingMarkers"]["Action"] == "s3:DeleteObject"
    assert iam_matches(marker, "arn:aws:s3:::<RecordingBucket>/c123/pending/fold.json")
    assert not iam_matches(marker, "arn:aws:s3:::<RecordingBucket>/c123/conversation.json")


@pytest.mark.parametrize("tracing", ["true", "false"])
def test_xray_rights_exist_only_with_tracing_on(render: Callable[..., Rendered], tracing: str) -> None:
    rendered = render(EnableTracing=tracing)
    role = rendered.resources["CallbackFunctionRole"]["Properties"]
    assert "ManagedPolicyArns" not in role, "no managed policy (AWSXrayWriteOnlyAccess) rides along"
    xray = [s for s in rendered.function_statements().values()
            if any(a.startswith("xray:") for a in as_list(s["Action"]))]
    function = rendered.resources["CallbackFunction"]["Properties"]
    if tracing == "true":
        (statement,) = xray
        assert set(statement["Action"]) == {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}
        assert function["TracingConfig"] == {"Mode": "Active"}
    else:
        assert xray == []
        assert function["TracingConfig"] == {"Mode": "PassThrough"}
    sam_roles = [name for name in rendered.of_type("AWS::IAM::Role") if name not in
                 ("CallbackFunctionRole", "RecordingWriterRole")]
    assert sam_roles == [], "SAM generated a role of its own (Policies on the function are ignored with Role)"
    assert "Policies" not in yaml.load(TEMPLATE.read_text(), Loader=CfnLoader)["Resources"]["CallbackFunction"][
        "Properties"], "with Role set, SAM ignores Policies: put statements in CallbackFunctionRole"


def test_every_statement_is_narrow(render: Callable[..., Rendered]) -> None:
    rendered = render(EnableTracing="true", ForwardBusName="default",
                      TokenSecretKmsKeyArn="arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab")
    for statement in rendered.function_statements().values():
        actions = as_list(statement["Action"])
        assert statement["Effect"] == "Allow" and all("*" not in a for a in actions), statement
        if statement["Resource"] == "*":
            assert all(a.startswith("xray:") for a in actions), "only X-Ray, which takes no narrower resource"


def test_the_secret_key_may_decrypt_only_when_named_and_only_through_secrets_manager(
        render: Callable[..., Rendered]) -> None:
    key = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    assert not any("kms:Decrypt" in as_list(s["Action"]) for s in render().function_statements().values())
    statement = render(TokenSecret="tavus/tokens", TokenSecretKmsKeyArn=key).function_statements()[
        "DecryptCallbackTokens"]
    assert statement["Action"] == "kms:Decrypt" and statement["Resource"] == key
    assert statement["Condition"] == {"StringEquals": {"kms:ViaService": "secretsmanager.us-east-1.amazonaws.com"}}


@pytest.mark.parametrize("parameters", PARAMETER_SETS[:2], ids=["default", "prefix"])
def test_old_versions_expire_only_for_objects_the_function_tagged(
        render: Callable[..., Rendered], parameters: dict[str, str]) -> None:
    rendered = render(**parameters, NoncurrentVersionDays="45")
    (rule,) = rendered.resources["RecordingBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    assert rule["Status"] == "Enabled" and rule["NoncurrentVersionExpiration"] == {"NoncurrentDays": "45"}
    assert set(rule) <= {"Id", "Status", "Prefix", "TagFilters", "NoncurrentVersionExpiration"}, \
        "nothing else expires (no current-version Expiration, no transitions)"
    (tag,) = rule["TagFilters"]
    # The function puts exactly this tag on what it writes ...
    env = rendered.resources["CallbackFunction"]["Properties"]["Environment"]["Variables"]
    assert env["TAVUS_S3_OBJECT_TAGGING"] == f"{tag['Key']}={tag['Value']}"
    assert "s3:PutObjectTagging" in rendered.function_statements()["WriteCallbackObjects"]["Action"]
    # ... and the vendor's writer role cannot put any tag, so no recording matches the rule.
    (writer,) = rendered.resources["RecordingWriterRole"]["Properties"]["Policies"]
    assert not any("Tagging" in a for s in writer["PolicyDocument"]["Statement"] for a in as_list(s["Action"]))
    prefix = parameters.get("KeyPrefix", "")
    assert rule.get("Prefix", "") == prefix
    tagged = {tag["Key"]: tag["Value"]}
    assert lifecycle_matches(rule, f"{prefix}c123/conversation.json", tagged)
    for recording in RECORDING_KEYS:
        assert not lifecycle_matches(rule, recording, {}), recording
        assert not lifecycle_matches(rule, f"{prefix}{recording}", {}), recording


def lifecycle_matches(rule: dict[str, Any], key: str, tags: dict[str, str]) -> bool:
    """Whether an S3 lifecycle rule's filter (a prefix and tags, all required) applies to an object."""
    return key.startswith(rule.get("Prefix", "")) and all(
        tags.get(t["Key"]) == t["Value"] for t in rule.get("TagFilters", []))


def test_alarms_watch_copy_failures_errors_and_503s_and_notify_the_topic(render: Callable[..., Rendered]) -> None:
    rendered = render()
    alarms = rendered.of_type("AWS::CloudWatch::Alarm")
    watched = {}
    for name, alarm in alarms.items():
        props = alarm["Properties"]
        assert props["AlarmActions"] == ["<AlarmTopic>"], name
        assert props["ComparisonOperator"] == "GreaterThanOrEqualToThreshold" and props["Threshold"] == 1
        assert props["TreatMissingData"] == "notBreaching"
        dims = {d["Name"]: d["Value"] for d in props["Dimensions"]}
        watched[(props["Namespace"], props["MetricName"], tuple(sorted(dims.items())))] = name
    service = ("service", "tavus-callbacks")
    assert ("TavusCallbacks", "CopyFailures", (service,)) in watched
    assert ("AWS/Lambda", "Errors", (("FunctionName", "<CallbackFunction>"),)) in watched
    assert ("TavusCallbacks", "Rejected", (("reason", "store_unavailable"), service)) in watched
    assert ("TavusCallbacks", "Rejected", (("reason", "config_error"), service)) in watched
    env = rendered.resources["CallbackFunction"]["Properties"]["Environment"]["Variables"]
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == "TavusCallbacks"
    assert env["POWERTOOLS_SERVICE_NAME"] == "tavus-callbacks"
    assert rendered.of_type("AWS::SNS::Subscription") == {}
    (subscription,) = render(AlarmEmail="ops@example.com").of_type("AWS::SNS::Subscription").values()
    assert subscription["Properties"] == {"TopicArn": "<AlarmTopic>", "Protocol": "email",
                                          "Endpoint": "ops@example.com"}


@pytest.mark.parametrize("snapstart", ["true", "false"])
def test_the_function_url_is_on_the_published_alias_with_or_without_snapstart(
        render: Callable[..., Rendered], snapstart: str) -> None:
    rendered = render(EnableSnapStart=snapstart)
    function = rendered.resources["CallbackFunction"]["Properties"]
    (alias_name, alias), = rendered.of_type("AWS::Lambda::Alias").items()
    assert alias["Properties"]["Name"] == "live"
    assert rendered.of_type("AWS::Lambda::Version"), "each deploy publishes a version"
    (url,) = rendered.of_type("AWS::Lambda::Url").values()
    assert url["Properties"] == {"TargetFunctionArn": f"<{alias_name}>", "AuthType": "NONE"}
    if snapstart == "true":
        assert function["SnapStart"] == {"ApplyOn": "PublishedVersions"}
    else:
        assert "SnapStart" not in function


def test_reserved_concurrency_is_set_only_when_given(render: Callable[..., Rendered]) -> None:
    assert "ReservedConcurrentExecutions" not in render().resources["CallbackFunction"]["Properties"]
    assert render(ReservedConcurrency="5").resources["CallbackFunction"]["Properties"][
        "ReservedConcurrentExecutions"] == "5"


def test_the_reconcile_schedule_is_off_without_an_api_key(render: Callable[..., Rendered]) -> None:
    rendered = render()
    assert rendered.parameters["ReconcileSchedule"] == "rate(15 minutes)"
    (rule,) = rendered.of_type("AWS::Events::Rule").values()
    assert rule["Properties"]["State"] == "DISABLED"
    assert "TavusApiKeyStoredSecret" not in rendered.resources
    env = rendered.resources["CallbackFunction"]["Properties"]["Environment"]["Variables"]
    assert "TAVUS_API_KEY_SECRET" not in env and "TAVUS_API_KEY" not in env
    statements = rendered.function_statements()
    assert "ReadTavusApiKey" not in statements and "WriteReconcileCursor" not in statements


@pytest.mark.parametrize("parameters", [{"TavusApiKey": "tvs-0123456789abcdef"}, {"TavusApiKeySecret": "tavus/api"},
                                        {"TavusApiKeySecret": "tavus/api", "KeyPrefix": "callbacks/"}],
                         ids=["key", "secret-name", "secret-name-prefix"])
def test_with_an_api_key_the_schedule_invokes_the_live_alias_which_may_read_the_key_and_keep_its_cursor(
        render: Callable[..., Rendered], parameters: dict[str, str]) -> None:
    rendered = render(**parameters)
    (rule,) = rendered.of_type("AWS::Events::Rule").values()
    assert rule["Properties"]["State"] == "ENABLED"
    assert rule["Properties"]["ScheduleExpression"] == "rate(15 minutes)"
    (alias_name,) = rendered.of_type("AWS::Lambda::Alias")
    (target,) = rule["Properties"]["Targets"]
    assert target["Arn"] == f"<{alias_name}>"
    env = rendered.resources["CallbackFunction"]["Properties"]["Environment"]["Variables"]
    statements = rendered.function_statements()
    read = statements["ReadTavusApiKey"]
    assert read["Action"] == "secretsmanager:GetSecretValue"
    if "TavusApiKey" in parameters:
        assert env["TAVUS_API_KEY_SECRET"] == read["Resource"] == "<TavusApiKeyStoredSecret>"
        assert rendered.resources["TavusApiKeyStoredSecret"]["Properties"]["SecretString"] == parameters["TavusApiKey"]
        assert "TAVUS_API_KEY" not in env, "the key itself never sits in the function's environment"
    else:
        assert env["TAVUS_API_KEY_SECRET"] == "tavus/api"
        assert iam_matches(read["Resource"], "arn:aws:secretsmanager:us-east-1:123456789012:secret:tavus/api-AbCdEf")
    assert env["TAVUS_RECONCILE_SINCE"] == "72h"
    prefix = rendered.parameters["KeyPrefix"]
    cursor = f"arn:aws:s3:::{rendered.bucket()}/{prefix}reconcile/cursor.json"
    assert iam_matches(statements["WriteReconcileCursor"]["Resource"], cursor)
