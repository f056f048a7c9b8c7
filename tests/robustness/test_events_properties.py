"""Properties of `normalize` over generated input: it never raises, and what it returns always serializes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
from conftest import load_event
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tavus_callbacks.events.catalogue import CONVERSATION_TYPES
from tavus_callbacks.events.normalize import Event, is_plain_id, normalize
from tavus_callbacks.events.schema import details_model_for
from tavus_callbacks.events.times import MAX_YEAR, MIN_YEAR, TimeParseError, to_utc_iso
from tavus_callbacks.layout import Layout
from tavus_callbacks.record import build_record

SETTINGS = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
GUARD = "could not be normalized"  # the last-resort message: no generated input may reach it

# What orjson.loads can produce (the pipeline decodes with it): 64-bit ints, finite floats.
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**64 - 1),
                         st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=30))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)), max_leaves=15)
# What the standard library's json can produce besides: any int, NaN and infinities.
wide_scalars = st.one_of(json_scalars, st.integers(), st.floats())
wide_values = st.recursive(wide_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)), max_leaves=15)

ids = st.one_of(st.sampled_from(["c123456", "r5f0577fc829", "1e30440cf9", "../x", "", "a" * 129, "c1\n"]),
                st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,20}", fullmatch=True), json_values)
times = st.one_of(st.sampled_from(["2025-07-11T06:45:47.472000Z", "2024-08-28 15:27:40.824457", 1752216347.472,
                                   "1752216347", "1969-01-01T00:00:00Z", "not a time", 1e30, 2**63 - 1]),
                  st.datetimes().map(str), st.floats(allow_nan=False, allow_infinity=False), json_values)
event_types = st.one_of(st.sampled_from([*CONVERSATION_TYPES, "application.brand_new", "Bad.Type", ""]),
                        st.from_regex(r"[a-z][a-z0-9_]{0,8}(\.[a-z0-9_]{1,8}){0,3}", fullmatch=True), json_values)
property_keys = ["replica_id", "face_id", "shutdown_reason", "transcript", "storage_provider", "storage_uri",
                 "bucket_name", "s3_key", "duration", "error_code", "error_message", "analysis", "reason",
                 "tool_id", "tool_name", "status", "request", "response", "guardrail", "message"]
turns = st.lists(st.one_of(st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system"]),
                                                  "content": st.text(max_size=20)},
                                                 optional={"timestamp": times, "seconds_from_start": json_values,
                                                           "duration": json_values,
                                                           "inference_id": json_values}), json_values), max_size=5)
property_values = st.one_of(json_values, turns, st.sampled_from(
    ["s3://b/c123456/x.mp4", "gs://b/k", "https://acct.blob.core.windows.net/c/b.mp4", "https://x.example/y",
     "internal error occurred at step 3", "max_call_duration reached"]))
properties = st.one_of(st.dictionaries(st.sampled_from(property_keys), property_values, max_size=6), json_values)


def shaped(required: dict[str, st.SearchStrategy[Any]], optional: dict[str, st.SearchStrategy[Any]]) \
        -> st.SearchStrategy[dict[str, Any]]:
    """Dicts with a family's keys (so normalize picks that family) holding values of any JSON type."""
    return st.fixed_dictionaries(required, optional=optional)


conversation_payloads = shaped({"event_type": event_types}, {
    "conversation_id": ids, "properties": properties, "timestamp": times, "message_type": json_values,
    "webhook_url": json_values})
guardrail_payloads = shaped({"conversation_id": ids, "properties": st.fixed_dictionaries(
    {"guardrail": json_values}, optional={"x": json_values})}, {"timestamp": times})
objective_payloads = shaped({"objective_name": json_values}, {
    "conversation_id": ids, "output_variables": json_values, "timestamp": times})
replica_payloads = shaped({"replica_id": ids, "status": json_values}, {"error_message": json_values,
                                                                        "timestamp": times})
video_payloads = shaped({"video_id": ids}, {
    "status": json_values, "replica_id": ids, "created_at": times, "updated_at": times, "data": json_values,
    "video_name": json_values, "generation_progress": json_values, "download_url": json_values})
family_payloads = st.one_of(conversation_payloads, guardrail_payloads, objective_payloads, replica_payloads,
                            video_payloads)


