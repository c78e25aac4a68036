"""What an archive can name (spec/FORMAT.md §1, §4.3): the walk names a path it cannot
archive in a warning instead of writing what a reader rejects."""

from __future__ import annotations

import unicodedata

from ..errors import UsageError
from ..format.paths import link_target_problem, path_problem

# spec/FORMAT.md §6 (the manifest's `name`): what a writer may put there
NAME_MAX_CHARACTERS = 256


def check_name(name: str | None) -> str | None:
    """``--name`` (pack, consolidate): 1 to NAME_MAX_CHARACTERS characters of valid UTF-8,
    no control characters (spec/FORMAT.md, the manifest's ``name``); a UsageError (exit 2)
    before any work otherwise."""
    if name is None:
        return None
    if not name or len(name) > NAME_MAX_CHARACTERS:
        raise UsageError(f"--name must have 1 to {NAME_MAX_CHARACTERS} characters "
                         f"(it has {len(name)})")
    for ch in name:
        kind = unicodedata.category(ch)
        if kind == "Cs":
            raise UsageError("--name is not valid UTF-8 (an archive's name is UTF-8 text)")
        if kind == "Cc":
            raise UsageError(f"--name contains the control character U+{ord(ch):04X}")
    return name


def printable(path: str) -> str:
    """A path for a message: bytes that are not UTF-8 as ``\\xNN`` escapes."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def unrepresentable(path: str) -> str | None:
    """Why an archive cannot name ``path`` (spec/FORMAT.md §1), or None."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return "name is not valid UTF-8 (an archive path is UTF-8)"
    problem = path_problem(path)
    return f"{problem} (beyond what an archive may name)" if problem else None


def symlink_problem(path: str, link: str) -> str | None:
    """Why the symbolic link ``path -> link`` is not archived, or None: a restore would
    refuse it (absolute, or leaving the installation), or its target is not UTF-8."""
    try:
        link.encode("utf-8")
    except UnicodeEncodeError:
        return f"symbolic link to {printable(link)!r} not archived: its target is not UTF-8"
    problem = link_target_problem(path, link)
    if problem:
        return (f"symbolic link to {link!r} not archived: {problem}, which a restore "
                "refuses to create")
    return None
