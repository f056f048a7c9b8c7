"""`doctor` against real stores (folder, moto, fake-gcs, Azurite) and moto's IAM; `recording-storage`."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
from tavus_callbacks.cli import main
from tavus_callbacks.cli.doctor import is_allowed
from tavus_callbacks.cli.recording_storage import WRITER_ACTIONS
from tavus_callbacks.stores.sqlite import SQLiteStore

VENDOR = "arn:aws:iam::291871421005:root"


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str], str]:
    """(exit code, stdout lines, stderr) of one `tavus-callbacks` command."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def line(lines: list[str], status: str, text: str) -> str:
    """The one line with this status that mentions `text`."""
    found = [candidate for candidate in lines if candidate.startswith(status) and text in candidate]
    assert len(found) == 1, f"no single {status} line about {text!r} in:\n" + "\n".join(lines)
    return found[0]


def trust(principal: str = VENDOR, external_id: str | None = "tavus") -> dict[str, Any]:
    statement: dict[str, Any] = {"Effect": "Allow", "Principal": {"AWS": principal}, "Action": "sts:AssumeRole"}
    if external_id is not None:
        statement["Condition"] = {"StringEquals": {"sts:ExternalId": external_id}}
    return {"Version": "2012-10-17", "Statement": [statement]}


def writer_policy(bucket: str, actions: tuple[str, ...] = WRITER_ACTIONS) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": list(actions),
        "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]}]}


@pytest.fixture
def s3_store(cloud_bucket: Callable[..., str]) -> tuple[str, str]:
    """(store URL, bucket) of a fresh bucket in moto, the environment pointed at it."""
    url = cloud_bucket("s3", "tavus/")
    boto3.client("s3").put_bucket_notification_configuration(  # as template.yaml makes it: the derive feed on
        Bucket=url.split("/")[2], NotificationConfiguration={"EventBridgeConfiguration": {}})
    return url, url.split("/")[2]


@pytest.fixture
def make_role(s3_store: tuple[str, str]) -> Callable[..., str]:
    """`make_role(trust=..., duration=..., inline=..., attached=...)`: a role in moto's IAM; its ARN."""
    iam = boto3.client("iam")

    def make(trust_policy: dict[str, Any] | None = None, duration: int = 43200,
             inline: dict[str, Any] | None = None, attached: dict[str, Any] | None = None) -> str:
        name = f"TavusRecordingWriter-{uuid.uuid4().hex[:8]}"
        role = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust_policy or trust()),
                               MaxSessionDuration=duration)["Role"]
        if inline is not None:
            iam.put_role_policy(RoleName=name, PolicyName="writer", PolicyDocument=json.dumps(inline))
        if attached is not None:
            arn = iam.create_policy(PolicyName=f"{name}-s3", PolicyDocument=json.dumps(attached))["Policy"]["Arn"]
            iam.attach_role_policy(RoleName=name, PolicyArn=arn)
        return str(role["Arn"])

    return make


def test_a_correct_setup_passes_every_check_and_prints_the_recording_storage(
        capsys: pytest.CaptureFixture[str], s3_store: tuple[str, str], make_role: Callable[..., str]) -> None:
    url, bucket = s3_store
    arn = make_role(inline=writer_policy(bucket))
    code, lines, err = run_cli(capsys, "doctor", "--store", url, "--role-arn", arn)
    assert code == 0, "\n".join(lines)
    assert not [entry for entry in lines if entry.startswith(("FAIL", "SKIP"))]
    for text in (f"store {url} answers", "create-only write of probe object tavus/_doctor/",
                 "a second create-only write of the same key is refused", "read back", "compare-and-swap",
                 "delete the probe object", f"bucket {bucket} is in region us-east-1", f"writer role {arn} exists",
                 f"sts:AssumeRole for {VENDOR}", "sts:ExternalId = tavus", "MaxSessionDuration is 43200 s",
                 "allow the 8 writer actions"):
        line(lines, "PASS", text)
    info = json.loads(line(lines, "INFO", "recording_storage").split("with ", 1)[1])
    assert info == {"recording_storage": {"provider": "s3", "bucket_name": bucket, "bucket_region": "us-east-1",
                                          "assume_role_arn": arn}}
    assert not list(boto3.client("s3").list_objects_v2(Bucket=bucket).get("Contents", [])), "the probe is removed"
    assert "all checks passed" in err


