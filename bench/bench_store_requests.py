"""Store requests each adapter makes before it answers a new event, counted by a proxy in front of its cloud's
emulator: the Lambda handler on S3 (moto server), the Cloud Function on GCS (fake-gcs-server), the Azure
Function on Blob Storage (Azurite), each called in-process through its platform's entry point.

For each adapter it prints the store requests (HTTP requests reaching the emulator) made while answering:
  - a new event (median and most over the events, after the first),
  - the same event delivered again (a duplicate),
  - the first event of the process (the client's own setup included),
and, apart, those of the derive step each new event then gets from the platform's change feed (an S3
EventBridge notification, a finalized CloudEvent, a BlobCreated event), which no answer waits for.

    .venv/bin/python bench/bench_store_requests.py                    # the three adapters, 20 events each
    .venv/bin/python bench/bench_store_requests.py --events 50 --adapters aws gcp
    .venv/bin/python bench/bench_store_requests.py --answer-only   # no derive step (e.g. an older checkout)

Target: 1 request before the answer of a new event, on each adapter. The counting proxy is bench/faulty_proxy.py
with no fault drawn; emulators run on free loopback ports and are stopped by their pid.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "bench")]
# Quiet adapters: a line or an EMF blob per request would drown the figures.
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "ERROR")
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")

from faulty_proxy import FaultPlan, FaultyProxy  # noqa: E402 - bench/ is put on the path just above
from support.servers import (  # noqa: E402 - tests/ likewise
    AZURITE_ACCOUNT,
    AZURITE_KEY,
    Emulator,
    create_bucket,
    emulator_for,
    new_bucket_name,
    store_url_for,
)
from tavus_callbacks.clients import clear_clients  # noqa: E402
from tavus_callbacks.stores import open_store  # noqa: E402

RECORDED = (ROOT / "shared" / "tavus_callbacks" / "events" / "samples", ROOT / "tests" / "events")
TOKEN = "bench-requests-token-0123456789abcdef"
PREFIX = "tavus/"
STORE_OF = {"aws": "s3", "gcp": "gcs", "azure": "azure"}
NAMES = {"aws": "Lambda on S3 (moto)", "gcp": "Cloud Functions on GCS (fake-gcs)",
         "azure": "Azure Functions on Blob (Azurite)"}


def payloads(count: int) -> Iterator[dict[str, Any]]:
    """`count` new conversation events: the recorded ones in turn, each under a conversation id of its own."""
    samples = [json.loads(p.read_text()) for p in sorted((p for d in RECORDED for p in d.glob("conversation.*.json")),
                                                          key=lambda p: p.name)]
    for i in range(count):
        payload = json.loads(json.dumps(samples[i % len(samples)]))
        payload["conversation_id"] = f"c{uuid.uuid4().hex[:12]}"
        yield payload


def proxied_env(kind: str, proxy_url: str) -> dict[str, str]:
    """The environment that sends the adapter's store SDK to the proxy instead of the emulator."""
    if kind == "s3":
        return {"AWS_ENDPOINT_URL": proxy_url, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
    if kind == "gcs":
        return {"STORAGE_EMULATOR_HOST": proxy_url, "GOOGLE_CLOUD_PROJECT": "tavus-callbacks-bench",
                "NO_GCE_CHECK": "True"}
    return {"AZURE_STORAGE_CONNECTION_STRING": f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
                                               f"AccountKey={AZURITE_KEY};BlobEndpoint={proxy_url}/{AZURITE_ACCOUNT};"}


@dataclass
class Adapter:
    """One platform's entry points: answer a callback body, and derive from a key as its change feed would."""

    answer: Callable[[bytes], dict[str, Any]]  # the answer's JSON
    derive: Callable[[str], None] | None


def aws_adapter(bucket: str, with_derive: bool) -> Adapter:
    from tavus_callbacks.adapters.aws_lambda import lambda_handler
    from tavus_callbacks.app import App
    from tavus_callbacks.platforms import aws

    handler = lambda_handler(App.from_env(tokens=aws.secret_tokens, api_key=aws.secret_api_key))

    class Context:
        function_name, function_version, memory_limit_in_mb = "tavus-callbacks", "live", 1024
        invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:tavus-callbacks:live"
        aws_request_id = "bench"

        def get_remaining_time_in_millis(self) -> int:
            return 15_000

    def answer(body: bytes) -> dict[str, Any]:
        event = {"version": "2.0", "routeKey": "$default", "rawPath": "/", "rawQueryString": f"token={TOKEN}",
                 "headers": {"content-type": "application/json"}, "isBase64Encoded": False, "body": body.decode(),
                 "requestContext": {"http": {"method": "POST", "path": "/", "protocol": "HTTP/1.1",
                                             "sourceIp": "203.0.113.7", "userAgent": "bench"}}}
        result: dict[str, Any] = json.loads(handler(event, Context())["body"])
        return result

    def derive(key: str) -> None:
        handler({"version": "0", "id": str(uuid.uuid4()), "detail-type": "Object Created",
                 "source": "aws.s3", "account": "123456789012", "time": "2025-07-11T06:45:48Z",
                 "region": "us-east-1", "resources": [f"arn:aws:s3:::{bucket}"],
                 "detail": {"version": "0", "bucket": {"name": bucket}, "reason": "PutObject",
                            "object": {"key": key, "size": 1, "etag": "0", "sequencer": "0"}}},
                Context())

    return Adapter(answer, derive if with_derive else None)


def gcp_adapter(bucket: str, with_derive: bool) -> Adapter:
    import functions_framework

    main = str(ROOT / "functions" / "gcp" / "main.py")
    callback = functions_framework.create_app(target="tavus_callback", source=main).test_client()
    deriving = functions_framework.create_app(target="tavus_derive", source=main).test_client() if with_derive \
        else None

    def answer(body: bytes) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(callback.post("/", query_string={"token": TOKEN}, data=body).get_data())
        return result

    def derive(key: str) -> None:
        assert deriving is not None
        reply = deriving.post("/", data=json.dumps({"bucket": bucket, "name": key}), headers={
            "ce-specversion": "1.0", "ce-id": str(uuid.uuid4()), "ce-type": "google.cloud.storage.object.v1.finalized",
            "ce-source": f"//storage.googleapis.com/projects/_/buckets/{bucket}", "Content-Type": "application/json"})
        assert reply.status_code == 200, reply.get_data()

    return Adapter(answer, derive if with_derive else None)


def azure_adapter(container: str, with_derive: bool) -> Adapter:
    import azure.functions as func
    from tavus_callbacks.adapters.azure import function_app
    from tavus_callbacks.app import App

    app = function_app(App.from_env())
    functions = {f.get_function_name(): f.get_user_function() for f in app.get_functions()}

    def answer(body: bytes) -> dict[str, Any]:
        response = functions["tavus_callback"](func.HttpRequest(
            method="POST", url=f"https://app.azurewebsites.net/?token={TOKEN}", params={"token": TOKEN}, body=body))
        result: dict[str, Any] = json.loads(response.get_body())
        return result

    def derive(key: str) -> None:
        functions["tavus_derive"](func.EventGridEvent(
            id=str(uuid.uuid4()), data={"api": "PutBlob"}, topic="bench", event_time=None, data_version="",
            subject=f"/blobServices/default/containers/{container}/blobs/{key}",
            event_type="Microsoft.Storage.BlobCreated"))

    return Adapter(answer, derive if with_derive else None)


ADAPTERS = {"aws": aws_adapter, "gcp": gcp_adapter, "azure": azure_adapter}


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@dataclass
class Figures:
    new: list[int]
    duplicate: list[int]
    first: int
    derive: list[int]


def measure(name: str, events: int, with_derive: bool = True) -> Figures:
    """Answer `events` new events and a duplicate of each through the adapter, counting the store requests
    each one made, then derive from each."""
    kind = STORE_OF[name]
    emulator: Emulator = emulator_for(kind)
    emulator.start()
    proxy = FaultyProxy(emulator.endpoint, FaultPlan(rate=0.0)).start()
    try:
        bucket = new_bucket_name()
        create_bucket(emulator, bucket)  # straight to the emulator: not counted
        env = {**proxied_env(kind, proxy.url), "TAVUS_STORE_URL": store_url_for(kind, bucket, PREFIX),
               "TAVUS_CALLBACK_TOKENS": TOKEN}
        with environment(env):
            clear_clients()
            adapter = ADAPTERS[name](bucket, with_derive)
            plan = proxy.plan

            def counted(step: Callable[[], Any]) -> tuple[int, Any]:
                before = plan.requests
                result = step()
                return plan.requests - before, result

            bodies = [json.dumps(p).encode() for p in payloads(events + 1)]
            new, duplicate, keys = [], [], []
            for body in bodies:
                count, answer = counted(lambda body=body: adapter.answer(body))
                assert answer["status"] == "stored", answer
                new.append(count)
                count, answer = counted(lambda body=body: adapter.answer(body))
                assert answer["status"] == "duplicate", answer
                duplicate.append(count)
                keys.append(answer["event_id"])
            derive: list[int] = []
            if (step := adapter.derive) is not None:
                listed = list(open_store(env["TAVUS_STORE_URL"])[0].iter_keys(PREFIX))  # counted by no figure
                for key in [next(k for k in listed if eid in k) for eid in keys]:
                    derive.append(counted(lambda key=key: step(key))[0])
        return Figures(new=new[1:], duplicate=duplicate[1:], first=new[0], derive=derive[1:])
    finally:
        proxy.stop()
        emulator.close()
        clear_clients()


def measured_apart(name: str, events: int, with_derive: bool) -> Figures:
    """`measure` in a fresh interpreter, as a platform starts one: the adapters' logging setups stay apart."""
    done = subprocess.run([sys.executable, __file__, "--events", str(events), "--one", name,
                           *([] if with_derive else ["--answer-only"])], capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"{name}: {done.stderr[-3000:]}")
    return Figures(**json.loads(done.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20, help="new events per adapter (default 20)")
    parser.add_argument("--adapters", nargs="+", choices=tuple(ADAPTERS), default=list(ADAPTERS))
    parser.add_argument("--answer-only", action="store_true", help="count the answers only, no derive step")
    parser.add_argument("--one", choices=tuple(ADAPTERS), help=argparse.SUPPRESS)  # one adapter, figures as JSON
    args = parser.parse_args(argv)
    if args.one:
        logging.disable(logging.WARNING)  # the figures only: no adapter's log lines
        print(json.dumps(asdict(measure(args.one, args.events, not args.answer_only))))
        return 0
    print(f"store requests per event, counted at the emulator ({args.events} new events per adapter)")
    print(f"{'adapter':36} {'new: median':>11} {'most':>5} {'duplicate':>9} {'first':>6} {'derive: median':>15}"
          f" {'most':>5}")
    worst = 0
    for name in args.adapters:
        figures = measured_apart(name, args.events, not args.answer_only)
        worst = max(worst, max(figures.new))
        derive = f"{statistics.median(figures.derive):>15g} {max(figures.derive):>5}" if figures.derive else \
            f"{'-':>15} {'-':>5}"
        print(f"{NAMES[name]:36} {statistics.median(figures.new):>11g} {max(figures.new):>5} "
              f"{statistics.median(figures.duplicate):>9g} {figures.first:>6} {derive}", flush=True)
    print(f"target: 1 request before the answer of a new event; most seen: {worst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
