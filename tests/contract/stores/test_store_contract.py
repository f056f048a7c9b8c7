"""The Store contract, run against every backend: a SQLite file, moto server, fake-gcs-server, Azurite."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from support.servers import CLOUD_BACKENDS, free_port, new_bucket_name, store_url_for
from tavus_callbacks.clients import clear_clients
from tavus_callbacks.errors import ConfigError, PreconditionFailed, StoreUnavailable
from tavus_callbacks.events.recording import RecordingLocation
from tavus_callbacks.stores import Store, open_store


@pytest.fixture
def store(store_url: str) -> Store:
    opened, prefix = open_store(store_url)
    assert prefix == ""
    return opened


def test_is_a_store(store: Store) -> None:
    assert isinstance(store, Store)
    assert store.url


def test_create_is_create_only(store: Store) -> None:
    assert store.create("c1/events/a.json", b'{"n":1}') is True
    assert store.create("c1/events/a.json", b'{"n":2}') is False
    blob = store.read("c1/events/a.json")
    assert blob is not None and blob.data == b'{"n":1}'


def test_read_returns_data_and_version(store: Store) -> None:
    payload = bytes(range(256)) * 8
    store.create("bin/object.bin", payload, content_type="application/octet-stream")
    blob = store.read("bin/object.bin")
    assert blob is not None
    assert blob.data == payload
    assert isinstance(blob.version, str) and blob.version


def test_replace_with_current_version(store: Store) -> None:
    store.create("c1/conversation.json", b'{"v":1}')
    first = store.read("c1/conversation.json")
    assert first is not None
    version = store.replace("c1/conversation.json", b'{"v":2}', first.version)
    assert version and version != first.version
    second = store.read("c1/conversation.json")
    assert second is not None and second.data == b'{"v":2}' and second.version == version


def test_replace_with_stale_version_fails(store: Store) -> None:
    store.create("c1/conversation.json", b'{"v":1}')
    stale = store.read("c1/conversation.json")
    assert stale is not None
    store.replace("c1/conversation.json", b'{"v":2}', stale.version)
    with pytest.raises(PreconditionFailed):
        store.replace("c1/conversation.json", b'{"v":3}', stale.version)
    current = store.read("c1/conversation.json")
    assert current is not None and current.data == b'{"v":2}'


def test_replace_none_creates_only_when_missing(store: Store) -> None:
    version = store.replace("c2/conversation.json", b'{"v":1}', None)
    blob = store.read("c2/conversation.json")
    assert blob is not None and blob.data == b'{"v":1}' and blob.version == version
    with pytest.raises(PreconditionFailed):
        store.replace("c2/conversation.json", b'{"v":2}', None)
    blob = store.read("c2/conversation.json")
    assert blob is not None and blob.data == b'{"v":1}'


def test_replace_of_a_deleted_object_fails(store: Store) -> None:
    store.create("c3/conversation.json", b'{"v":1}')
    blob = store.read("c3/conversation.json")
    assert blob is not None
    store.delete("c3/conversation.json")
    with pytest.raises(PreconditionFailed):
        store.replace("c3/conversation.json", b'{"v":2}', blob.version)
    assert store.read("c3/conversation.json") is None


def test_stat_tells_size_etag_and_content_type(store: Store) -> None:
    store.create("c1/events/a.json", b'{"hello":"world"}')
    store.create("quarantine/x.bin", b"\x00\x01\x02", content_type="application/octet-stream")
    info = store.stat("c1/events/a.json")
    assert info is not None
    assert (info.key, info.size, info.content_type) == ("c1/events/a.json", 17, "application/json")
    assert info.etag and not info.etag.startswith('"')
    raw = store.stat("quarantine/x.bin")
    assert raw is not None and raw.size == 3 and raw.content_type == "application/octet-stream"


def test_missing_keys(store: Store) -> None:
    assert store.read("nope/missing.json") is None
    assert store.stat("nope/missing.json") is None
    store.delete("nope/missing.json")  # deleting what is not there is not an error
    assert list(store.iter_keys("nope/")) == []


def test_keys_with_unusual_characters(store: Store) -> None:
    key = "tavus/c 1=é/1720680347472 (1).mp4"
    assert store.create(key, b"movie", content_type="video/mp4") is True
    blob = store.read(key)
    assert blob is not None and blob.data == b"movie"
    info = store.stat(key)
    assert info is not None and info.size == 5
    assert list(store.iter_keys("tavus/")) == [key]


def test_iter_keys_sorted_under_a_prefix(store: Store) -> None:
    keys = ["c1/events/b.json", "c1/events/a.json", "c1/conversation.json", "c10/events/z.json",
            "c1/events/sub/c.json", "other/x.json"]
    for key in keys:
        store.create(key, b"{}")
    assert list(store.iter_keys("c1/")) == ["c1/conversation.json", "c1/events/a.json", "c1/events/b.json",
                                            "c1/events/sub/c.json"]
    assert list(store.iter_keys("c1")) == sorted(k for k in keys if k.startswith("c1"))
    assert list(store.iter_keys("")) == sorted(keys)


def test_delete(store: Store) -> None:
    store.create("c1/events/a.json", b"{}")
    store.create("c1/events/b.json", b"{}")
    store.delete("c1/events/a.json")
    assert store.read("c1/events/a.json") is None
    assert list(store.iter_keys("c1/")) == ["c1/events/b.json"]
    assert store.create("c1/events/a.json", b'{"again":true}') is True


def test_concurrent_compare_and_swap_loses_no_update(store: Store) -> None:
    """8 threads each add their own marks to one object by read + replace, retrying on conflict: no mark is
    lost. Like the fold, a writer first looks for its mark, so a try that landed although its answer was
    lost (a timeout on a loaded machine, retried by the SDK) is not applied twice."""
    threads, per_thread = 8, 6
    key = "counter/conversation.json"
    errors: list[BaseException] = []

    def add_marks(thread: int) -> None:
        for n in range(per_thread):
            mark = f"{thread}-{n}"
            for _attempt in range(200):
                blob = store.read(key)
                value: dict[str, Any] = orjson.loads(blob.data) if blob else {"marks": []}
                if mark in value["marks"]:
                    break
                value["marks"].append(mark)
                try:
                    store.replace(key, orjson.dumps(value), blob.version if blob else None)
                    break
                except (PreconditionFailed, StoreUnavailable):
                    continue
            else:
                raise AssertionError("200 conflicts in a row")

    def run(thread: int) -> None:
        try:
            add_marks(thread)
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    blob = store.read(key)
    assert blob is not None
    marks = orjson.loads(blob.data)["marks"]
    assert sorted(marks) == sorted(f"{t}-{n}" for t in range(threads) for n in range(per_thread))


def test_concurrent_create_has_one_winner(store: Store) -> None:
    results: list[bool] = []
    lock = threading.Lock()

    def create(i: int) -> None:
        won = store.create("race/events/e.json", f'{{"writer":{i}}}'.encode())
        with lock:
            results.append(won)

    workers = [threading.Thread(target=create, args=(i,)) for i in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert sorted(results) == [False] * 7 + [True]


def _locations_for(store: Store) -> tuple[RecordingLocation | None, list[RecordingLocation]]:
    """A recording location inside the store's own bucket (None for a SQLite file) and some that are not."""
    bucket = getattr(store, "bucket", None) or getattr(store, "container", None) or "bucket"
    account = getattr(store, "account", None)
    key = "c123/recording.mp4"
    own = {
        "S3Store": RecordingLocation("s3", bucket, key),
        "GCSStore": RecordingLocation("gcs", bucket, key),
        "AzureBlobStore": RecordingLocation("azure_blob", bucket, key, account=account),
    }.get(type(store).__name__)
    others = [
        RecordingLocation("s3", "someone-elses-bucket", key),
        RecordingLocation("gcs", "someone-elses-bucket", key),
        RecordingLocation("azure_blob", "someone-elses-container", key, account=account),
        RecordingLocation("azure_blob", bucket, key, account="otheraccount"),
    ]
    others += [RecordingLocation(p, bucket, key, account=account) for p in ("s3", "gcs", "azure_blob")
               if own is None or p != own.provider]
    return own, others


