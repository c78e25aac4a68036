"""``diff``: what changed from one archive to another, per target and per database
(``archives.comparison``), from their indexes and manifests alone."""

from __future__ import annotations

from contextlib import ExitStack

from ..archives.comparison import Difference, compare
from ..archives.contents import chooser, opened
from ..config import Settings
from ..i18n import N_
from ..options import DiffOptions
from ..snapshot.selection import PathSelection

SUMMARY = N_("Show what changed between two archives.")
ARGUMENTS = """\
  OTHER            The archive to compare ARCHIVE with (named as ARCHIVE is).
  PATH             A path or glob of the installation (* and ? within a name, ** across
                   names): only what it matches and what lies below it.
"""
USAGE = ("diff ARCHIVE OTHER [PATH...] [--exclude=GLOB]... [--json]",)
OPTIONS = """\
  --exclude=GLOB   Leave out the paths GLOB matches and what lies below (repeatable).
"""
STRICT_CONFIG = False
PROGRESS = False


def matches(args: dict) -> bool:
    return bool(args["diff"])


def options(args: dict) -> DiffOptions:
    return DiffOptions(args["ARCHIVE"], args["OTHER"],
                       PathSelection.of(args["PATH"], args["--exclude"]))


def run(settings: Settings, options: DiffOptions, progress=None) -> Difference:
    with ExitStack() as stack:
        older = stack.enter_context(opened(settings, options.reference, chooser(options.paths)))
        newer = stack.enter_context(opened(settings, options.other, chooser(options.paths)))
        return compare(older, newer, options.paths)
