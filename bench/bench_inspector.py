"""The inspector's first paint with 1,000 conversations in a SQLite store (target: under 1 s on this machine).

    .venv/bin/python bench/bench_inspector.py [--conversations 1000] [--runs 5] [--store sqlite:////path.db]
                                              [--no-browser]

Fills a SQLite file (on /dev/shm when there is one, or `--store` an existing one) with N sample conversations
of nine callbacks each through the pipeline, spread over the last day, plus a replica and a video callback each;
starts `tavus-callbacks inspect` on it and prints, as medians of `--runs`:
  - in the server: the time to read the recent conversations, the replica and video callbacks, and to render;
  - over HTTP: GET /_/ (the whole page) and one poll of /_/api/recent when nothing changed, and its size;
  - in headless Chromium (tests/install/chromium.sh): navigation start to first contentful paint and to the
    load event, for the first page and for one conversation's page.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from inspector.conftest import BROWSER_FLAGS, start_inspect  # noqa: E402 - tests/ is put on the path just above
from tavus_callbacks.cli.send import Ids, SampleConversation  # noqa: E402
from tavus_callbacks.http import Request  # noqa: E402
from tavus_callbacks.inspector import views  # noqa: E402
from tavus_callbacks.inspector.reading import Reader, open_read_only  # noqa: E402
from tavus_callbacks.layout import Layout  # noqa: E402
from tavus_callbacks.pipeline import Pipeline  # noqa: E402
from tavus_callbacks.settings import Settings  # noqa: E402

TOKEN = "bench-inspector-token-0123456789abcdef"
CONVERSATION = ("replica_joined", "pal_joined", "objective", "guardrail", "shutdown", "transcription_ready",
                "recording_ready", "perception_analysis", "post_call_action_executed")
OTHERS = ("replica_training", "video_generation")
TARGET_SECONDS = 1.0


def fill(store_url: str, conversations: int) -> None:
    """N whole sample conversations, started one after the other over the last day, stored and derived."""
    pipeline = Pipeline(Settings(tokens=(TOKEN,), store_url=store_url))
    day_start = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    step = dt.timedelta(days=1) / max(conversations, 1)

    def one(i: int) -> None:
        sample = SampleConversation(Ids(), start=day_start + i * step)
        for name in (*CONVERSATION, *OTHERS):
            answer = pipeline.handle(Request("POST", "/", {"token": TOKEN}, body=orjson.dumps(sample.named(name))))
            if answer.status != 200 or answer.outcome is None or not answer.outcome.key:
                raise SystemExit(f"could not store {name} of conversation {i}")
            pipeline.derive(answer.outcome.key)  # as the store's change feed does next

    started = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:  # the SQLite store commits concurrent writes together
        for done, _ in enumerate(pool.map(one, range(conversations)), 1):
            if done % 200 == 0:
                print(f"  stored {done} conversations ({time.perf_counter() - started:.1f} s)", flush=True)
    pipeline.close()


def median_ms(work: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def http_get(base: str, path: str) -> bytes:
    host, port = base.removeprefix("http://").rstrip("/").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {TOKEN}"})
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise SystemExit(f"GET {path}: {response.status} {body[:200]!r}")
        return body
    finally:
        conn.close()


def in_the_server(store_url: str, runs: int) -> None:
    store, prefix = open_read_only(store_url)
    reader = Reader(store, Layout(prefix))
    recent = reader.recent()
    others = reader.others(views.OTHERS_LIMIT)
    print(f"in the server ({recent.total} conversations, {len(recent.states)} listed, {len(others)} replica/video "
          "callbacks):")
    cold = median_ms(lambda: Reader(store, Layout(prefix)).recent(), runs)
    print(f"  read the recent conversations   {cold:8.1f} ms (a new reader), {median_ms(reader.recent, runs):.1f} ms "
          "(states parsed before: a poll)")
    print(f"  read replica/video callbacks    {median_ms(lambda: reader.others(views.OTHERS_LIMIT), runs):8.1f} ms")
    render = median_ms(lambda: views.render_index(recent, others, store_url=store_url, read_only=True), runs)
    print(f"  render the page                 {render:8.1f} ms")


def over_http(base: str, runs: int) -> str:
    page = http_get(base, "/_/")
    version = orjson.loads(http_get(base, "/_/api/recent"))["version"]
    unchanged = http_get(base, f"/_/api/recent?version={version}")
    print("over HTTP (tavus-callbacks inspect):")
    whole = median_ms(lambda: http_get(base, "/_/"), runs)
    print(f"  GET /_/, the whole page ({len(page) / 1000:.0f} KB) {whole:8.1f} ms")
    poll = median_ms(lambda: http_get(base, f"/_/api/recent?version={version}"), runs)
    print(f"  one poll, nothing new ({len(unchanged)} bytes)  {poll:8.1f} ms")
    return str(version)


def in_the_browser(base: str, cid: str, runs: int) -> float:
    """Median navigation-to-first-contentful-paint and navigation-to-load of both pages; the later of the two
    for the first page, in seconds."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver_path:
        raise SystemExit("chromium and chromedriver are needed: bash tests/install/chromium.sh (or --no-browser)")
    profile = tempfile.mkdtemp(prefix="bench-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*BROWSER_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    timing = ("const n = performance.getEntriesByType('navigation')[0];"
              "const p = performance.getEntriesByName('first-contentful-paint')[0];"
              "return [p ? p.startTime : null, n.loadEventEnd, n.responseEnd - n.requestStart, n.transferSize];")
    print("in headless Chromium (median of navigations; navigation start = 0):")
    first = 0.0
    try:
        driver.get(f"{base}_/?token={TOKEN}")  # the token becomes the session cookie
        for label, url in (("first page /_/", f"{base}_/"), ("a conversation's page", f"{base}_/c/{cid}")):
            paints, loads, answers = [], [], []
            for _ in range(runs):
                driver.get("about:blank")
                driver.get(url)
                measured: Any = None
                deadline = time.monotonic() + 10
                while (not measured or measured[0] is None or not measured[1]) and time.monotonic() < deadline:
                    measured = driver.execute_script(timing)  # both are set just after they happen
                if measured[0] is None or not measured[1]:
                    raise SystemExit(f"{url}: no paint or load timing within 10 s")
                paints.append(measured[0])
                loads.append(measured[1])
                answers.append(measured[2])
            paint, load = statistics.median(paints), statistics.median(loads)
            first = first or max(paint, load)
            print(f"  {label:<22} first contentful paint {paint:7.1f} ms, load event {load:7.1f} ms "
                  f"(server answer {statistics.median(answers):6.1f} ms)")
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    return first / 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--conversations", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--store", help="an existing SQLite store to measure instead of a new one")
    parser.add_argument("--no-browser", action="store_true", help="server and HTTP figures only")
    args = parser.parse_args()
    folder = None
    if args.store:
        store_url = args.store
    else:
        memory = "/dev/shm" if Path("/dev/shm").is_dir() else None  # the figures are the reading's, not the disk's
        folder = Path(tempfile.mkdtemp(prefix="bench-inspector-", dir=memory))
        store_url = f"sqlite:///{folder / 'store.db'}"
        print(f"filling {store_url} with {args.conversations} conversations of {len(CONVERSATION)} callbacks "
              f"(+{len(OTHERS)} replica/video each)", flush=True)
        started = time.perf_counter()
        fill(store_url, args.conversations)
        print(f"  done in {time.perf_counter() - started:.1f} s")
    proc = None
    try:
        in_the_server(store_url, args.runs)
        proc = start_inspect(store_url, TOKEN)
        over_http(proc.url, args.runs)
        if not args.no_browser:
            cid = orjson.loads(http_get(proc.url, "/_/api/recent"))["tables"]["conversations"][0]["id"]
            seconds = in_the_browser(proc.url, cid, args.runs)
            verdict = "meets" if seconds < TARGET_SECONDS else "MISSES"
            print(f"first page painted and loaded in {seconds * 1000:.0f} ms: {verdict} the "
                  f"{TARGET_SECONDS:g} s target")
    finally:
        if proc is not None:
            proc.stop()
            shutil.rmtree(proc.output.parent, ignore_errors=True)
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
