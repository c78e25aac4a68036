"""Path globs as every target rule, exclusion and area uses them: ``*`` and ``?`` within one
name, ``**`` any number of names (``D/**`` also matches ``D``)."""

from __future__ import annotations

import fnmatch
import re
from functools import lru_cache


@lru_cache(maxsize=None)
def compile_glob(pattern: str) -> re.Pattern:
    """A path glob: ``*`` and ``?`` stay inside one segment, ``**`` spans any depth.

    ``dir/**`` also matches ``dir`` itself, so a target owns its top directory.
    """
    parts = pattern.split("/")
    regex = []
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        if part == "**":
            if index == 0:
                regex.append(".*" if last else "(?:[^/]+/)*")
            else:
                regex.append("(?:/.*)?" if last else "(?:/[^/]+)*")
            continue
        if index and parts[index - 1] != "**" or (index > 1 and parts[index - 1] == "**"):
            regex.append("/")
        regex.append("".join("[^/]*" if ch == "*" else "[^/]" if ch == "?" else re.escape(ch)
                             for ch in part))
    return re.compile("".join(regex) + r"\Z", re.S)


def glob_match(pattern: str, path: str) -> bool:
    return compile_glob(pattern).match(path) is not None


def could_match_below(pattern: str, directory: str) -> bool:
    """Whether ``pattern`` can match anything inside ``directory`` (for pruning)."""
    pattern_parts = pattern.split("/")
    dir_parts = directory.split("/")
    for index, dir_part in enumerate(dir_parts):
        if index >= len(pattern_parts):
            return False
        part = pattern_parts[index]
        if part == "**":
            return True
        if not fnmatch.fnmatchcase(dir_part, part):
            return False
    return len(pattern_parts) > len(dir_parts)
