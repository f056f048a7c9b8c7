"""Azure services for the Functions adapter: the log lines Application Insights keeps (a readable message, the
fields as custom dimensions)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from tavus_callbacks.http import LogLine

if TYPE_CHECKING:
    from tavus_callbacks.pipeline import Derived
    from tavus_callbacks.reconcile.sweep import Summary

log = logging.getLogger("tavus_callbacks.azure")
log.setLevel(logging.INFO)  # one line per request; host.json's logging section filters what is kept


def write(line: LogLine) -> None:
    """Log a LogLine: its fields both in the message (Application Insights' search shows it) and as extras."""
    summary = " ".join(f"{k}={v}" for k, v in line.fields.items() if k != "result")
    log.log(line.level, "%s %s", line.message, summary, extra=line.fields)


def write_derived(derived: Derived) -> None:
    """The derive step's line: what was derived, or that the blob is not an event object of this store."""
    if derived.skipped:
        log.info("not an event object of this store, acknowledged: %s", derived.key, extra={"key": derived.key})
        return
    write(LogLine("event derived", logging.INFO, {"key": derived.key, "event_id": derived.event_id,
                                                 "event_type": derived.event_type,
                                                 "conversation_id": derived.conversation_id,
                                                 "copy_failed": derived.copy_failed}))


def write_sweep(summary: Summary | None) -> None:
    """The reconcile sweep's line (an ERROR naming the first failures when any), or that it is off."""
    if summary is None:
        log.info("reconcile is off: TAVUS_API_KEY is not set")
        return
    log.log(logging.ERROR if summary.failures else logging.INFO, "%s%s", summary.line(),
            "".join(f"; {f}" for f in summary.failures[:5]), extra=summary.as_dict())