def test_locate_only_in_its_own_bucket(store: Store) -> None:
    own, others = _locations_for(store)
    if own is not None:
        assert store.locate(own) == "c123/recording.mp4"
    for location in others:
        assert store.locate(location) is None, location


def test_locate_then_stat_finds_a_recording(store: Store) -> None:
    own, _ = _locations_for(store)
    if own is None:
        pytest.skip("a SQLite file holds no cloud recording")
    key = store.locate(own)
    assert key is not None
    assert store.stat(key) is None
    store.create(key, b"\x00" * 1024, content_type="video/mp4")
    info = store.stat(key)
    assert info is not None and info.size == 1024 and info.content_type == "video/mp4" and info.etag


# -- URLs and failures ----------------------------------------------------------------------

@pytest.mark.parametrize(("url", "prefix"), [
    ("s3://bucket", ""), ("s3://bucket/", ""), ("s3://bucket/tavus", "tavus/"), ("s3://bucket//a/b//", "a/b/"),
    ("gs://bucket/tavus/", "tavus/"), ("gcs://bucket", ""),
    ("azure://container/p", "p/"),
    ("https://acct.blob.core.windows.net/container/tavus/calls", "tavus/calls/"),
])
def test_urls_name_bucket_and_prefix(url: str, prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", "AccountName=acct;AccountKey=a2V5;"
                       "BlobEndpoint=http://127.0.0.1:9/acct;DefaultEndpointsProtocol=http")
    opened, got = open_store(url)
    assert got == prefix
    assert isinstance(opened, Store)


