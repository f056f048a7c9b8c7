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

from .cloudformation import CfnLoader, Rendered

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

RECORDING_KEYS = ("c123/recording.mp4", "c123/c123.mp4", "c0123456789abcdef/1720000000.mp4", "c123/recording.webm",
                  "recording.mp4")


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
    """Every key the core writes for the recorded payloads, a body that is not JSON and one of no family: the
    callback's event objects, and what deriving from each of them writes."""
    from conftest import RECORDED
    from tavus_callbacks.app import App
    from tavus_callbacks.http import Request
    from tavus_callbacks.stores import open_store

    url = f"sqlite:///{tmp_path_factory.mktemp('written')}/tavus.db"
    saved = {name: os.environ.get(name) for name in ("TAVUS_STORE_URL", "TAVUS_CALLBACK_TOKENS")}
    os.environ.update(TAVUS_STORE_URL=url, TAVUS_CALLBACK_TOKENS="template-test-token-0123456789")
    app = App.from_env()
    try:
        bodies = [p.read_bytes() for p in RECORDED] + [b"[not an object]", b"\xff"]
        for body in bodies:
            answer = app.handle(Request("POST", "/", {"token": "template-test-token-0123456789"}, {}, body))
            assert answer.status in (200, 400), answer.body
        store, prefix = open_store(url)
        for key in list(store.iter_keys(prefix)):
            app.derive(key)
        keys = list(store.iter_keys(prefix))
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    families = {key.split("/", 1)[0] for key in keys}
    assert {"quarantine", "unrecognized", "replicas", "videos"} <= families, families
    assert any(k.endswith("/conversation.json") for k in keys) and any("/events/" in k for k in keys)
    assert any(k.endswith("/transcript.json") for k in keys) and any(k.endswith("/perception.json") for k in keys)
    assert any(k.startswith("index/") for k in keys), "derive writes the time index"
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


def test_the_function_reads_any_object_to_stat_recordings_and_deletes_nor_marks_nothing(
        render: Callable[..., Rendered]) -> None:
    statements = render().function_statements()
    assert statements["StatRecordings"]["Action"] == "s3:GetObject"
    assert statements["StatRecordings"]["Resource"] == "arn:aws:s3:::<RecordingBucket>/*"
    assert statements["ListForNotFound"] == {"Sid": "ListForNotFound", "Effect": "Allow", "Action": "s3:ListBucket",
                                             "Resource": "arn:aws:s3:::<RecordingBucket>"}
    actions = [a for s in statements.values() for a in as_list(s["Action"])]
    assert not [a for a in actions if a.startswith("s3:Delete")], "the function deletes nothing"
    resources = [r for s in statements.values() for r in as_list(s["Resource"])]
    assert not any(iam_matches(r, "arn:aws:s3:::<RecordingBucket>/c123/pending/e1.json") for r in resources
                   if r != "arn:aws:s3:::<RecordingBucket>/*"), "pending markers are never written again"
    write = as_list(statements["WriteCallbackObjects"]["Resource"])
    assert any(iam_matches(r, "arn:aws:s3:::<RecordingBucket>/index/2025/07/11/c123") for r in write)


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
    assert ("AWS/SQS", "ApproximateNumberOfMessagesVisible", (("QueueName", "<DeriveDeadLetterQueue.QueueName>"),)) \
        in watched, "events whose derive kept failing"
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
    rule = rendered.resources["CallbackFunctionReconcile"]
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
    rule = rendered.resources["CallbackFunctionReconcile"]
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


# -- the change feed: the bucket's EventBridge notifications invoke the function's derive step -----------------

def test_a_created_bucket_sends_its_events_to_eventbridge(template: dict[str, Any]) -> None:
    props = template["Resources"]["RecordingBucket"]["Properties"]
    assert props["NotificationConfiguration"] == {"EventBridgeConfiguration": {"EventBridgeEnabled": True}}


