"""The local folder's journal: what a crash or a power loss leaves unwritten is redone from it, by the first
process to open the folder alone, and only then; records of spent generations are never redone."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import orjson
import pytest
from tavus_callbacks.http import Request
from tavus_callbacks.pipeline import Pipeline
from tavus_callbacks.settings import Settings
from tavus_callbacks.stores import journal, local
from tavus_callbacks.stores.local import LocalStore
from test_fold import PAYLOADS

pytestmark = pytest.mark.skipif(local._syncfs() is None, reason="the journal needs syncfs (Linux)")

TOKEN = "journal-token-0123456789abcdef"


def objects(root: Path) -> dict[str, bytes]:
    """Every object of a folder store (hidden files left out) and its bytes."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)}


def lose(root: Path, keys: list[str]) -> None:
    """What a power loss can leave of objects the kernel had not written yet: gone, empty, or zeros."""
    for n, key in enumerate(keys):
        path = root / key
        if n % 3 == 0:
            path.unlink()
        elif n % 3 == 1:
            path.write_bytes(b"")
        else:
            path.write_bytes(bytes(path.stat().st_size))


def create_committed(store: LocalStore, count: int) -> None:
    """Objects c/events/0.json ... written as one deferred batch and committed (acknowledged, as it were)."""
    create_committed_at(store, "c", count)


def create_committed_at(store: LocalStore, folder: str, count: int = 3) -> None:
    with store.deferred() as pending:
        for n in range(count):
            store.create(f"{folder}/events/{n}.json", orjson.dumps({"n": n}))
    pending.commit()


def crash(store: LocalStore) -> None:
    """What a process killed now leaves behind: its files closed (so its locks released), nothing else."""
    kept = store._journal
    assert kept is not None
    if kept._checkpointing is not None:
        kept._checkpointing.join()
    detached = kept._finalizer.detach()
    assert detached is not None
    fds, users = detached[2][0], detached[2][1]
    for fd in (*fds, users):
        os.close(fd)
    store._journal = None


