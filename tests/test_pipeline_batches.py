"""Requests answered together (`Pipeline.handle_many`, what `serve` does on a local folder) and the folder's
deferred durability: the same answers and state as one by one, one sync and one state write per batch, and
what a crash before that sync leaves behind is repaired by the next delivery."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import orjson
import pytest
from tavus_callbacks.http import Request, Response
from tavus_callbacks.pipeline import Pipeline
from tavus_callbacks.settings import Settings
from tavus_callbacks.stores.local import LocalStore
from test_fold import PAYLOADS

TOKEN = "batch-token-0123456789abcdef"


class CountingStore(LocalStore):
    """A local folder that counts its compare-and-swap writes."""

    replaces = 0

    def replace(self, key: str, data: bytes, version: str | None, content_type: str = "application/json") -> str:
        self.replaces += 1
        return super().replace(key, data, version, content_type)


def callback(payload: Any, token: str = TOKEN, method: str = "POST") -> Request:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return Request(method, "/", {"token": token}, {}, body)


def summary(response: Response) -> tuple[int, Any]:
    return response.status, response.json_body()


def syncs(root: Path, of: str = "journal") -> tuple[int, int]:
    """(started, done) of the folder's shared counters of journal syncs (or of file-system syncs: of="fs")."""
    path = root / (".journal-sync" if of == "journal" else ".sync")
    if not path.exists():
        return 0, 0
    started, done, _ = struct.unpack("<qqq", path.read_bytes()[:24])
    return started, done


def conversation_state(root: Path) -> dict[str, Any]:
    (path,) = root.rglob("conversation.json")
    return orjson.loads(path.read_bytes())  # type: ignore[no-any-return]


MIXED = [
    *[callback(p) for p in PAYLOADS],
    callback(PAYLOADS[0]),  # a retry inside the same batch
    callback(PAYLOADS[1], token="wrong-token-0123456789abcdef"),
    callback(PAYLOADS[2], method="PUT"),
    callback(b"not json"),
    callback({"conversation_id": "c-other", "properties": {"guardrail": "no_medical_advice"}}),
]


def test_a_batch_answers_and_stores_exactly_as_one_by_one(tmp_path: Path) -> None:
    one = Pipeline(Settings(tokens=(TOKEN,)), store=LocalStore(tmp_path / "one"))
    many = Pipeline(Settings(tokens=(TOKEN,)), store=LocalStore(tmp_path / "many"))
    singly = [summary(one.handle(r)) for r in MIXED]
    together = [summary(r) for r in many.handle_many(MIXED)]
    assert together == singly
    assert [s for s, _ in together].count(200) == len(PAYLOADS) + 2
    assert together[len(PAYLOADS)][1]["status"] == "duplicate"
    files = {p.relative_to(tmp_path / "one"): p.read_bytes() for p in (tmp_path / "one").rglob("*")
             if p.is_file() and not p.name.startswith(".")}
    assert files == {p.relative_to(tmp_path / "many"): p.read_bytes() for p in (tmp_path / "many").rglob("*")
                     if p.is_file() and not p.name.startswith(".")}


def test_a_batch_writes_each_conversation_state_once_and_syncs_once(tmp_path: Path) -> None:
    store = CountingStore(tmp_path)
    pipeline = Pipeline(Settings(tokens=(TOKEN,)), store=store)
    pipeline.handle(callback(PAYLOADS[0]))
    before, replaces, fs = syncs(tmp_path), store.replaces, syncs(tmp_path, of="fs")
    answers = pipeline.handle_many([callback(p) for p in PAYLOADS[1:]])
    assert all(a.status == 200 for a in answers)
    derived = sum(1 for p in PAYLOADS[1:] if p.get("event_type") in (
        "application.transcription_ready", "application.perception_analysis"))
    assert store.replaces - replaces == 1 + derived  # conversation.json once, plus transcript / perception
    started, done = syncs(tmp_path)
    assert started - before[0] == 1 and done == started  # one sync of the journal
    assert syncs(tmp_path, of="fs") == fs  # and none of the whole file system
    assert len(conversation_state(tmp_path)["events"]) == len(PAYLOADS)


