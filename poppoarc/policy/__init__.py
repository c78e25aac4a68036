"""Policies around the archive: retention (prune), schedules and notifications.

The pure parts are importable without touching the disk.
"""

from .retention import ArchiveInfo, Decision, RetentionPolicy, decide

__all__ = ["ArchiveInfo", "Decision", "RetentionPolicy", "decide"]