def test_the_default_session_duration_fails_with_the_vendor_error_and_the_fix(
        capsys: pytest.CaptureFixture[str], s3_store: tuple[str, str], make_role: Callable[..., str]) -> None:
    url, bucket = s3_store
    arn = make_role(duration=3600, inline=writer_policy(bucket))
    code, lines, _ = run_cli(capsys, "doctor", "--store", url, "--role-arn", arn)
    assert code == 1
    failed = line(lines, "FAIL", "MaxSessionDuration is 3600 s, below 43200")
    assert "unable to assume role with given parameters" in failed
    assert f"--role-name {arn.rsplit('/', 1)[1]} --max-session-duration 43200" in failed
    assert [entry for entry in lines if entry.startswith("FAIL")] == [failed]
    assert not [entry for entry in lines if entry.startswith("INFO")]


def test_a_wrong_external_id_fails_and_names_the_one_the_vendor_sends(
        capsys: pytest.CaptureFixture[str], s3_store: tuple[str, str], make_role: Callable[..., str]) -> None:
    url, bucket = s3_store
    arn = make_role(trust(external_id="tavus-prod"), inline=writer_policy(bucket))
    code, lines, _ = run_cli(capsys, "doctor", "--store", url, "--role-arn", arn)
    assert code == 1
    failed = line(lines, "FAIL", "sts:ExternalId 'tavus-prod'")
    assert '"sts:ExternalId": "tavus"' in failed
    line(lines, "PASS", f"sts:AssumeRole for {VENDOR}")


def test_a_missing_external_id_condition_fails(capsys: pytest.CaptureFixture[str], s3_store: tuple[str, str],
                                               make_role: Callable[..., str]) -> None:
    url, bucket = s3_store
    arn = make_role(trust(external_id=None), inline=writer_policy(bucket))
    code, lines, _ = run_cli(capsys, "doctor", "--store", url, "--role-arn", arn)
    assert code == 1
    assert '"sts:ExternalId": "tavus"' in line(lines, "FAIL", "no sts:ExternalId condition")


def test_a_role_trusting_another_account_fails_and_names_the_vendor_principal(
        capsys: pytest.CaptureFixture[str], s3_store: tuple[str, str], make_role: Callable[..., str]) -> None:
    url, bucket = s3_store
    arn = make_role(trust("arn:aws:iam::111122223333:root"), inline=writer_policy(bucket))
    code, lines, _ = run_cli(capsys, "doctor", "--store", url, "--role-arn", arn)
    assert code == 1
    failed = line(lines, "FAIL", f"does not trust {VENDOR} (it trusts arn:aws:iam::111122223333:root)")
    assert f'{{"AWS": "{VENDOR}"}}' in failed


def test_a_role_any_account_may_assume_fails(capsys: pytest.CaptureFixture[str], s3_store: tuple[str, str],
                                             make_role: Callable[..., str]) -> None:
    url, bucket = s3_store
    open_trust = trust()
    open_trust["Statement"][0]["Principal"] = "*"
    arn = make_role(open_trust, inline=writer_policy(bucket))
    code, lines, _ = run_cli(capsys, "doctor", "--store", url, "--role-arn", arn)
    assert code == 1
    assert f"trust only {VENDOR}" in line(lines, "FAIL", 'any AWS account (Principal "*")')


@pytest.mark.parametrize("missing", ["s3:ListMultipartUploadParts", "s3:ListBucket"])
def test_a_missing_action_fails_and_names_it_with_its_resource(
        capsys: pytest.CaptureFixture[str], s3_store: tuple[str, str], make_role: Callable[..., str],
        missing: str) -> None:
    url, bucket = s3_store
    arn = make_role(inline=writer_policy(bucket, tuple(a for a in WRITER_ACTIONS if a != missing)))
    code, lines, _ = run_cli(capsys, "doctor", "--store", url, "--role-arn", arn)
    assert code == 1
    resource = f"arn:aws:s3:::{bucket}" if missing == "s3:ListBucket" else f"arn:aws:s3:::{bucket}/*"
    failed = line(lines, "FAIL", f"do not allow {missing} on {resource}")
    assert failed.count("s3:") > 8, "the fix carries the whole statement to attach"
    assert [entry for entry in lines if entry.startswith("FAIL")] == [failed]


