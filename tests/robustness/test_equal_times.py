"""One instant written in any of the forms a sender may use is one time, so one callback is one event: RFC 3339
in either letter case, `T` or a space, `Z` or an offset, naive UTC, epoch seconds or milliseconds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import load_event
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tavus_callbacks.events.times import EPOCH_MILLISECONDS_FROM, MAX_YEAR, to_utc_iso
from tavus_callbacks.http import Request
from tavus_callbacks.pipeline import Pipeline
from tavus_callbacks.settings import Settings
from tavus_callbacks.stores.sqlite import SQLiteStore

TOKEN = "equal-times-token-0123456789abcdef"
INSTANT = "2025-07-11T06:45:47.472000Z"
FORMS: list[Any] = [
    INSTANT, "2025-07-11t06:45:47.472z", "2025-07-11T06:45:47.472z", "2025-07-11t06:45:47.472Z",
    "2025-07-11 06:45:47.472Z", "2025-07-11 06:45:47.472z", "2025-07-11 06:45:47.472", "2025-07-11T06:45:47.472",
    "2025-07-11T08:45:47.472+02:00", "2025-07-11t01:15:47.472-05:30", "2025-07-11 06:45:47.472+00:00",
    "2025-07-11T06:45:47.472-00:00", "2025-07-11T06:45:47.472000000Z",
    1752216347.472, "1752216347.472", 1752216347472, "1752216347472", 1752216347472.0,
]


@pytest.fixture
def pipeline(tmp_path: Path) -> Pipeline:
    return Pipeline(Settings(tokens=(TOKEN,)), store=SQLiteStore(tmp_path / "store.db"))


@pytest.mark.parametrize("form", FORMS, ids=repr)
def test_each_form_is_the_same_utc_time(form: Any) -> None:
    assert to_utc_iso(form) == INSTANT


def test_a_callback_sent_with_each_form_is_stored_once_then_answered_duplicate(pipeline: Pipeline) -> None:
    answers = []
    for form in FORMS:
        payload = {**load_event("conversation.system.replica_joined"), "timestamp": form}
        response = pipeline.handle(Request("POST", "/", {"token": TOKEN}, {}, orjson.dumps(payload)))
        assert response.status == 200, response.body
        answers.append(response.json_body())
    assert [a["status"] for a in answers] == ["stored"] + ["duplicate"] * (len(FORMS) - 1)
    assert {a["event_id"] for a in answers} == {answers[0]["event_id"]} and all(a["valid"] for a in answers)
    events = [k for k in pipeline.store.iter_keys("") if "/events/" in k]
    assert len(events) == 1, events


def render(when: datetime, style: int, offset_minutes: int) -> Any:
    """One instant (whole milliseconds, UTC) the way some sender might write it."""
    local = when.astimezone(timezone(timedelta(minutes=offset_minutes)))
    millis = round(when.timestamp() * 1000)
    return [
        when.strftime("%Y-%m-%dT%H:%M:%S.%fZ").lower(),
        when.strftime("%Y-%m-%d %H:%M:%S.%f"),
        local.isoformat(sep="t"),
        local.isoformat(sep=" "),
        millis,
        str(millis),
        millis / 1000,
    ][style]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.datetimes(min_value=datetime(1974, 1, 1), max_value=datetime(MAX_YEAR, 12, 30)).map(
           lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000, tzinfo=UTC)),
       st.integers(min_value=0, max_value=6), st.integers(min_value=-14 * 60, max_value=14 * 60))
def test_any_rendering_of_an_instant_normalizes_to_it(when: datetime, style: int, offset_minutes: int) -> None:
    assert to_utc_iso(render(when, style, offset_minutes)) == when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.mark.parametrize(("number", "expected"), [
    (EPOCH_MILLISECONDS_FROM - 1, None),  # as seconds, after the year 2200; too small to be milliseconds
    (EPOCH_MILLISECONDS_FROM, "1973-03-03T09:46:40.000000Z"),
    (7289654399999, "2200-12-31T23:59:59.999000Z"),
    (7289654400000, None),
    (7289654399, "2200-12-31T23:59:59.000000Z"),
])
def test_seconds_and_milliseconds_are_told_apart_by_magnitude(number: int, expected: str | None) -> None:
    if expected is None:
        with pytest.raises(ValueError, match="outside the years"):
            to_utc_iso(number)
    else:
        assert to_utc_iso(number) == expected
