"""`doctor` against real stores (folder, moto, fake-gcs, Azurite) and moto's IAM, IAM's policy simulator played on
a loopback port (moto does not implement it); `recording-storage`."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

import boto3
import pytest
from support.servers import serving
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


# -- IAM's policy simulator ----------------------------------------------------------------------------

IAM_XMLNS = "https://iam.amazonaws.com/doc/2010-05-08/"


class Simulator(ThreadingHTTPServer):
    """IAM's query API on a loopback port: SimulatePrincipalPolicy answered as IAM does (an EvaluationResults
    member per action, `decisions` or "allowed"; with `denied`, IAM's AccessDenied error), every other action
    passed on to moto."""

    def __init__(self, moto: str, decisions: dict[str, str], denied: bool = False) -> None:
        super().__init__(("127.0.0.1", 0), SimulatorHandler)
        self.moto, self.decisions, self.denied = moto, decisions, denied
        self.simulated: list[dict[str, list[str]]] = []


class SimulatorHandler(BaseHTTPRequestHandler):
    server: Simulator

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        form = parse_qs(body.decode())
        if form.get("Action") != ["SimulatePrincipalPolicy"]:
            self.pass_on(body)
            return
        self.server.simulated.append(form)
        if self.server.denied:
            self.answer(403, f'<ErrorResponse xmlns="{IAM_XMLNS}"><Error><Type>Sender</Type><Code>AccessDenied'
                             "</Code><Message>User: arn:aws:iam::123456789012:user/doctor is not authorized to "
                             "perform: iam:SimulatePrincipalPolicy</Message></Error>"
                             "<RequestId>4f6e1a2b-doctor</RequestId></ErrorResponse>")
            return
        numbered = [key for key in form if key.startswith("ActionNames.member.")]
        actions = [form[key][0] for key in sorted(numbered, key=lambda k: int(k.rsplit(".", 1)[1]))]
        resource = form.get("ResourceArns.member.1", ["*"])[0]
        members = "".join(
            f"<member><EvalActionName>{escape(action)}</EvalActionName><EvalResourceName>{escape(resource)}"
            f"</EvalResourceName><EvalDecision>{self.server.decisions.get(action, 'allowed')}</EvalDecision>"
            "<MatchedStatements/><MissingContextValues/></member>" for action in actions)
        self.answer(200, f'<SimulatePrincipalPolicyResponse xmlns="{IAM_XMLNS}"><SimulatePrincipalPolicyResult>'
                         f"<IsTruncated>false</IsTruncated><EvaluationResults>{members}</EvaluationResults>"
                         "</SimulatePrincipalPolicyResult><ResponseMetadata><RequestId>4f6e1a2b-doctor</RequestId>"
                         "</ResponseMetadata></SimulatePrincipalPolicyResponse>")

    def pass_on(self, body: bytes) -> None:
        headers = {k: v for k, v in self.headers.items() if k.lower() in ("content-type", "authorization",
                                                                          "x-amz-date", "x-amz-security-token")}
        request = urllib.request.Request(self.server.moto + self.path, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                self.answer(response.status, response.read().decode())
        except urllib.error.HTTPError as exc:
            self.answer(exc.code, exc.read().decode())

    def answer(self, status: int, xml: str) -> None:
        data = xml.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def simulator(s3_store: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Simulator]]:
    """`simulator(decisions, denied=False)`: the IAM endpoint of doctor's AWS clients (AWS_ENDPOINT_URL_IAM), moto
    behind it for everything but the simulator."""
    with ExitStack() as servers:
        def start(decisions: dict[str, str] | None = None, denied: bool = False) -> Simulator:
            server = Simulator(os.environ["AWS_ENDPOINT_URL"], decisions or {}, denied)
            monkeypatch.setenv("AWS_ENDPOINT_URL_IAM", servers.enter_context(serving(server)))
            return server

        yield start


def test_the_simulator_allowing_every_writer_action_passes_and_says_it_was_used(
        capsys: pytest.CaptureFixture[str], s3_store: tuple[str, str], make_role: Callable[..., str],
        simulator: Callable[..., Simulator]) -> None:
    url, bucket = s3_store
    arn = make_role()  # no policy at all: the simulator's answer decides, not the role's documents
    server = simulator()
    code, lines, err = run_cli(capsys, "doctor", "--store", url, "--role-arn", arn)
    assert code == 0, "\n".join(lines) + err
    assert "evaluated by IAM's policy simulator" in line(lines, "PASS", "allow the 8 writer actions")
    asked = {(value, form["ResourceArns.member.1"][0]) for form in server.simulated for key, values in form.items()
             if key.startswith("ActionNames.member.") for value in values}
    bucket_actions = {"s3:ListBucket", "s3:ListBucketVersions", "s3:ListBucketMultipartUploads"}
    assert asked == {(a, f"arn:aws:s3:::{bucket}" if a in bucket_actions else f"arn:aws:s3:::{bucket}/*")
                     for a in WRITER_ACTIONS}, "each action on what it applies to"
    assert all(form["PolicySourceArn"] == [arn] for form in server.simulated)


def test_the_simulator_denying_actions_fails_and_names_each_with_its_resource(
        capsys: pytest.CaptureFixture[str], s3_store: tuple[str, str], make_role: Callable[..., str],
        simulator: Callable[..., Simulator]) -> None:
    url, bucket = s3_store
    arn = make_role(inline=writer_policy(bucket))  # the documents allow all: a condition or boundary may not
    simulator({"s3:PutObject": "explicitDeny", "s3:ListBucket": "implicitDeny"})
    code, lines, _ = run_cli(capsys, "doctor", "--store", url, "--role-arn", arn)
    assert code == 1
    failed = line(lines, "FAIL", "role policies do not allow")
    missing, how = failed.split("do not allow ", 1)[1].split("  fix: ")[0].rsplit(" (", 1)
    assert sorted(missing.split("; ")) == [f"s3:ListBucket on arn:aws:s3:::{bucket}",
                                           f"s3:PutObject on arn:aws:s3:::{bucket}/* (explicitly denied)"]
    assert how == "evaluated by IAM's policy simulator)"


def test_a_simulator_answering_access_denied_falls_back_to_reading_the_policies(
        capsys: pytest.CaptureFixture[str], s3_store: tuple[str, str], make_role: Callable[..., str],
        simulator: Callable[..., Simulator]) -> None:
    url, bucket = s3_store
    arn = make_role(inline=writer_policy(bucket, tuple(a for a in WRITER_ACTIONS if a != "s3:GetObject")))
    server = simulator(denied=True)
    code, lines, _ = run_cli(capsys, "doctor", "--store", url, "--role-arn", arn)
    assert code == 1
    failed = line(lines, "FAIL", f"do not allow s3:GetObject on arn:aws:s3:::{bucket}/*")
    assert "read from the role's policies" in failed
    assert "SimulatePrincipalPolicy answered AccessDenied" in failed
    assert server.simulated, "the simulator was asked first"


def test_an_endpoint_without_the_simulator_falls_back_to_reading_the_policies(
        capsys: pytest.CaptureFixture[str], s3_store: tuple[str, str], make_role: Callable[..., str]) -> None:
    url, bucket = s3_store
    arn = make_role(inline=writer_policy(bucket))
    code, lines, _ = run_cli(capsys, "doctor", "--store", url, "--role-arn", arn)  # moto: no SimulatePrincipalPolicy
    assert code == 0, "\n".join(lines)
    passed = line(lines, "PASS", "allow the 8 writer actions")
    assert "read from the role's policies" in passed and "does not implement it" in passed
