"""Log lines, every token redacted: the filter every handler carries and the JSON line (one object per line) a
function writes; how the tools write theirs at a terminal is in `console`."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable
from typing import Any

import orjson

_SECRET_PATTERNS = (
    re.compile(r"(?i)(token=)[^&\s\"'#]+"),
    re.compile(r"(?i)(bearer\s+)[^\s\"',]+"),
)
RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "color_message"}  # uvicorn's lines carry a copy with terminal colours


def redact(text: str, tokens: Iterable[str] = ()) -> str:
    """`text` with every `token=...` value, Bearer credential and configured token replaced."""
    lowered = text.lower()
    if "token=" in lowered or "bearer" in lowered:
        for pattern in _SECRET_PATTERNS:
            text = pattern.sub(r"\1[redacted]", text)
    for token in tokens:
        if token and token in text:
            text = text.replace(token, "[redacted]")
    return text


class RedactingFilter(logging.Filter):
    """Rewrites a record's message (and string extras) so no token can reach a log line."""

    def __init__(self, tokens: Iterable[str] = ()) -> None:
        super().__init__()
        self.tokens = tuple(tokens)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage(), self.tokens)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self.tokens)
        fields = vars(record)
        for name in fields.keys() - RECORD_FIELDS:
            value = fields[name]
            if isinstance(value, str):
                fields[name] = redact(value, self.tokens)
        return True


def utc_stamp(seconds: float) -> str:
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(seconds))}.{int(seconds % 1 * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, pid, message and the record's extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": utc_stamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in RECORD_FIELDS and not name.startswith("_"):
                line[name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        return orjson.dumps(line, default=str).decode()
