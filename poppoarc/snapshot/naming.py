"""What an archive can name (spec/FORMAT.md §1, §4.3): the walk names a path it cannot
archive in a warning instead of writing what a reader rejects."""

from __future__ import annotations

from ..format.paths import link_target_problem, path_problem


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
