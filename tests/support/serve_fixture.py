"""`tavus-callbacks serve` as a real subprocess on a free loopback port, stopped by its pid.

- `running_serve(...)`: a context manager, usable from any fixture scope or from a script.
- `serve_factory` (function): `serve_factory(store_url=..., env=..., args=[...])` starts one more
  server for the test and stops it afterwards.
- `serve` (function): one server on a fresh temporary SQLite file with the default test tokens.

The server reads its tokens from TAVUS_CALLBACK_TOKENS (so they are not on its command line);
its stdout and stderr go to files the test can read (`ServeProcess.output()`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from tavus_callbacks.stores import open_store

from support.servers import free_port

TOKENS = ("serve-test-token-primary-0123456789", "serve-test-token-rotated-9876543210")


def unfolded(store_url: str) -> list[str]:
    """Keys of stored conversation events that their conversation.json does not list (yet)."""
    store, prefix = open_store(store_url)
    states: dict[str, set[str]] = {}
    missing = []
    for key in store.iter_keys(prefix):
        folder, events, name = key.removeprefix(prefix).rpartition("/events/")
        if not events or "/" in folder or "/" in name or folder in ("replicas", "videos", "unrecognized", "quarantine"):
            continue
        if folder not in states:
            blob = store.read(f"{prefix}{folder}/conversation.json")
            states[folder] = {e["id"] for e in json.loads(blob.data)["events"]} if blob else set()
        if name.rsplit("_", 1)[-1].removesuffix(".json") not in states[folder]:
            missing.append(key)
    return missing


def settle(store_url: str, timeout: float = 30.0) -> None:
    """Wait (at most `timeout`) until no stored conversation event is missing from its conversation.json and,
    on a SQLite store, its change feed is derived to the end (every derived document written)."""
    deadline = time.monotonic() + timeout
    store = open_store(store_url)[0]
    while time.monotonic() < deadline:
        if not unfolded(store_url) and not getattr(store, "changes", lambda after, limit: [])(0, 1):
            return
        time.sleep(0.02)


def serve_command() -> list[str]:
    """The installed `tavus-callbacks` console script beside this interpreter, else `python -m`."""
    script = Path(sys.executable).with_name("tavus-callbacks")
    return [str(script)] if script.exists() else [sys.executable, "-m", "tavus_callbacks.cli"]


@dataclass
class ServeProcess:
    """A running `tavus-callbacks serve`: where it listens, its tokens, its store and its output."""

    process: subprocess.Popen[bytes]
    port: int
    tokens: tuple[str, ...]
    store_url: str
    store_dir: Path | None
    log_dir: Path
    argv: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def url(self) -> str:
        """The base URL, e.g. http://127.0.0.1:PORT/."""
        return f"http://127.0.0.1:{self.port}/"

    @property
    def token(self) -> str:
        return self.tokens[0]

    def callback_url(self, token: str | None = None, path: str = "/") -> str:
        """The URL Tavus would be given: base URL + `?token=`."""
        return f"http://127.0.0.1:{self.port}{path}?token={token or self.token}"

    def post(self, body: bytes | Mapping[str, Any], *, token: str | None = None, path: str = "/",
             headers: Mapping[str, str] | None = None, timeout: float = 30.0) -> tuple[int, dict[str, Any] | None]:
        """POST a body (a mapping is sent as JSON) with `?token=`; (status, decoded JSON answer or None)."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        req = urllib.request.Request(self.callback_url(token, path), data=data, method="POST",
                                     headers={"Content-Type": "application/json", **(headers or {})})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        try:
            answer = json.loads(raw) if raw else None
        except ValueError:
            answer = None
        return status, answer

    def objects(self, under: str = "") -> list[str]:
        """Keys of every object in the server's store under `under` (a folder of the bucket layout), settled."""
        under = under.rstrip("/") + "/" if under else ""
        self.settle()
        return list(open_store(self.store_url)[0].iter_keys(under))

    def read(self, key: str) -> bytes:
        """The bytes of one object of the server's store, settled."""
        self.settle()
        blob = open_store(self.store_url)[0].read(key)
        assert blob is not None, key
        return blob.data

    def settle(self, store_url: str | None = None, timeout: float = 30.0) -> None:
        """Wait (at most `timeout`) until every stored event of a conversation is in its conversation.json,
        in the server's store or the one it was pointed at with `--store`.

        `serve` answers once the event object is durable and folds it in the background just after.
        """
        settle(store_url or self.store_url, timeout)

    def output(self) -> str:
        """Everything the server printed so far, stdout then stderr."""
        parts = []
        for name in ("stdout.txt", "stderr.txt"):
            path = self.log_dir / name
            if path.exists():
                parts.append(path.read_text(errors="replace"))
        return "\n".join(parts)

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM (a graceful stop), then SIGKILL to the process group it leads if it lingers."""
        return stop_process(self.process, timeout)


def stop_process(process: subprocess.Popen[Any], timeout: float = 15.0, *, group: bool = False) -> int | None:
    """SIGTERM to a process this suite started (to the process group it leads when `group`), then SIGKILL to that
    group if it lingers; its exit code."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM) if group else process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)
    return process.returncode


