"""The version of the installed application, as its own files state it."""

from __future__ import annotations

import json
from pathlib import Path

from ..fs import read_small_file


def installation_version(root: Path) -> str | None:
    """The app version from ``.poppo/config.json`` or ``package.json``, if any."""
    for candidate in (root / ".poppo" / "config.json", root / "package.json"):
        try:    # the app's file, maybe just restored from an archive: bounded, any shape
            value = json.loads(read_small_file(candidate, 16 << 20)).get("version")
        except (OSError, ValueError, AttributeError, RecursionError):
            continue
        if isinstance(value, str):
            return value
    return None
