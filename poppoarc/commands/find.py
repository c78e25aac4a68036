"""``find``: which archives hold the paths a glob selects, newest first, with each one's
size and time, and when it changed, appeared or disappeared (``archives.history``)."""

from __future__ import annotations

from ..archives.history import History, find
from ..config import Settings
from ..errors import UsageError
from ..i18n import N_
from ..options import FindOptions
from ..snapshot.selection import PathSelection

SUMMARY = N_("Say which archives hold a path, and its changes.")
ARGUMENTS = """\
  PATTERN          A path or glob of the installation (* and ? within a name, ** across
                   names): what it matches and what lies below it.
"""
USAGE = ("find PATTERN [--archives=LIST] [--exclude=GLOB]... [--json]",)
OPTIONS = """\
  --archives=LIST  With find: comma-separated archives to search (else all of them).
  --exclude=GLOB   Leave out the paths GLOB matches and what lies below (repeatable).
"""
STRICT_CONFIG = False
PROGRESS = False


def matches(args: dict) -> bool:
    return bool(args["find"])


def options(args: dict) -> FindOptions:
    archives = None
    if args["--archives"] is not None:
        archives = tuple(dict.fromkeys(a.strip() for a in args["--archives"].split(",")
                                       if a.strip()))
        if not archives:
            raise UsageError("--archives needs at least one archive")
    return FindOptions(PathSelection.of((args["PATTERN"],), args["--exclude"]), archives)


def run(settings: Settings, options: FindOptions, progress=None) -> History:
    return find(settings, options.paths, options.archives)
