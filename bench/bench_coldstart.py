"""Cold start per adapter against a hello-world function of the same framework, and bundle sizes per cloud.

    .venv/bin/python bench/bench_coldstart.py [--runs 15] [--importtime] [--emulator] [--no-sizes]

A cold start here is one fresh interpreter, timed from spawn to exit, that imports the function and answers
its first request through the platform's own entry point:

- aws:   functions/aws/app.py `handler(event, context)` with a Function URL event (Powertools Logger + Metrics);
- gcp:   functions-framework `create_app(...)` on functions/gcp/main.py and one request through its Flask client;
- azure: the FunctionApp of functions/azure/function_app.py indexed (`get_functions()`) and its function called
         with an `azure.functions.HttpRequest`.

The baseline does the same with a hello-world function of the same framework (Powertools Logger + Metrics on
AWS) that imports the store SDK its cloud needs (boto3, google-cloud-storage, azure-storage-blob) and answers
"hello". The adapter's run imports that SDK too and stores the event in a SQLite file, so both sides pay for
the same SDK import and neither talks to a network; `--emulator` adds a third row: the adapter storing on its
cloud's emulator (client creation and the store round trips to moto / fake-gcs-server / Azurite included).
The platform's own worker start (Lambda runtime, gunicorn, the Functions host) is the same on both sides and
left out. Runs of the two sides alternate; medians are printed with their ratio (target: at most 1.5).

`--importtime` prints the slowest imports of the adapter's process (python -X importtime), cumulative.
Bundle sizes: the folder `tavus-callbacks build` makes, and that folder plus its requirements installed for the
cloud's platform (pip --target, Linux arm64 for Lambda, x86_64 for the others), unzipped and zipped.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS = ROOT / "functions"
TOKEN = "bench-coldstart-token-0123456789"
SDK = {"aws": "boto3", "gcp": "google.cloud.storage", "azure": "azure.storage.blob"}
PLATFORM = {"aws": "manylinux2014_aarch64", "gcp": "manylinux2014_x86_64", "azure": "manylinux2014_x86_64"}
BODY = json.dumps({"properties": {"replica_id": "r5f0577fc829"}, "conversation_id": "c123456",
                   "webhook_url": "https://example.com/webhook", "event_type": "system.replica_joined",
                   "message_type": "system", "timestamp": "2025-07-11T06:45:47.472000Z"})

# The first request each side answers, per platform. {source} is the function's folder.
INVOKE = {
    "aws": """
        class Context:
            function_name = "tavus-callbacks"; function_version = "$LATEST"; memory_limit_in_mb = 1024
            invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:tavus-callbacks"
            aws_request_id = "cold-start"
        event = {{"version": "2.0", "routeKey": "$default", "rawPath": "/", "rawQueryString": "token={token}",
                 "headers": {{"content-type": "application/json"}}, "isBase64Encoded": False,
                 "requestContext": {{"http": {{"method": "POST", "path": "/", "protocol": "HTTP/1.1",
                                              "sourceIp": "203.0.113.7", "userAgent": "bench"}}}},
                 "body": {body!r}}}
        sys.path.insert(0, {source!r})
        import {module} as function
        result = function.handler(event, Context())
        status = result["statusCode"]
    """,
    "gcp": """
        import functions_framework
        client = functions_framework.create_app({target!r}, {source!r} + "/main.py").test_client()
        status = client.post("/", query_string={{"token": "{token}"}}, data={body!r}).status_code
    """,
    "azure": """
        sys.path.insert(0, {source!r})
        import azure.functions as func
        import {module} as function
        registered = next(f for f in function.app.get_functions() if f.get_function_name() == {target!r})
        response = registered.get_user_function()(func.HttpRequest(
            method="POST", url="https://app.azurewebsites.net/?token={token}", params={{"token": "{token}"}},
            headers={{}}, body={body!r}.encode()))
        status = response.status_code
    """,
}

# Hello-world functions of each framework, importing the store SDK the cloud needs.
HELLO = {
    "aws": ("hello_app.py", """
        import {sdk}
        from aws_lambda_powertools import Logger, Metrics
        from aws_lambda_powertools.metrics import MetricUnit

        logger = Logger(service="hello")
        metrics = Metrics(namespace="Hello", service="hello")

        @metrics.log_metrics(capture_cold_start_metric=True)
        @logger.inject_lambda_context
        def handler(event, context):
            logger.info("hello")
            metrics.add_metric(name="Hellos", unit=MetricUnit.Count, value=1)
            return {{"statusCode": 200, "body": "hello"}}
    """),
    "gcp": ("main.py", """
        import {sdk}
        import functions_framework

        @functions_framework.http
        def hello(request):
            return "hello"
    """),
    "azure": ("hello_app.py", """
        import {sdk}
        import azure.functions as func

        app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

        @app.route(route="{{*path}}")
        def hello(req: func.HttpRequest) -> func.HttpResponse:
            return func.HttpResponse("hello")
    """),
}


def script(cloud: str, source: Path, module: str, target: str, import_sdk: bool) -> str:
    body = textwrap.dedent(INVOKE[cloud]).format(source=str(source), module=module, target=target, token=TOKEN,
                                                 body=BODY)
    head = "import sys\n" + (f"import {SDK[cloud]}\n" if import_sdk else "")
    tail = "\nassert status == 200, status\n"
    return head + body + tail


@contextmanager
def hello_world(cloud: str) -> Iterator[tuple[Path, str, str]]:
    """(folder, module, target) of a hello-world function for `cloud`, in a temporary folder."""
    folder = Path(tempfile.mkdtemp(prefix=f"hello-{cloud}-"))
    name, text = HELLO[cloud]
    (folder / name).write_text(textwrap.dedent(text).format(sdk=SDK[cloud]))
    try:
        yield folder, Path(name).stem, "hello"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def time_process(code: str, env: dict[str, str], store: Path | None) -> float:
    """Seconds from spawn to exit of `python -c code`; a fresh store folder each run, so the event is new."""
    if store is not None:
        shutil.rmtree(store, ignore_errors=True)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"the cold-start process failed:\n{done.stderr[-3000:]}")
    return elapsed


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TAVUS_", "POWERTOOLS_"))}
    env.update({"TAVUS_CALLBACK_TOKENS": TOKEN,
                "POWERTOOLS_TRACE_DISABLED": "true", "AWS_DEFAULT_REGION": "us-east-1"})
    return env


def adapter_module(cloud: str) -> tuple[Path, str, str]:
    return {"aws": (FUNCTIONS / "aws", "app", "tavus_callback"),
            "gcp": (FUNCTIONS / "gcp", "main", "tavus_callback"),
            "azure": (FUNCTIONS / "azure", "function_app", "tavus_callback")}[cloud]


def measure(cloud: str, runs: int, emulator_env: dict[str, str] | None) -> dict[str, list[float]]:
    """Alternating fresh-process runs of the hello world, the adapter, and (optionally) the adapter on the emulator."""
    work = Path(tempfile.mkdtemp(prefix="coldstart-"))
    store = work / "store"
    source, module, target = adapter_module(cloud)
    ours = script(cloud, source, module, target, import_sdk=True)
    env = {**base_env(), "TAVUS_STORE_URL": f"sqlite:///{store}/tavus.db"}
    times: dict[str, list[float]] = {"hello": [], "adapter": []}
    try:
        with hello_world(cloud) as (hello_dir, hello_module, hello_target):
            baseline = script(cloud, hello_dir, hello_module, hello_target, import_sdk=False)
            for code, env_, st in ((baseline, env, None), (ours, env, store)):  # warm the OS file cache once
                time_process(code, env_, st)
            for _ in range(runs):
                times["hello"].append(time_process(baseline, env, None))
                times["adapter"].append(time_process(ours, env, store))
                if emulator_env is not None:
                    times.setdefault("adapter+emulator", []).append(
                        time_process(script(cloud, source, module, target, import_sdk=False),
                                     {**base_env(), **emulator_env}, None))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return times


def import_profile(cloud: str, top: int = 15) -> list[tuple[int, str]]:
    """The slowest cumulative imports of the adapter's cold start (microseconds, module)."""
    work = Path(tempfile.mkdtemp(prefix="importtime-"))
    source, module, target = adapter_module(cloud)
    env = {**base_env(), "TAVUS_STORE_URL": f"sqlite:///{work}/store/tavus.db"}
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", script(cloud, source, module, target, True)],
                          env=env, capture_output=True, text=True)
    shutil.rmtree(work, ignore_errors=True)
    rows = []
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "|" in line and "cumulative" not in line:
            _, cumulative, name = (part.strip() for part in line.removeprefix("import time:").split("|"))
            rows.append((int(cumulative), name))
    wanted = [r for r in rows if "." not in r[1].strip() or r[1].strip().startswith("tavus_callbacks")]
    return sorted(wanted, reverse=True)[:top]


