"""Weekly slots in a cohort's own timezone, converted to UTC once, when they are planned.

Policy for local times that do not exist or happen twice (DST):
- spring forward (02:30 does not exist): the post moves forward by the gap, to 03:30 local;
- fall back (01:30 happens twice): the first occurrence, before the clocks go back.
Either way each lesson gets exactly one instant, so a DST change can neither skip nor repeat a post.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

WEEK = timedelta(days=7)


def first_slot_on_or_after(day: date, weekday: int) -> date:
    return day + timedelta(days=(weekday - day.weekday()) % 7)


def local_to_utc(day: date, at: time, tz: ZoneInfo) -> datetime:
    # fold=0 means "the offset in force before the transition": for a gap time this lands
    # after the gap (02:30 EST == 03:30 EDT), for a repeated time it picks the first one.
    return datetime.combine(day, at).replace(tzinfo=tz, fold=0).astimezone(timezone.utc)


def weekly_slots(first_day: date, at: time, tz: ZoneInfo, count: int) -> list[datetime]:
    """``count`` weekly instants in UTC, same local wall-clock time each week, starting ``first_day``."""
    return [local_to_utc(first_day + i * WEEK, at, tz) for i in range(count)]


def first_slot_after(now: datetime, weekday: int, at: time, tz: ZoneInfo, not_before: date) -> date:
    """The first slot day whose post time is still ahead of ``now`` (and not before ``not_before``)."""
    today_local = now.astimezone(tz).date()
    day = first_slot_on_or_after(max(today_local, not_before), weekday)
    while local_to_utc(day, at, tz) <= now:
        day += WEEK
    return day
