"""The schedule is read as crontab reads it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from schedules.timing import next_run, parse_schedule

# Sunday 29 November 2026, 10:00 UTC.
SUNDAY = datetime(2026, 11, 29, 10, 0, tzinfo=timezone.utc)


def _weekdays(expr: str) -> list[str]:
    """The weekdays (Sun..Sat) of the next seven nights the schedule fires on."""
    fired = []
    when = SUNDAY
    for _ in range(7):
        fire = next_run(expr, after=when)
        assert fire is not None
        fired.append(fire.strftime("%a"))
        when = fire + timedelta(seconds=1)
    return fired


@pytest.mark.parametrize(
    ("weekday", "days"),
    [
        ("*", {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"}),
        ("1-5", {"Mon", "Tue", "Wed", "Thu", "Fri"}),
        ("0", {"Sun"}),
        ("7", {"Sun"}),
        ("0,6", {"Sun", "Sat"}),
        ("*/2", {"Sun", "Tue", "Thu", "Sat"}),  # crontab steps from Sunday
        ("1-5/2", {"Mon", "Wed", "Fri"}),
        ("0-4", {"Sun", "Mon", "Tue", "Wed", "Thu"}),
        ("5-7", {"Fri", "Sat", "Sun"}),
        ("mon-fri", {"Mon", "Tue", "Wed", "Thu", "Fri"}),
        ("sat,sun", {"Sat", "Sun"}),
    ],
)
def test_weekdays_follow_crontab(weekday: str, days: set[str]) -> None:
    assert set(_weekdays(f"0 2 * * {weekday}")) == days


def test_the_default_is_nightly_at_two_utc_and_six_fields_put_seconds_first() -> None:
    assert next_run("0 2 * * *", after=SUNDAY) == datetime(2026, 11, 30, 2, 0, tzinfo=timezone.utc)
    assert next_run("*/5 * * * * *", after=SUNDAY) == SUNDAY
    assert next_run("*/5 * * * * *", after=SUNDAY + timedelta(seconds=1)) == SUNDAY + timedelta(seconds=5)
    paris = next_run("0 2 * * *", "Europe/Paris", after=SUNDAY)
    assert paris is not None and paris.astimezone(timezone.utc).hour == 1


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("0 2 * *", "has 4 fields"),
        ("0 25 * * *", "not valid"),
        ("0 2 * * 8", "out of range"),
        ("0 2 * * 5-1", "runs backwards"),
        ("0 2 * * */0", "at least 1"),
        ("0 2 * * funday", "is not a weekday"),
        ("0 2 1 * 1", "either matches"),
    ],
)
def test_bad_schedules_say_what_is_wrong(expr: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_schedule(expr)
