"""Each bundle `tavus-callbacks build` makes holds its cloud's parts and no tool, imports and answers a callback in a
clean interpreter, and names what it lacks when given another cloud's URL.

The interpreter runs with -I -S (no site-packages, no PYTHON* variables); its path holds only the bundle
and the bundle's requirements.txt installed with pip --target (cached per requirements under
tests/.tools/bundle-deps). The store is the cloud's own emulator, so the pinned SDK is proven too.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import load_event
from support.serve_fixture import TOKENS
from tavus_callbacks.bundles import CLOUD_PARTS, TOOLS
from tavus_callbacks.cli.build import CLOUDS, MARKER, BundleError, build_bundle
from tavus_callbacks.record import event_id
from tavus_callbacks.stores import open_store

DEPS_CACHE = Path(__file__).parents[1] / ".tools" / "bundle-deps"
STORE_OF = {"aws": "s3", "gcp": "gcs", "azure": "azure"}
BASE_PYTHON = getattr(sys, "_base_executable", sys.executable)

# Runs inside the clean interpreter: argv = bundle, deps, cloud, payload file, token.
RUNNER = textwrap.dedent('''
    import json, os, site, sys
    bundle, deps, cloud, payload_file, token = sys.argv[1:6]
    sys.path[:0] = [bundle]
    site.addsitedir(deps)
    os.chdir(bundle)
    body = open(payload_file, "rb").read()
    if cloud == "aws":
        import app
        class Context:
            function_name = "tavus-callbacks"; function_version = "$LATEST"; memory_limit_in_mb = 1024
            invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:tavus-callbacks"
            aws_request_id = "bundle-test"
        event = {"version": "2.0", "routeKey": "$default", "rawPath": "/", "rawQueryString": "token=" + token,
                 "headers": {"content-type": "application/json"}, "isBase64Encoded": False,
                 "requestContext": {"http": {"method": "POST", "path": "/", "protocol": "HTTP/1.1",
                                             "sourceIp": "203.0.113.7", "userAgent": "test"}},
                 "body": body.decode()}
        result = app.handler(event, Context())
        status, answer = result["statusCode"], json.loads(result["body"])
    elif cloud == "gcp":
        import functions_framework
        client = functions_framework.create_app("tavus_callback", os.path.join(bundle, "main.py")).test_client()
        resp = client.post("/", query_string={"token": token}, data=body)
        status, answer = resp.status_code, json.loads(resp.get_data())
    else:
        import azure.functions as func
        import function_app
        functions = {f.get_function_name(): f.get_user_function() for f in function_app.app.get_functions()}
        resp = functions["tavus_callback"](func.HttpRequest(
            method="POST", url="https://app.azurewebsites.net/?token=" + token, params={"token": token}, body=body))
        status, answer = resp.status_code, json.loads(resp.get_body())
    # Then the platform's change feed: the event object's "created" event to the derive entry of the bundle.
    from tavus_callbacks.stores import open_store
    store, prefix = open_store(os.environ["TAVUS_STORE_URL"])
    key = next(k for k in store.iter_keys(prefix) if answer["event_id"] in k)
    if cloud == "aws":
        derived = app.handler({"version": "0", "id": "1", "detail-type": "Object Created", "source": "aws.s3",
                               "account": "123456789012", "time": "2025-07-11T06:45:48Z", "region": "us-east-1",
                               "resources": [], "detail": {"version": "0", "bucket": {"name": "b"},
                                                           "object": {"key": key, "size": 1, "etag": "0",
                                                                      "sequencer": "0"}, "reason": "PutObject"}},
                              Context())["status"]
    elif cloud == "gcp":
        deriving = functions_framework.create_app("tavus_derive", os.path.join(bundle, "main.py")).test_client()
        derived = deriving.post("/", data=json.dumps({"bucket": "b", "name": key}), headers={
            "ce-specversion": "1.0", "ce-id": "1", "ce-source": "//storage.googleapis.com/projects/_/buckets/b",
            "ce-type": "google.cloud.storage.object.v1.finalized", "Content-Type": "application/json"}).status_code
    else:
        derived = functions["tavus_derive"](func.EventGridEvent(
            id="1", data={"url": "https://a.blob.core.windows.net/c/" + key}, topic="t", event_time=None,
            subject="/blobServices/default/containers/c/blobs/" + key, event_type="Microsoft.Storage.BlobCreated",
            data_version=""))
    import tavus_callbacks.forward.webhook  # what a webhook sink needs is in the bundle too
    allowed = [os.path.realpath(p) for p in (bundle, deps, sys.base_prefix)]
    files = {n: getattr(m, "__file__", None) for n, m in list(sys.modules.items())
             if n not in ("__main__", "__mp_main__")}
    outside = sorted(f"{n}: {f}" for n, f in files.items()
                     if f and not any(os.path.realpath(f).startswith(a + os.sep) for a in allowed))
    import tavus_callbacks
    print(json.dumps({"status": status, "answer": answer, "derived": derived, "outside": outside,
                      "core": os.path.realpath(tavus_callbacks.__file__)}))
''')


# Runs inside the clean interpreter: argv = bundle, deps, then URLs of parts the bundle does not hold.
MISSING_RUNNER = textwrap.dedent('''
    import json, site, sys
    bundle, deps, store_urls, sink_urls = sys.argv[1], sys.argv[2], sys.argv[3].split(), sys.argv[4].split()
    sys.path[:0] = [bundle]
    site.addsitedir(deps)
    from tavus_callbacks.errors import ConfigError
    from tavus_callbacks.forward import open_forwarder
    from tavus_callbacks.stores import open_store
    said = []
    for opening, urls in ((open_store, store_urls), (open_forwarder, sink_urls)):
        for url in urls:
            try:
                opening(url)
            except ConfigError as exc:
                said.append(str(exc))
    print(json.dumps(said))
''')
OTHER_URLS = {  # a store and a bus of each cloud, to give to the bundles that lack them
    "aws": ("s3://bucket/p/", "eventbridge://bus"),
    "gcp": ("gs://bucket/p/", "pubsub://projects/p/topics/t"),
    "azure": ("azure://container/p/", "eventgrid://topic.westeurope-1.eventgrid.azure.net"),
}


def installed_requirements(requirements: Path) -> Path:
    """`pip install --target` of a requirements file, cached by its content (reused across runs)."""
    digest = hashlib.sha256(requirements.read_bytes() + sys.version.encode()).hexdigest()[:16]
    target = DEPS_CACHE / digest
    if (target / ".complete").is_file():
        return target
    partial = target.with_name(target.name + ".partial")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-compile",
                    "--only-binary=:all:", "--target", str(partial), "-r", str(requirements)], check=True)
    (partial / ".complete").write_text(requirements.read_text())
    partial.rename(target)
    return target


@pytest.mark.parametrize("cloud", CLOUDS)
def test_a_built_bundle_answers_a_callback_and_derives_from_it_in_a_clean_interpreter(
        cloud: str, tmp_path: Path, cloud_bucket: Callable[..., str]) -> None:
    bundle = build_bundle(cloud, tmp_path / cloud).path
    assert (bundle / "tavus_callbacks" / "pipeline.py").is_file() and not (bundle / "tavus_callbacks").is_symlink()
    deps = installed_requirements(bundle / "requirements.txt")
    store_url = cloud_bucket(STORE_OF[cloud], "callbacks/")
    payload = load_event("conversation.application.transcription_ready")
    payload_file = tmp_path / "payload.json"
    payload_file.write_text(json.dumps(payload))
    runner = tmp_path / "runner.py"
    runner.write_text(RUNNER)
    env = {k: v for k, v in os.environ.items()
           if k.startswith(("AWS_", "AZURE_", "STORAGE_EMULATOR_HOST", "GOOGLE_")) or k in ("PATH", "HOME")}
    env.update({"TAVUS_CALLBACK_TOKENS": TOKENS[0], "TAVUS_STORE_URL": store_url})
    done = subprocess.run([BASE_PYTHON, "-I", "-S", str(runner), str(bundle), str(deps), cloud, str(payload_file),
                           TOKENS[0]], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["core"].startswith(str(bundle) + os.sep), "the core comes from the bundle"
    assert report["outside"] == [], "modules loaded from outside the bundle, its requirements and the stdlib"
    assert report["status"] == 200 and report["answer"]["status"] == "stored", report
    assert report["answer"]["event_id"] == event_id(payload)
    assert report["derived"] == {"aws": "derived", "gcp": 200, "azure": None}[cloud], report
    store, _ = open_store(store_url)
    keys = list(store.iter_keys("callbacks/"))
    assert any(event_id(payload) in key for key in keys), keys
    assert "callbacks/c123456/conversation.json" in keys


def held_modules(bundle: Path) -> set[str]:
    """The package's Python files a bundle holds, by their path inside the package."""
    package = bundle / "tavus_callbacks"
    return {p.relative_to(package).as_posix() for p in package.rglob("*.py")}


