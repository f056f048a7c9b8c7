"""template.yaml: linted and validated by the AWS tools, built by a real `sam build`, and checked for what the
vendor's storage guide asks of the writer role and what the endpoint needs of its function.

sam and cfn-lint live in their own virtualenv under tests/.tools/sam (tests/install/sam.sh).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template.yaml"
SAM_BIN = Path(__file__).parent / ".tools" / "sam" / "bin"
SAM_CACHE = Path(__file__).parent / ".tools" / "sam-cache"
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


def test_the_function_has_least_privilege(template: dict[str, Any]) -> None:
    (policy,) = template["Resources"]["CallbackFunction"]["Properties"]["Policies"]
    # A statement under a condition counts as its "true" branch.
    unwrapped = [s["Fn::If"][1] if "Fn::If" in s else s for s in policy["Statement"]]
    statements = {s["Sid"]: s for s in unwrapped}
    for statement in statements.values():
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert statement["Effect"] == "Allow" and all("*" not in a for a in actions), statement
        assert statement["Resource"] != "*"
    assert set(statements["OwnPrefix"]["Action"]) == {"s3:PutObject", "s3:GetObject"}
    assert statements["OwnPrefix"]["Resource"]["Fn::Sub"][0] == "arn:${AWS::Partition}:s3:::${Bucket}/${KeyPrefix}*"
    assert statements["StatRecordings"]["Action"] == "s3:GetObject"
    assert statements["ListForNotFound"]["Action"] == "s3:ListBucket"
    assert statements["ReadCallbackTokens"]["Action"] == "secretsmanager:GetSecretValue"


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


def test_the_reconcile_schedule_defaults_to_every_15_minutes_and_is_off_without_an_api_key(
        template: dict[str, Any]) -> None:
    params, conditions = template["Parameters"], template["Conditions"]
    assert params["ReconcileSchedule"]["Default"] == "rate(15 minutes)"
    assert params["TavusApiKeySecret"]["Default"] == "" and params["TavusApiKey"]["NoEcho"] is True
    props = template["Resources"]["CallbackFunction"]["Properties"]
    schedule = props["Events"]["Reconcile"]
    assert schedule["Type"] == "Schedule" and schedule["Properties"]["Schedule"] == {"Ref": "ReconcileSchedule"}
    assert schedule["Properties"]["Enabled"] == {"Fn::If": ["ReconcileEnabled", True, False]}
    assert conditions["ReconcileEnabled"]["Fn::Or"][1] == {"Fn::Condition": "CreateApiKeySecret"}
    env = props["Environment"]["Variables"]
    assert env["TAVUS_API_KEY_SECRET"]["Fn::If"][0] == "ReconcileEnabled" and "TAVUS_API_KEY" not in env
    (policy,) = props["Policies"]
    read = next(s["Fn::If"] for s in policy["Statement"] if "Fn::If" in s and s["Fn::If"][1].get("Sid") ==
                "ReadTavusApiKey")
    assert read[0] == "ReconcileEnabled" and read[1]["Action"] == "secretsmanager:GetSecretValue"
    assert template["Resources"]["TavusApiKeyStoredSecret"]["Condition"] == "CreateApiKeySecret"
