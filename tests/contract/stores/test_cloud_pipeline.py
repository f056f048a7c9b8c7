"""The pipeline on each cloud store, against its real emulator: exactly once under concurrency, no lost
update of conversation.json, 503 and nothing lost through an outage, recording checks, and `serve`."""

from __future__ import annotations

import copy
import json
import logging
import socket
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
import pytest
from conftest import RECORDED, handle_and_derive, load_event
from support.servers import CLOUD_BACKENDS, Emulator, create_bucket, new_bucket_name, store_url_for
from tavus_callbacks.clients import clear_clients
from tavus_callbacks.errors import StoreUnavailable
from tavus_callbacks.events.normalize import normalize
from tavus_callbacks.http import Request, Response
from tavus_callbacks.layout import Layout
from tavus_callbacks.pipeline import Pipeline
from tavus_callbacks.record import build_record
from tavus_callbacks.settings import Settings
from tavus_callbacks.stores import Store, open_store

TOKEN = "cloud-pipeline-token-0123456789"
DERIVED = ("conversation.json", "transcript.json", "perception.json")


def make_pipeline(url: str) -> Pipeline:
    return Pipeline(Settings(tokens=(TOKEN,), store_url=url))


def answer(pipeline: Pipeline, payload: dict[str, Any]) -> Response:
    """Answer one callback (the callback path only: the event object's create)."""
    return pipeline.handle(Request("POST", "/", {"token": TOKEN}, {}, json.dumps(payload).encode()))


def deliver(pipeline: Pipeline, payload: dict[str, Any]) -> Response:
    """Answer one callback, then derive from it as the store's change feed would next."""
    return handle_and_derive(pipeline, Request("POST", "/", {"token": TOKEN}, {"content-type": "application/json"},
                                   orjson.dumps(payload)))


def event_key(payload: dict[str, Any], prefix: str = "") -> str:
    return build_record(payload, normalize(payload), Layout(prefix)).key


def event_objects(store: Store) -> list[str]:
    """Every stored event object (not the derived per-conversation documents, nor the time index)."""
    return [k for k in store.iter_keys("") if "/events/" in k]


def listed_event_objects(store: Store, emulator: Emulator, bucket: str) -> list[str]:
    """event_objects(store), or for fake-gcs-server the files of its bucket folder when its own listing fails.

    Stopped in the middle of its own file writes, fake-gcs-server sometimes answers "bucket not found" to
    listings ever after, while every object still reads back; its folder on disk is then the listing,
    without the hidden temporary files (".<name><digits>") a write it did not finish leaves there.
    """
    try:
        return event_objects(store)
    except StoreUnavailable:
        if emulator.kind != "gcs":
            raise
    root = emulator.data_dir / "objects" / bucket
    keys = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")]
    return [k for k in keys if "/events/" in k and not k.endswith(DERIVED)]


def state_of(store: Store, conversation_id: str, prefix: str = "") -> dict[str, Any]:
    blob = store.read(Layout(prefix).conversation_key(conversation_id))
    assert blob is not None, f"no conversation.json for {conversation_id}"
    state: dict[str, Any] = orjson.loads(blob.data)
    return state


def twenty_events() -> list[dict[str, Any]]:
    """20 distinct recorded payloads of every family."""
    names = sorted(p.stem for p in RECORDED)
    payloads = [load_event(n) for n in names]
    assert len(payloads) >= 20
    return payloads[:20]


def objectives(conversation_id: str, count: int) -> list[dict[str, Any]]:
    """`count` distinct objective callbacks of one conversation."""
    base = load_event("objective")
    out = []
    for i in range(count):
        payload = copy.deepcopy(base)
        payload["conversation_id"] = conversation_id
        payload["objective_name"] = f"objective_{i:03d}"
        out.append(payload)
    return out


# -- exactly once under concurrency ---------------------------------------------------------

@pytest.mark.slow
def test_concurrent_redeliveries_store_each_event_once(store_url: str) -> None:
    """16 threads x 200 deliveries of 20 distinct events: 20 objects, one 'stored' each, every answer 200."""
    pipeline = make_pipeline(store_url)
    payloads = twenty_events()
    answers: Counter[tuple[int, str]] = Counter()
    stored: Counter[str] = Counter()
    lock = threading.Lock()

    def worker(offset: int) -> None:
        for i in range(200):
            response = deliver(pipeline, payloads[(offset + i) % len(payloads)])
            body = response.json_body()
            with lock:
                answers[(response.status, body.get("status", body.get("error")))] += 1
                if body.get("status") == "stored":
                    stored[body["event_id"]] += 1

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(worker, range(16)))

    assert answers == Counter({(200, "stored"): 20, (200, "duplicate"): 3180})
    assert set(stored.values()) == {1}
    store = pipeline.store
    assert sorted(event_objects(store)) == sorted(event_key(p) for p in payloads)
    for payload in payloads:  # each object holds the canonical record of its payload
        record = build_record(payload, normalize(payload), Layout(""))
        blob = store.read(record.key)
        assert blob is not None and blob.data == record.body