def test_azure_account_from_the_environment_or_the_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """azure:// takes its account from the connection string, else AZURE_STORAGE_ACCOUNT_URL (Entra ID);
    the https:// form uses the connection string only when it is for the same account."""
    from tavus_callbacks.stores.azure_blob import AzureBlobStore

    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING", raising=False)
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_URL", "https://acmerecordings.blob.core.windows.net/")
    store, prefix = AzureBlobStore.from_url("azure://tavus/calls")
    assert (store.account, store.container, store.url, prefix) == (
        "acmerecordings", "tavus", "https://acmerecordings.blob.core.windows.net/tavus", "calls/")

    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", "DefaultEndpointsProtocol=https;AccountName=other;"
                       "AccountKey=a2V5;EndpointSuffix=core.windows.net")
    store, _ = AzureBlobStore.from_url("azure://tavus")
    assert (store.account, store.url) == ("other", "https://other.blob.core.windows.net/tavus")
    store, prefix = AzureBlobStore.from_url("https://acmerecordings.blob.core.windows.net/tavus/a/b")
    assert (store.account, store.container, prefix) == ("acmerecordings", "tavus", "a/b/")
    assert store.locate(RecordingLocation("azure_blob", "tavus", "c1/r.mp4", account="acmerecordings")) == "c1/r.mp4"
    assert store.locate(RecordingLocation("azure_blob", "tavus", "c1/r.mp4", account="other")) is None


@pytest.mark.parametrize("url", ["s3://", "s3:///prefix", "gs://", "azure://", "https://acct.blob.core.windows.net/"])
def test_urls_without_a_bucket_are_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="TAVUS_STORE_URL"):
        open_store(url)


def test_azure_url_needs_an_account(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING", raising=False)
    monkeypatch.delenv("AZURE_STORAGE_ACCOUNT_URL", raising=False)
    with pytest.raises(ConfigError, match="AZURE_STORAGE_CONNECTION_STRING"):
        open_store("azure://container/prefix")


@pytest.mark.parametrize("kind", CLOUD_BACKENDS)
def test_missing_bucket_is_unavailable(kind: str, cloud_bucket: Callable[..., str]) -> None:
    cloud_bucket(kind)  # points the environment at the emulator
    store, _ = open_store(store_url_for(kind, new_bucket_name()))
    with pytest.raises(StoreUnavailable) as raised:
        store.create("c1/events/a.json", b"{}")
    assert "does not exist" in str(raised.value)


@pytest.mark.parametrize("kind", CLOUD_BACKENDS)
def test_unreachable_store_is_unavailable(kind: str, cloud_bucket: Callable[..., str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    url = cloud_bucket(kind)
    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", dead)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", dead)
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
                       f"AccountKey=a2V5;BlobEndpoint={dead}/devstoreaccount1;")
    clear_clients()
    store, _ = open_store(url)
    for op in (lambda: store.create("a.json", b"{}"), lambda: store.read("a.json"),
               lambda: store.replace("a.json", b"{}", None), lambda: store.stat("a.json")):
        with pytest.raises(StoreUnavailable):
            op()


def test_sqlite_urls_relative_and_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    relative, prefix = open_store("sqlite:///data/tavus.db")
    absolute, _ = open_store(f"sqlite:///{tmp_path}/other.db")
    assert prefix == ""
    assert relative.url == f"sqlite:///{tmp_path}/data/tavus.db" and (tmp_path / "data" / "tavus.db").is_file()
    assert absolute.url == f"sqlite:///{tmp_path}/other.db"
    relative.create("c1/events/a.json", b"{}")
    assert open_store(relative.url)[0].read("c1/events/a.json") is not None  # its url opens the same file


def test_the_sqlite_table_reads_with_plain_sql(tmp_path: Path) -> None:
    """The file is one documented table a user can query with the sqlite3 shell."""
    store, _ = open_store(f"sqlite:///{tmp_path}/t.db")
    store.create("c1/events/a.json", b'{"n":1}')
    with sqlite3.connect(tmp_path / "t.db") as conn:
        rows = conn.execute("SELECT key, body, content_type, length(body) FROM objects").fetchall()
    assert rows == [("c1/events/a.json", b'{"n":1}', "application/json", 7)]


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///", "sqlite://host/x.db", "sqlite:///:memory:",
                                 "sqlite:///x.db?mode=ro"])
def test_sqlite_urls_that_name_no_file_are_refused(url: str) -> None:
    with pytest.raises(ConfigError, match=r"sqlite:///tavus\.db"):
        open_store(url)


@pytest.mark.parametrize("url", ["file:///tmp/tavus-data", "file://./tavus-data", "./tavus-data"])
def test_the_folder_store_is_gone_and_says_what_to_use(url: str) -> None:
    with pytest.raises(ConfigError, match=r"folder store is gone.*sqlite:///.*tavus-callbacks export"):
        open_store(url)


def test_a_locked_sqlite_file_is_unavailable_not_an_error(tmp_path: Path) -> None:
    """Another process holding the write lock past the busy timeout: StoreUnavailable (the pipeline's 503)."""
    from tavus_callbacks.stores.sqlite import SQLiteStore

    store = SQLiteStore(tmp_path / "t.db", timeout=0.2)
    holder = sqlite3.connect(tmp_path / "t.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreUnavailable, match="SQLite store could not write"):
            store.create("c1/events/a.json", b"{}")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert store.create("c1/events/a.json", b"{}") is True
