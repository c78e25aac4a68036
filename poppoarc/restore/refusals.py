"""What a restore refuses, each said in one line: the plan a dry run prints warns with
the same words the real run stops with (exit 30, nothing changed)."""

from __future__ import annotations

import shlex

from ..errors import UnsafeArchiveEntry
from ..i18n import N_

SHOWN = 5           # paths a refusal names before "and N more"


def shown(paths: list[str], notes: dict[str, str] | None = None, limit: int = SHOWN) -> str:
    """``a, b, c and 4 more``; a path with a note is followed by it in parentheses."""
    notes = notes or {}
    named = ", ".join(f"{p} ({notes[p]})" if p in notes else p for p in paths[:limit])
    return N_(f"{named} and {len(paths) - limit} more") if len(paths) > limit else named


def conflict_message(conflicts: list[str]) -> str:
    return N_(f"the archive restores a file where the live tree has a directory holding "
              f"paths no restored target owns: {shown(conflicts, limit=3)}; move it aside, "
              f"then restore")


def foreign_message(paths: list[str]) -> str:
    return N_(f"the archive restores {shown(paths, limit=3)}, or paths below, where the live "
              "tree has a file or symlink that no restored target owns; move it aside, then "
              "restore")


def unreadable_message(paths: list[str]) -> str:
    return N_(f"{len(paths)} live path(s) the restore would replace cannot be read by this "
              f"user, so the safety archive cannot save them: {shown(paths)}; nothing was "
              "changed (give this user read access, or restore with --skip-backup)")


def unsaved_message(lost: list[str], reasons: dict[str, str]) -> str:
    return N_(f"the safety archive could not save {len(lost)} live path(s) the restore "
              f"would replace: {shown(lost, reasons)}; nothing was changed (fix that and "
              "restore again, or restore with --skip-backup)")


def plan_warnings(plan, take_safety: bool) -> list[str]:
    """What the restore would refuse, said in the plan a dry run prints."""
    warnings = []
    if plan.conflicts:
        warnings.append(f"the restore would stop: {conflict_message(plan.conflicts)}")
    if plan.foreign:
        warnings.append(f"the restore would stop: {foreign_message(plan.foreign)}")
    if plan.unreadable:
        stop = N_("the restore would stop (exit 30)") if take_safety else \
            N_("--skip-backup: they are replaced without being saved")
        warnings.append(f"{len(plan.unreadable)} live path(s) the restore would replace "
                        f"cannot be read by this user: {shown(plan.unreadable)}; {stop}")
    if getattr(plan, "left_in_place", None):
        warnings.append(f"{len(plan.left_in_place)} live path(s) of the restored targets cannot "
                        f"be read by this user and are not in the archive: "
                        f"{shown(plan.left_in_place)}; the restore leaves them as they are, so "
                        f"those targets will not be exactly the archive's (remove them as their "
                        f"owner, or restore as a user who can read them)")
    return warnings


def unmatched_message(patterns: list[str], archive_id: str, targets, paths) -> str:
    """A partial restore whose ``--include`` selects nothing of the archive: a typo would
    otherwise remove the live paths it names (the archive has none of them)."""
    where = f"the targets {', '.join(targets)} of archive {archive_id}"
    if patterns:
        return (f"--include {shown([shlex.quote(p) for p in patterns], limit=3)} selects "
                f"nothing in {where}; nothing was changed (list it with: poppoarc ls "
                f"{archive_id})")
    return f"{paths.describe()} selects nothing in {where}; nothing was changed"


def exclusion_for(path: str) -> str:
    """The ``--exclude`` that leaves out exactly the record at ``path`` (a glob: its
    ``*`` and ``?`` become ``?``, which matches them too)."""
    return "--exclude " + shlex.quote(path.replace("*", "?"))


def unsafe_hint(error: UnsafeArchiveEntry, archive_id: str,
                verifying: bool = False) -> UnsafeArchiveEntry:
    """A refusal of one record (``safety.unsafe_entry``) with the way out: a restore that
    leaves the record out restores the rest; ``verify`` judges every record and says so."""
    entry = getattr(error, "entry", None)
    if entry is None:
        return error
    if verifying:
        text = (f"{error.message}; verify judges every entry, so it refuses the whole "
                f"archive (a restore can leave this one out: poppoarc unpack {archive_id} "
                f"{exclusion_for(entry)})")
    else:
        text = (f"{error.message}; nothing was changed (leave it out with "
                f"{exclusion_for(entry)} to restore the rest)")
    hinted = UnsafeArchiveEntry(text, path=error.path)
    hinted.entry = entry
    return hinted
