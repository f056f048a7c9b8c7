"""The soak in short: `serve` on moto through the fault-injecting proxy loses and duplicates nothing.

Also shows the parts can fail: the proxy really injects each kind of fault, and the audit really
reports a lost, duplicated, corrupt or wrongly folded event.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import boto3
import orjson
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError
from support.servers import Emulator, create_bucket, new_bucket_name
from tavus_callbacks.cli.send import CONVERSATION_ORDER, Ids, SampleConversation
from tavus_callbacks.http import Request
from tavus_callbacks.pipeline import Pipeline
from tavus_callbacks.settings import Settings
from tavus_callbacks.stores.sqlite import SQLiteStore

ROOT = Path(__file__).resolve().parents[2]
SOAK = ROOT / "bench" / "soak.py"
SHORT_EVENTS = 300
FAULT_RATE = 0.2


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


faulty_proxy = _load("faulty_proxy")
soak = _load("soak")


@pytest.mark.slow
def test_a_short_soak_through_store_faults_loses_and_duplicates_nothing() -> None:
    run = subprocess.run([sys.executable, str(SOAK), "--events", str(SHORT_EVENTS), "--rate", str(FAULT_RATE),
                          "--senders", "12", "--minutes", "3", "--seed", "11", "--json"],
                         capture_output=True, text=True, timeout=400, cwd=ROOT)
    assert run.stdout.strip(), run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    summary = "\n".join(run.stdout.strip().splitlines()[:-1])
    audit = report["audit"]
    assert (audit["lost"], audit["duplicated"], audit["unacknowledged_lost"]) == (0, 0, 0), summary
    assert audit["corrupt"] == audit["fold_mismatches"] == audit["derived_mismatches"] == 0, summary
    assert report["events"] == report["acknowledged"] == audit["stored_events"] == SHORT_EVENTS, summary
    assert report["deliveries"] > report["events"] and report["answers"].get("200 duplicate", 0) > 0, summary
    assert audit["conversations"] >= SHORT_EVENTS // 15, summary
    # The faults really happened, including the ambiguous ones (applied upstream, reported lost or failed).
    assert report["faults_injected"] >= 0.1 * report["store_requests"] > 0, summary
    assert report["faults_by_kind"].get("drop_after", 0) > 0 and report["faults_by_kind"].get("late_500", 0) > 0
    assert report["ok"] is True and run.returncode == 0, summary


# -- the proxy ----------------------------------------------------------------------------------------

@pytest.fixture
def proxied(moto_server: Emulator) -> Iterator[tuple[object, object, object, str]]:
    """A bucket, a client straight to moto, and a client (no retries) through a proxy whose plan the test sets."""
    bucket = new_bucket_name()
    create_bucket(moto_server, bucket)
    plan = faulty_proxy.FaultPlan(1.0, seed=3)
    proxy = faulty_proxy.FaultyProxy(moto_server.endpoint, plan).start()
    creds = {"region_name": "us-east-1", "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    direct = boto3.client("s3", endpoint_url=moto_server.endpoint, **creds)
    through = boto3.client("s3", endpoint_url=proxy.url, **creds,
                           config=Config(retries={"total_max_attempts": 1}, read_timeout=10))
    try:
        yield plan, direct, through, bucket
    finally:
        proxy.stop()


@pytest.mark.parametrize("kind,applied", [("error_500", False), ("error_503", False), ("drop_before", False),
                                          ("drop_after", True), ("late_500", True)])
def test_each_fault_fails_the_call_and_applies_it_or_not(proxied: tuple[object, object, object, str], kind: str,
                                                         applied: bool) -> None:
    plan, direct, through, bucket = proxied
    plan.kinds = (kind,)  # type: ignore[attr-defined]
    with pytest.raises((ClientError, ConnectionClosedError, EndpointConnectionError)):
        through.put_object(Bucket=bucket, Key="k.json", Body=b"{}", IfNoneMatch="*")  # type: ignore[attr-defined]
    listed = direct.list_objects_v2(Bucket=bucket).get("Contents", [])  # type: ignore[attr-defined]
    assert bool(listed) == applied
    assert plan.injected == {kind: 1}  # type: ignore[attr-defined]


def test_a_delay_still_forwards_and_no_fault_is_a_plain_proxy(proxied: tuple[object, object, object, str]) -> None:
    plan, direct, through, bucket = proxied
    plan.kinds = ("delay",)  # type: ignore[attr-defined]
    through.put_object(Bucket=bucket, Key="a.json", Body=b"{}")  # type: ignore[attr-defined]
    plan.enabled = False  # type: ignore[attr-defined]
    through.put_object(Bucket=bucket, Key="b.json", Body=b"[]")  # type: ignore[attr-defined]
    assert through.get_object(Bucket=bucket, Key="b.json")["Body"].read() == b"[]"  # type: ignore[attr-defined]
    assert len(direct.list_objects_v2(Bucket=bucket)["Contents"]) == 2  # type: ignore[attr-defined]
    assert plan.injected == {"delay": 1} and plan.requests == 3  # type: ignore[attr-defined]


def test_the_fault_plan_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        faulty_proxy.FaultPlan(1.5)
    with pytest.raises(ValueError, match="unknown fault kinds"):
        faulty_proxy.FaultPlan(0.1, kinds=("meteor",))


# -- the audit ----------------------------------------------------------------------------------------

TOKEN = "audit-token-0123456789abcdef"


@pytest.fixture
def delivered(tmp_path: Path) -> tuple[SQLiteStore, set[str]]:
    """Two whole sample conversations delivered into a SQLite store; the ids sent."""
    store = SQLiteStore(tmp_path / "store.db")
    pipeline = Pipeline(Settings(tokens=(TOKEN,)), store=store)
    sent = set()
    for n in range(2):
        sample = SampleConversation(Ids(f"caudit{n}", f"raudit{n}", f"faudit{n}", f"vaudit{n}"))
        for name in CONVERSATION_ORDER:
            payload = sample.named(name)
            response = pipeline.handle(Request("POST", "/", {"token": TOKEN}, {}, json.dumps(payload).encode()))
            assert response.status == 200
            sent.add(response.json_body()["event_id"])
    return store, sent


def read(store: SQLiteStore, key: str) -> bytes:
    blob = store.read(key)
    assert blob is not None, key
    return blob.data


def overwrite(store: SQLiteStore, key: str, data: bytes) -> None:
    """Change an object behind the pipeline's back (by compare-and-swap on its current version)."""
    blob = store.read(key)
    assert blob is not None, key
    store.replace(key, data, blob.version)