def check(event: Event, round_trip: bool = True) -> None:
    """What must hold for every normalized event, whatever the input (NaN and inf become null when dumped)."""
    assert isinstance(event, Event)
    assert not any(GUARD in e for e in event.errors), event.errors
    assert event.valid == (not event.errors)
    assert event.type.startswith("io.tavus.") and len(event.type) <= 200
    for value in (event.conversation_id, event.replica_id, event.video_id):
        assert value is None or is_plain_id(value)
    assert event.time is None or (len(event.time) == 27 and event.time.endswith("Z")
                                  and MIN_YEAR <= int(event.time[:4]) <= MAX_YEAR)
    dumped = event.model_dump(mode="json")
    again = Event.model_validate(dumped)
    assert again == event or not round_trip
    model = details_model_for(event)
    if model is not None:
        assert model.model_validate(event.details).model_dump(mode="json") == event.details
    key = Layout("prefix/").event_key(event, "0" * 64)
    assert key.startswith("prefix/") and ".." not in key and "\\" not in key and "\x00" not in key


@SETTINGS
@given(json_values)
def test_normalize_never_raises_on_any_json_value(payload: Any) -> None:
    event = normalize(payload)
    check(event)
    orjson.dumps(event.model_dump(mode="json"))
    assert orjson.loads(build_record(payload, event, Layout()).body)["data"]["payload"] == payload


@SETTINGS
@given(family_payloads)
def test_normalize_never_raises_on_family_shaped_objects(payload: dict[str, Any]) -> None:
    event = normalize(payload)
    check(event)
    assert event.family != "unrecognized"
    orjson.dumps(event.model_dump(mode="json"))
    assert json.loads(build_record(payload, event, Layout()).body)["data"]["payload"] == payload


@SETTINGS
@given(st.one_of(wide_values, st.dictionaries(st.sampled_from(["event_type", "conversation_id", "properties",
                                                               "timestamp", "video_id", "status", "replica_id",
                                                               "objective_name", "created_at"]),
                                              wide_values, max_size=6)))
def test_normalize_never_raises_on_what_the_standard_json_module_can_decode(payload: Any) -> None:
    event = normalize(payload)
    check(event, round_trip=False)
    json.dumps(event.model_dump(mode="json"))


@SETTINGS
@given(st.sampled_from(["conversation.application.transcription_ready", "conversation.application.recording_ready.s3",
                        "video.ready", "conversation.system.shutdown.internal_error", "objective", "guardrail",
                        "replica.training.error", "conversation.application.post_call_action_executed"]),
       st.data())
def test_any_one_field_of_a_recorded_payload_replaced_by_any_json_value(name: str, data: st.DataObject) -> None:
    payload = load_event(name)
    target = payload["properties"] if "properties" in payload and data.draw(st.booleans()) else payload
    field = data.draw(st.sampled_from(sorted(target)))
    target[field] = data.draw(json_values)
    event = normalize(payload)
    check(event)
    orjson.dumps(event.model_dump(mode="json"))


@SETTINGS
@given(st.datetimes(min_value=datetime(MIN_YEAR, 1, 2), max_value=datetime(MAX_YEAR, 12, 30)),
       st.integers(min_value=-14 * 60, max_value=14 * 60))
def test_iso_and_naive_forms_give_the_same_instant(when: datetime, offset_minutes: int) -> None:
    utc = when.replace(tzinfo=UTC)
    expected = utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert to_utc_iso(when.isoformat(sep=" ")) == expected
    assert to_utc_iso(utc.isoformat().replace("+00:00", "Z")) == expected
    local = utc.astimezone(timezone(timedelta(minutes=offset_minutes)))
    assert to_utc_iso(local.isoformat()) == expected


@SETTINGS
@given(st.floats(min_value=0, max_value=datetime(MAX_YEAR, 12, 31, tzinfo=UTC).timestamp()))
def test_epoch_seconds_as_numbers_and_as_text_agree(seconds: float) -> None:
    from_number = to_utc_iso(seconds)
    assert from_number == to_utc_iso(repr(seconds))
    back = datetime.fromisoformat(from_number).timestamp()
    assert abs(back - seconds) <= 1e-6 * max(1.0, seconds / 1e9)


@SETTINGS
@given(st.one_of(st.text(max_size=40), st.integers(), st.floats(), json_values))
def test_to_utc_iso_returns_the_normal_form_or_raises_its_own_error(value: Any) -> None:
    try:
        result = to_utc_iso(value)
    except TimeParseError as exc:
        assert str(exc)
        return
    assert len(result) == 27 and result[10] == "T" and result.endswith("Z")
    assert MIN_YEAR <= int(result[:4]) <= MAX_YEAR
