"""The tools' log lines: `serve` writes JSON lines or, for a person at a terminal, one readable line each; the
other commands write `warning: ...` lines without tracebacks. Every line passes through the token redaction."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterable
from typing import Any

from tavus_callbacks.logs import RECORD_FIELDS, JsonFormatter, RedactingFilter


class TextFormatter(logging.Formatter):
    """One readable line: local time, the level unless info, the message, and the extra fields as name=value."""

    def format(self, record: logging.LogRecord) -> str:
        level = "" if record.levelno == logging.INFO else f"{record.levelname.lower()}: "
        extras = " ".join(f"{name}={value}" for name, value in vars(record).items()
                          if name not in RECORD_FIELDS and not name.startswith("_") and value is not None)
        line = f"{time.strftime('%H:%M:%S', time.localtime(record.created))}  {level}{record.getMessage()}"
        if extras:
            line += f"  ({extras})"
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        return f"{line}\n{record.exc_text}" if record.exc_text else line


def access_text(line: dict[str, Any]) -> str:
    """An access line for a person: time, answer, what it was and the conversation, e.g.
    `06:45:47  200 stored     conversation.system.replica_joined  c123456  (2.1 ms)`."""
    clock = time.strftime("%H:%M:%S", time.localtime())
    what = str(line.get("type") or f"{line.get('method')} {line.get('path')}").removeprefix("io.tavus.")
    result = line.get("result") or ""
    conversation = f"  {line['conversation_id']}" if line.get("conversation_id") else ""
    return f"{clock}  {line.get('status')} {result:<10} {what:<44}{conversation}  ({line.get('ms')} ms)"


def configure_logging(level: str = "info", tokens: Iterable[str] = (), log_format: str = "json") -> None:
    """JSON lines (or, with `log_format="text"`, readable lines) on stderr for the package's loggers and
    uvicorn's, every line passed through the token redaction. At `info` a request is one access line; the
    core's own line per callback shows only at `debug`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(TextFormatter() if log_format == "text" else JsonFormatter())
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


class _BriefFormatter(logging.Formatter):
    """`warning: message`, an exception said in one line (its traceback only with TAVUS_DEBUG=1)."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{record.levelname.lower()}: {record.getMessage()}"
        if record.exc_info and record.exc_info[1] is not None:
            from tavus_callbacks.settings import DebugVariables  # not before an error: `--help` stays light

            if DebugVariables.read().debug:
                return f"{line}\n{self.formatException(record.exc_info)}"
            line += f" ({type(record.exc_info[1]).__name__}: {record.exc_info[1]})"
        return line


class _CurrentStderr(logging.Handler):
    """Writes to whatever sys.stderr is when the record comes (a test may have replaced it)."""

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):  # a closed stderr: nowhere left to say anything
            sys.stderr.write(self.format(record) + "\n")


def configure_cli_logging() -> None:
    """Warnings of the package's loggers as `warning: ...` lines on stderr, for the commands other than `serve`
    (which configures its own); once per process, leaving the loggers' levels and propagation as they are."""
    logger = logging.getLogger("tavus_callbacks")
    if any(isinstance(h, _CurrentStderr) for h in logger.handlers):
        return
    handler = _CurrentStderr(logging.WARNING)
    handler.setFormatter(_BriefFormatter())
    handler.addFilter(RedactingFilter())
    logger.addHandler(handler)


class SkipCounter(logging.Handler):
    """Collects the objects a walk of the store skipped (the log records that carry `skipped` and `why`), for a
    command's summary when the walk happens below it (reconcile's repair)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.skipped: dict[str, str] = {}

    def emit(self, record: logging.LogRecord) -> None:
        key, why = getattr(record, "skipped", None), getattr(record, "why", None)
        if isinstance(key, str) and isinstance(why, str):
            self.skipped[key] = why