def test_concurrent_events_of_one_conversation_lose_no_update(store_url: str) -> None:
    """50 distinct events of one conversation, all at once: every one is answered 200 (the answer waits for
    the event object only); derived all at once as a cloud feed would, what loses the compare-and-swap race
    raises and succeeds when delivered again, and conversation.json lists all 50 once."""
    pipeline = make_pipeline(store_url)
    payloads = objectives("c-concurrent-50", 50)
    barrier = threading.Barrier(len(payloads))

    def send(payload: dict[str, Any]) -> Response:
        barrier.wait()
        return answer(pipeline, payload)

    with ThreadPoolExecutor(len(payloads)) as pool:
        responses = list(pool.map(send, payloads))
    assert [r.status for r in responses] == [200] * 50, [r.body for r in responses if r.status != 200][:3]
    keys = [r.outcome.key for r in responses if r.outcome and r.outcome.key]

    def derive(key: str) -> str | None:
        try:
            pipeline.derive(key)
            return None
        except StoreUnavailable:
            return key

    with ThreadPoolExecutor(len(keys)) as pool:
        failed = [k for k in pool.map(derive, keys) if k]
    for _ in range(5):  # the feed's redeliveries
        failed = [k for k in failed if derive(k)]
    assert failed == []
    ids = [build_record(p, normalize(p), Layout("")).id for p in payloads]
    state = state_of(pipeline.store, "c-concurrent-50")
    assert sorted(e["id"] for e in state["events"]) == sorted(ids)
    assert sorted(state["objectives"]) == [f"objective_{i:03d}" for i in range(50)]
    assert len(event_objects(pipeline.store)) == 50


# -- outage ---------------------------------------------------------------------------------

def outage_events(count: int) -> list[dict[str, Any]]:
    """`count` distinct guardrail callbacks spread over 6 conversations."""
    base = load_event("guardrail")
    out = []
    for i in range(count):
        payload = copy.deepcopy(base)
        payload["conversation_id"] = f"c-outage-{i % 6}"
        payload["properties"]["guardrail"] = f"guardrail_{i:03d}"
        out.append(payload)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("kind", CLOUD_BACKENDS)
def test_store_outage_answers_503_and_loses_nothing(kind: str, start_emulator: Callable[[str], Emulator]) -> None:
    """Kill the emulator mid-run: only 200s and 503s (with Retry-After); every 200 is in the bucket after a
    restart; re-delivering everything then completes the set exactly once."""
    emulator = start_emulator(kind)
    bucket = new_bucket_name()
    create_bucket(emulator, bucket)
    pipeline = make_pipeline(store_url_for(kind, bucket))
    payloads = outage_events(90)
    results: dict[int, Response] = {}
    lock = threading.Lock()
    killed = threading.Event()

    def send(i: int) -> None:
        response = answer(pipeline, payloads[i])
        with lock:
            results[i] = response
            if len(results) == 30:
                emulator.kill()
                killed.set()

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(send, range(len(payloads))))
    assert killed.is_set()

    statuses = Counter(r.status for r in results.values())
    assert set(statuses) <= {200, 503}, statuses
    assert statuses[200] >= 30 and statuses[503] >= 40, statuses
    for response in results.values():
        if response.status == 503:
            assert response.headers["Retry-After"].isdigit()
            assert "retry later" in response.json_body()["error"]
    acknowledged = [i for i, r in results.items() if r.status == 200]

    emulator.start()
    store, _ = open_store(store_url_for(kind, bucket))
    for i in acknowledged:  # nothing acknowledged is missing
        record = build_record(payloads[i], normalize(payloads[i]), Layout(""))
        blob = store.read(record.key)
        assert blob is not None and blob.data == record.body, f"acknowledged event {i} is missing"

    with ThreadPoolExecutor(6) as pool:
        again = list(pool.map(lambda p: answer(pipeline, p), payloads))
    assert [r.status for r in again] == [200] * len(payloads)
    assert all(again[i].json_body()["status"] == "duplicate" for i in acknowledged)
    assert sorted(listed_event_objects(store, emulator, bucket)) == sorted(event_key(p) for p in payloads)
    for key in event_objects(store):  # the store's change feed delivers each created object to derive
        pipeline.derive(key)
    for c in range(6):
        state = state_of(store, f"c-outage-{c}")
        assert len(state["events"]) == len(payloads[c::6])
        assert sum(g["count"] for g in state["guardrails"]) == len(payloads[c::6])


# -- recording verification -----------------------------------------------------------------

def recording_uri(kind: str, store: Store, bucket: str, key: str) -> str:
    if kind == "s3":
        return f"s3://{bucket}/{key}"
    if kind == "gcs":
        return f"gs://{bucket}/{key}"
    account = getattr(store, "account")  # noqa: B009 - only the Azure store has one
    return f"https://{account}.blob.core.windows.net/{bucket}/{key}"


def recording_ready(conversation_id: str, kind: str, uri: str) -> dict[str, Any]:
    payload = load_event("conversation.application.recording_ready.s3")
    payload["conversation_id"] = conversation_id
    payload["properties"] = {"storage_provider": {"gcs": "gcs", "azure": "azure_blob"}.get(kind, "s3"),
                             "storage_uri": uri, "duration": 162.4}
    return payload


