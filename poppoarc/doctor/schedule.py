"""How often a schedule expects a backup, approximately (for ``doctor``).

Only the period matters here, not the exact next run: a cron expression is
reduced to the shortest gap its fields allow (``*/15`` minutes, a list of
hours, days of the week, days of the month).
"""

from __future__ import annotations

HOUR, DAY = 3600, 86400
_MACROS = {"@hourly": HOUR, "@daily": DAY, "@midnight": DAY, "@weekly": 7 * DAY,
           "@monthly": 31 * DAY, "@yearly": 366 * DAY, "@annually": 366 * DAY}


def cron_interval(expression: str) -> int | None:
    """Seconds between runs of a cron expression; None if it cannot be read."""
    expression = expression.strip()
    if expression in _MACROS:
        return _MACROS[expression]
    fields = expression.split()
    if len(fields) != 5:
        return None
    minute, hour, dom, month, dow = fields
    try:
        if minute == "*" or minute.startswith("*/"):
            return 60 * (int(minute[2:]) if minute.startswith("*/") else 1)
        if hour == "*" or hour.startswith("*/"):
            return HOUR * (int(hour[2:]) if hour.startswith("*/") else 1)
        hours = _count(hour, 24)
        if dom == "*" and dow == "*":
            return DAY // max(hours, 1)
        if dow != "*" and dom == "*":
            return 7 * DAY // max(_count(dow, 7), 1)
        return 31 * DAY // max(_count(dom, 31), 1)
    except ValueError:
        return None


def _count(field: str, span: int) -> int:
    """How many values a cron field lists (ranges and steps included)."""
    total = 0
    for part in field.split(","):
        body, _, step = part.partition("/")
        if body == "*":
            low, high = 0, span - 1
        elif "-" in body:
            low, high = (int(x) for x in body.split("-", 1))
        else:
            low = high = int(body)
        total += len(range(low, high + 1, int(step) if step else 1))
    return total


def expected_interval(backup: dict) -> int | None:
    """The shortest interval of ``backup.schedule``'s backups (a string or named
    schedules; entries that verify or drill make no archive)."""
    if backup.get("enabled") is False:
        return None
    schedule = backup.get("schedule")
    if isinstance(schedule, str):
        return cron_interval(schedule)
    if isinstance(schedule, dict):
        found = [cron_interval(s["cron"]) for s in schedule.values()
                 if isinstance(s, dict) and isinstance(s.get("cron"), str)
                 and s.get("type", "full") in ("full", "incremental")]
        found = [f for f in found if f]
        return min(found) if found else None
    return None
