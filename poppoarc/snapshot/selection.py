"""Which paths a command is about: ``--include`` and ``--exclude`` globs, one pure rule.

``ls``, ``dump``, ``diff``, ``find``, the restore plan, the restore's safety archive and
the restore itself select archive records and live paths by this rule and no other, so a
dry run, the safety archive and the real run always agree on the paths.

* ``*`` and ``?`` stay inside one name, ``**`` spans any number of names (the globs of
  ``backup.targets``, ``catalogue.compile_glob``);
* a pattern selects what it matches and everything below it: ``data/ccla`` is the
  agent's whole folder, ``state/*.json`` the JSON files of ``state/`` (and, were one a
  directory, its contents);
* a path is selected when no ``--include`` is given or one matches it or a directory
  above it, and no ``--exclude`` matches it or a directory above it.

A directory that is not selected itself but may hold selected paths (``state`` for
``state/pending-tasks.json``) is walked into and never replaced whole: the restore swaps
the selected paths below it, one by one (``restore.plan.SwapUnits``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import UsageError
from .catalogue import compile_glob, could_match_below


def _below_too(patterns: tuple[str, ...]) -> re.Pattern | None:
    """One regex matching a path that one of ``patterns`` matches, or lies below one."""
    if not patterns:
        return None
    inner = "|".join(f"(?:{compile_glob(p).pattern[:-2]})" for p in patterns)   # no \Z
    return re.compile(f"(?:{inner})(?:/.*)?\\Z", re.S)


def normalized(pattern: str, option: str) -> str:
    """A pattern as the rule reads it: no leading ``./``, no trailing ``/``; absolute
    patterns, empty names and ``..`` are refused (archive paths are relative, §1)."""
    text = pattern.strip()
    while text.startswith("./"):
        text = text[2:]
    text = text.rstrip("/")
    parts = text.split("/")
    if not text or pattern.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise UsageError(f"{option} {pattern!r}: a pattern is a relative path of the "
                         "installation (like state/pending-tasks.json or data/ccla/**)")
    return text


@dataclass(frozen=True)
class PathSelection:
    """``--include`` and ``--exclude`` patterns (normalized); see the module docstring."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    _included: re.Pattern | None = field(default=None, repr=False, compare=False)
    _excluded: re.Pattern | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_included", _below_too(self.include))
        object.__setattr__(self, "_excluded", _below_too(self.exclude))

    @classmethod
    def of(cls, include=(), exclude=()) -> "PathSelection | None":
        """The selection the options ask for; None when they select everything."""
        include = tuple(dict.fromkeys(normalized(p, "--include") for p in include or ()))
        exclude = tuple(dict.fromkeys(normalized(p, "--exclude") for p in exclude or ()))
        return cls(include, exclude) if include or exclude else None

    def selects(self, path: str) -> bool:
        """Whether ``path`` (a record's, or a live path) is selected."""
        if self._excluded is not None and self._excluded.match(path):
            return False
        return self._included is None or self._included.match(path) is not None

    def may_hold(self, directory: str) -> bool:
        """Whether something at or below ``directory`` may be selected (worth walking)."""
        if self._excluded is not None and self._excluded.match(directory):
            return False
        if self._included is None or self._included.match(directory):
            return True
        return any(could_match_below(p, directory) for p in self.include)

    def describe(self) -> str:
        parts = [f"--include {p}" for p in self.include] + [f"--exclude {p}" for p in self.exclude]
        return " ".join(parts)


def selects(paths: PathSelection | None, path: str) -> bool:
    """``paths.selects(path)``, everything when there is no selection."""
    return paths is None or paths.selects(path)


class IncludeTally:
    """Which include patterns selected at least one path: a pattern that selects nothing
    in an archive is a mistake to report, never a silent no-op (or, in a restore, a
    silent removal of the live paths it names)."""

    def __init__(self, paths: PathSelection | None):
        self._open = list(paths.include) if paths is not None else []
        self._regexes = {p: _below_too((p,)) for p in self._open}

    def note(self, path: str) -> None:
        if self._open:
            self._open = [p for p in self._open if not self._regexes[p].match(path)]

    def unmatched(self) -> list[str]:
        return list(self._open)