@pytest.mark.parametrize("parameters", PARAMETER_SETS, ids=["default", "prefix", "existing-bucket"])
def test_new_event_objects_invoke_the_live_alias_with_retries_then_a_dead_letter_queue_with_an_alarm(
        render: Callable[..., Rendered], parameters: dict[str, str]) -> None:
    rendered = render(**parameters)
    (alias_name,) = rendered.of_type("AWS::Lambda::Alias")
    rule = rendered.resources["CallbackFunctionDeriveEvents"]["Properties"]
    assert rule["EventPattern"]["source"] == ["aws.s3"] and rule["EventPattern"]["detail-type"] == ["Object Created"]
    assert rule["EventPattern"]["detail"]["bucket"]["name"] == [rendered.bucket()]
    assert "State" not in rule or rule["State"] == "ENABLED"
    (target,) = rule["Targets"]
    queue_arn = "<DeriveDeadLetterQueue.Arn>"
    assert target["Arn"] == f"<{alias_name}>" and target["DeadLetterConfig"] == {"Arn": queue_arn}
    assert target["RetryPolicy"] == {"MaximumRetryAttempts": 185, "MaximumEventAgeInSeconds": 86400}
    (permission,) = [p["Properties"] for p in rendered.of_type("AWS::Lambda::Permission").values()
                     if p["Properties"].get("SourceArn") == "<CallbackFunctionDeriveEvents.Arn>"]
    assert permission["Principal"] == "events.amazonaws.com" and permission["FunctionName"] == f"<{alias_name}>"
    # A derive that raises: Lambda retries the asynchronous invocation twice, then sends it to the same queue.
    (invoke,) = rendered.of_type("AWS::Lambda::EventInvokeConfig").values()
    assert invoke["Properties"]["Qualifier"] == "live" and invoke["Properties"]["MaximumRetryAttempts"] == 2
    assert invoke["Properties"]["DestinationConfig"] == {"OnFailure": {"Destination": queue_arn}}
    assert rendered.function_statements()["SendToDeadLetter"] == {
        "Sid": "SendToDeadLetter", "Effect": "Allow", "Action": "sqs:SendMessage", "Resource": queue_arn}
    # EventBridge may send only this rule's undeliverable events there.
    (policy,) = rendered.of_type("AWS::SQS::QueuePolicy").values()
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"} and statement["Action"] == "sqs:SendMessage"
    assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": "<CallbackFunctionDeriveEvents.Arn>"}}
    queue = rendered.resources["DeriveDeadLetterQueue"]["Properties"]
    assert queue["MessageRetentionPeriod"] == 1209600, "the most SQS keeps: two weeks to fix the cause"
    assert "DeadLetterQueueUrl" in rendered.raw["Outputs"]


@pytest.mark.parametrize("parameters", [*PARAMETER_SETS, {"KeyPrefix": "odd*prefix/"}],
                         ids=["default", "prefix", "existing-bucket", "star-in-prefix"])
def test_the_rule_matches_the_event_objects_the_core_writes_and_nothing_else(
        render: Callable[..., Rendered], written_keys: list[str], moto_server: Any, parameters: dict[str, str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The rendered rule on moto's EventBridge, fed by a bucket's real notifications: every event object (events/
    folders, unrecognized/) reaches the function, and nothing it derives (state, documents, index) nor any
    recording or quarantined body does, so derive never triggers itself."""
    import boto3
    from support.servers import create_bucket, new_bucket_name, point_at

    point_at(moto_server, monkeypatch)
    bucket = new_bucket_name()
    create_bucket(moto_server, bucket)
    s3, sqs, events = boto3.client("s3"), boto3.client("sqs"), boto3.client("events")
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={"EventBridgeConfiguration": {}})
    queue = sqs.create_queue(QueueName=bucket)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    rendered = render(**parameters)
    pattern = rendered.resources["CallbackFunctionDeriveEvents"]["Properties"]["EventPattern"]
    pattern["detail"]["bucket"]["name"] = [bucket]
    events.put_rule(Name=bucket, EventPattern=json.dumps(pattern))
    events.put_targets(Rule=bucket, Targets=[{"Id": "function", "Arn": queue_arn}])
    try:
        prefix = rendered.parameters["KeyPrefix"]
        keys = [f"{prefix}{k}" for k in written_keys] + list(RECORDING_KEYS) + [f"{prefix}{k}" for k in RECORDING_KEYS]
        if prefix:  # an event object of another prefix is none of this deployment's
            event_key = next(k for k in written_keys if "/events/" in k)
            keys += [event_key, f"x{prefix}{event_key}"]
            if "*" in prefix:  # matched as a star, not as a wildcard
                keys.append(f"{prefix.replace('*', 'X')}{event_key}")
        for key in keys:
            s3.put_object(Bucket=bucket, Key=key, Body=b"{}")
        delivered = []
        while messages := sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", []):
            delivered += [json.loads(m["Body"])["detail"]["object"]["key"] for m in messages]
            sqs.delete_message_batch(QueueUrl=queue, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)])
    finally:
        events.remove_targets(Rule=bucket, Ids=["function"])
        events.delete_rule(Name=bucket)
    expected = [f"{prefix}{k}" for k in written_keys if "/events/" in k or k.startswith("unrecognized/")]
    assert len(expected) > 20 and any(k.startswith(f"{prefix}replicas/") for k in expected)
    assert sorted(delivered) == sorted(expected)

