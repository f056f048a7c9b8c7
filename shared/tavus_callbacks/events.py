"""Pydantic models of the five callback families and `normalize`, which turns any body into one typed Event."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Family = Literal["conversation", "guardrail", "objective", "replica_training", "video_generation", "unrecognized"]


class Event(BaseModel):
    """A normalized callback: what it is, whom it is about, when, and its per-type fields in `details`."""

    model_config = ConfigDict(frozen=True)

    family: Family
    type: str = Field(description="CloudEvents type, e.g. io.tavus.conversation.system.shutdown")
    event_type: str | None = None
    message_type: str | None = None
    conversation_id: str | None = None
    replica_id: str | None = None
    video_id: str | None = None
    time: str | None = Field(default=None, description="UTC ISO-8601, e.g. 2025-07-11T06:45:47.472000Z")
    valid: bool = True
    errors: list[str] = Field(default_factory=list)
    details: dict[str, Any] = Field(default_factory=dict)

    @property
    def subject(self) -> str | None:
        """The id the event is about: conversation, replica or video, by family."""
        if self.family == "replica_training":
            return self.replica_id
        if self.family == "video_generation":
            return self.video_id
        if self.family == "unrecognized":
            return None
        return self.conversation_id


def normalize(payload: Any) -> Event:
    """Turn a decoded body into an Event; never raises."""
    raise NotImplementedError
