"""``ls``: the tree an archive holds (type, mode, size, time; databases with their tables
and row counts), from its head and index alone (``archives.contents``)."""

from __future__ import annotations

from ..archives.contents import Listing, chooser, listing, opened
from ..config import Settings
from ..i18n import N_
from ..options import LsOptions
from ..snapshot.selection import PathSelection

SUMMARY = N_("List an archive's files, sizes, times, databases.")
ARGUMENTS = """\
  PATH             A path or glob of the installation (* and ? within a name, ** across
                   names): only what it matches and what lies below it.
"""
USAGE = ("ls ARCHIVE [PATH...] [--exclude=GLOB]... [--json]",)
OPTIONS = """\
  --exclude=GLOB   Leave out the paths GLOB matches and what lies below (repeatable).
"""
STRICT_CONFIG = False
PROGRESS = False


def matches(args: dict) -> bool:
    return bool(args["ls"])


def options(args: dict) -> LsOptions:
    return LsOptions(args["ARCHIVE"], PathSelection.of(args["PATH"], args["--exclude"]))


def run(settings: Settings, options: LsOptions, progress=None) -> Listing:
    with opened(settings, options.reference, chooser(options.paths)) as archive:
        return listing(archive, options.paths)
