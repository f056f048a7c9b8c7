"""Azure services for the Functions adapter: the log lines Application Insights keeps (a readable message, the
fields as custom dimensions)."""

from __future__ import annotations

import logging

from tavus_callbacks.http import LogLine

log = logging.getLogger("tavus_callbacks.azure")
log.setLevel(logging.INFO)  # one line per request; host.json's logging section filters what is kept


def write(line: LogLine) -> None:
    """Log a LogLine: its fields both in the message (Application Insights' search shows it) and as extras."""
    summary = " ".join(f"{k}={v}" for k, v in line.fields.items() if k != "result")
    log.log(line.level, "%s %s", line.message, summary, extra=line.fields)
