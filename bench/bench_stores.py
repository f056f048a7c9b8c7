"""Deliveries through `Pipeline.handle` on each store, against its emulator: speed and store round trips.

For each backend (local folder, moto server, fake-gcs-server, Azurite) it prints:
  - events/s and p50 / p99 latency of one delivery at a time (new events, 10 conversations),
  - events/s with 8 delivering threads,
  - store calls per new event and per duplicate delivery (a counting wrapper around the Store),
  - how long a delivery takes to be answered 503 when the store accepts connections and never answers.

    .venv/bin/python bench/bench_stores.py                # all four, 300 events each
    .venv/bin/python bench/bench_stores.py --events 1000 --backends s3 gcs

Emulators are started on free loopback ports and stopped by their pid (Azurite: bash tests/install/emulators.sh).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support.servers import (  # noqa: E402 - tests/ is put on the path just above
    Emulator,
    create_bucket,
    emulator_env,
    emulator_for,
    new_bucket_name,
    store_url_for,
)
from tavus_callbacks.clients import clear_clients  # noqa: E402
from tavus_callbacks.http import Request  # noqa: E402
from tavus_callbacks.pipeline import Pipeline  # noqa: E402
from tavus_callbacks.settings import Settings  # noqa: E402
from tavus_callbacks.stores import open_store  # noqa: E402

if TYPE_CHECKING:
    from tavus_callbacks.events.recording import RecordingLocation
    from tavus_callbacks.stores import Blob, ObjectInfo, Store

TOKEN = "bench-stores-token-0123456789abcdef"
OPS = ("create", "read", "replace", "stat")


class CountingStore:
    """A Store that counts the calls made to the one it wraps (one call = one round trip here)."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.url = inner.url
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()

    def _count(self, op: str) -> None:
        with self._lock:
            self.calls[op] += 1

    def create(self, key: str, data: bytes, content_type: str = "application/json") -> bool:
        self._count("create")
        return self.inner.create(key, data, content_type)

    def read(self, key: str) -> Blob | None:
        self._count("read")
        return self.inner.read(key)

    def replace(self, key: str, data: bytes, version: str | None, content_type: str = "application/json") -> str:
        self._count("replace")
        return self.inner.replace(key, data, version, content_type)

    def stat(self, key: str) -> ObjectInfo | None:
        self._count("stat")
        return self.inner.stat(key)

    def iter_keys(self, prefix: str) -> Iterator[str]:
        return self.inner.iter_keys(prefix)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def locate(self, location: RecordingLocation) -> str | None:
        return self.inner.locate(location)


def payloads(count: int, tag: str) -> list[bytes]:
    """`count` distinct objective callbacks over 10 conversations."""
    base = json.loads((ROOT / "shared" / "tavus_callbacks" / "events" / "samples" / "objective.json").read_text())
    out = []
    for i in range(count):
        payload = copy.deepcopy(base)
        payload["conversation_id"] = f"c-bench-{tag}-{i % 10}"
        payload["objective_name"] = f"objective_{i:05d}"
        out.append(json.dumps(payload).encode())
    return out


def request(body: bytes) -> Request:
    return Request("POST", "/", {"token": TOKEN}, {"content-type": "application/json"}, body)


def measure(url: str, events: int, threads: int) -> dict[str, Any]:
    inner, prefix = open_store(url)
    store = CountingStore(inner)
    pipeline = Pipeline(Settings(tokens=(TOKEN,), store_url=url), store=store, prefix=prefix)

    warm = payloads(20, "warm")
    for body in warm:
        assert pipeline.handle(request(body)).status == 200

    store.calls.clear()
    latencies = []
    bodies = payloads(events, "seq")
    started = time.perf_counter()
    for body in bodies:
        t0 = time.perf_counter()
        response = pipeline.handle(request(body))
        latencies.append(time.perf_counter() - t0)
        assert response.status == 200, response.body
    sequential = events / (time.perf_counter() - started)
    per_new = {op: store.calls[op] / events for op in OPS}

    store.calls.clear()
    duplicates = bodies[:100]
    for body in duplicates:
        assert pipeline.handle(request(body)).json_body()["status"] == "duplicate"
    per_duplicate = {op: store.calls[op] / len(duplicates) for op in OPS}

    concurrent_bodies = payloads(events, "par")
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        statuses = Counter(pool.map(lambda b: pipeline.handle(request(b)).status, concurrent_bodies))
    concurrent = events / (time.perf_counter() - started)

    latencies.sort()
    return {
        "events_per_s": sequential,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        "concurrent_events_per_s": concurrent,
        "concurrent_statuses": dict(statuses),
        "calls_per_new_event": per_new,
        "calls_per_duplicate": per_duplicate,
    }


