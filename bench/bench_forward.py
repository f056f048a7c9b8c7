"""What forwarding adds to one delivery: latency of `Pipeline.handle` on a local folder, without and with a bus.

    .venv/bin/python bench/bench_forward.py [--events 300]

Each bus is a local stand-in started here on a loopback port and stopped afterwards: EventBridge on
moto server (bus -> rule -> SQS queue), Pub/Sub on the Cloud SDK's emulator (skipped when absent),
Event Grid on a local HTTP sink. Distinct events (the recorded payloads with fresh conversation ids)
are delivered one at a time; it prints deliveries/s and p50/p99 latency per target, and checks that
every event reached the bus once. The figures are of the emulators, not of the clouds: they show the
client-side cost and that nothing is lost, not a cloud's latency.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support.bus_servers import FORWARD_TOKEN, PUBSUB_EMULATOR, pubsub_missing  # noqa: E402
from support.servers import Emulator, emulator_env, free_port, moto_emulator  # noqa: E402
from tavus_callbacks.clients import clear_clients  # noqa: E402
from tavus_callbacks.http import Request  # noqa: E402
from tavus_callbacks.pipeline import Pipeline  # noqa: E402
from tavus_callbacks.settings import Settings  # noqa: E402


def payloads(count: int) -> list[bytes]:
    """`count` distinct bodies: the recorded payloads, each conversation id made unique."""
    folders = (ROOT / "shared" / "tavus_callbacks" / "events" / "samples", ROOT / "tests" / "events")
    recorded = [json.loads(p.read_bytes()) for p in sorted((p for d in folders for p in d.glob("*.json")),
                                                           key=lambda p: p.name)]
    bodies = []
    for i in range(count):
        payload = dict(recorded[i % len(recorded)])
        payload["conversation_id"] = f"c{uuid.uuid4().hex[:12]}"
        bodies.append(json.dumps(payload).encode())
    return bodies


def measure(forward_url: str | None, bodies: list[bytes]) -> tuple[float, list[float]]:
    """(deliveries/s, latencies in ms) of delivering every body once to a fresh folder."""
    with tempfile.TemporaryDirectory() as folder:
        pipeline = Pipeline(Settings(tokens=(FORWARD_TOKEN,), store_url=Path(folder).as_uri(),
                                     forward_url=forward_url))
        request = {"query": {"token": FORWARD_TOKEN}}
        pipeline.handle(Request("POST", "/", body=bodies[0], **request))  # warm the client
        latencies = []
        start = time.perf_counter()
        for body in bodies[1:]:
            t0 = time.perf_counter()
            answer = pipeline.handle(Request("POST", "/", body=body, **request))
            latencies.append((time.perf_counter() - t0) * 1000)
            if answer.status != 200:
                raise SystemExit(f"delivery failed with {answer.status}: {answer.body[:200]!r}")
        elapsed = time.perf_counter() - start
    return (len(bodies) - 1) / elapsed, latencies


@contextmanager
def eventbridge() -> Iterator[tuple[str, Callable[[], int]]]:
    import boto3

    emulator = moto_emulator()
    emulator.start()
    os.environ.update(emulator_env(emulator))
    clear_clients()
    try:
        events, sqs = boto3.client("events"), boto3.client("sqs")
        queue = sqs.create_queue(QueueName="bench")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events.create_event_bus(Name="bench")
        events.put_rule(Name="all", EventBusName="bench", EventPattern=json.dumps({"source": ["tavus-callbacks"]}))
        events.put_targets(Rule="all", EventBusName="bench", Targets=[{"Id": "q", "Arn": arn}])

        def received() -> int:
            return int(sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessages"])
                       ["Attributes"]["ApproximateNumberOfMessages"])

        yield "eventbridge://bench", received
    finally:
        emulator.close()
        clear_clients()


@contextmanager
def pubsub() -> Iterator[tuple[str, Callable[[], int]]]:
    from google.cloud import pubsub_v1

    emulator = Emulator("pubsub", lambda port, _dir: [str(PUBSUB_EMULATOR), "--host=127.0.0.1", f"--port={port}"],
                        ready_path="/")
    emulator.start(timeout=90)
    os.environ["PUBSUB_EMULATOR_HOST"] = f"127.0.0.1:{emulator.port}"
    clear_clients()
    try:
        topic, subscription = "projects/bench-project/topics/bench", "projects/bench-project/subscriptions/bench"
        pubsub_v1.PublisherClient().create_topic(name=topic)
        subscriber = pubsub_v1.SubscriberClient()
        subscriber.create_subscription(request={"name": subscription, "topic": topic})

        def received() -> int:
            count = 0
            while True:
                answer = subscriber.pull(request={"subscription": subscription, "max_messages": 1000}, timeout=10)
                if not answer.received_messages:
                    return count
                count += len(answer.received_messages)
                subscriber.acknowledge(request={"subscription": subscription,
                                                "ack_ids": [m.ack_id for m in answer.received_messages]})

        yield f"pubsub://{topic}", received
    finally:
        clear_clients()
        emulator.close()
        os.environ.pop("PUBSUB_EMULATOR_HOST", None)


@contextmanager
def eventgrid() -> Iterator[tuple[str, Callable[[], int]]]:
    seen = [0]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            seen[0] += 1
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    os.environ["TAVUS_EVENTGRID_KEY"] = "bench-key-0123456789"
    clear_clients()
    try:
        yield f"eventgrid://127.0.0.1:{port}?scheme=http", lambda: seen[0]
    finally:
        server.shutdown()
        server.server_close()
        clear_clients()


def report(name: str, rate: float, latencies: list[float], delivered: int | None, sent: int) -> None:
    q = statistics.quantiles(latencies, n=100)
    bus = "" if delivered is None else f"  on the bus: {delivered}/{sent}"
    print(f"{name:<12} {rate:8.0f} deliveries/s   p50 {q[49]:6.2f} ms   p99 {q[98]:6.2f} ms{bus}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=300)
    args = parser.parse_args()
    logging.getLogger("tavus_callbacks").setLevel(logging.CRITICAL)  # the sample copy failures log errors
    bodies = payloads(args.events)
    print(f"{args.events} distinct deliveries, one at a time, local folder store")
    rate, latencies = measure(None, bodies)
    report("no forward", rate, latencies, None, len(bodies))
    targets: list[tuple[str, Callable[[], Any]]] = [("eventbridge", eventbridge), ("eventgrid", eventgrid)]
    reason = pubsub_missing()
    if reason:
        print(f"pubsub       skipped: {reason}")
    else:
        targets.insert(1, ("pubsub", pubsub))
    for name, bus in targets:
        with bus() as (url, received):
            rate, latencies = measure(url, bodies)
            time.sleep(0.5)
            report(name, rate, latencies, received(), len(bodies))


if __name__ == "__main__":
    main()