def wait_until_healthy(url: str, process: subprocess.Popen[bytes], name: str, output: Callable[[], str],
                       timeout: float = 60.0) -> None:
    """Poll `url` until it answers 200; a RuntimeError with the process's output if it exits or never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{output()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{name} did not answer {url} within {timeout} s:\n{output()[-4000:]}")


def _wait_ready(proc: ServeProcess, timeout: float) -> None:
    try:
        wait_until_healthy(f"{proc.url}healthz", proc.process, "serve", proc.output, timeout)
    except RuntimeError:
        proc.stop()
        raise


def start_serve(*, store_url: str | None = None, tokens: Sequence[str] = TOKENS,
                env: Mapping[str, str] | None = None, args: Sequence[str] = (), workers: int = 2,
                threads: int = 8, ready_timeout: float = 60.0) -> ServeProcess:
    """Start a server (on a new SQLite file in a temporary folder unless `store_url` is given) and wait until
    it answers."""
    store_dir = None
    if store_url is None:
        store_dir = Path(tempfile.mkdtemp(prefix="tavus-serve-store-"))
        store_url = f"sqlite:///{store_dir / 'store.db'}"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TAVUS_")}
    clean.update({"TAVUS_CALLBACK_TOKENS": ",".join(tokens), "TAVUS_STORE_URL": store_url,
                  "PYTHONUNBUFFERED": "1"})
    clean.update(env or {})
    last_error: Exception | None = None
    for _ in range(3):  # another process may take the free port between the probe and the bind
        port = free_port()
        log_dir = Path(tempfile.mkdtemp(prefix="tavus-serve-log-"))
        argv = [*serve_command(), "serve", "--host", "127.0.0.1", "--port", str(port),
                "--workers", str(workers), "--threads", str(threads), *args]
        with open(log_dir / "stdout.txt", "wb") as out, open(log_dir / "stderr.txt", "wb") as err:
            process = subprocess.Popen(argv, env=clean, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                       start_new_session=True)
        proc = ServeProcess(process, port, tuple(tokens), store_url, store_dir, log_dir, argv)
        try:
            _wait_ready(proc, ready_timeout)
            return proc
        except RuntimeError as exc:
            last_error = exc
            retry = "cannot listen" in proc.output()
            shutil.rmtree(log_dir, ignore_errors=True)
            if not retry:
                break
    if store_dir is not None:
        shutil.rmtree(store_dir, ignore_errors=True)
    raise RuntimeError(str(last_error))


@contextlib.contextmanager
def running_serve(**kwargs: Any) -> Iterator[ServeProcess]:
    """`start_serve(**kwargs)` for the duration of a with-block; stopped and its temp folders removed after."""
    proc = start_serve(**kwargs)
    try:
        yield proc
    finally:
        proc.stop()
        shutil.rmtree(proc.log_dir, ignore_errors=True)
        if proc.store_dir is not None:
            shutil.rmtree(proc.store_dir, ignore_errors=True)


@pytest.fixture
def serve_factory() -> Iterator[Callable[..., ServeProcess]]:
    """Start servers with `serve_factory(**start_serve_kwargs)`; all are stopped when the test ends."""
    with contextlib.ExitStack() as stack:
        yield lambda **kwargs: stack.enter_context(running_serve(**kwargs))


@pytest.fixture
def serve(serve_factory: Callable[..., ServeProcess]) -> ServeProcess:
    """One server on a fresh temporary SQLite file, tokens TOKENS."""
    return serve_factory()
