"""Parsing of the fields organizers type, shared by slash commands, modals and the shell.

Each parser raises FieldError naming the field, so every entry point gives the same clear message."""

from __future__ import annotations

import re
from datetime import date, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from studybot.errors import FieldError

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
COHORT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$")


def cohort_name(raw: str) -> str:
    raw = (raw or "").strip()
    if not COHORT_NAME.match(raw):
        raise FieldError(
            "name",
            f"Cohort name {raw!r} is not valid: use 1-40 letters, digits, '-' or '_', starting with a letter or digit.",
            value=raw,
        )
    return raw


def start_date(raw: str) -> date:
    try:
        return date.fromisoformat((raw or "").strip())
    except ValueError:
        raise FieldError("start", f"Start date {raw!r} is not a date: use YYYY-MM-DD, e.g. 2027-01-11.", value=raw) from None


def post_time(raw: str) -> time:
    match = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*", raw or "")
    if not match or int(match.group(1)) > 23 or int(match.group(2)) > 59:
        raise FieldError("time", f"Time {raw!r} is not a time of day: use 24-hour HH:MM, e.g. 18:30.", value=raw)
    return time(int(match.group(1)), int(match.group(2)))


def timezone_name(raw: str) -> ZoneInfo:
    name = (raw or "").strip()
    # available_timezones() rules out file paths and odd keys that ZoneInfo() would also accept.
    if name not in available_timezones():
        raise FieldError("tz", f"Timezone {raw!r} is not an IANA timezone: use Area/City, e.g. Europe/Berlin.", value=raw)
    try:
        return ZoneInfo(name)
    except ZoneInfoNotFoundError:  # pragma: no cover - listed but missing from the tz database
        raise FieldError("tz", f"Timezone {raw!r} is not installed on this server.", value=raw) from None


def weekday(raw: str) -> int:
    key = (raw or "").strip().lower()[:3]
    if key not in WEEKDAYS:
        raise FieldError("weekday", f"Weekday {raw!r} is not one of {', '.join(WEEKDAYS)}.", value=raw)
    return WEEKDAYS.index(key)


def weekday_name(index: int) -> str:
    return ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")[index]


def weekly_slot(weekday_raw: str | None, at: str | None, *, off: bool, usage: str,
                also_given: bool = False) -> tuple[int | None, time | None]:
    """The `--weekday D [--time HH:MM] | --off` options of a weekly post (boards, digests): (weekday,
    time or None for the cohort's own); (None, None) with --off. ``also_given``: other options that
    --off excludes too. ``usage``: the command to show when --weekday is missing."""
    if off:
        if weekday_raw or at or also_given:
            raise FieldError("off", "Give either --off, or the schedule options, not both.")
        return None, None
    if not weekday_raw:
        raise FieldError("weekday", f"--weekday is missing: `{usage}` (or `--off`).")
    return weekday(weekday_raw), post_time(at) if at else None
