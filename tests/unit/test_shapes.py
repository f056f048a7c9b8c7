"""The payload shapes as normalize checks them: the generated core schemas, and the plain check in Python.

normalize loads neither pydantic nor (for plainly valid input) pydantic-core; these tests hold what it
uses instead to what pydantic itself does with the TypedDicts of shapes.py.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import EVENTS_DIR, load_event
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter
from pydantic_core import SchemaValidator, ValidationError
from tavus_callbacks.events import shapes
from tavus_callbacks.events.normalize import _CHECK, CONVERSATION_TYPES, FAMILY_SHAPES, _core_schemas, family_of
from tavus_callbacks.events.plain_validator import NOT_PLAIN, compile_plain

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = _core_schemas()
FIELD_NAMES = sorted({name for schema in SCHEMAS.values() for name in schema["fields"]}
                     | {"role", "content", "timestamp", "seconds_from_start", "guardrail", "script"})
FAMILY_SHAPE = dict(zip(["guardrail", "objective", "replica_training", "video_generation"], FAMILY_SHAPES,
                        strict=True))

# Any Python value json or orjson can decode, plus the look-alikes a plain check must not take for the real
# thing: bools and ints for floats, NaN and infinities, surrogates, keys that are not strings.
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=6),
                    st.sampled_from(["\ud800", "user", "assistant", "s3://b/k", "", 2**53, 2**53 + 1, -(2**53) - 1]))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3),
    st.dictionaries(st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=3), st.integers()), inner, max_size=6)),
    max_leaves=25)
objects = st.dictionaries(st.sampled_from(FIELD_NAMES), values, max_size=10)


def recorded_inputs() -> list[tuple[str, Any]]:
    """(shape, what normalize validates against it) for every recorded payload of a known shape."""
    found = []
    for path in sorted(EVENTS_DIR.glob("*.json")):
        payload = load_event(path.name)
        family = family_of(payload)
        if family == "conversation" and payload["event_type"] in CONVERSATION_TYPES:
            found.append((CONVERSATION_TYPES[payload["event_type"]][0], payload["properties"]))
        elif family in FAMILY_SHAPE:
            found.append((FAMILY_SHAPE[family], payload))
    return found


def same(a: Any, b: Any) -> bool:
    """Equal with the same types all the way down (1 == 1.0 == True, but not here; NaN is NaN)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b) or (isinstance(a, float) and math.isnan(a) and math.isnan(b))


def outcome(validate: Any, value: Any) -> tuple[str, Any]:
    try:
        return "ok", validate(value)
    except ValidationError as exc:
        return "errors", exc.errors(include_url=False)


# --- the generated schemas -------------------------------------------------------------------------


def test_the_generated_core_schemas_are_those_of_the_shapes_as_they_are() -> None:
    committed = shapes.GENERATED.read_bytes()
    assert committed == shapes.generated_json(), (
        f"{shapes.GENERATED.relative_to(ROOT)} is stale: the payload shapes in shapes.py (or pydantic) changed. "
        f"Regenerate it with `.venv/bin/python -m tavus_callbacks.events.shapes` and commit it.")


def test_every_shape_normalize_validates_has_a_generated_schema() -> None:
    used = {shape for shape, _ in CONVERSATION_TYPES.values()} | set(FAMILY_SHAPES)
    assert used == set(shapes.SHAPES) == set(SCHEMAS)


@pytest.mark.parametrize(("shape", "value"), recorded_inputs())
def test_a_generated_schema_validates_a_recorded_payload_as_its_type_adapter(shape: str, value: Any) -> None:
    adapter = TypeAdapter(shapes.SHAPES[shape]).validate_python
    ours = SchemaValidator(SCHEMAS[shape]).validate_python
    assert outcome(ours, value) == outcome(adapter, value)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(SCHEMAS)), st.one_of(objects, values))
def test_a_generated_schema_answers_any_input_as_its_type_adapter(shape: str, value: Any) -> None:
    adapter = TypeAdapter(shapes.SHAPES[shape]).validate_python
    ours = SchemaValidator(SCHEMAS[shape]).validate_python
    assert outcome(ours, value) == outcome(adapter, value)


