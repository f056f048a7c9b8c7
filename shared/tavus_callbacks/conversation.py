"""The per-conversation state: `conversation.json` folded order-independently from its events."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .record import Layout, StoredEvent
    from .stores import Store


class ConversationFolder:
    """Applies stored events to their conversation's state files by compare-and-swap."""

    def __init__(self, store: Store, layout: Layout, attempts: int = 12) -> None:
        self.store = store
        self.layout = layout
        self.attempts = attempts

    def apply(self, record: StoredEvent) -> bool:
        """Fold one event into its conversation; True when it reports a failed recording copy."""
        raise NotImplementedError
