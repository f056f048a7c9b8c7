"""Callback timestamps to UTC: RFC 3339 / ISO-8601 in any letter case (`T` or a space, `Z` or an offset), naive
`YYYY-MM-DD HH:MM:SS.ffffff` (UTC), epoch seconds or milliseconds; so one instant written two ways is one event.

Every normalized time is `YYYY-MM-DDTHH:MM:SS.ffffffZ`: fixed width, so it sorts as text and fits in an object key.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

MIN_YEAR = 1970
MAX_YEAR = 2200
ACCEPTED_FORMS = ("ISO-8601 (2025-07-11T06:45:47.472000Z), 'YYYY-MM-DD HH:MM:SS.ffffff' (read as UTC) or epoch "
                  "seconds or milliseconds")
# An epoch number from here on is milliseconds: as seconds it would be after the year 5000 (as milliseconds, 1973).
EPOCH_MILLISECONDS_FROM = 10**11

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_EPOCH = datetime(MAX_YEAR + 1, 1, 1, tzinfo=UTC).timestamp()
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d{1,4})?", re.ASCII)
_MAX_TEXT = 64
# fromisoformat stops reading at a NUL byte and takes any character as the date/time separator: screen first.
_ISO_CHARS = re.compile(r"[0-9TWZtwz:.,+ -]+")
_fromisoformat = datetime.fromisoformat


class TimeParseError(ValueError):
    """A value that is not a time in one of the accepted forms, or lies outside the years 1970..2200."""


def to_utc_iso(value: Any) -> str:
    """The UTC `YYYY-MM-DDTHH:MM:SS.ffffffZ` form of a callback timestamp; raises TimeParseError otherwise."""
    if type(value) is str:
        # Already normal (the usual case): the separators of YYYY-MM-DDTHH:MM:SS.ffffffZ are where they belong,
        # and fromisoformat reads ASCII digits, exactly, everywhere else. Only the year range is left to check.
        if len(value) == 27 and value[4:20:3] == "--T::." and value[26] == "Z":
            try:
                year = _fromisoformat(value).year
            except ValueError:
                return _from_text(value)  # says why
            if not MIN_YEAR <= year <= MAX_YEAR:
                raise _out_of_range(value)
            return value
        return _from_text(value)
    if isinstance(value, bool):
        raise _not_a_time(value)
    if isinstance(value, int | float):
        return _from_epoch(value, value)
    if isinstance(value, str):
        return _from_text(str(value))
    raise TimeParseError(f"a JSON {_json_kind(value)} is not a time; send {ACCEPTED_FORMS}")


def _from_text(value: str) -> str:
    text = value.strip()
    if len(text) > _MAX_TEXT:
        raise _not_a_time(value)
    if not (len(text) > 4 and text[4] == "-") and _NUMBER.fullmatch(text):
        return _from_epoch(float(text), value)
    if not _ISO_CHARS.fullmatch(text):
        raise _not_a_time(value)
    try:
        when = _fromisoformat(text.upper())  # RFC 3339 allows `t` and `z`; fromisoformat takes only `Z`
    except ValueError:
        raise _not_a_time(value) from None
    if when.tzinfo is None:  # naive: read as UTC
        if not MIN_YEAR <= when.year <= MAX_YEAR:
            raise _out_of_range(value)
        return _format_naive(when)
    if not MIN_YEAR - 1 <= when.year <= MAX_YEAR + 1:
        raise _out_of_range(value)
    when = when.astimezone(UTC)
    if not MIN_YEAR <= when.year <= MAX_YEAR:
        raise _out_of_range(value)
    return format_utc(when)


def to_utc_iso_or_none(value: Any) -> str | None:
    """Like to_utc_iso, but None for a missing or unreadable value (for optional, secondary times)."""
    if value is None:
        return None
    try:
        return to_utc_iso(value)
    except TimeParseError:
        return None


def format_utc(when: datetime) -> str:
    """An aware UTC datetime as `YYYY-MM-DDTHH:MM:SS.ffffffZ` (always six digits of fraction)."""
    return _format_naive(when.replace(tzinfo=None))


def _format_naive(when: datetime) -> str:
    # isoformat() without arguments and without a time zone is by far the fastest form; it leaves out a zero fraction.
    text = when.isoformat()
    return f"{text}Z" if len(text) == 26 else f"{text}.000000Z"


def _from_epoch(number: float, original: Any) -> str:
    """Epoch seconds, or milliseconds from EPOCH_MILLISECONDS_FROM on (told apart by magnitude)."""
    # NaN fails every comparison; ints of any size compare exactly without conversion.
    if EPOCH_MILLISECONDS_FROM <= number < _MAX_EPOCH * 1000:
        return format_utc(_EPOCH + timedelta(milliseconds=number))  # exact for integers, unlike a division
    if not 0 <= number < _MAX_EPOCH:
        raise _out_of_range(original)
    return format_utc(datetime.fromtimestamp(number, UTC))


def _not_a_time(value: Any) -> TimeParseError:
    return TimeParseError(f"{_short(value)} is not a time; send {ACCEPTED_FORMS}")


def _out_of_range(value: Any) -> TimeParseError:
    return TimeParseError(f"{_short(value)} is outside the years {MIN_YEAR} to {MAX_YEAR}; send {ACCEPTED_FORMS}")


def _short(value: Any) -> str:
    if isinstance(value, int) and value.bit_length() > 128:
        return "a very large number"  # str() of a huge int is slow, and refused past 4300 digits
    text = repr(value) if isinstance(value, str) else str(value) if isinstance(value, int | float) else "value"
    return text if len(text) <= 40 else f"{text[:37]}..."


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    return type(value).__name__


def elapsed_text(start: Any, end: Any) -> str:
    """'3m 05s' from one ISO time to another (as a conversation's joined and ended), or '' when either is missing
    or unreadable."""
    try:
        seconds = int((datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds())
    except (TypeError, ValueError):
        return ""
    minutes, seconds = divmod(max(seconds, 0), 60)
    return f"{minutes}m {seconds:02d}s"