def test_a_process_that_dies_after_answering_loses_nothing_its_journal_holds(tmp_path: Path,
                                                                             caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "store"
    script = textwrap.dedent(f"""
        import json, os, sys
        from tavus_callbacks.http import Request
        from tavus_callbacks.pipeline import Pipeline
        from tavus_callbacks.settings import Settings
        from tavus_callbacks.stores.local import LocalStore
        pipeline = Pipeline(Settings(tokens=({TOKEN!r},)), store=LocalStore({str(root)!r}))
        payloads = json.loads(sys.stdin.read())
        answers = pipeline.handle_many([Request("POST", "/", {{"token": {TOKEN!r}}}, {{}}, json.dumps(p).encode())
                                        for p in payloads])
        print(json.dumps([a.status for a in answers]), flush=True)
        os._exit(0)  # no clean-up of any kind, as if killed
    """)
    done = subprocess.run([sys.executable, "-c", script], input=json.dumps(PAYLOADS), capture_output=True,
                          text=True, check=True)
    assert json.loads(done.stdout) == [200] * len(PAYLOADS)
    whole = objects(root)
    expected = Pipeline(Settings(tokens=(TOKEN,)), store=LocalStore(tmp_path / "expected"))
    expected.handle_many([Request("POST", "/", {"token": TOKEN}, {}, json.dumps(p).encode()) for p in PAYLOADS])
    assert whole == objects(tmp_path / "expected")
    lose(root, sorted(whole))

    LocalStore(root)  # the first to open the folder again finishes its writes
    assert objects(root) == whole
    assert "finishing" in caplog.text and "not closed cleanly" in caplog.text


def test_a_journal_in_use_is_never_replayed_and_a_deleted_object_stays_deleted(tmp_path: Path) -> None:
    first = LocalStore(tmp_path)
    create_committed(first, 4)
    first.delete("c/events/3.json")
    (tmp_path / "c/events/0.json").unlink()  # lost, as far as any reader can tell
    second = LocalStore(tmp_path)  # the folder is in use: nothing is redone under the first one's feet
    assert not (tmp_path / "c/events/0.json").exists()
    second.close()  # not the last user: the journal stays as it is
    crash(first)

    LocalStore(tmp_path)  # alone now: what the journal holds is redone, in order
    assert sorted(objects(tmp_path)) == ["c/events/0.json", "c/events/1.json", "c/events/2.json"]


def generation(root: Path) -> int:
    """The newest generation named by the folder's journal files."""
    found = [0]
    for n in (0, 1):
        magic, number, _ = journal._HEADER.unpack((root / f".journal-{n}").read_bytes()[:journal._HEADER.size])
        if magic == journal._HEADER_MAGIC:
            found.append(number)
    return max(found)


def test_records_of_spent_generations_are_never_redone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Records all of one size, so a file started again has whole records of its spent generation after
    its new ones: only their generation tells them apart."""
    monkeypatch.setattr(journal, "CAPACITY", 64 << 10)
    monkeypatch.setattr(journal, "STEP", 16 << 10)
    store = LocalStore(tmp_path)

    def put(prefix: str, n: int) -> str:
        key = f"{prefix}/events/{n:04d}.json"
        with store.deferred() as pending:
            store.create(key, orjson.dumps({"n": f"{n:04d}", "pad": "x" * 1000}))
        pending.commit()
        return key

    old = [put("old", n) for n in range(200)]  # several hand-overs
    start = generation(tmp_path)
    new = []
    while generation(tmp_path) < start + 2:  # both files started again since
        new.append(put("new", len(new)))
    for _ in range(3):
        new.append(put("new", len(new)))
    crash(store)
    assert (tmp_path / ".journal-0").stat().st_size <= 64 << 10
    whole = objects(tmp_path)
    for key in old + new[-3:]:
        (tmp_path / key).unlink()

    LocalStore(tmp_path)
    restored = objects(tmp_path)
    assert [restored.get(key) for key in new[-3:]] == [whole[key] for key in new[-3:]]
    assert not any(key in restored for key in old)  # spent: on disk since a finished checkpoint


def test_replay_stops_at_a_torn_record_and_keeps_what_precedes_it(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    create_committed(store, 3)
    crash(store)
    current = tmp_path / ".journal-0"
    data = current.read_bytes()
    end = data.rindex(b'{"n":2}') + len(b'{"n":2}')
    with open(current, "r+b") as f:  # half of one more record, as a crash in the middle of an append leaves it
        f.seek(end)
        f.write(data[end - 60:end - 30])
    for n in range(3):
        (tmp_path / f"c/events/{n}.json").unlink()

    LocalStore(tmp_path)
    assert sorted(objects(tmp_path)) == [f"c/events/{n}.json" for n in range(3)]


def test_a_write_too_large_for_the_journal_is_synced_and_its_earlier_records_are_spent(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(journal, "CAPACITY", 16 << 10)
    store = LocalStore(tmp_path)
    key = "c/conversation.json"
    small = orjson.dumps({"v": 1})
    large = orjson.dumps({"v": 2, "pad": "y" * (20 << 10)})
    with store.deferred() as pending:
        version = store.replace(key, small, None)
    pending.commit()
    with store.deferred() as pending:
        store.replace(key, large, version)
    pending.commit()
    crash(store)

    LocalStore(tmp_path)  # the small version's record must not be redone over the large one
    assert (tmp_path / key).read_bytes() == large


def test_the_last_process_to_close_the_folder_leaves_nothing_to_redo(tmp_path: Path,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    store = LocalStore(tmp_path)
    with store.deferred() as pending:
        store.create("c/events/0.json", b"{}")
    pending.commit()
    store.close()
    (tmp_path / "c/events/0.json").unlink()  # deleted by hand after a clean stop: stays deleted
    LocalStore(tmp_path)
    assert objects(tmp_path) == {}
    assert "finishing" not in caplog.text


def _write_and_leave(root: str, worker: int, barrier: Any) -> None:
    store = LocalStore(root)
    create_committed_at(store, f"w{worker}")
    barrier.wait(60)  # all have the folder open; then all leave at once, the normal way


def test_processes_that_leave_together_leave_nothing_to_redo(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(3)
    workers = [context.Process(target=_write_and_leave, args=(str(tmp_path), w, barrier)) for w in range(3)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(60)
    assert [p.exitcode for p in workers] == [0, 0, 0]
    (tmp_path / "w0/events/0.json").unlink()  # deleted by hand after they all stopped: stays deleted
    LocalStore(tmp_path)
    assert "w0/events/0.json" not in objects(tmp_path) and len(objects(tmp_path)) == 8
    assert "finishing" not in caplog.text


def _deferred_creates(root: str, worker: int, barrier: Any, counts: Any) -> None:
    store = LocalStore(root)
    created = 0
    for batch in range(8):
        with store.deferred() as pending:
            created += sum(store.create(f"w{worker}/events/{batch}-{n}.json", orjson.dumps([worker, batch, n]))
                           for n in range(5))
        pending.commit()
    counts.put(created)
    counts.close()
    counts.join_thread()  # the count is sent before the process ends without any clean-up
    barrier.wait(60)  # all three hold the folder open until all have written: none replays the others
    os._exit(0)  # killed, as it were: no checkpoint on the way out


def test_processes_appending_together_leave_a_journal_that_redoes_all_of_them(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    barrier, counts = context.Barrier(3), context.Queue()
    workers = [context.Process(target=_deferred_creates, args=(str(tmp_path), w, barrier, counts))
               for w in range(3)]
    for process in workers:
        process.start()
    created = [counts.get(timeout=60) for _ in workers]
    for process in workers:
        process.join(60)
    assert created == [40, 40, 40] and [p.exitcode for p in workers] == [0, 0, 0]
    whole = objects(tmp_path)
    assert len(whole) == 120
    lose(tmp_path, sorted(whole))

    LocalStore(tmp_path)
    assert objects(tmp_path) == whole


def test_serve_stopped_cleanly_leaves_nothing_to_redo(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from serve_fixture import running_serve

    root = tmp_path / "store"
    with running_serve(store_url=root.as_uri()) as server:
        statuses = [server.post(p)[0] for p in PAYLOADS]
        assert statuses == [200] * len(PAYLOADS)
        stored = sorted(objects(root))
        assert server.stop() == 0  # SIGTERM: a graceful stop
    assert "finishing" not in server.output()
    (root / stored[0]).unlink()  # deleted by hand after the stop: stays deleted
    LocalStore(root)
    assert stored[0] not in objects(root)
    assert "finishing" not in caplog.text
