"""The local folder's replace: two files per state object, reused, and never rewritten under a reader."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import orjson
import pytest
from tavus_callbacks.errors import PreconditionFailed
from tavus_callbacks.stores import local
from tavus_callbacks.stores.local import LocalStore

KEY = "c123/conversation.json"


def document(n: int, size: int) -> bytes:
    """A JSON document whose every byte depends on n, so a mix of two of them never parses as one."""
    return orjson.dumps({"n": n, "pad": f"{n:08d}" * (size // 8), "end": n})


def replace_chain(store: LocalStore, contents: list[bytes], version: str | None = None) -> None:
    for data in contents:
        version = store.replace(KEY, data, version)


@pytest.mark.skipif(local._libc("renameat2") is None, reason="no renameat2 here: a replace renames over the object")
def test_replaces_reuse_two_files_and_delete_none(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    inodes: set[int] = set()
    version = None
    for n in range(20):
        data = document(n, 100 + 37 * n)
        version = store.replace(KEY, data, version)
        inodes.add(os.stat(tmp_path / KEY).st_ino)
        blob = store.read(KEY)
        assert blob is not None and blob.data == data and blob.version == version
    assert len(inodes) == 2  # the object and its spare, exchanged; no file created per replace
    assert sorted(p.name for p in (tmp_path / "c123").iterdir()) == [".spare-conversation.json", "conversation.json"]
    assert list(store.iter_keys("")) == [KEY]  # the spare is never listed


def test_a_replace_still_works_where_names_cannot_be_exchanged(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "_exchange", lambda a, b: False)
    store = LocalStore(tmp_path)
    contents = [document(n, 64 * n) for n in range(5)]
    replace_chain(store, contents)
    blob = store.read(KEY)
    assert blob is not None and blob.data == contents[-1]
    assert [p.name for p in (tmp_path / "c123").iterdir()] == ["conversation.json"]
    with pytest.raises(PreconditionFailed):
        store.replace(KEY, b"{}", "stale")


def test_a_reader_never_sees_a_spare_being_rewritten(tmp_path: Path) -> None:
    """Readers racing many replaces of a large object read whole documents only, each one that was written."""
    store = LocalStore(tmp_path)
    contents = [document(n, 250_000 + 4096 * (n % 7)) for n in range(80)]
    written = set(contents)
    first = store.replace(KEY, contents[0], None)
    done = threading.Event()
    bad: list[bytes] = []
    reads = [0]

    def reader() -> None:
        while not done.is_set():
            blob = store.read(KEY)
            assert blob is not None
            reads[0] += 1
            if blob.data not in written:
                bad.append(blob.data[:80])

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        replace_chain(store, contents[1:], first)
    finally:
        done.set()
        for t in threads:
            t.join()
    assert reads[0] > 0
    assert bad == []


@pytest.mark.parametrize("punch", [True, False], ids=["hole-punched", "emptied"])
def test_a_replace_never_writes_over_the_previous_content_in_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    punch: bool) -> None:
    """Every byte a replace writes lands where nothing of an earlier version is left (a crash can then leave
    zeros, never a stale document), and documents that shrink and grow read back exactly."""
    if not punch:
        monkeypatch.setattr(local, "_punch_hole", lambda fd, size: False)
    leftovers: list[bytes] = []
    write_all = local._write_all

    def checked_write_all(fd: int, data: bytes) -> None:
        with open(f"/proc/self/fd/{fd}", "rb") as before:
            old = before.read()
        if old.strip(b"\0"):
            leftovers.append(old[:80])
        write_all(fd, data)

    monkeypatch.setattr(local, "_write_all", checked_write_all)
    store = LocalStore(tmp_path)
    version = None
    for n, size in enumerate([9000, 300, 20_000, 5000, 5000, 100, 12_000]):
        data = document(n, size)
        version = store.replace(KEY, data, version)
        assert (tmp_path / KEY).read_bytes() == data
    assert leftovers == []


@pytest.mark.parametrize("unnamed", [True, False], ids=["unnamed-file", "named-temporary"])
def test_create_is_create_only_and_leaves_nothing_beside_the_object(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                     unnamed: bool) -> None:
    if not unnamed:
        monkeypatch.setattr(local, "_UNNAMED", 0)
    elif not local._UNNAMED:
        pytest.skip("no O_TMPFILE here")
    store = LocalStore(tmp_path)
    key = "c1/events/2025-07-11T06-00-00_system.replica_joined_ab12.json"
    assert store.create(key, b'{"a":1}') is True
    assert store.create(key, b'{"a":1}') is False
    assert store.create(key, b'{"a":2}') is False  # another intact document under the name is kept
    assert (tmp_path / key).read_bytes() == b'{"a":1}'
    (tmp_path / key).write_bytes(b'{"a"')  # what a crash before the sync can leave
    assert store.create(key, b'{"a":1}') is True
    assert (tmp_path / key).read_bytes() == b'{"a":1}'
    assert [p.name for p in (tmp_path / "c1" / "events").iterdir()] == [key.rsplit("/", 1)[1]]


def test_delete_removes_the_object_and_its_spare(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    replace_chain(store, [document(n, 50) for n in range(3)])
    store.delete(KEY)
    assert store.read(KEY) is None
    assert list((tmp_path / "c123").iterdir()) == []
