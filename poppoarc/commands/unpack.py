"""``unpack`` (also ``restore``): restore an archive into the live installation, all or
nothing.  The restore's steps are ``operations.unpack`` (a drill restores through them
too); this module is the command's grammar."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..config import Settings
from ..i18n import N_
from ..operations.unpack import UnpackResult, run as restore
from ..options import UnpackOptions
from ..snapshot.catalogue import parse_target_list
from ..snapshot.selection import PathSelection

SUMMARY = N_("Restore an archive into the installation, all or nothing.")
USAGE = ("""(unpack | restore) ARCHIVE [--targets=LIST] [--include=GLOB]...
            [--exclude=GLOB]... [--to=DIR] [--dry-run] [--skip-backup] [--same-owner]
            [--keep-special-bits] [--force] [--json]""",)
OPTIONS = """\
  --targets=LIST   Comma-separated targets: config,database,logs,agents,state,security.
  --include=GLOB   Only the paths GLOB matches and what lies below them (repeatable).
  --exclude=GLOB   Leave out the paths GLOB matches and what lies below (repeatable).
  --to=DIR         With unpack: a directory to restore into instead of the installation
                   (an empty one, or a scratch copy).
  --dry-run        With unpack, prune or consolidate: print what would change and
                   change nothing.
  --skip-backup    With unpack: do not write the pre-restore safety archive.
  --same-owner     With unpack as root: restore file owners (uid/gid) too.
  --keep-special-bits  With unpack: keep setuid/setgid bits (stripped by default).
  --force          With pack, unpack, schedule: accept a root that is not an installation;
                   with keygen: replace an existing key (or the FILE of --export).
"""
STRICT_CONFIG = False
NEW_ROOT = True          # a root that does not exist yet: a new machine (created)
PROGRESS = True          # long work: a progress bar (ui.render.PROGRESS_LABELS)

__all__ = ["UnpackResult", "matches", "options", "run"]


def matches(args: dict) -> bool:
    return bool((args["unpack"] or args["restore"]) and not args["--recover"])


def options(args: dict) -> UnpackOptions:
    return UnpackOptions(args["ARCHIVE"], targets=parse_target_list(args["--targets"]),
                         dry_run=bool(args["--dry-run"]), skip_backup=bool(args["--skip-backup"]),
                         same_owner=bool(args["--same-owner"]),
                         special_bits=bool(args["--keep-special-bits"]),
                         paths=PathSelection.of(args["--include"], args["--exclude"]),
                         to=args["--to"], force_root=bool(args["--force"]))


def run(settings: Settings, options: UnpackOptions, progress=None,
        on_event=None) -> UnpackResult:
    """``on_event(name)``: the swap's steps as they happen (a test's kill points)."""
    if options.to is not None and \
            Path(options.to).absolute().resolve() == Path(settings.root).resolve():
        # --to the installation itself (or a link to it) is the installation's restore: its
        # hooks and health check run (they were skipped, the application left running)
        options = dataclasses.replace(options, to=None)
    return restore(settings, options, progress, on_event)
