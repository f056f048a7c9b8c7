"""JSON log lines for `serve`, with every token redacted: one object per line on stderr."""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Iterable
from typing import Any

import orjson

_SECRET_PATTERNS = (
    re.compile(r"(?i)(token=)[^&\s\"'#]+"),
    re.compile(r"(?i)(bearer\s+)[^\s\"',]+"),
)
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
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
        for name in fields.keys() - _RECORD_FIELDS:
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
            if name not in _RECORD_FIELDS and not name.startswith("_"):
                line[name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        return orjson.dumps(line, default=str).decode()


def configure_logging(level: str = "info", tokens: Iterable[str] = ()) -> None:
    """JSON lines on stderr for the package's loggers and uvicorn's, every line passed through the token redaction.
    At `info` a request is one access line; the core's own line per callback shows only at `debug`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter(tokens))
    numeric = logging.getLevelName(level.upper())
    quiet = numeric if numeric == logging.DEBUG else max(numeric, logging.WARNING)
    for name, threshold in (("tavus_callbacks", quiet), ("uvicorn", numeric)):
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            logger.removeHandler(old)
        logger.addHandler(handler)
        logger.setLevel(threshold)
        logger.propagate = False
    for name in ("tavus_callbacks.access", "tavus_callbacks.adapters.asgi"):
        logging.getLogger(name).setLevel(numeric)
    logging.getLogger("uvicorn.access").disabled = True  # its lines quote the query string; ours are above
