"""`serve` as a person and a script see it: readable lines on a terminal, JSON lines otherwise, the whole store
URL in the banner, and a store it cannot write refused before it starts."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import load_event
from support.serve_fixture import TOKENS, ServeProcess, serve_command, wait_until_healthy
from support.servers import free_port, sqlite_url
from tavus_callbacks.stores import open_store

READABLE = re.compile(r"^\d\d:\d\d:\d\d  200 stored\s+conversation\.system\.replica_joined\s+(\S+)  \([\d.]+ ms\)$",
                      re.MULTILINE)


def wait_for(read: Callable[[], str], pattern: re.Pattern[str], timeout: float = 30.0) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = pattern.search(read())
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"{pattern.pattern!r} not in:\n{read()}")


def test_a_script_gets_one_json_object_per_line(serve: ServeProcess) -> None:
    payload = load_event("conversation.system.replica_joined")
    assert serve.post(payload)[0] == 200
    stderr = Path(serve.log_dir / "stderr.txt")
    line = wait_for(stderr.read_text, re.compile(r'^\{.*"result":"stored".*\}$', re.MULTILINE)).group(0)
    access = json.loads(line)
    assert {"time", "level", "message", "status", "result", "type", "conversation_id", "event_id", "ms"} <= set(access)
    assert access["conversation_id"] == payload["conversation_id"] and access["status"] == 200
    for text in stderr.read_text().splitlines():
        json.loads(text)  # every line


def test_log_format_text_gives_a_readable_line_per_callback(serve_factory: Callable[..., ServeProcess]) -> None:
    server = serve_factory(args=["--log-format", "text"], workers=1, threads=2)
    payload = load_event("conversation.system.replica_joined")
    assert server.post(payload)[0] == 200
    found = wait_for(lambda: server.output(), READABLE)
    assert found.group(1) == payload["conversation_id"]
    assert all(token not in server.output() for token in TOKENS)


def test_a_terminal_gets_readable_lines_without_asking(tmp_path: Path) -> None:
    port = free_port()
    master, terminal = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAVUS_")}
    env.update({"TAVUS_CALLBACK_TOKENS": TOKENS[0], "PYTHONUNBUFFERED": "1"})
    process = subprocess.Popen([*serve_command(), "serve", "--port", str(port), "--workers", "1", "--store",
                                sqlite_url(tmp_path / "store.db")], env=env, stdout=subprocess.DEVNULL,
                               stderr=terminal, stdin=subprocess.DEVNULL, start_new_session=True)
    os.close(terminal)
    seen: list[bytes] = []

    def read() -> str:
        while select.select([master], [], [], 0)[0]:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen.append(chunk)
        return b"".join(seen).decode(errors="replace").replace("\r\n", "\n")

    try:
        wait_until_healthy(f"http://127.0.0.1:{port}/healthz", process, "serve", read)
        import urllib.request

        body = json.dumps(load_event("conversation.system.replica_joined")).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/?token={TOKENS[0]}", data=body, method="POST")
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert answer.status == 200
        wait_for(read, READABLE)
        assert not any(text.startswith("{") for text in read().splitlines())
    finally:
        process.terminate()
        process.wait(timeout=20)
        os.close(master)


def test_the_banner_shows_the_whole_store_url_and_no_probe_stays(
        serve_factory: Callable[..., ServeProcess], cloud_bucket: Callable[..., str]) -> None:
    url = cloud_bucket("s3", "team/tavus/")
    server = serve_factory(store_url=url, workers=1, threads=2)
    assert f"storing in {url}" in server.output(), server.output()
    store, prefix = open_store(url)
    assert prefix == "team/tavus/" and list(store.iter_keys("")) == [], "the write check removes its probe"


def test_a_store_that_cannot_be_written_is_refused_before_serving(cloud_bucket: Callable[..., str]) -> None:
    cloud_bucket("s3")  # the environment points at the emulator; the bucket below does not exist there
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAVUS_")}
    env["TAVUS_CALLBACK_TOKENS"] = TOKENS[0]
    result = subprocess.run([*serve_command(), "serve", "--port", str(free_port()), "--store",
                             "s3://no-such-bucket-for-tavus/p/"], env=env, capture_output=True, text=True,
                            timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: cannot write to the store s3://no-such-bucket-for-tavus/p/, so serve "
                                    "does not start"), result.stderr
    assert "NoSuchBucket" in result.stderr and "Traceback" not in result.stderr
    assert "listening" not in result.stdout


@pytest.mark.parametrize("fmt", ["xml"])
def test_an_unknown_log_format_from_the_environment(fmt: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAVUS_")}
    env.update({"TAVUS_LOG_FORMAT": fmt, "TAVUS_CALLBACK_TOKENS": TOKENS[0]})
    result = subprocess.run([*serve_command(), "serve", "--store", sqlite_url(tmp_path / "s.db")], env=env,
                            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == 2 and "TAVUS_LOG_FORMAT='xml': use auto, text or json" in result.stderr
