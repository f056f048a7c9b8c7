"""What one entry of the event-type registry holds; the entries themselves are in catalogue.py.

An entry is one conversation `event_type`, or one of the other families (whose CloudEvents type is fixed
or named after a status). It gives the payload model `normalize` validates with, how the `details` are
built, the model of those details (for the JSON Schema), the `facts` the conversation state keeps of an
event, how such an entry changes the conversation state, the state fields it adds and its lines in
`conversations show`, the document derive writes from it, whether it completes a fully received
conversation, and the sample payloads `tavus-callbacks send` posts (files in `samples/` beside this module).
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, create_model

Family = Literal["conversation", "guardrail", "objective", "replica_training", "video_generation", "unrecognized"]
Details = dict[str, Any]
Facts = dict[str, Any]
StateDict = dict[str, Any]  # a conversation state as `fold` makes it; its fields: state/fold.py State
TYPE_PREFIX = "io.tavus."
CONVERSATION_PREFIX = f"{TYPE_PREFIX}conversation."
SAMPLES_DIR = Path(__file__).with_name("samples")


class Payload(BaseModel):
    """A payload as it arrives: unknown fields ignored (it is stored whole anyway), NaN and infinities refused."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False, defer_build=True)


class DetailsModel(BaseModel):
    """The `details` of a valid event of one type, as published in the JSON Schema."""

    model_config = ConfigDict(defer_build=True)


class Invalid(Exception):
    """A field that passed its type check but not its meaning; becomes an entry of Event.errors."""


@dataclass(frozen=True, slots=True)
class Found:
    """What the folder found beside an event: the recording check, and the provider of its own store."""

    recording_check: dict[str, Any] | None = None
    store_provider: str | None = None


def all_fields(model: BaseModel, raw: dict[str, Any]) -> Details:
    """Details that are the payload's fields as validated, in the model's order."""
    return dict(vars(model))  # a model keeps its fields (and only them: extras are ignored) in __dict__


def pick(*names: str) -> Callable[[Details, Found], Facts]:
    """Facts that are these fields of the details."""
    return lambda d, found: {name: d.get(name) for name in names}


def no_facts(d: Details, found: Found) -> Facts:
    return {}


@dataclass(frozen=True, slots=True)
class StateField:
    """A field an entry adds to the conversation state: its type (in the State model) and its value before any
    event of the entry's type (copied for each state)."""

    name: str
    type: Any
    initial: Any = None


@dataclass(frozen=True, slots=True)
class Line:
    """A line of `conversations show`: its label, its text from the state (one row per string; none: no line),
    and its place among the lines of every entry (smaller first)."""

    place: int
    label: str
    text: Callable[[StateDict], list[str]]


@dataclass(frozen=True, slots=True)
class Document:
    """A document derive writes beside conversation.json (`name`), from the event whose id the state field `mark`
    holds: the conversation id, event id and time, with `body` of the event's details."""

    name: str
    mark: str
    body: Callable[[Details], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Sample:
    """A payload `tavus-callbacks send` posts under `name`: the file `samples/<file>`, which the tests use too.

    `step` is its place in `send --all` (None: sent only when named)."""

    name: str
    file: str
    about: str
    step: int | None = None

    def payload(self) -> dict[str, Any]:
        """The sample as recorded (a fresh copy)."""
        data: dict[str, Any] = json.loads(_sample_text(self.file))
        return data


@cache
def _sample_text(file: str) -> str:
    return (SAMPLES_DIR / file).read_text(encoding="utf-8")


@dataclass(frozen=True, kw_only=True)
class EventKind:
    """One registered event type (see the module's docstring); `type` ends in `*` for status-named families."""

    family: Family
    type: str
    payload: builtins.type[Payload] | None  # None: not validated (a conversation event_type not known yet)
    details_model: builtins.type[BaseModel]
    details: Callable[[Any, dict[str, Any]], Details] = all_fields
    facts: Callable[[Details, Found], Facts] = no_facts
    fold: Callable[[StateDict, dict[str, Any]], None] | None = None  # (state, entry): the entry's mark on the state
    describe: Callable[[Facts], str] | None = None  # a few words on the entry in `conversations show`
    state: tuple[StateField, ...] = ()  # the state fields the entries of this type write
    show: tuple[Line, ...] = ()  # their lines in `conversations show`
    document: Document | None = None  # what derive writes beside conversation.json from it
    completes: str | None = None  # the part of a fully received conversation it stands for ("ended", ...)
    samples: tuple[Sample, ...] = ()

    @property
    def event_type(self) -> str | None:
        """The vendor's `event_type` of a conversation entry."""
        return self.type.removeprefix(CONVERSATION_PREFIX) if self.family == "conversation" else None


def event_kind(family: Family, type_: str, payload: type[Payload] | None, details_model: type[BaseModel] | None = None,
          **rest: Any) -> EventKind:
    """An entry; without `details_model`, its details are the payload's fields (see `same_fields`)."""
    if details_model is None:
        assert payload is not None
        details_model = same_fields(payload, type_.removeprefix(CONVERSATION_PREFIX).replace("*", "<status>"))
    return EventKind(family=family, type=type_, payload=payload, details_model=details_model, **rest)


def conversation(event_type: str, payload: type[Payload] | None, details_model: type[BaseModel] | None = None,
                 **rest: Any) -> EventKind:
    """The entry of a conversation `event_type`; `payload` is the model of its `properties`."""
    return event_kind("conversation", CONVERSATION_PREFIX + event_type, payload, details_model, **rest)


def same_fields(payload: type[Payload], doc: str) -> type[DetailsModel]:
    """The details model of details that are the payload's fields (`all_fields`): each one always there, and
    `replica_id` as the plain identifier normalize made of it."""
    fields: dict[str, Any] = {name: (str | None if name == "replica_id" else field.annotation, ...)
                              for name, field in payload.model_fields.items()}
    name = payload.__name__.removesuffix("Properties").removesuffix("Payload") + "Details"
    return create_model(name, __base__=DetailsModel, __doc__=doc, __module__=payload.__module__, **fields)
