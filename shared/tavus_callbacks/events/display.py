"""How times, durations and sizes read in `conversations show` and `list` (the registry's lines use them)."""

from __future__ import annotations

from typing import Any

from tavus_callbacks.events.times import elapsed_text


def when(iso: str | None) -> str:
    """'2025-07-11T06:45:47.472000Z' -> '2025-07-11 06:45:47 UTC'; a dash for no time."""
    if not iso:
        return "-"
    return f"{iso[:10]} {iso[11:19]} UTC" if len(iso) >= 19 else iso


def duration(start: Any, end: Any) -> str:
    """'  (after 5m 12s)' between two ISO times; empty when either is missing or unreadable."""
    text = elapsed_text(start, end)
    return f"  (after {text})" if text else ""


def size(n: Any) -> str:
    """A byte count as '812 bytes', '4.1 KB', '1.2 GB'; '?' when it is not a number."""
    if not isinstance(n, int):
        return "?"
    value = float(n)
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{n} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} bytes"
