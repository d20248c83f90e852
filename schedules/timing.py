"""When cycles run: the schedule's cron expression, read the way crontab reads it.

`[cycle] schedule` is a crontab expression (`minute hour day month weekday`), or six fields with
seconds first (`*/5 * * * * *`, for tests and demos). Weekday numbers follow crontab, where 0 and
7 are Sunday; APScheduler 3 counts from Monday, so numbers are turned into names before it sees
them. `[cycle] timezone` says which clock the fields are read on (UTC by default).
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from apscheduler.triggers.cron import CronTrigger

_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")


def parse_schedule(expr: str, tz: str = "UTC") -> CronTrigger:
    """The APScheduler trigger for a crontab expression; ValueError says what is wrong.

    >>> parse_schedule("0 2 * * *").get_next_fire_time(None, datetime(2026, 1, 1, tzinfo=timezone.utc))
    datetime.datetime(2026, 1, 1, 2, 0, tzinfo=<UTC>)
    """
    from apscheduler.triggers.cron import CronTrigger

    fields = expr.split()
    if len(fields) == 5:
        fields = ["0", *fields]
    if len(fields) != 6:
        raise ValueError(
            f"schedule {expr!r} has {len(fields)} fields; give five (minute hour day month weekday)"
            " or six (second first), as in '0 2 * * *'"
        )
    second, minute, hour, day, month, weekday = fields
    try:
        return CronTrigger(
            second=second,
            minute=minute,
            hour=hour,
            day=day,
            month=month,
            day_of_week=_crontab_weekdays(weekday),
            timezone=tz,
        )
    except (ValueError, LookupError) as err:  # zoneinfo's ZoneInfoNotFoundError is a KeyError
        raise ValueError(f"schedule {expr!r} in time zone {tz!r} is not valid: {err}") from None


def next_run(expr: str, tz: str = "UTC", *, after: datetime | None = None) -> datetime | None:
    """The first time at or after `after` (default: now) that the schedule fires."""
    now = after or datetime.now(timezone.utc)
    fire: datetime | None = parse_schedule(expr, tz).get_next_fire_time(None, now)
    return fire


def _crontab_weekdays(field: str) -> str:
    """`1-5` -> `mon-fri`, `0,6` -> `sun,sat`, `*/2` unchanged: crontab numbering, made explicit."""
    parts = []
    for part in field.split(","):
        head, slash, step = part.partition("/")
        head = re.sub(r"\d+", lambda m: _day_name(m.group()), head)
        parts.append(head + slash + step)
    return ",".join(parts)


def _day_name(number: str) -> str:
    value = int(number)
    if value > 7:
        raise ValueError(f"weekday {value} is out of range (0-7, where 0 and 7 are Sunday)")
    return _DAY_NAMES[value]
