"""One way to send an HTTP request per deployment: the three cloud adapters and the local server.

Every driver answers `call(method, path, query, headers, body) -> Reply` and knows the folder its
store writes to, so the same conformance cases run against each of them:

- `aws-url`, `aws-url-b64`, `aws-httpapi`, `aws-httpapi-b64`: functions/aws/app.py `handler` invoked with
  Lambda Function URL / API Gateway HTTP API (payload 2.0) events shaped like the real ones, body plain or
  base64, with a LambdaContext;
- `gcp`: functions/gcp/main.py through functions-framework's `create_app(...).test_client()`;
- `gcp-process`: the same file served by a real `functions-framework` process, over HTTP;
- `azure`: an `azure.functions.HttpRequest` into the function the FunctionApp of functions/azure registers;
- `serve`: `tavus-callbacks serve` over HTTP.

A function derives from an event object when its platform's change feed says the object was created; a driver
plays that feed before it shows the store (`objects`): each object the SQLite store's change feed lists goes
through the deployment's derive entry as its platform's event (an S3 EventBridge notification to the Lambda
handler, a Cloud Storage CloudEvent to `tavus_derive`, an Event Grid event to the Azure `tavus_derive`).
`serve` derives by itself, from the same feed.
"""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlencode

from conftest import exported
from support.serve_fixture import TOKENS, settle, stop_process, wait_until_healthy
from support.servers import free_port
from tavus_callbacks.stores.sqlite import SQLiteStore

REPO = Path(__file__).resolve().parents[3]
FUNCTIONS = REPO / "functions"
LIMIT = 256 * 1024  # TAVUS_MAX_BODY_BYTES for every driver: big enough for any sample, small to exceed
PLATFORM_EVENTS = Path(__file__).parent / "platform_events"
IN_PROCESS = ("aws-url", "aws-url-b64", "aws-httpapi", "aws-httpapi-b64", "gcp", "azure")
OVER_HTTP = ("gcp-process", "serve")
ALL_DRIVERS = IN_PROCESS + OVER_HTTP


@dataclass
class Reply:
    """An HTTP answer: status, headers with lower-case names, raw body."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


def load_module(name: str, path: Path) -> ModuleType:
    """Import a file under a unique module name, without putting its folder on sys.path."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def platform_event(name: str, **values: str) -> dict[str, Any]:
    """A recorded platform event from platform_events/, with its BUCKET, KEY, CONTAINER, ACCOUNT filled in."""
    text = (PLATFORM_EVENTS / name).read_text()
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    event: dict[str, Any] = json.loads(text)
    return event


def s3_notification(bucket: str, key: str) -> dict[str, Any]:
    """What EventBridge hands the function when `key` is created in `bucket` (S3's documented shape)."""
    return platform_event("s3.object_created.eventbridge.json", BUCKET=bucket, KEY=key)


def gcs_event(bucket: str, key: str) -> dict[str, Any]:
    """The CloudEvent Eventarc delivers when `key` is finalized in `bucket` (structured form)."""
    return platform_event("gcs.object_finalized.cloudevent.json", BUCKET=bucket, KEY=key)


def cloudevent_request(event: Mapping[str, Any], mode: str) -> tuple[dict[str, str], bytes]:
    """Headers and body of a CloudEvent POST: binary (ce-* headers, the data as the body) or structured."""
    if mode == "structured":
        return {"Content-Type": "application/cloudevents+json"}, json.dumps(event).encode()
    headers = {f"ce-{k}": str(v) for k, v in event.items() if k not in ("data", "datacontenttype")}
    return {**headers, "Content-Type": str(event.get("datacontenttype", "application/json"))}, \
        json.dumps(event["data"]).encode()


def grid_event(container: str, key: str, event_type: str = "Microsoft.Storage.BlobCreated",
               account: str = "devstoreaccount1") -> Any:
    """An azure.functions.EventGridEvent as the worker builds it from Event Grid's BlobCreated event."""
    import azure.functions as func

    raw = platform_event("eventgrid.blob_created.json", CONTAINER=container, KEY=key, ACCOUNT=account)
    return func.EventGridEvent(id=raw["id"], data=raw["data"], topic=raw["topic"], subject=raw["subject"],
                               event_type=event_type, event_time=None, data_version=raw["dataVersion"])


