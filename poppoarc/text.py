"""Column layout that counts display cells, not characters.

A CJK character (East Asian width W or F) takes two cells on a terminal, so
``str.ljust`` misaligns Japanese tables; these helpers pad by cells.
"""

from __future__ import annotations

import unicodedata
from datetime import datetime


def width(text: str) -> int:
    """Terminal cells ``text`` takes: 2 for wide and fullwidth characters."""
    cells = 0
    for char in text:
        if unicodedata.combining(char):
            continue
        cells += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return cells


def ljust(text: str, cells: int) -> str:
    return text + " " * max(0, cells - width(text))


def rjust(text: str, cells: int) -> str:
    return " " * max(0, cells - width(text)) + text


def row(cells: list[tuple[str, int]]) -> str:
    """Left-aligned columns: each (text, width) pair is padded to its width."""
    return "".join(ljust(text, size) for text, size in cells)


def human_size(size: int) -> str:
    """Decimal units, as PoppoBuilder's documented list output shows them (125.3 MB)."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"


def display_time(timestamp: str | None) -> str:
    """``2025-06-19T12:00:00.000Z`` as ``2025/06/19 12:00:00`` (UTC)."""
    if not timestamp:
        return "?"
    parsed = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%S.%fZ")
    return parsed.strftime("%Y/%m/%d %H:%M:%S")


def duration(seconds: float) -> str:
    """``1:02:03`` or ``2:03``."""
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
