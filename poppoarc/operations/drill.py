"""A restore drill: restore an archive where nothing live is touched, check what came
back against what the archive says it holds, then remove it.

The seed asks operators to rehearse restores ("リストアテストの実施"); a drill does it
with the restore itself, not a second implementation of one: the archive (default: the
newest good one) goes through ``unpack``'s steps (``operations.unpack``: its chain, its
keys, every byte verified while staged, confinement, databases checked as staged, the
journalled swap) with the installation's configuration, store and keys but a scratch root
as the root: ``.poppoarc-drill-<owner>-…`` in the store directory (the store's
filesystem, which holds the archives already; with an S3 store ``$TMPDIR``) or below
``--to DIR``.  The restore hooks do
not run there (they stop and start the live application); no safety archive is written
(nothing is replaced).  The installation's lock is held meanwhile, so that no prune deletes
the archive or an ancestor being read.  Then:

* the regular files and their bytes are counted and compared with the manifest's ``files``
  and its targets' ``size`` (hard links once);
* every database the manifest lists gets ``PRAGMA integrity_check`` and its row counts are
  compared with the manifest's, table by table;
* ``backup.restore.healthCheck`` runs with ``POPPO_ROOT`` (and the working directory) set
  to the scratch root;
* the report says what a real restore would need: the space the tree took, the time the
  restore took, and whether the installation's filesystem has that room now.

The scratch root is removed afterwards, whatever happened; a drill killed before that
leaves a name carrying its owner, which the next command sweeps (``store.leftovers``).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..archives.listing import list_archives
from ..config import Settings
from ..errors import (EXIT_OK, ArchiveNotFound, CorruptArchive, HealthCheckFailed, NoKey,
                      UsageError)
from ..fs import remove_tree, within
from ..lock import InstallationLock
from ..options import UnpackOptions
from ..restore.hooks import run_hook
from ..snapshot import sqlite
from ..store import leftovers, open_store
from . import unpack

DRILL_PREFIX = leftovers.DRILL_PREFIX


@dataclass
class DatabaseCheck:
    path: str
    integrity: list[str]                # integrity_check's rows other than ok
    tables: dict[str, tuple[int | None, int | None]]    # name -> (manifest, restored)

    @property
    def ok(self) -> bool:
        return not self.integrity and all(a == b for a, b in self.tables.values())

    def to_json(self) -> dict:
        return {"path": self.path, "ok": self.ok, "integrity": self.integrity or ["ok"],
                "tables": {name: {"manifest": m, "restored": r}
                           for name, (m, r) in self.tables.items()}}


@dataclass
class DrillResult:
    archive_id: str
    chain: list[str]
    scratch: str
    restore_seconds: float
    files: tuple[int, int]              # (manifest, restored)
    bytes: tuple[int, int]
    databases: list[DatabaseCheck]
    health: dict | None                 # {"command", "exit_code", "ok"}
    space_bytes: int                    # what the restored tree took on disk
    free_bytes: int                     # free now on the installation's filesystem
    check_seconds: float = 0.0
    removed: bool = False
    problems: list[tuple[type, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def exit_code(self) -> int:
        return self.problems[0][0].exit_code if self.problems else EXIT_OK

    @property
    def fits(self) -> bool:
        return self.free_bytes >= self.space_bytes

    def to_json(self) -> dict:
        return {"archive_id": self.archive_id, "chain": self.chain, "ok": self.ok,
                "problems": [text for _, text in self.problems], "warnings": self.warnings,
                "scratch": self.scratch, "removed": self.removed,
                "restore_seconds": self.restore_seconds, "check_seconds": self.check_seconds,
                "files": {"manifest": self.files[0], "restored": self.files[1]},
                "bytes": {"manifest": self.bytes[0], "restored": self.bytes[1]},
                "databases": [d.to_json() for d in self.databases],
                "health_check": self.health,
                "restore_needs": {"space_bytes": self.space_bytes,
                                  "seconds": self.restore_seconds,
                                  "free_bytes": self.free_bytes, "fits": self.fits}}


def newest_good(settings: Settings) -> str:
    """The archive a drill takes by default: the newest backup the store holds whole and
    trusted; a pre-restore safety archive (only the targets a restore replaced) only when
    the store holds nothing else."""
    rows = [row for row in list_archives(settings) if row.status == "ok"]
    backups = [row for row in rows if row.type != "pre-restore"]
    if backups or rows:
        return (backups or rows)[0].id
    raise ArchiveNotFound(f"no good archive in store {settings.store_url} to drill")


def scratch_parent(settings: Settings, to: str | None) -> Path:
    """Where the scratch root goes: below ``--to DIR``, else the local store directory
    (an S3 store: the temporary directory).  Never inside the live installation (the store
    aside, which pack never walks)."""
    if to is None:
        if settings.storage.get("type") == "s3":
            return Path(leftovers.temp_dir())
        parent = Path(settings.store)
        parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        return parent
    parent = Path(to).absolute()
    if not parent.is_dir():
        raise UsageError(f"--to {to}: not a directory")
    root = settings.root.resolve()
    if within(parent, root) and not within(parent, settings.store):
        raise UsageError(f"--to {to}: inside the installation {root}; a drill never writes "
                         f"there (choose a directory outside it)")
    return parent


def drill(settings: Settings, reference: str | None = None, to: str | None = None,
          progress=None) -> DrillResult:
    """Restore ``reference`` (default: the newest good archive) into a scratch root,
    check it, remove it.  Archive errors raise as a restore's would."""
    with InstallationLock(settings.root, "drill"):
        reference = reference or newest_good(settings)
        parent = scratch_parent(settings, to)
        leftovers.sweep([parent])
        scratch = leftovers.temporary_directory(DRILL_PREFIX, parent)
        root = Path(scratch.name)
        try:
            started = time.monotonic()
            restored = unpack.run(scratch_settings(settings, root),
                                  UnpackOptions(reference, skip_backup=True), progress)
            restore_seconds = round(time.monotonic() - started, 3)
            result = _check(settings, restored, root, restore_seconds)
            result.check_seconds = round(time.monotonic() - started - restore_seconds, 3)
        finally:
            remove_tree(root)
            scratch.cleanup()
    result.removed = not os.path.lexists(root)
    return result


