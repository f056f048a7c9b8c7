"""Fixtures of the inspector's tests: a real headless Chromium driven by Selenium, `tavus-callbacks inspect`
as a subprocess, and small HTTP helpers that keep cookies and headers in view."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from support.serve_fixture import serve_command, stop_process

BROWSER_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1280,1000")


@dataclass
class Answer:
    """An HTTP answer as the tests look at it."""

    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.body)


def get(base: str, path: str, headers: Mapping[str, str] | None = None, method: str = "GET",
        body: bytes | None = None) -> Answer:
    """One request to `base` (http://host:port/), redirects not followed, the Host header as given."""
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=dict(headers or {}))
        response = conn.getresponse()
        return Answer(response.status, response.headers, response.read())
    finally:
        conn.close()


def session_cookie(answer: Answer) -> str:
    """`name=value` of the cookie an answer sets."""
    cookie = answer.headers["set-cookie"]
    assert cookie, answer.headers
    return cookie.split(";", 1)[0]


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the installed command with a clean TAVUS_* environment: its exit code, stdout and stderr."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TAVUS_")}
    return subprocess.run([*serve_command(), *args], env=clean, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


@dataclass
class InspectProcess:
    """A running `tavus-callbacks inspect`: its base URL, its token and its output."""

    process: subprocess.Popen[str]
    url: str
    token: str
    output: Path

    def stop(self) -> int | None:
        return stop_process(self.process)


def start_inspect(store_url: str, token: str, env: Mapping[str, str] | None = None,
                  args: tuple[str, ...] = ()) -> InspectProcess:
    """`tavus-callbacks inspect --store URL --port 0 --token T`, once it answers."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TAVUS_")}
    clean.update({"PYTHONUNBUFFERED": "1", **(env or {})})
    log = Path(tempfile.mkdtemp(prefix="tavus-inspect-")) / "output.txt"
    with open(log, "w") as out:
        process = subprocess.Popen([*serve_command(), "inspect", "--store", store_url, "--port", "0", "--token",
                                    token, *args], env=clean, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, text=True, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        printed = log.read_text()
        if process.poll() is not None:
            raise RuntimeError(f"inspect exited with {process.returncode}:\n{printed}")
        opened = [line for line in printed.splitlines() if line.startswith("Open http://")]
        if opened:
            base = opened[0].split()[1].split("/_/")[0] + "/"
            with contextlib.suppress(OSError):
                if get(base, "/_/").status == 401:
                    return InspectProcess(process, base, token, log)
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"inspect did not answer within 60 s:\n{log.read_text()}")


@pytest.fixture
def inspect_factory() -> Iterator[Callable[..., InspectProcess]]:
    """Start `tavus-callbacks inspect` processes for a test; all stopped when it ends."""
    started: list[InspectProcess] = []

    def start(store_url: str, token: str, **kwargs: Any) -> InspectProcess:
        proc = start_inspect(store_url, token, **kwargs)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()
        shutil.rmtree(proc.output.parent, ignore_errors=True)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Chromium (Debian's, with its chromedriver: tests/install/chromium.sh) for the session."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        pytest.fail("chromium and chromedriver are needed: run `bash tests/install/chromium.sh` (apt-get)")
    profile = tempfile.mkdtemp(prefix="tavus-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*BROWSER_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def page(browser: Any) -> Any:
    """The browser with no cookie from an earlier test, and its console emptied."""
    browser.execute_cdp_cmd("Network.clearBrowserCookies", {})
    browser.get("about:blank")
    browser.get_log("browser")
    return browser