@pytest.mark.parametrize("cloud", CLOUDS)
def test_a_bundle_holds_the_runtime_and_its_own_cloud_s_parts_only(cloud: str, tmp_path: Path) -> None:
    held = held_modules(build_bundle(cloud, tmp_path / cloud).path)
    assert set(CLOUD_PARTS[cloud]) <= held
    others = {part for other, parts in CLOUD_PARTS.items() if other != cloud for part in parts}
    assert held & others == set(), "another cloud's parts"
    tools = {m for m in held if any(m == tool or m.startswith(f"{tool}/") for tool in TOOLS)}
    assert tools == set(), "tool modules"
    assert {"pipeline.py", "stores/base.py", "state/fold.py", "forward/webhook.py", "reconcile/sweep.py"} <= held


@pytest.mark.parametrize("cloud", CLOUDS)
def test_a_bundle_names_the_part_it_lacks_when_given_another_cloud_s_url(cloud: str, tmp_path: Path) -> None:
    bundle = build_bundle(cloud, tmp_path / cloud).path
    deps = installed_requirements(bundle / "requirements.txt")
    others = [urls for other, urls in OTHER_URLS.items() if other != cloud]
    stores = ["sqlite:///tavus.db", *(store for store, _ in others)]
    sinks = [sink for _, sink in others]
    runner = tmp_path / "missing.py"
    runner.write_text(MISSING_RUNNER)
    done = subprocess.run([BASE_PYTHON, "-I", "-S", str(runner), str(bundle), str(deps), " ".join(stores),
                           " ".join(sinks)], env={"PATH": os.environ["PATH"]}, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    said = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(said) == len(stores) + len(sinks), said
    assert all(f"are not in the {cloud} bundle" in line for line in said), said
    assert "only the tools run them" in said[0]
    for (other, _), line in zip((o for o in OTHER_URLS.items() if o[0] != cloud), said[1:], strict=False):
        assert f"tavus-callbacks build {other}" in line, line


def test_each_bundle_pins_exactly_what_its_cloud_needs() -> None:
    root = Path(__file__).resolve().parents[2] / "functions"
    wanted = {
        "aws": {"pydantic", "orjson", "boto3", "aws-lambda-powertools[tracer]",
                "standardwebhooks"},
        "gcp": {"pydantic", "orjson", "google-cloud-storage", "functions-framework",
                "google-auth", "standardwebhooks"},  # google-auth: the scheduler's OIDC check
        "azure": {"pydantic", "orjson", "azure-storage-blob", "azure-identity", "azure-functions",
                  "standardwebhooks"},
    }
    for cloud in CLOUDS:
        lines = [line.strip() for line in (root / cloud / "requirements.txt").read_text().splitlines()
                 if line.strip() and not line.startswith("#")]
        assert all("==" in line for line in lines), f"{cloud}: every requirement is pinned"
        assert {line.split("==")[0] for line in lines} == wanted[cloud]


def test_a_build_refuses_to_overwrite_a_folder_it_did_not_make(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(BundleError, match="not made by"):
        build_bundle("gcp", tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    first = build_bundle("gcp", tmp_path / "out")
    (first.path / "stale.txt").write_text("from an old build")
    again = build_bundle("gcp", tmp_path / "out")
    assert (again.path / MARKER).is_file() and not (again.path / "stale.txt").exists()


def test_the_build_command_makes_every_bundle(tmp_path: Path) -> None:
    from tavus_callbacks.cli import main

    assert main(["build", "all", "--out", str(tmp_path)]) == 0
    for cloud, entry in (("aws", "app.py"), ("gcp", "main.py"), ("azure", "function_app.py")):
        assert (tmp_path / cloud / entry).is_file() and (tmp_path / cloud / "requirements.txt").is_file()
    assert (tmp_path / "azure" / "host.json").is_file() and (tmp_path / "azure" / ".funcignore").is_file()
    assert not list(tmp_path.rglob("__pycache__"))
