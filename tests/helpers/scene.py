"""The adversary's test bench: archives made by the real writer and signed with the
installation's own key (tests/helpers/craft.py, tests/helpers/rebuild.py), and proof that a refused
archive changed nothing: the live tree, the store and everything beside them are
compared byte for byte before and after every command."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from poppoarc.restore import trash

# Written by any reader or any locking command, and not content: SQLite's shared-memory
# index of a WAL database, the installation lock's holder note, the record of the last run
# of each kind (a refused verify is recorded: doctor and the metrics report the failure).
VOLATILE = ("-shm", ".poppoarc.lock", ".poppoarc-runs.json")


def snapshot(top: Path) -> dict[str, tuple]:
    """Every path below ``top`` (hidden ones, poppoarc's own, the store): type, mode,
    size, mtime and content, or a link's text."""
    trash.sweep(top, wait=True)        # a restore's old tree, deleted behind it
    found = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            rel = path.relative_to(top).as_posix()
            if rel.endswith(VOLATILE):
                continue
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                found[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                found[rel] = ("dir", stat.S_IMODE(st.st_mode))
            else:
                found[rel] = ("file", stat.S_IMODE(st.st_mode), st.st_size, st.st_mtime_ns,
                              hashlib.sha256(path.read_bytes()).hexdigest())
    return found


def runs_of(archive: Path, targets: str | None) -> list[tuple[str, ...]]:
    """The commands that must all refuse a hostile archive the same way: verify, and the
    restore with and without its safety archive, as a dry run, whole and targeted."""
    runs = [("verify", str(archive)), ("inspect", str(archive)),
            ("unpack", str(archive)), ("unpack", str(archive), "--skip-backup"),
            ("unpack", str(archive), "--dry-run")]
    if targets:
        runs += [("unpack", str(archive), "--targets", targets),
                 ("unpack", str(archive), "--targets", targets, "--skip-backup"),
                 ("unpack", str(archive), "--targets", targets, "--dry-run")]
    return runs


def assert_refused(cli, archive: Path, code: int, fragment: str = "", *,
                   targets: str | None = None, bench: Path | None = None,
                   extra: tuple = ()) -> None:
    """Every run of ``runs_of`` exits ``code`` with one line naming the archive and
    ``fragment``, and nothing below ``bench`` (the live tree, the store, what lies
    beside them) changed."""
    bench = bench or cli.root.parent
    before = snapshot(bench)
    for run in runs_of(archive, targets):
        got, out, err = cli(*extra, *run)
        assert got == code, (run, got, err)
        assert err.count("\n") == 1 and "Traceback" not in err, (run, err)
        assert fragment in err, (run, err)
        assert snapshot(bench) == before, run