def folder_size(path: Path) -> tuple[int, int]:
    """(bytes on disk, bytes zipped with deflate) of a folder, as a deployment package would be."""
    raw = 0
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(path.rglob("*")):
            if file.is_file() and "__pycache__" not in file.parts:
                raw += file.stat().st_size
                archive.write(file, file.relative_to(path).as_posix())
    return raw, len(buffer.getvalue())


def bundle_sizes(cache: Path) -> list[tuple[str, int, int, int, int]]:
    """Per cloud: (cloud, bundle bytes, bundle zipped, bundle + deps bytes, bundle + deps zipped)."""
    sys.path.insert(0, str(ROOT / "shared"))
    from tavus_callbacks.cli.build import build_bundle

    rows = []
    for cloud in ("aws", "gcp", "azure"):
        out = cache / "bundles" / cloud
        bundle = build_bundle(cloud, out).path
        deps = cache / "deps" / f"{cloud}-{PLATFORM[cloud]}"
        requirements = (bundle / "requirements.txt").read_text()
        if not (deps / ".requirements").is_file() or (deps / ".requirements").read_text() != requirements:
            shutil.rmtree(deps, ignore_errors=True)
            done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                                   "--target", str(deps), "--platform", PLATFORM[cloud], "--python-version", "3.13",
                                   "--implementation", "cp", "--only-binary=:all:", "--no-compile",
                                   "-r", str(bundle / "requirements.txt")], capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"pip could not install the {cloud} requirements:\n{done.stderr[-3000:]}")
            (deps / ".requirements").write_text(requirements)
        both = cache / "deployable" / cloud
        shutil.rmtree(both, ignore_errors=True)
        shutil.copytree(deps, both, ignore=shutil.ignore_patterns(".requirements", "bin"))
        shutil.copytree(bundle, both, dirs_exist_ok=True)
        rows.append((cloud, *folder_size(bundle), *folder_size(both)))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="fresh processes per side and cloud (default 15)")
    parser.add_argument("--clouds", default="aws,gcp,azure")
    parser.add_argument("--importtime", action="store_true", help="print the adapter's slowest imports")
    parser.add_argument("--emulator", action="store_true", help="also time the adapter on its cloud's emulator")
    parser.add_argument("--no-sizes", action="store_true", help="skip the bundle sizes")
    parser.add_argument("--cache", default=str(ROOT / "build" / "bench-coldstart"),
                        help="where the sized bundles and their installed requirements go")
    args = parser.parse_args()

    clouds = [c.strip() for c in args.clouds.split(",") if c.strip()]
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, {args.runs} runs per side, medians")
    print(f"{'cloud':6} {'hello world + SDK':>18} {'adapter + SDK':>14} {'ratio':>6}   {'adapter on emulator':>20}")
    for cloud in clouds:
        with emulator(cloud) if args.emulator else _none() as emu_env:
            times = measure(cloud, args.runs, emu_env)
        hello, ours = statistics.median(times["hello"]), statistics.median(times["adapter"])
        extra = f"{statistics.median(times['adapter+emulator']) * 1000:17.0f} ms" if "adapter+emulator" in times else ""
        print(f"{cloud:6} {hello * 1000:15.0f} ms {ours * 1000:11.0f} ms {ours / hello:6.2f}   {extra}")
        if args.importtime:
            for micros, name in import_profile(cloud):
                print(f"         {micros / 1000:7.1f} ms  {name.strip()}")

    if not args.no_sizes:
        print()
        print(f"{'cloud':6} {'bundle':>10} {'zipped':>10} {'with requirements':>18} {'zipped':>10}")
        for cloud, raw, zipped, full, full_zipped in bundle_sizes(Path(args.cache)):
            print(f"{cloud:6} {raw / 1024:7.0f} KiB {zipped / 1024:6.0f} KiB {full / 2**20:14.1f} MiB "
                  f"{full_zipped / 2**20:6.1f} MiB   ({PLATFORM[cloud]})")
    return 0


@contextmanager
def _none() -> Iterator[None]:
    yield None


@contextmanager
def emulator(cloud: str) -> Iterator[dict[str, str]]:
    """The cloud's storage emulator (tests/support/servers.py) with a fresh bucket; the env pointing the SDK at it."""
    sys.path.insert(0, str(ROOT / "tests"))
    from support.servers import EMULATORS, create_bucket, emulator_env, new_bucket_name, store_url_for

    kind = {"aws": "s3", "gcp": "gcs", "azure": "azure"}[cloud]
    emu = EMULATORS[kind]()
    emu.start()
    try:
        bucket = new_bucket_name()
        create_bucket(emu, bucket)
        # Each run stores the same event: after the first it is a duplicate, which costs the same round trips
        # (the create-only write is refused, the state is read) minus one state write.
        yield {**emulator_env(emu), "TAVUS_STORE_URL": store_url_for(kind, bucket, "bench/")}
    finally:
        emu.close()


if __name__ == "__main__":
    sys.exit(main())
