"""The conversation state: its fold, the time index, reading stored events back, and repair."""