def test_wildcards_in_an_attached_managed_policy_count(capsys: pytest.CaptureFixture[str],
                                                        s3_store: tuple[str, str],
                                                        make_role: Callable[..., str]) -> None:
    url, bucket = s3_store
    policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:Get*", "s3:List*"], "Resource": f"arn:aws:s3:::{bucket}*"},
        {"Effect": "Allow", "Action": "s3:*Object", "Resource": "arn:aws:s3:::*"},
        {"Effect": "Allow", "Action": "S3:abortMULTIPARTUPLOAD", "Resource": "*"}]}
    arn = make_role(attached=policy)
    code, lines, _ = run_cli(capsys, "doctor", "--store", url, "--role-arn", arn)
    assert code == 0, "\n".join(lines)
    line(lines, "PASS", "allow the 8 writer actions")


def test_an_explicit_deny_wins_over_an_allow(capsys: pytest.CaptureFixture[str], s3_store: tuple[str, str],
                                             make_role: Callable[..., str]) -> None:
    url, bucket = s3_store
    deny = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Deny", "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{bucket}/*"}]}
    arn = make_role(inline=writer_policy(bucket), attached=deny)
    code, lines, _ = run_cli(capsys, "doctor", "--store", url, "--role-arn", arn)
    assert code == 1
    line(lines, "FAIL", f"do not allow s3:PutObject on arn:aws:s3:::{bucket}/*")


def test_a_missing_role_fails_and_says_to_create_it(capsys: pytest.CaptureFixture[str],
                                                    s3_store: tuple[str, str]) -> None:
    url, _ = s3_store
    arn = "arn:aws:iam::123456789012:role/NoSuchRole"
    code, lines, _ = run_cli(capsys, "doctor", "--store", url, "--role-arn", arn)
    assert code == 1
    assert "create the role" in line(lines, "FAIL", f"writer role {arn} can be read")
    line(lines, "SKIP", "trust, session duration and permissions")


def test_the_bucket_region_is_read_and_printed_for_bucket_region(capsys: pytest.CaptureFixture[str],
                                                                 moto_server: Any,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from support.servers import new_bucket_name, point_at
    from tavus_callbacks.clients import clear_clients

    point_at(moto_server, monkeypatch)
    clear_clients()
    bucket = new_bucket_name()
    s3 = boto3.client("s3", region_name="eu-west-2")
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-2"})
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={"EventBridgeConfiguration": {}})
    code, lines, _ = run_cli(capsys, "doctor", "--store", f"s3://{bucket}")
    assert code == 0, "\n".join(lines)
    line(lines, "PASS", f'bucket {bucket} is in region eu-west-2: pass bucket_region "eu-west-2"')
    line(lines, "SKIP", "give --role-arn ARN")


def test_a_bucket_that_does_not_exist_fails(capsys: pytest.CaptureFixture[str], s3_store: tuple[str, str]) -> None:
    code, lines, _ = run_cli(capsys, "doctor", "--store", "s3://no-such-bucket-for-doctor/")
    assert code == 1
    assert "create the bucket or fix its name" in line(lines, "FAIL", "region of bucket no-such-bucket-for-doctor")
    assert any(entry.startswith("FAIL") and "probe" in entry for entry in lines)


def test_a_sqlite_store_passes_the_store_checks(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    SQLiteStore(tmp_path / "store.db")  # doctor checks a store; it does not make one
    code, lines, _ = run_cli(capsys, "doctor", "--store", f"sqlite:///{tmp_path}/store.db")
    assert code == 0, "\n".join(lines)
    assert len([entry for entry in lines if entry.startswith("PASS")]) == 6
    assert list(SQLiteStore(tmp_path / "store.db").iter_keys("")) == [], "the probe object is removed"


def test_a_sqlite_file_that_cannot_be_made_fails_with_the_fix(capsys: pytest.CaptureFixture[str],
                                                               tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code, lines, _ = run_cli(capsys, "doctor", "--store", f"sqlite:///{blocker}/store.db")
    assert code == 1
    assert "writable" in line(lines, "FAIL", "answers")
    line(lines, "SKIP", "probe object: the store did not answer")


@pytest.mark.parametrize("kind, federation", [("gcs", "Workload Identity Federation"),
                                              ("azure", "Entra ID federated credential")])
def test_gcs_and_azure_check_the_store_and_say_what_cannot_be_checked(
        capsys: pytest.CaptureFixture[str], cloud_bucket: Callable[..., str], kind: str, federation: str) -> None:
    url = cloud_bucket(kind)
    code, lines, _ = run_cli(capsys, "doctor", "--store", url)
    assert code == 0, "\n".join(lines)
    line(lines, "PASS", "compare-and-swap")
    assert "has not published the federation fields" in line(lines, "SKIP", federation)


def test_role_arn_is_refused_for_a_store_that_is_not_s3(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run_cli(capsys, "doctor", "--store", f"sqlite:///{tmp_path}/store.db", "--role-arn",
                           "arn:aws:iam::123456789012:role/W")
    assert code == 2 and "s3:// store" in err


def test_policy_evaluation_follows_iam_wildcards_and_not_action() -> None:
    docs = [{"Statement": [{"Effect": "Allow", "NotAction": "s3:Delete*", "Resource": "arn:aws:s3:::b/*"}]}]
    assert is_allowed(docs, "s3:PutObject", "arn:aws:s3:::b/*")
    assert not is_allowed(docs, "s3:DeleteObject", "arn:aws:s3:::b/*")
    narrow = [{"Statement": {"Effect": "Allow", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::b/rec/*"}}]
    assert not is_allowed(narrow, "s3:PutObject", "arn:aws:s3:::b/*"), "a sub-folder does not cover the bucket"
    assert not is_allowed(docs, "s3:PutObject", "arn:aws:s3:::other/*")


# -- recording-storage ----------------------------------------------------------------------------

ROLE = "arn:aws:iam::123456789012:role/TavusRecordingWriter"


def test_recording_storage_prints_the_s3_object(capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, _ = run_cli(capsys, "recording-storage", "--bucket", "my-recordings", "--region", "eu-west-1",
                             "--role-arn", ROLE)
    assert code == 0
    assert json.loads("\n".join(lines)) == {"provider": "s3", "bucket_name": "my-recordings",
                                            "bucket_region": "eu-west-1", "assume_role_arn": ROLE}


def test_recording_storage_legacy_prints_the_flat_properties(capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, _ = run_cli(capsys, "recording-storage", "--bucket", "my-recordings", "--region", "us-east-1",
                             "--role-arn", ROLE, "--legacy")
    assert code == 0
    assert json.loads("\n".join(lines)) == {"enable_recording": True, "recording_s3_bucket_name": "my-recordings",
                                            "recording_s3_bucket_region": "us-east-1", "aws_assume_role_arn": ROLE}


@pytest.mark.parametrize("argv, message", [
    (["--role-arn", "arn:aws:iam::123:role/x"], "is not an IAM role ARN"),
    (["--role-arn", "arn:aws:iam::123456789012:user/x"], "is not an IAM role ARN"),
    (["--region", "Europe"], "is not an AWS region"),
    (["--bucket", "My_Bucket"], "is not an S3 bucket name"),
    (["--provider", "gcs"], "has not documented the recording_storage fields for gcs"),
    (["--provider", "azure_blob"], "has not documented the recording_storage fields for azure_blob"),
])
def test_recording_storage_refuses_what_is_malformed_or_undocumented(
        capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    args = {"--bucket": "my-recordings", "--region": "us-east-1", "--role-arn": ROLE}
    for name, value in zip(argv[::2], argv[1::2], strict=True):
        args[name] = value
    code, lines, err = run_cli(capsys, "recording-storage", *[x for kv in args.items() for x in kv])
    assert code == 2 and not lines
    assert message in err