# --- the plain check ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("shape", "value"), recorded_inputs())
def test_the_plain_check_takes_every_recorded_payload_as_pydantic_core_does(shape: str, value: Any) -> None:
    plain = compile_plain(SCHEMAS[shape])
    assert plain is not None
    result = plain(value)
    assert result is not NOT_PLAIN, "a recorded payload should not need pydantic-core"
    assert same(result, SchemaValidator(SCHEMAS[shape]).validate_python(value))


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(SCHEMAS)), st.one_of(objects, values))
@example("PalJoinedProperties", {"replica_id": math.nan})  # an Any field keeps NaN as it is
def test_the_plain_check_answers_what_pydantic_core_answers_or_declines(shape: str, value: Any) -> None:
    plain = compile_plain(SCHEMAS[shape])
    assert plain is not None
    result = plain(value)
    if result is not NOT_PLAIN:
        assert same(result, SchemaValidator(SCHEMAS[shape]).validate_python(value))


def test_the_plain_check_declines_near_misses() -> None:
    plain = compile_plain(SCHEMAS["TranscriptionReadyProperties"])
    assert plain is not None
    turn = {"role": "user", "content": "hi", "seconds_from_start": 1.5}
    assert plain({"transcript": [turn]}) == {"replica_id": None, "transcript": [
        {"role": "user", "content": "hi", "timestamp": None, "seconds_from_start": 1.5, "duration": None,
         "inference_id": None}]}
    converted = plain({"transcript": [{**turn, "seconds_from_start": 2}]})["transcript"][0]["seconds_from_start"]
    assert type(converted) is float and converted == 2.0  # as pydantic-core does
    for odd in ({"transcript": [{**turn, "seconds_from_start": 2**53 + 1}]},  # not exact as a float
                {"transcript": [{**turn, "seconds_from_start": True}]},
                {"transcript": [{**turn, "seconds_from_start": float("nan")}]},
                {"transcript": [{**turn, "role": None}]},
                {"transcript": [{"content": "no role"}]},
                {"transcript": ({**turn},)},
                {}, [], "text", None):
        assert plain(odd) is NOT_PLAIN, odd


@pytest.mark.parametrize("schema", [
    {"type": "str", "max_length": 5},
    {"type": "str", "strict": True},
    {"type": "float", "allow_inf_nan": True},
    {"type": "list", "items_schema": {"type": "int"}, "min_length": 1},
    {"type": "union", "choices": [{"type": "str"}, {"type": "str"}]},
    {"type": "union", "choices": [{"type": "int"}, {"type": "bool"}]},
    {"type": "union", "choices": [{"type": "str"}, {"type": "any"}]},
    {"type": "union", "choices": [{"type": "str"}, {"type": "int"}], "mode": "left_to_right"},
    {"type": "dict", "keys_schema": {"type": "int"}, "values_schema": {"type": "any"}},
    {"type": "typed-dict", "fields": {"a": {"type": "typed-dict-field", "schema": {"type": "str"}, "required": False}}},
    {"type": "typed-dict", "fields": {}, "extra_behavior": "forbid"},
    {"type": "typed-dict", "fields": {}, "config": {"str_strip_whitespace": True}},
    {"type": "typed-dict", "fields": {"a": {"type": "typed-dict-field", "required": False, "schema": {
        "type": "default", "default": [], "schema": {"type": "list", "items_schema": {"type": "any"}}}}}},
    {"type": "model", "cls": object, "schema": {"type": "any"}},
])
def test_compile_plain_declines_a_schema_whose_result_it_cannot_promise(schema: dict[str, Any]) -> None:
    assert compile_plain(schema) is None


def test_a_valid_callback_is_normalized_without_pydantic_or_pydantic_core() -> None:
    code = f"""
import json, pathlib, sys
import tavus_callbacks.pipeline
from tavus_callbacks.events.normalize import normalize
from tavus_callbacks.record import Layout, build_record
for path in sorted(pathlib.Path({str(EVENTS_DIR)!r}).glob("*.json")):
    payload = json.loads(path.read_text())
    event = normalize(payload)
    assert event.valid, (path.name, event.errors)
    build_record(payload, event, Layout())
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("pydantic", "pydantic_core")
                or m in ("tavus_callbacks.events.shapes", "tavus_callbacks.events.schema"))
assert not loaded, loaded
event = normalize({{"event_type": "system.shutdown", "conversation_id": "c1", "properties": {{"shutdown_reason": 7}}}})
assert not event.valid
assert "pydantic_core" in sys.modules and "pydantic" not in sys.modules
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]


def test_the_validators_of_normalize_are_the_plain_checks() -> None:
    shape = "ShutdownProperties"
    validate = _CHECK[shape]
    assert validate({"shutdown_reason": "max_call_duration"}) == {"replica_id": None,
                                                                 "shutdown_reason": "max_call_duration"}
    assert validate({"shutdown_reason": 7}) is NOT_PLAIN
    assert json.loads(shapes.GENERATED.read_text())[shape] == SCHEMAS[shape]