def scratch_settings(settings: Settings, root: Path) -> Settings:
    """The installation's settings with the scratch root as the root, and without the
    restore hooks and health check (they act on the live application; the drill runs the
    health check itself, pointed at the scratch root)."""
    backup = {key: value for key, value in settings.backup.items() if key != "hooks"}
    backup["restore"] = {key: value for key, value in settings.backup.get("restore", {}).items()
                         if key != "healthCheck"}
    return dataclasses.replace(settings, root=root, backup=backup)


def _check(settings: Settings, restored, root: Path, restore_seconds: float) -> DrillResult:
    manifest = restored.manifest
    files, size, space = _count(root)
    stated_size = sum(t.get("size", 0) for t in manifest["targets"].values())
    result = DrillResult(manifest["id"], list(restored.chain), str(root), restore_seconds,
                         (manifest["files"], files), (stated_size, size), [], None, space,
                         shutil.disk_usage(settings.root).free, warnings=list(restored.warnings))
    if files != manifest["files"]:
        cls = NoKey if restored.unkeyed else CorruptArchive
        result.problems.append((cls, f"{files} files restored, the manifest lists "
                                     f"{manifest['files']}" +
                                (" (sealed secret files need a key)" if restored.unkeyed
                                 else "")))
    elif size != stated_size:
        result.problems.append((CorruptArchive, f"{size} bytes restored, the manifest lists "
                                                f"{stated_size}"))
    for database in manifest["databases"]:
        check = _database(root, database)
        result.databases.append(check)
        if not check.ok:
            result.problems.append((CorruptArchive, f"{database['path']}: " + (
                "; ".join(check.integrity[:3]) if check.integrity else "row counts differ: " +
                ", ".join(f"{t} {m} in the manifest, {r} restored"
                          for t, (m, r) in check.tables.items() if m != r))))
    health = settings.backup.get("restore", {}).get("healthCheck")
    if health:
        code = run_hook(health, dataclasses.replace(settings, root=root), manifest["id"],
                        "drill")
        result.health = {"command": health, "exit_code": code, "ok": code == 0}
        if code != 0:
            result.problems.append((HealthCheckFailed, f"health check exited with {code} "
                                                       f"(POPPO_ROOT={root})"))
    return result


def _count(root: Path) -> tuple[int, int, int]:
    """(regular files, their bytes with each inode once, blocks on disk) below ``root``,
    poppoarc's own names at the top (lock, journal) left out."""
    files = size = space = 0
    seen: set[tuple[int, int]] = set()
    for directory, dirnames, names in os.walk(root):
        if directory == str(root):
            dirnames[:] = [d for d in dirnames if not d.startswith(".poppoarc")]
            names = [n for n in names if not n.startswith(".poppoarc")]
        for name in names:
            st = os.lstat(os.path.join(directory, name))
            if not (st.st_mode & 0o170000 == 0o100000):
                continue
            files += 1
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                size += st.st_size
                space += st.st_blocks * 512
    return files, size, space


def _database(root: Path, database: dict) -> DatabaseCheck:
    path = root / database["path"]
    if not path.is_file():
        return DatabaseCheck(database["path"], ["not restored"], {})
    # poppoarc's own copy: opened immutable, so a WAL-mode file gets no sidecars
    errors = sqlite.integrity_errors(path, private=True)
    try:
        restored = sqlite.describe(path, private=True).tables
    except sqlite3.Error as exc:
        return DatabaseCheck(database["path"], errors or [str(exc)], {})
    stated = database.get("tables") or {}
    tables = {name: (stated.get(name), restored.get(name))
              for name in sorted(set(stated) | set(restored))}
    return DatabaseCheck(database["path"], errors, tables)
