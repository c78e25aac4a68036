"""The schedule's state file in the store: the fire time each schedule entry last handled.

Written durably (``fs.write_file_durably``); a damaged file is reported and replaced,
never a reason to stop the service.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from ..errors import StoreError
from ..fs import read_small_file, write_file_durably

STATE_NAME = ".poppoarc-schedule.json"
STATE_FORMAT = "poppoarc-schedule/1"


def state_path(store: Path) -> Path:
    return Path(store) / STATE_NAME


def load_state(store: Path) -> tuple[dict, str | None]:
    """The state document and a problem (a damaged file is reported, then replaced)."""
    path = state_path(store)
    try:
        document = json.loads(read_small_file(path, 16 << 20))
    except FileNotFoundError:
        return {"format": STATE_FORMAT, "entries": {}}, None
    except (OSError, ValueError, RecursionError) as exc:
        return {"format": STATE_FORMAT, "entries": {}}, f"{path}: unreadable schedule state ({exc}); starting afresh"
    if not isinstance(document, dict) or document.get("format") != STATE_FORMAT \
            or not isinstance(document.get("entries"), dict):
        return {"format": STATE_FORMAT, "entries": {}}, f"{path}: unknown schedule state format; starting afresh"
    return document, None


def last_runs_of(state: dict) -> dict[str, datetime]:
    runs = {}
    for name, record in state.get("entries", {}).items():
        try:
            runs[name] = datetime.fromisoformat(record["last_fire"])
        except (KeyError, TypeError, ValueError):
            continue
    return runs


def save_state(store: Path, state: dict) -> None:
    """Write durably: temp file, fsync, rename, fsync the directory."""
    path = state_path(store)
    data = (json.dumps(state, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()
    try:
        write_file_durably(path, data, 0o600)
    except OSError as exc:
        raise StoreError(f"cannot write schedule state: {exc.strerror}", path=path) from None