def driver_env(store_dir: Path) -> dict[str, str]:
    """The configuration every driver runs with."""
    return {"TAVUS_CALLBACK_TOKENS": ",".join(TOKENS), "TAVUS_STORE_URL": f"sqlite:///{store_dir / 'store.db'}",
            "TAVUS_MAX_BODY_BYTES": str(LIMIT)}


@dataclass
class Driver:
    """A deployment under test: how to call it and where its store is."""

    name: str
    store_dir: Path

    def call(self, method: str, path: str = "/", query: Mapping[str, str] | None = None,
             headers: Mapping[str, str] | None = None, body: bytes = b"") -> Reply:
        raise NotImplementedError

    def post(self, body: bytes | Mapping[str, Any], *, token: str | None = TOKENS[0], path: str = "/",
             bearer: bool = False, headers: Mapping[str, str] | None = None) -> Reply:
        """POST a body (a mapping goes as JSON) with the token in `?token=` or, with `bearer`, the header."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        hdrs = {"content-type": "application/json", **(headers or {})}
        query: dict[str, str] = {}
        if token is not None and bearer:
            hdrs["authorization"] = f"Bearer {token}"
        elif token is not None:
            query["token"] = token
        return self.call("POST", path, query, hdrs, data)

    @property
    def export_dir(self) -> Path:
        return self.store_dir.with_name(self.store_dir.name + ".export")

    def objects(self, containing: str = "") -> list[Path]:
        """The store's objects whose key contains `containing`, exported afresh as plain files, once what was
        stored has been derived (by the platform's feed, or by `serve` itself)."""
        if not (self.store_dir / "store.db").exists():
            return []
        self.play_feed()
        settle(f"sqlite:///{self.store_dir / 'store.db'}")  # `serve` derives just after answering
        files = exported(SQLiteStore(self.store_dir / "store.db"), self.export_dir)
        return [p for p in files if containing in self.key(p)]

    def derive(self, key: str) -> None:
        """Deliver the platform's "created" event of `key` to the deployment's derive entry; a deployment that
        derives by itself (`serve`) has none."""
        raise NotImplementedError

    def play_feed(self) -> None:
        """What the platform does after each create: every change the store's feed lists goes to `derive`."""
        if type(self).derive is Driver.derive:
            return
        store = SQLiteStore(self.store_dir / "store.db")
        while changes := store.changes(store.checkpoint(), 500):
            for _seq, key in changes:
                self.derive(key)
            store.save_checkpoint(changes[-1][0])

    def key(self, path: Path) -> str:
        return path.relative_to(self.export_dir).as_posix()

    @contextlib.contextmanager
    def broken_store(self) -> Iterator[None]:
        """The store's file locked by another process (SQLite's busy timeout then runs out), or, before the
        store was ever opened, its folder replaced by a plain file; then put back."""
        if not self.store_dir.exists():
            self.store_dir.parent.mkdir(parents=True, exist_ok=True)
            self.store_dir.write_text("not a folder")
            try:
                yield
            finally:
                self.store_dir.unlink()
            return
        holder = sqlite3.connect(self.store_dir / "store.db", isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            holder.execute("ROLLBACK")
            holder.close()

    def output(self) -> str:
        """What the deployment logged so far (for the no-token-in-logs check)."""
        return ""

    def close(self) -> None:
        """Stop whatever the driver started."""


# -- AWS -------------------------------------------------------------------------------------------

class LambdaContext:
    """The context object the Lambda runtime passes: the attributes Powertools reads."""

    function_name = "tavus-callbacks-CallbackFunction-AbCdEf123456"
    function_version = "$LATEST"
    invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{function_name}"
    memory_limit_in_mb = 1024
    log_group_name = "/aws/lambda/tavus-callbacks"
    log_stream_name = "2026/11/01/[$LATEST]0123456789abcdef"

    def __init__(self) -> None:
        self.aws_request_id = str(uuid.uuid4())

    def get_remaining_time_in_millis(self) -> int:
        return 15_000


def lambda_event(kind: str, method: str, path: str, query: Mapping[str, str], headers: Mapping[str, str],
                 body: bytes, b64: bool) -> dict[str, Any]:
    """A Function URL (`url`) or HTTP API payload 2.0 (`httpapi`) event as AWS builds it."""
    raw_query = urlencode(list(query.items()))
    hdrs = {k.lower(): v for k, v in headers.items()}
    cookies = [c.strip() for c in hdrs.pop("cookie", "").split(";") if c.strip()]
    now = time.time()
    if kind == "url":
        domain = "abcdefghijklmnopqrstuvwxyz012345.lambda-url.us-east-1.on.aws"
        context: dict[str, Any] = {"accountId": "anonymous", "apiId": domain.split(".")[0], "domainName": domain,
                                   "domainPrefix": domain.split(".")[0]}
        route_key = "$default"
    else:
        domain = "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com"
        context = {"accountId": "123456789012", "apiId": "a1b2c3d4e5", "domainName": domain,
                   "domainPrefix": "a1b2c3d4e5"}
        route_key = "ANY /{proxy+}"
    hdrs.setdefault("host", domain)
    hdrs.setdefault("x-forwarded-proto", "https")
    hdrs.setdefault("x-forwarded-port", "443")
    hdrs.setdefault("x-forwarded-for", "203.0.113.7")
    hdrs.setdefault("user-agent", "python-requests/2.32.3")
    hdrs.setdefault("x-amzn-trace-id", "Root=1-62ecd163-5f302e550dcde3b12402207d")
    context.update({
        "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.7",
                 "userAgent": hdrs["user-agent"]},
        "requestId": str(uuid.uuid4()), "routeKey": route_key, "stage": "$default",
        "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)), "timeEpoch": int(now * 1000),
    })
    event: dict[str, Any] = {"version": "2.0", "routeKey": route_key, "rawPath": path, "rawQueryString": raw_query,
                             "headers": hdrs, "requestContext": context, "isBase64Encoded": b64}
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = dict(query)
    if kind == "httpapi" and path.strip("/"):
        event["pathParameters"] = {"proxy": path.lstrip("/")}
    if body:
        event["body"] = base64.b64encode(body).decode() if b64 else body.decode("utf-8")
    return event


@dataclass
class AwsDriver(Driver):
    kind: str = "url"
    b64: bool = False
    module: ModuleType | None = None
    results: list[dict[str, Any]] = field(default_factory=list)

    def call(self, method: str, path: str = "/", query: Mapping[str, str] | None = None,
             headers: Mapping[str, str] | None = None, body: bytes = b"") -> Reply:
        assert self.module is not None
        b64 = self.b64
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            b64 = True  # AWS base64-encodes any body that is not text
        event = lambda_event(self.kind, method, path, query or {}, headers or {}, body, b64)
        result = self.module.handler(event, LambdaContext())
        self.results.append(result)
        data = result.get("body") or ""
        raw = base64.b64decode(data) if result.get("isBase64Encoded") else data.encode("utf-8")
        return Reply(result["statusCode"], {k.lower(): v for k, v in (result.get("headers") or {}).items()}, raw)

    def derive(self, key: str) -> None:
        assert self.module is not None
        self.module.handler(s3_notification("recordings", key), LambdaContext())


# -- Google Cloud Functions -------------------------------------------------------------------------

@dataclass
class GcpDriver(Driver):
    client: Any = None
    derive_client: Any = None  # functions-framework's test client of tavus_derive

    def call(self, method: str, path: str = "/", query: Mapping[str, str] | None = None,
             headers: Mapping[str, str] | None = None, body: bytes = b"") -> Reply:
        resp = self.client.open(path, method=method, query_string=dict(query or {}), headers=dict(headers or {}),
                                data=body)
        return Reply(resp.status_code, {k.lower(): v for k, v in resp.headers.items()}, resp.get_data())

    def derive(self, key: str) -> None:
        headers, body = cloudevent_request(gcs_event("recordings", key), "binary")
        reply = self.derive_client.post("/", headers=headers, data=body)
        assert reply.status_code == 200, (key, reply.status_code)


# -- Azure Functions --------------------------------------------------------------------------------

@dataclass
class AzureDriver(Driver):
    function: Any = None
    derive_function: Callable[[Any], None] | None = None  # the user function of tavus_derive

    def call(self, method: str, path: str = "/", query: Mapping[str, str] | None = None,
             headers: Mapping[str, str] | None = None, body: bytes = b"") -> Reply:
        import azure.functions as func

        query = dict(query or {})
        url = f"https://tavus-callbacks.azurewebsites.net{path}" + (f"?{urlencode(query)}" if query else "")
        request = func.HttpRequest(method=method, url=url, headers=dict(headers or {}), params=query,
                                   route_params={"path": path.lstrip("/")}, body=body)
        response = self.function(request)
        return Reply(response.status_code, {k.lower(): v for k, v in response.headers.items()},
                     response.get_body())

    def derive(self, key: str) -> None:
        assert self.derive_function is not None
        self.derive_function(grid_event("recordings", key))


# -- over HTTP: a real functions-framework process, and `tavus-callbacks serve` ---------------------------------

def http_call(base: str, method: str, path: str, query: Mapping[str, str] | None,
              headers: Mapping[str, str] | None, body: bytes) -> Reply:
    """An HTTP exchange; status 0 when nothing answers."""
    url = base.rstrip("/") + path + (f"?{urlencode(dict(query))}" if query else "")
    request = urllib.request.Request(url, data=body if method not in ("GET", "HEAD") else None, method=method,
                                     headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return Reply(resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read())
    except urllib.error.HTTPError as exc:
        return Reply(exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read())
    except (urllib.error.URLError, ConnectionError):
        return Reply(0, {}, b"")


@dataclass
class HttpDriver(Driver):
    base_url: str = ""
    logs: tuple[Path, ...] = ()
    derive_url: str = ""  # a functions-framework process serving tavus_derive; none for `serve`

    def call(self, method: str, path: str = "/", query: Mapping[str, str] | None = None,
             headers: Mapping[str, str] | None = None, body: bytes = b"") -> Reply:
        return http_call(self.base_url, method, path, query, headers, body)

    def output(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.logs if p.exists())

    def play_feed(self) -> None:
        if self.derive_url:
            super().play_feed()

    def derive(self, key: str) -> None:
        headers, body = cloudevent_request(gcs_event("recordings", key), "binary")
        reply = http_call(self.derive_url, "POST", "/", None, headers, body)
        assert reply.status == 200, (key, reply.status, reply.body[-500:])


class FunctionsFrameworkProcess:
    """`functions-framework --target tavus_callback --source main.py` in functions/gcp (or another target), on a
    free port."""

    def __init__(self, env: Mapping[str, str], store_dir: Path, target: str = "tavus_callback") -> None:
        self.store_dir = store_dir
        self.target = target
        self.log_dir = Path(tempfile.mkdtemp(prefix="tavus-ff-log-"))
        self.log = self.log_dir / "output.txt"
        self.port = free_port()
        script = Path(sys.executable).with_name("functions-framework")
        argv = [str(script), "--target", target, "--source", "main.py",
                "--host", "127.0.0.1", "--port", str(self.port)]
        clean = {k: v for k, v in os.environ.items() if not k.startswith("TAVUS_")}
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(argv, cwd=FUNCTIONS / "gcp", env={**clean, **env, "PYTHONUNBUFFERED": "1"},
                                            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)
        self._wait_ready()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _wait_ready(self, timeout: float = 60.0) -> None:
        try:
            if self.target == "tavus_callback":
                wait_until_healthy(f"{self.url}/healthz", self.process, "functions-framework",
                                   lambda: self.log.read_text(errors="replace"), timeout)
            else:  # a CloudEvent function has no health path: any HTTP answer means it listens
                self._wait_listening(timeout)
        except RuntimeError:
            self.stop()
            raise

    def _wait_listening(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"functions-framework exited with {self.process.returncode}:\n"
                                   f"{self.log.read_text(errors='replace')[-4000:]}")
            if http_call(self.url, "GET", "/", None, None, b"").status:
                return
            time.sleep(0.1)
        raise RuntimeError(f"functions-framework ({self.target}) did not answer within {timeout} s")

    def stop(self) -> None:
        """SIGTERM to the process group it leads (gunicorn and its workers), SIGKILL if it lingers."""
        stop_process(self.process, group=True)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.log_dir, ignore_errors=True)
