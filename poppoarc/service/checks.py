"""Integrity checks run before each scheduled backup (the troubleshooting list of
PoppoBuilder's backup documentation).

``PRAGMA quick_check`` on every database the ``database`` target would
capture (found by header, opened read-only), and a JSON parse of the
configuration files.  Problems are returned as warnings: they go to the run
log, the schedule state and the notification (as a count); they do not stop
the backup, which is most valuable exactly when something is wrong.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..config import Settings
from ..errors import PoppoarcError, Warnings
from ..snapshot.catalogue import build_catalogue
from ..snapshot.scan import DATABASE, scan
from ..snapshot.sqlite import integrity_errors

MAX_CONFIG_BYTES = 16 * 1024 * 1024


def config_files(root: Path) -> list[Path]:
    found = sorted((root / "config").rglob("*.json")) if (root / "config").is_dir() else []
    found += [p for p in (root / ".poppo" / "config.json",) if p.exists()]
    return [p for p in found if p.is_file() and not p.is_symlink()]


def pre_backup_checks(settings: Settings) -> list[str]:
    """Problems found, one line each (empty when everything is healthy)."""
    problems: list[str] = []
    root = settings.root
    try:
        catalogue = build_catalogue(settings.backup.get("targets", {}), ("database",),
                                    settings.backup.get("exclude", ()))
        entries = scan(root, catalogue, Warnings(), skip=(settings.store, settings.key_dir)).entries
    except PoppoarcError as exc:
        return [f"databases not checked: {exc}"]
    for entry in entries:
        if entry.kind != DATABASE:
            continue
        errors = integrity_errors(root / entry.path, quick=True)
        if errors:
            # SQLite's report spans lines; a log event is one line
            detail = " ".join("; ".join(errors[:2]).split())
            problems.append(f"{entry.path}: quick_check failed: {detail[:300]}")
    for path in config_files(root):
        rel = path.relative_to(root)
        try:
            if path.stat().st_size > MAX_CONFIG_BYTES:
                continue
            json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            problems.append(f"{rel}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"{rel}: cannot read: {getattr(exc, 'strerror', None) or exc}")
        except RecursionError:
            problems.append(f"{rel}: invalid JSON: nested too deeply to read")
    return problems