def hung_answer_seconds(kind: str) -> float:
    """Seconds until a delivery is answered 503 when the store accepts connections and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        endpoint = f"http://127.0.0.1:{sock.getsockname()[1]}"
        saved = dict(os.environ)
        os.environ.update(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                          AWS_REGION="us-east-1", STORAGE_EMULATOR_HOST=endpoint,
                          AZURE_STORAGE_CONNECTION_STRING="DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
                          f"AccountKey=a2V5;BlobEndpoint={endpoint}/devstoreaccount1;")
        clear_clients()
        try:
            pipeline = Pipeline(Settings(tokens=(TOKEN,), store_url=store_url_for(kind, "hung-bucket")))
            t0 = time.perf_counter()
            response = pipeline.handle(request(payloads(1, "hung")[0]))
            elapsed = time.perf_counter() - t0
            assert response.status == 503
            return elapsed
        finally:
            os.environ.clear()
            os.environ.update(saved)
            clear_clients()


def run_backend(kind: str, events: int, threads: int) -> dict[str, Any]:
    if kind == "file":
        with tempfile.TemporaryDirectory(prefix="bench-stores-") as folder:
            result = measure(Path(folder).as_uri(), events, threads)
        result["hung_s"] = None
        return result
    emulator: Emulator = emulator_for(kind)
    emulator.start()
    saved = dict(os.environ)
    try:
        os.environ.update(emulator_env(emulator))
        clear_clients()
        bucket = new_bucket_name()
        create_bucket(emulator, bucket)
        result = measure(store_url_for(kind, bucket), events, threads)
    finally:
        os.environ.clear()
        os.environ.update(saved)
        emulator.close()
        clear_clients()
    result["hung_s"] = hung_answer_seconds(kind)
    return result


def calls(per: dict[str, float]) -> str:
    return " + ".join(f"{v:.2f} {op}" for op, v in per.items() if v) + f" = {sum(per.values()):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--events", type=int, default=300, help="new events per backend and phase (default 300)")
    parser.add_argument("--threads", type=int, default=8, help="delivering threads in the concurrent phase")
    parser.add_argument("--backends", nargs="+", default=["file", "s3", "gcs", "azure"],
                        choices=["file", "s3", "gcs", "azure"])
    parser.add_argument("--json", action="store_true", help="print the raw figures as JSON too")
    args = parser.parse_args()

    names = {"file": "local folder", "s3": "S3 (moto server)", "gcs": "GCS (fake-gcs-server)",
             "azure": "Azure Blob (Azurite)"}
    results = {kind: run_backend(kind, args.events, args.threads) for kind in args.backends}
    print(f"{args.events} new events per phase, 10 conversations; concurrent phase with {args.threads} threads\n")
    print(f"| store | events/s (1 at a time) | p50 ms | p99 ms | events/s ({args.threads} threads) "
          "| store calls per new event | per duplicate | answer when the store hangs |")
    print("|---|---|---|---|---|---|---|---|")
    for kind, r in results.items():
        hung = "n/a" if r["hung_s"] is None else f"503 after {r['hung_s']:.1f} s"
        print(f"| {names[kind]} | {r['events_per_s']:.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} "
              f"| {r['concurrent_events_per_s']:.0f} | {calls(r['calls_per_new_event'])} "
              f"| {calls(r['calls_per_duplicate'])} | {hung} |")
    for kind, r in results.items():
        if set(r["concurrent_statuses"]) != {200}:
            print(f"note: {names[kind]} concurrent phase answered {r['concurrent_statuses']}")
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
