"""Durations and relative times as marketers write them: `30 days`, `2 weeks`, `PT12H`, `30 days ago`.

A day is 24 hours and a year 365 days: windows are fixed lengths of time, so a window does
not stretch or shrink across a daylight-saving change. Months are refused because they
differ in length; write days instead.
"""
from __future__ import annotations

import difflib
import json
import re
from datetime import timedelta

_UNITS = {
    "second": timedelta(seconds=1), "seconds": timedelta(seconds=1), "sec": timedelta(seconds=1),
    "secs": timedelta(seconds=1), "s": timedelta(seconds=1),
    "minute": timedelta(minutes=1), "minutes": timedelta(minutes=1), "min": timedelta(minutes=1),
    "mins": timedelta(minutes=1),
    "hour": timedelta(hours=1), "hours": timedelta(hours=1), "h": timedelta(hours=1), "hr": timedelta(hours=1),
    "hrs": timedelta(hours=1),
    "day": timedelta(days=1), "days": timedelta(days=1), "d": timedelta(days=1),
    "week": timedelta(weeks=1), "weeks": timedelta(weeks=1), "w": timedelta(weeks=1),
    "year": timedelta(days=365), "years": timedelta(days=365), "y": timedelta(days=365),
}
_MONTHS = ("month", "months", "mo", "mos")
_SPELLED_UNITS = ("minutes", "hours", "days", "weeks", "years")
_PART = re.compile(r"(\d+)\s*([a-z]+)")
_SEPARATORS = re.compile(r"^(\s|,|\band\b)*$")
_ISO = re.compile(r"^P(?:(?P<y>\d+)Y)?(?:(?P<mo>\d+)M)?(?:(?P<w>\d+)W)?(?:(?P<d>\d+)D)?"
                  r"(?:T(?:(?P<h>\d+)H)?(?:(?P<mi>\d+)M)?(?:(?P<s>\d+)S)?)?$")
_AGO = re.compile(r"^(?P<span>.+?)\s+ago$")
_IN = re.compile(r"^in\s+(?P<span>.+)$")
_FROM_NOW = re.compile(r"^(?P<span>.+?)\s+from\s+now$")
_EXAMPLE = 'write a number and a unit, e.g. "30 days", "12 hours" or "P30D"'
# Windows and offsets are subtracted from and added to the present; beyond a century they
# mean nothing to a marketer and, far enough, leave the calendar (year 1 to 9999).
LONGEST = timedelta(days=100 * 365)


def _quote(text: object) -> str:
    return json.dumps(text, ensure_ascii=False, default=str)


def parse_duration(text: object) -> timedelta:
    """`30 days`, `1 day 12 hours`, `2 weeks`, `15 minutes`, `1 year` (365 days), `P30D`, `PT12H`.

    Raises ValueError whose message starts with `"<text>" is not a duration` and says why.
    """
    if not isinstance(text, str) or isinstance(text, bool):
        raise ValueError(f"{_quote(text)} is not a duration: {_EXAMPLE}")
    cleaned = text.strip()
    if not cleaned:
        raise ValueError(f"{_quote(text)} is not a duration: it is empty; {_EXAMPLE}")
    if cleaned[:1] in ("P", "p") and cleaned[1:2].isdigit() or cleaned.upper().startswith("PT"):
        total = _parse_iso(text, cleaned.upper())
    elif _AGO.match(cleaned.lower()):
        raise ValueError(f"{_quote(text)} is not a duration: a duration has no \"ago\" (write e.g. \"30 days\")")
    else:
        total = _parse_words(text, cleaned.lower())
    if total <= timedelta(0):
        raise ValueError(f"{_quote(text)} is not a duration: it must be longer than zero")
    return total


