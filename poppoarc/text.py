"""Column layout that counts display cells, not characters.

A CJK character (East Asian width W or F) takes two cells on a terminal, so
``str.ljust`` misaligns Japanese tables; these helpers pad by cells.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime

# What a terminal may act on rather than show: C0 and C1 controls and DEL (ESC starts a
# sequence that can rewrite the screen, set the title, ...), the bidirectional overrides
# and isolates (they reorder what follows them), and lone surrogates (undecodable bytes
# of a file name).  A record's path or link comes from an archive: it may hold any of them.
_CONTROLS = "\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069" \
    "\ud800-\udfff"
_UNSAFE_IN_LINE = re.compile(f"[{_CONTROLS}]")
_UNSAFE_IN_NAME = re.compile(f"[{_CONTROLS}\t\n\\\\']")
_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\\": "\\\\", "'": "\\'"}


def _escaped(char: str) -> str:
    if char in _ESCAPES:
        return _ESCAPES[char]
    code = ord(char)
    if code < 0x80:
        return f"\\x{code:02x}"
    if 0xDC80 <= code <= 0xDCFF:        # an undecodable byte (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    return f"\\u{code:04x}"


def printable(line: str) -> str:
    """``line`` with every control character but newline and tab written as an escape
    (``\\x1b``, ``\\u202e``): what the command line prints goes through it, so nothing an
    archive or a file name holds reaches the terminal as a control sequence."""
    if not _UNSAFE_IN_LINE.search(line):
        return line
    return _UNSAFE_IN_LINE.sub(lambda m: _escaped(m.group()), line)


def shown_path(path: str) -> str:
    """A path as a listing shows it: itself when it is plain, else quoted as bash's
    ``$'...'`` (``$'state/a\\nb'``), which shows every control character, newline and tab
    included, and which a shell reads back as the very name (``ls -l``'s quoting)."""
    if not _UNSAFE_IN_NAME.search(path):
        return path
    return "$'" + _UNSAFE_IN_NAME.sub(lambda m: _escaped(m.group()), path) + "'"


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
