"""`replay`: a store re-sent to a second `serve` reproduces it; a second run only finds duplicates; buses too."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import drain, exported
from support.bus_servers import FORWARD_TOKEN, SDK_WARNINGS, EventGridSink, deliver, large_transcript, sample_payloads
from support.servers import sqlite_url
from tavus_callbacks.cli import main
from tavus_callbacks.cli.replay import Progress, Summary
from tavus_callbacks.stores.sqlite import SQLiteStore

pytestmark = SDK_WARNINGS


def fill_store(root: Path) -> list[str]:
    """Deliver every recorded payload (some twice, plus a large transcript) to a pipeline on `root`; the ids."""
    from tavus_callbacks.pipeline import Pipeline
    from tavus_callbacks.settings import Settings

    pipeline = Pipeline(Settings(tokens=(FORWARD_TOKEN,), store_url=url(root)))
    payloads = [*sample_payloads(), large_transcript(200_000)]
    ids = [deliver(pipeline, p).json_body()["event_id"] for p in [*payloads, *payloads[:4]]]
    drain(pipeline)
    return sorted(set(ids))


def url(root: Path) -> str:
    """The store URL of the SQLite file in folder `root`."""
    return sqlite_url(root / "store.db")


def files(root: Path) -> Path:
    """The store in folder `root` exported afresh as plain files; their folder."""
    exported(SQLiteStore(root / "store.db"), root / "files")
    return root / "files"


def snapshot(root: Path) -> dict[str, bytes]:
    """Every object of the store in `root` but quarantine: key -> bytes."""
    out = files(root)
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and not p.relative_to(out).as_posix().startswith("quarantine/")}


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_replay_into_a_second_serve_reproduces_the_store_and_is_safe_to_run_twice(
        capsys: pytest.CaptureFixture[str], serve_factory: Callable[..., Any], tmp_path: Path) -> None:
    source, copy = tmp_path / "source", tmp_path / "copy"
    ids = fill_store(source)
    server = serve_factory(store_url=url(copy), workers=1, threads=4)

    code, out, err = run_cli(capsys, "replay", "--store", url(source), "--to", server.url, "--token", server.token)
    assert code == 0, err
    assert f"{len(ids)} sent to {server.url}, {len(ids)} stored, 0 duplicate, 0 failed" in out
    assert f"replay: {len(ids)}/{len(ids)} sent" in err, "plain counts when stderr is not a terminal"
    original = snapshot(source)
    server.settle()
    assert snapshot(copy) == original
    assert any(key.endswith("/conversation.json") for key in original)
    assert any(key.endswith("/transcript.json") for key in original)

    code, out, _ = run_cli(capsys, "replay", "--store", url(source), "--to", server.url, "--token", server.token)
    assert code == 0
    assert f"{len(ids)} sent to {server.url}, 0 stored, {len(ids)} duplicate, 0 failed" in out
    server.settle()
    assert snapshot(copy) == original
    assert server.token not in out


def test_replay_of_one_conversation_since_a_time(capsys: pytest.CaptureFixture[str],
                                                 serve_factory: Callable[..., Any], tmp_path: Path) -> None:
    source, copy = tmp_path / "source", tmp_path / "copy"
    fill_store(source)
    events = [json.loads(p.read_bytes()) for p in (files(source) / "c123456" / "events").glob("*.json")]
    times = sorted(e["time"] for e in events if e.get("time"))
    since = times[len(times) // 2]
    expected = sorted(p.name for p in (files(source) / "c123456" / "events").glob("*.json")
                      if (json.loads(p.read_bytes()).get("time") or "") >= since)
    server = serve_factory(store_url=url(copy), workers=1, threads=4)
    code, out, _ = run_cli(capsys, "replay", "--store", url(source), "--to", server.url, "--token", server.token,
                           "--conversation", "c123456", "--since", since)
    assert code == 0
    assert sorted(p.name for p in files(copy).rglob("events/*.json")) == expected
    assert f"{len(expected)} stored" in out and "left out" in out


def test_replay_to_a_bus_publishes_the_stored_events_in_time_order(
        capsys: pytest.CaptureFixture[str], eventgrid_sink: EventGridSink, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAVUS_EVENTGRID_KEY", "eventgrid-test-key-0123456789")
    ids = fill_store(tmp_path)
    code, out, _ = run_cli(capsys, "replay", "--store", url(tmp_path), "--to", eventgrid_sink.url())
    assert code == 0
    assert f"{len(ids)} published, 0 failed" in out
    events = [json.loads(r.body)[0] for r in eventgrid_sink.requests]
    assert sorted(e["id"] for e in events) == ids
    ranks = [(e.get("time") or "", e["id"]) for e in events]
    assert ranks == sorted(ranks), "sent in time order"
    stored = {json.loads(p.read_bytes())["id"]: json.loads(p.read_bytes()) for p in files(tmp_path).rglob("*.json")
              if "/events/" in p.as_posix() or "/unrecognized/" in p.as_posix()}
    assert all(e == stored[e["id"]] for e in events), "the stored CloudEvents, as stored"


def test_a_refused_token_stops_the_replay_with_what_to_do(capsys: pytest.CaptureFixture[str],
                                                          serve_factory: Callable[..., Any], tmp_path: Path) -> None:
    fill_store(tmp_path / "source")
    server = serve_factory(store_url=url(tmp_path / "copy"), workers=1, threads=2)
    code, _, err = run_cli(capsys, "replay", "--store", url(tmp_path / "source"), "--to", server.url,
                           "--token", "not-the-token-0123456789")
    assert code == 2
    assert "answered 401" in err and "--token" in err
    assert not list(files(tmp_path / "copy").rglob("events/*.json"))


def test_a_terminal_gets_a_progress_bar() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    progress = Progress(4, stream)
    summary = Summary(total=4)
    for done in range(1, 5):
        progress.update(done, summary)
    text = stream.getvalue()
    assert text.count("\r[") == 4
    assert "\r[" + "#" * 30 + "] 4/4" in text and text.endswith("\n")
