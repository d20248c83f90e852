"""When cycles run: the schedule's cron expression, read the way crontab reads it.

`[cycle] schedule` is a crontab expression (`minute hour day month weekday`), or six fields with
seconds first (`*/5 * * * * *`, for tests and demos). Weekday numbers follow crontab, where 0 and
7 are Sunday; APScheduler 3 counts from Monday, so numbers are turned into names before it sees
them. `[cycle] timezone` says which clock the fields are read on (UTC by default). Cron runs a line
whose day of month and weekday are both restricted when either matches, APScheduler only when both
do; such a schedule is refused rather than run differently from what its author expects.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from apscheduler.triggers.cron import CronTrigger

_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


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
    if day not in ("*", "?") and weekday not in ("*", "?"):
        raise ValueError(
            f"schedule {expr!r} restricts both the day of the month and the weekday; cron runs when either"
            " matches, APScheduler only when both do, so give one of them as '*'"
        )
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
    """The weekday field, crontab's way (0 and 7 are Sunday; ranges, steps, lists, names), as the
    explicit list of day names APScheduler reads the same way: `1-5` -> `mon,tue,wed,thu,fri`."""
    if field in ("*", "?"):
        return "*"
    days: set[int] = set()
    for part in field.lower().split(","):
        head, slash, step_text = part.partition("/")
        if slash and not step_text.isdigit():
            raise ValueError(f"weekday step {step_text!r} is not a number")
        step = int(step_text) if slash else 1
        if step < 1:
            raise ValueError("a weekday step must be at least 1")
        if head == "*":
            first, last = 0, 6
        else:
            low, dash, high = head.partition("-")
            first = _day_number(low)
            last = _day_number(high) if dash else (6 if slash else first)
            if dash and last == 0 and high.strip() in ("0", "sun"):
                last = 7  # `5-0` is not a range; `5-7` (Friday to Sunday) is
            if last < first:
                raise ValueError(f"weekday range {head!r} runs backwards")
        days.update(day % 7 for day in range(first, last + 1, step))
    return ",".join(_DAY_NAMES[day] for day in sorted(days))


def _day_number(text: str) -> int:
    text = text.strip()
    if text.isdigit():
        value = int(text)
        if value > 7:
            raise ValueError(f"weekday {value} is out of range (0-7, where 0 and 7 are Sunday)")
        return value
    if text[:3] in _DAY_NAMES and len(text) >= 3:
        return _DAY_NAMES.index(text[:3])
    raise ValueError(f"{text!r} is not a weekday (0-7 or sun-sat)")
