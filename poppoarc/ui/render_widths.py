"""What the text reports share: the rule under a table's heading and the width of its
column of target names."""

from __future__ import annotations

RULE = "─" * 80


def name_width(names) -> int:
    """The column of target names: the built-in ones, or the longest custom one."""
    return max([9, *(len(name) + 1 for name in names)])
