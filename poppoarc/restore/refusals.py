"""What a restore refuses, each said in one line: the plan a dry run prints warns with
the same words the real run stops with (exit 30, nothing changed)."""

from __future__ import annotations

SHOWN = 5           # paths a refusal names before "and N more"


def shown(paths: list[str], notes: dict[str, str] | None = None, limit: int = SHOWN) -> str:
    """``a, b, c and 4 more``; a path with a note is followed by it in parentheses."""
    notes = notes or {}
    named = [f"{p} ({notes[p]})" if p in notes else p for p in paths[:limit]]
    return ", ".join(named) + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


def conflict_message(conflicts: list[str]) -> str:
    return (f"the archive restores a file where the live tree has a directory holding paths "
            f"no restored target owns: {shown(conflicts, limit=3)}; move it aside, then restore")


def foreign_message(paths: list[str]) -> str:
    return (f"the archive restores {shown(paths, limit=3)}, or paths below, where the live "
            "tree has a file or symlink that no restored target owns; move it aside, then "
            "restore")


def unreadable_message(paths: list[str]) -> str:
    return (f"{len(paths)} live path(s) the restore would replace cannot be read by this "
            f"user, so the safety archive cannot save them: {shown(paths)}; nothing was "
            "changed (give this user read access, or restore with --skip-backup)")


def unsaved_message(lost: list[str], reasons: dict[str, str]) -> str:
    return (f"the safety archive could not save {len(lost)} live path(s) the restore would "
            f"replace: {shown(lost, reasons)}; nothing was changed (fix that and restore "
            "again, or restore with --skip-backup)")


def plan_warnings(plan, take_safety: bool) -> list[str]:
    """What the restore would refuse, said in the plan a dry run prints."""
    warnings = []
    if plan.conflicts:
        warnings.append(f"the restore would stop: {conflict_message(plan.conflicts)}")
    if plan.foreign:
        warnings.append(f"the restore would stop: {foreign_message(plan.foreign)}")
    if plan.unreadable:
        stop = "the restore would stop (exit 30)" if take_safety else \
            "--skip-backup: they are replaced without being saved"
        warnings.append(f"{len(plan.unreadable)} live path(s) the restore would replace "
                        f"cannot be read by this user: {shown(plan.unreadable)}; {stop}")
    return warnings
