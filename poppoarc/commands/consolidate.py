"""``consolidate``: make a self-contained full archive from an incremental one, in the
same store, without touching the live tree (``operations.consolidate``: verify the
chain, restore it into a scratch root, pack that root full, verify the result).

No retention runs afterwards: the command adds a full archive for an operator who is
about to move it (a migration) or keep it; ``prune`` or the next pack applies the policy.
"""

from __future__ import annotations

from ..config import Settings
from ..i18n import N_
from ..operations.consolidate import ConsolidateResult, consolidate
from ..options import ConsolidateOptions
from ..snapshot.naming import check_name

SUMMARY = N_("Make a self-contained full archive from an incremental one and its chain.")
USAGE = ("consolidate ARCHIVE [--name=NAME] [--protect] [--dry-run] [--json]",)
OPTIONS = """\
  --name=NAME      A label stored in the archive's manifest.
  --dry-run        With unpack, prune or consolidate: print what would change and
                   change nothing.
  --protect        With pack or consolidate: mark the new archive protected (no
                   retention deletes it or its ancestors; poppoarc unprotect lifts it).
"""
STRICT_CONFIG = True
PROGRESS = True          # the restore's and the pack's progress bars


def matches(args: dict) -> bool:
    return bool(args["consolidate"])


def options(args: dict) -> ConsolidateOptions:
    return ConsolidateOptions(args["ARCHIVE"], check_name(args["--name"]),   # before any work
                              bool(args["--protect"]), bool(args["--dry-run"]))


def run(settings: Settings, options: ConsolidateOptions,
        progress=None) -> ConsolidateResult:
    return consolidate(settings, options.reference, options.name, options.protect,
                       options.dry_run, progress)
