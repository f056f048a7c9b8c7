"""A SQLite store that could not write because its file was read-only for a while writes again, by itself, as soon
as the file is writable: in one process, and in every worker of a running `serve`."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import load_event
from support.serve_fixture import ServeProcess, running_serve
from tavus_callbacks.errors import StoreUnavailable
from tavus_callbacks.stores.sqlite import SQLiteStore


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[None]:
    """`path` cannot be opened for writing for the duration: immutable for root (who ignores permissions),
    mode 0444 for anyone else; the test is skipped where neither holds."""
    if os.geteuid() == 0:
        if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
            pytest.skip("chattr +i is not available here (root ignores file permissions)")
        undo = ["chattr", "-i", str(path)]
    else:
        mode = path.stat().st_mode
        path.chmod(0o444)
        undo = []
    try:
        with contextlib.suppress(PermissionError):
            os.close(os.open(path, os.O_RDWR))
            pytest.skip("the file stayed writable")
        yield
    finally:
        if undo:
            subprocess.run(undo, check=True)
        else:
            path.chmod(mode)


def test_a_store_writes_again_once_its_file_is_writable_again(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "store.db", timeout=0.5)
    with read_only(tmp_path / "store.db"), pytest.raises(StoreUnavailable, match="readonly"):
        store.create("a", b"1")
    assert store.create("b", b"2") is True
    assert store.read("b") is not None and store.read("a") is None


def fresh_objective() -> bytes:
    return json.dumps({**load_event("objective"), "conversation_id": f"c{uuid.uuid4().hex[:12]}"}).encode()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServeProcess]:
    with running_serve(store_url=f"sqlite:///{tmp_path / 'store.db'}", workers=2, threads=2) as proc:
        yield proc


def test_every_serve_worker_recovers_when_the_file_is_writable_again(server: ServeProcess, tmp_path: Path) -> None:
    with read_only(tmp_path / "store.db"):
        answers = [server.post(fresh_objective())[0] for _ in range(20)]  # spread over both workers
    assert set(answers) == {503}
    after = [server.post(fresh_objective())[0] for _ in range(20)]
    assert after == [200] * 20, after
