"""Shared fixtures: the fixture modules of support/ register through `pytest_plugins` below; the recorded payloads
are the package's samples (tavus_callbacks/events/samples/, which `send` posts) and the test-only ones in events/."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from tavus_callbacks.cli.export import export
from tavus_callbacks.events.registry import SAMPLES_DIR
from tavus_callbacks.feed import FeedWorker
from tavus_callbacks.http import Request, Response
from tavus_callbacks.pipeline import Pipeline
from tavus_callbacks.stores import Store

EVENTS_DIR = Path(__file__).parent / "events"  # test-only payloads; with the package's samples: RECORDED
RECORDED = sorted([*SAMPLES_DIR.glob("*.json"), *EVENTS_DIR.glob("*.json")], key=lambda p: p.name)

# The suite draws the same examples on every run, so a result never depends on luck;
# HYPOTHESIS_PROFILE=explore draws new ones (and keeps what fails in .hypothesis/ for the next run).
settings.register_profile("repeatable", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))

pytest_plugins: list[str] = ["support.servers", "support.serve_fixture", "support.bus_servers", "support.fake_tavus",
                             "support.webhook_receiver"]


def event_path(name: str) -> Path:
    """The file of a recorded payload by name (with or without .json): a sample of the package, or test-only."""
    file = name if name.endswith(".json") else f"{name}.json"
    return next((d / file for d in (SAMPLES_DIR, EVENTS_DIR) if (d / file).is_file()), EVENTS_DIR / file)


def load_event(name: str) -> dict[str, Any]:
    """A recorded payload by file name (with or without .json)."""
    data: dict[str, Any] = json.loads(event_path(name).read_text())
    return data


@pytest.fixture
def token() -> str:
    return "test-token-0123456789abcdef"


def exported(store: Store, to: Path) -> list[Path]:
    """Every object of `store` written afresh under `to` as plain files (`tavus-callbacks export`), sorted."""
    shutil.rmtree(to, ignore_errors=True)
    to.mkdir(parents=True)
    export(store, to)
    return sorted(p for p in to.rglob("*") if p.is_file())


def drain(pipeline: Pipeline) -> None:
    """Derive everything the SQLite store's change feed holds, as `serve`'s feed worker does; every derive done."""
    worker = FeedWorker(pipeline, pipeline.store)  # type: ignore[arg-type]
    while worker.run_once():
        pass
    assert worker.waiting == 0, "a derive failed (the log says why)"


def handle_and_derive(pipeline: Pipeline, request: Request) -> Response:
    """Answer a request, then derive from the event it stored, as the store's change feed would next."""
    response = pipeline.handle(request)
    if response.outcome is not None and response.outcome.result == "stored" and response.outcome.key:
        pipeline.derive(response.outcome.key)
    return response