def _parse_iso(original: str, text: str) -> timedelta:
    match = _ISO.match(text)
    if not match or not any(match.groupdict().values()) or text.endswith("T"):
        raise ValueError(f"{_quote(original)} is not a duration: not an ISO 8601 duration such as P30D or PT12H")
    parts = {k: int(v) for k, v in match.groupdict().items() if v is not None}
    if parts.get("mo"):
        raise ValueError(f"{_quote(original)} is not a duration: months differ in length; write days instead "
                         f"(e.g. P30D)")
    days = 365 * parts.get("y", 0) + 7 * parts.get("w", 0) + parts.get("d", 0)
    return _bounded(original, days * 86400 + parts.get("h", 0) * 3600 + parts.get("mi", 0) * 60 + parts.get("s", 0))


def _bounded(original: str, seconds: int) -> timedelta:
    """Whole seconds as a timedelta, refusing what no window means (and timedelta cannot hold)."""
    if seconds > LONGEST.total_seconds():
        raise ValueError(f"{_quote(original)} is not a duration: at most 100 years")
    return timedelta(seconds=seconds)


def _parse_words(original: str, text: str) -> timedelta:
    seconds = 0
    position = 0
    found = False
    for match in _PART.finditer(text):
        if not _SEPARATORS.match(text[position:match.start()]):
            break
        number, unit = int(match.group(1)), match.group(2)
        if unit in _MONTHS:
            raise ValueError(f"{_quote(original)} is not a duration: months differ in length; write days instead "
                             f"(e.g. 30 days)")
        if unit not in _UNITS:
            close = difflib.get_close_matches(unit, _SPELLED_UNITS, n=1, cutoff=0.6)
            hint = f' (did you mean "{close[0]}"?)' if close else f" (use {', '.join(_SPELLED_UNITS)})"
            raise ValueError(f"{_quote(original)} is not a duration: unknown unit {_quote(unit)}{hint}")
        seconds += number * int(_UNITS[unit].total_seconds())
        position = match.end()
        found = True
    if not found or not _SEPARATORS.match(text[position:]):
        raise ValueError(f"{_quote(original)} is not a duration: {_EXAMPLE}")
    return _bounded(original, seconds)


def parse_relative_time(text: object) -> timedelta:
    """`now`, `30 days ago`, `in 2 weeks`, `2 weeks from now`: the signed offset from the present.

    Raises ValueError whose message starts with `"<text>" is not a relative time`.
    """
    if not isinstance(text, str):
        raise ValueError(f'{_quote(text)} is not a relative time such as "30 days ago"')
    cleaned = " ".join(text.strip().lower().split())
    if cleaned == "now":
        return timedelta(0)
    for pattern, sign in ((_AGO, -1), (_IN, 1), (_FROM_NOW, 1)):
        match = pattern.match(cleaned)
        if match:
            try:
                return sign * parse_duration(match.group("span"))
            except ValueError as exc:
                reason = str(exc).split(": ", 1)[-1]
                raise ValueError(f"{_quote(text)} is not a relative time: {reason}") from None
    raise ValueError(f'{_quote(text)} is not a relative time such as "30 days ago", "in 2 weeks" or "now"')


def looks_relative(text: str) -> bool:
    """Whether a text is meant as a relative time (so its parse error is the one to show)."""
    cleaned = " ".join(text.strip().lower().split())
    return cleaned == "now" or any(p.match(cleaned) for p in (_AGO, _IN, _FROM_NOW))


def format_duration(span: timedelta) -> str:
    """The shortest exact wording: `30 days`, `12 hours`, `1 day 6 hours`."""
    seconds = int(span.total_seconds())
    if seconds <= 0:
        return "0 seconds"
    words = []
    for name, size in (("year", 365 * 86400), ("week", 7 * 86400), ("day", 86400), ("hour", 3600),
                       ("minute", 60), ("second", 1)):
        if name == "week" and seconds % size and seconds >= size:
            continue  # 10 days reads better than 1 week 3 days
        count, seconds = divmod(seconds, size)
        if count:
            words.append(f"{count} {name}{'s' if count > 1 else ''}")
    return " ".join(words)
