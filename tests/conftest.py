"""Shared fixtures. Each fixture module registers itself in `pytest_plugins` below."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

EVENTS_DIR = Path(__file__).parent / "events"

pytest_plugins: list[str] = ["servers", "serve_fixture", "bus_servers", "fake_tavus"]


def load_event(name: str) -> dict[str, Any]:
    """A recorded payload from tests/events/ by file name (with or without .json)."""
    path = EVENTS_DIR / (name if name.endswith(".json") else f"{name}.json")
    data: dict[str, Any] = json.loads(path.read_text())
    return data


@pytest.fixture
def token() -> str:
    return "test-token-0123456789abcdef"
