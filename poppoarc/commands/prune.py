"""``prune``: apply the retention policy to the store (``archives.pruning``, under the
installation lock; the decision is ``policy.retention.decide``)."""

from __future__ import annotations

from ..archives.pruning import PruneResult, prune
from ..config import Settings
from ..i18n import N_
from ..options import PruneOptions

SUMMARY = N_("Delete the archives the retention policy no longer keeps.")
USAGE = ("prune [--dry-run] [--json]",)
OPTIONS = """\
  --dry-run        With unpack or prune: print what would change and change nothing.
"""
STRICT_CONFIG = True
PROGRESS = False


def matches(args: dict) -> bool:
    return bool(args["prune"])


def options(args: dict) -> PruneOptions:
    return PruneOptions(dry_run=bool(args["--dry-run"]))


def run(settings: Settings, options: PruneOptions, progress=None) -> PruneResult:
    return prune(settings, dry_run=options.dry_run)
