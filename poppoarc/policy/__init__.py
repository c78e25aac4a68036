"""Pure rules around the archives: retention (which archives ``prune`` keeps) and
schedules (when the service packs).  Nothing here touches the disk: ``retention.decide``
and ``schedule.due_runs`` take values and return decisions; ``archives.pruning`` and
``service.scheduler`` carry them out.
"""

from .retention import ArchiveInfo, Decision, RetentionPolicy, decide
from .schedule import Run, Schedule, ScheduleEntry, due_runs, next_fires, parse_schedule

__all__ = ["ArchiveInfo", "Decision", "RetentionPolicy", "Run", "Schedule",
           "ScheduleEntry", "decide", "due_runs", "next_fires", "parse_schedule"]
