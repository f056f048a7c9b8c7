"""Receive Tavus callbacks: authenticate, normalize, store exactly once, fold per conversation."""

from __future__ import annotations

__version__ = "0.1.0"