def event_keys(store: SQLiteStore, cid: str) -> list[str]:
    return list(store.iter_keys(f"{cid}/events/"))


def test_the_audit_of_a_clean_store_is_clean(delivered: tuple[SQLiteStore, set[str]]) -> None:
    store, sent = delivered
    result = soak.audit(store, "", sent, sent)
    assert (result.lost, result.duplicated, result.corrupt, result.fold_mismatches, result.derived_mismatches) == (
        0, 0, 0, 0, 0), result.problems
    assert result.stored_events == len(sent) and result.conversations == 2


def test_the_audit_reports_a_lost_event(delivered: tuple[SQLiteStore, set[str]]) -> None:
    store, sent = delivered
    store.delete(event_keys(store, "caudit0")[0])
    result = soak.audit(store, "", sent, sent)
    assert result.lost == 1 and result.fold_mismatches == 1  # the state still lists it; the fold of what is stored not


def test_the_audit_reports_an_event_stored_twice(delivered: tuple[SQLiteStore, set[str]]) -> None:
    store, sent = delivered
    key = event_keys(store, "caudit1")[0]
    folder, name = key.rsplit("/", 1)
    store.create(f"{folder}/20990101T000000.000000Z_{name.split('_', 1)[1]}", read(store, key))
    assert soak.audit(store, "", sent, sent).duplicated == 1


def test_the_audit_reports_a_tampered_event(delivered: tuple[SQLiteStore, set[str]]) -> None:
    store, sent = delivered
    key = next(k for k in event_keys(store, "caudit0") if "objective" in k)
    document = orjson.loads(read(store, key))
    document["data"]["payload"]["output_variables"] = {"email": "someone-else@example.com"}
    overwrite(store, key, orjson.dumps(document))
    assert soak.audit(store, "", sent, sent).corrupt == 1


def test_the_audit_reports_a_state_that_is_not_the_fold(delivered: tuple[SQLiteStore, set[str]]) -> None:
    store, sent = delivered
    state = orjson.loads(read(store, "caudit1/conversation.json"))
    state["shutdown"] = None
    overwrite(store, "caudit1/conversation.json", orjson.dumps(state))
    result = soak.audit(store, "", sent, sent)
    assert result.fold_mismatches == 1 and "caudit1" in result.problems[0]


def test_the_audit_reports_a_transcript_from_another_event(delivered: tuple[SQLiteStore, set[str]]) -> None:
    store, sent = delivered
    key = "caudit0/transcript.json"
    overwrite(store, key, orjson.dumps({**orjson.loads(read(store, key)), "event_id": "0" * 64}))
    assert soak.audit(store, "", sent, sent).derived_mismatches == 1