@pytest.mark.parametrize("kind", CLOUD_BACKENDS)
def test_recording_is_verified_in_the_bucket(kind: str, cloud_bucket: Callable[..., str],
                                             caplog: pytest.LogCaptureFixture) -> None:
    url = cloud_bucket(kind, "calls/")
    pipeline = make_pipeline(url)
    store = pipeline.store
    bucket = url.split("://", 1)[1].split("/", 1)[0]
    movie = bytes(range(256)) * 40
    assert store.create("c-found/1752216347472.mp4", movie, content_type="video/mp4")
    info = store.stat("c-found/1752216347472.mp4")
    assert info is not None

    cases = {
        "c-found": recording_uri(kind, store, bucket, "c-found/1752216347472.mp4"),
        "c-missing": recording_uri(kind, store, bucket, "c-missing/1752216347472.mp4"),
        "c-elsewhere": recording_uri(kind, store, "another-bucket", "c-elsewhere/1752216347472.mp4"),
    }
    with caplog.at_level(logging.ERROR, logger="tavus_callbacks"):
        for cid, uri in cases.items():
            response = deliver(pipeline, recording_ready(cid, kind, uri))
            assert response.status == 200 and response.json_body()["status"] == "stored"

    found = state_of(store, "c-found", "calls/")["recording"]
    assert found["uri"] == cases["c-found"] and found["status"] == "ready"
    assert (found["checked"], found["found"], found["size"], found["etag"], found["content_type"]) == (
        True, True, len(movie), info.etag, "video/mp4")
    missing = state_of(store, "c-missing", "calls/")["recording"]
    assert (missing["checked"], missing["found"]) == (True, False)
    assert any("c-missing" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)
    assert not any("c-found" in r.getMessage() for r in caplog.records)
    elsewhere = state_of(store, "c-elsewhere", "calls/")["recording"]
    assert elsewhere["checked"] is False and "not checked" in elsewhere["note"]
    # the events are stored either way, under the prefix
    assert len([k for k in event_objects(store) if k.startswith("calls/c-")]) == 3


def test_legacy_recording_is_verified_on_s3(cloud_bucket: Callable[..., str]) -> None:
    url = cloud_bucket("s3")
    pipeline = make_pipeline(url)
    bucket = url.split("://", 1)[1].split("/", 1)[0]
    payload = load_event("conversation.application.recording_ready.legacy")
    payload["properties"]["bucket_name"] = bucket
    assert pipeline.store.create(payload["properties"]["s3_key"], b"\x00" * 4096, content_type="video/mp4")
    assert deliver(pipeline, payload).status == 200
    recording = state_of(pipeline.store, payload["conversation_id"])["recording"]
    assert (recording["checked"], recording["found"], recording["size"]) == (True, True, 4096)


# -- serve --------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", CLOUD_BACKENDS)
def test_serve_writes_to_the_cloud_store(kind: str, cloud_bucket: Callable[..., str],
                                         serve_factory: Callable[..., Any]) -> None:
    """`tavus-callbacks serve --store <cloud URL>`: the callback lands in the bucket once."""
    url = cloud_bucket(kind, "tavus")
    server = serve_factory(args=["--store", url], workers=1, threads=4)
    payload = load_event("conversation.system.replica_joined")
    assert server.post(payload)[0] == 200
    status, answer = server.post(payload)
    assert status == 200 and answer is not None and answer["status"] == "duplicate"
    store, prefix = open_store(url)
    assert prefix == "tavus/"
    assert event_objects(store) == [event_key(payload, prefix)]
    server.settle(url)
    assert state_of(store, payload["conversation_id"], prefix)["replica_id"] == "r5f0577fc829"


def test_store_urls_open_the_right_backend(cloud_bucket: Callable[..., str]) -> None:
    for kind, cls in (("s3", "S3Store"), ("gcs", "GCSStore"), ("azure", "AzureBlobStore")):
        store, prefix = open_store(cloud_bucket(kind, "p"))
        assert type(store).__name__ == cls and prefix == "p/"



@pytest.fixture
def hung_endpoint() -> Iterator[str]:
    """A loopback port that accepts connections and never answers (a store that hangs)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.slow
def test_a_hung_store_answers_503(cloud_bucket: Callable[..., str], hung_endpoint: str,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Connect and read timeouts bound every store call: a store that never answers gets a 503, not a hang
    (bench/bench_stores.py prints how long it takes)."""
    urls = [cloud_bucket(kind) for kind in CLOUD_BACKENDS]
    monkeypatch.setenv("AWS_ENDPOINT_URL", hung_endpoint)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", hung_endpoint)
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
                       f"AccountKey=a2V5;BlobEndpoint={hung_endpoint}/devstoreaccount1;")
    clear_clients()
    payload = load_event("conversation.system.replica_joined")
    with ThreadPoolExecutor(len(urls)) as pool:
        responses = list(pool.map(lambda url: deliver(make_pipeline(url), payload), urls))
    for response in responses:
        assert response.status == 503 and response.headers["Retry-After"].isdigit()