def test_one_by_one_each_event_syncs_before_its_answer(tmp_path: Path) -> None:
    pipeline = Pipeline(Settings(tokens=(TOKEN,)), store=LocalStore(tmp_path))
    for n, payload in enumerate(PAYLOADS[:3], start=1):
        assert pipeline.handle(callback(payload)).status == 200
        started, done = syncs(tmp_path)
        assert done == started >= n


def test_an_event_object_cut_short_by_a_crash_is_rewritten_by_the_retry(tmp_path: Path) -> None:
    pipeline = Pipeline(Settings(tokens=(TOKEN,)), store=LocalStore(tmp_path))
    first = pipeline.handle(callback(PAYLOADS[0])).json_body()
    (path,) = [p for p in tmp_path.rglob("*.json") if first["event_id"] in p.name]
    whole = path.read_bytes()
    for damaged in (b"", whole[: len(whole) // 2], b"\0" * len(whole)):
        path.write_bytes(damaged)
        again = pipeline.handle(callback(PAYLOADS[0])).json_body()
        assert again == {**first, "status": "stored"}
        assert path.read_bytes() == whole
    assert pipeline.handle(callback(PAYLOADS[0])).json_body()["status"] == "duplicate"


def test_an_intact_object_of_another_version_is_never_overwritten(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    assert store.create("a/events/x.json", b'{"id": "x", "written_by": "an older version"}')
    assert store.create("a/events/x.json", b'{"id": "x"}') is False
    assert json.loads((tmp_path / "a/events/x.json").read_bytes())["written_by"] == "an older version"


@pytest.mark.parametrize("damage", [b"", b'{"conversation_id": "c123456", "events": [{"id"', b"null"])
def test_a_conversation_state_cut_short_is_rebuilt_from_the_stored_events(tmp_path: Path, damage: bytes,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    pipeline = Pipeline(Settings(tokens=(TOKEN,)), store=LocalStore(tmp_path))
    for payload in PAYLOADS[:-1]:
        assert pipeline.handle(callback(payload)).status == 200
    expected = Pipeline(Settings(tokens=(TOKEN,)), store=LocalStore(tmp_path / "expected"))
    for payload in PAYLOADS:
        expected.handle(callback(payload))
    (path,) = [p for p in tmp_path.rglob("conversation.json") if "expected" not in p.parts]
    path.write_bytes(damage)
    assert pipeline.handle(callback(PAYLOADS[-1])).status == 200
    assert orjson.loads(path.read_bytes()) == conversation_state(tmp_path / "expected")
    assert "rebuilding it from its stored events" in caplog.text


def test_deferred_writes_are_synced_only_by_their_commit(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.create("warm-up.json", b"{}")
    before = syncs(tmp_path)
    with store.deferred() as pending:
        for n in range(5):
            store.create(f"c/events/{n}.json", b"{}")
        store.replace("c/conversation.json", b"{}", None)
        with store.deferred() as inner:
            assert inner is pending  # nested blocks share the outer one's sync
    assert syncs(tmp_path) == before
    pending.commit()
    started, done = syncs(tmp_path)
    assert started == before[0] + 1 and done == started


def _create_many(root: str, worker: int) -> int:
    store = LocalStore(root)
    return sum(store.create(f"c/events/{worker}-{n}.json", b"{}") for n in range(40))


def test_processes_sharing_a_folder_share_its_syncs(tmp_path: Path) -> None:
    # Each create waits twice for a sync begun after its writes (the bytes, then the name); a sync begun
    # by another process may be the one.
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(3) as pool:
        created = pool.starmap(_create_many, [(str(tmp_path), w) for w in range(3)])
    assert created == [40, 40, 40]
    assert len(list((tmp_path / "c" / "events").iterdir())) == 120
    started, done = syncs(tmp_path, of="fs")
    assert 1 <= done == started <= 2 * 120


class BrokenForOne(LocalStore):
    """A local folder with a bug on one object: creating it raises something no store should."""

    broken = ""

    def create(self, key: str, data: bytes, content_type: str = "application/json") -> bool:
        if self.broken and self.broken in key:
            raise RuntimeError("a bug")
        return super().create(key, data, content_type)


def test_a_bug_on_one_request_answers_500_for_it_alone(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = BrokenForOne(tmp_path)
    pipeline = Pipeline(Settings(tokens=(TOKEN,)), store=store)
    store.broken = "guardrail"
    answers = pipeline.handle_many([callback(p) for p in PAYLOADS])
    broken = [i for i, p in enumerate(PAYLOADS) if "guardrail" in str(p.get("properties", {}))]
    assert broken and [a.status for a in answers] == [500 if i in broken else 200 for i in range(len(PAYLOADS))]
    assert "unexpected error storing a callback" in caplog.text
    assert len(conversation_state(tmp_path)["events"]) == len(PAYLOADS) - len(broken)


# -- the ASGI app of `serve`: requests read together are stored together ------------------------------

class RecordingPipeline(Pipeline):
    """A pipeline that notes the size of each batch it stores, and can be made to fail one."""

    batches: list[int]
    fail_next = False

    def store_many(self, requests: Any) -> Any:
        self.batches.append(len(requests))
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("a bug")
        return super().store_many(requests)


async def asgi_post(app: Any, body: bytes) -> tuple[int, Any]:
    """One POST through the ASGI app, as uvicorn calls it; the status and the JSON answer."""
    scope = {"type": "http", "method": "POST", "path": "/", "query_string": f"token={TOKEN}".encode(),
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
             "client": ("127.0.0.1", 5000)}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent[0]["status"], orjson.loads(sent[1]["body"])


def test_requests_read_together_are_stored_as_one_batch_and_a_failed_batch_answers_500(tmp_path: Path) -> None:
    import asyncio

    from tavus_callbacks.server import CallbackApp

    pipeline = RecordingPipeline(Settings(tokens=(TOKEN,)), store=LocalStore(tmp_path))
    pipeline.batches = []
    app = CallbackApp(pipeline)

    async def scenario() -> tuple[list[tuple[int, Any]], list[tuple[int, Any]], list[tuple[int, Any]]]:
        together = await asyncio.gather(*(asgi_post(app, json.dumps(p).encode()) for p in PAYLOADS))
        pipeline.fail_next = True
        failed = await asyncio.gather(*(asgi_post(app, json.dumps(p).encode()) for p in PAYLOADS[:3]))
        again = await asyncio.gather(*(asgi_post(app, json.dumps(p).encode()) for p in PAYLOADS[:3]))
        return together, failed, again

    together, failed, again = asyncio.run(scenario())
    assert pipeline.batches == [len(PAYLOADS), 3, 3]
    assert [status for status, _ in together] == [200] * len(PAYLOADS)
    assert {answer["status"] for _, answer in together} == {"stored"}
    assert failed == [(500, {"error": "internal error; see the server's log"})] * 3
    assert [(status, answer["status"]) for status, answer in again] == [(200, "duplicate")] * 3
    assert len(conversation_state(tmp_path)["events"]) == len(PAYLOADS)


def test_requests_that_arrive_while_a_batch_is_synced_wait_and_are_stored_as_the_next_batch(tmp_path: Path) -> None:
    import asyncio
    import threading

    from tavus_callbacks.server import CallbackApp

    release = threading.Event()

    class SlowSync(RecordingPipeline):
        def store_many(self, requests: Any) -> Any:
            stored = super().store_many(requests)
            commit = stored.commit

            def held_commit() -> None:
                release.wait(10)
                commit()

            stored.commit = held_commit
            return stored

    pipeline = SlowSync(Settings(tokens=(TOKEN,)), store=LocalStore(tmp_path))
    pipeline.batches = []
    app = CallbackApp(pipeline)
    bodies = [json.dumps(p).encode() for p in PAYLOADS[:6]]

    async def scenario() -> list[tuple[int, Any]]:
        first = [asyncio.ensure_future(asgi_post(app, body)) for body in bodies[:2]]
        await asyncio.sleep(0.05)  # the first batch is stored; its sync is held
        later = []
        for body in bodies[2:]:  # arriving one by one, in separate turns of the loop
            later.append(asyncio.ensure_future(asgi_post(app, body)))
            await asyncio.sleep(0.02)
        assert pipeline.batches == [2]  # nothing stored while the sync runs
        release.set()
        return await asyncio.gather(*first, *later)

    answers = asyncio.run(scenario())
    assert pipeline.batches == [2, 4]
    assert [status for status, _ in answers] == [200] * 6
