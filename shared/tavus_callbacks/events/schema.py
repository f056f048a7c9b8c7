"""The JSON Schemas of what comes out (the normalized Event, its `details` per type) and of what arrives.

Both are read off the registry (catalogue.py) by pydantic, for `tavus-callbacks schema`, the OpenAPI
document and the tests.
"""

from __future__ import annotations

import copy
import re
from functools import cache
from typing import Any

from pydantic import BaseModel, ConfigDict, TypeAdapter
from pydantic.json_schema import models_json_schema

from tavus_callbacks.events.catalogue import CONVERSATION_TYPES, FAMILIES, KINDS, kind_of
from tavus_callbacks.events.normalize import INVALID_CONVERSATION_TYPE, Event, event_adapter
from tavus_callbacks.events.registry import CONVERSATION_PREFIX


def detail_models() -> dict[str, type[BaseModel]]:
    """CloudEvents type -> the model of `details` for a valid event of that type (`*`: any status or type)."""
    return {k.type: k.details_model for k in KINDS}


def details_model_for(event: Event) -> type[BaseModel] | None:
    """The model `event.details` follows, or None for an invalid or unrecognized event (free-form salvage)."""
    kind = kind_of(event.type) if event.valid else None
    return kind.details_model if kind is not None else None


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a normalized Event, with the model of `details` per type under `$defs`."""
    return copy.deepcopy(_json_schema())


def payload_json_schema() -> dict[str, Any]:
    """The JSON Schema of the callbacks as they arrive: one of the five families, or any other JSON object."""
    return copy.deepcopy(_payload_json_schema())


@cache
def _json_schema() -> dict[str, Any]:
    schema = event_adapter().json_schema(mode="serialization")
    models = detail_models()
    _, defs = models_json_schema([(m, "serialization") for m in models.values()], ref_template="#/$defs/{model}")
    schema.setdefault("$defs", {}).update(defs.get("$defs", {}))
    schema["properties"]["details"]["description"] = (
        "Per-type fields: see x-details-by-type. An invalid event holds what could be salvaged.")
    schema["x-details-by-type"] = {t: f"#/$defs/{m.__name__}" for t, m in models.items()}
    known = [*(k.type for k in CONVERSATION_TYPES.values()), INVALID_CONVERSATION_TYPE]
    conditions: list[dict[str, Any]] = []
    for type_, model in models.items():
        wildcard = type_.endswith("*")
        condition: dict[str, Any] = {
            "if": {"properties": {"type": {"pattern": f"^{re.escape(type_[:-1])}"} if wildcard else {"const": type_},
                                  "valid": {"const": True}}, "required": ["type", "valid"]},
            "then": {"properties": {"details": {"$ref": f"#/$defs/{model.__name__}"}}},
        }
        if type_ == f"{CONVERSATION_PREFIX}*":  # known conversation types match their own entry only
            condition["if"]["not"] = {"properties": {"type": {"enum": known}}}
        conditions.append(condition)
    schema["allOf"] = conditions
    return schema


@cache
def _payload_json_schema() -> dict[str, Any]:
    class ConversationCallback(BaseModel):
        """A conversation callback; `properties` depends on `event_type`, see x-properties-by-event-type."""

        model_config = ConfigDict(extra="allow", defer_build=True)
        conversation_id: str
        event_type: str
        message_type: str | None = None
        webhook_url: str | None = None
        timestamp: str | float | None = None
        properties: dict[str, Any] | None = None

    families: list[type[BaseModel]] = [ConversationCallback, *(k.payload for k in FAMILIES.values() if k.payload)]
    props = {t: k.payload for t, k in CONVERSATION_TYPES.items() if k.payload}
    _, defs = TypeAdapter.json_schemas([(m, "validation", TypeAdapter(m)) for m in [*families, *props.values()]],
                                       ref_template="#/$defs/{model}")
    return {
        "title": "TavusCallback",
        "description": "Any JSON object is accepted; these are the families told apart by shape.",
        "anyOf": [*({"$ref": f"#/$defs/{m.__name__}"} for m in families), {"type": "object"}],
        "$defs": defs.get("$defs", {}),
        "x-properties-by-event-type": {t: f"#/$defs/{m.__name__}" for t, m in props.items()},
    }
