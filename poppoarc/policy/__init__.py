"""Policies around the archive: retention (prune), schedules and notifications.

The pure parts are importable without touching the disk:
``retention.decide`` and ``schedule.due_runs``.  ``prune`` and ``service``
carry them out and are imported from their modules (they need the store,
the lock and ``pack``).
"""

from .notify import Notifications
from .retention import ArchiveInfo, Decision, RetentionPolicy, decide
from .schedule import Run, Schedule, ScheduleEntry, due_runs, next_fires, parse_schedule

__all__ = ["ArchiveInfo", "Decision", "Notifications", "RetentionPolicy", "Run", "Schedule",
           "ScheduleEntry", "decide", "due_runs", "next_fires", "parse_schedule"]
