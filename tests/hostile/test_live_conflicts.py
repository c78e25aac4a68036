"""A restore of target X changes only X's paths, also where the live tree puts another
target's symlink or file in the way (spec §13): the restore refuses before its safety
archive, and writes nothing through a link the operator made.  verify cannot see the live
tree; these are refusals of the restore alone, exit 30, with nothing changed."""

from __future__ import annotations

import os
import shutil
import sqlite3

from tests.helpers.craft import craft, entry
from tests.helpers.scene import snapshot

RESTORE_ERROR = 30


def _database(path) -> bytes:
    conn = sqlite3.connect(path)
    conn.executescript("CREATE TABLE t(a); INSERT INTO t VALUES (1);")
    conn.close()
    return path.read_bytes()


def _refused(cli, archive, targets: str, fragment: str, bench) -> None:
    before = snapshot(bench)
    code, document = cli.json("unpack", str(archive), "--targets", targets, "--dry-run")
    assert code in (0, 1) and any(fragment in w for w in document["warnings"]), document
    assert document["plan"]["foreign"], document["plan"]
    for extra in ((), ("--skip-backup",)):
        code, _, err = cli("unpack", str(archive), "--targets", targets, *extra)
        assert code == RESTORE_ERROR and fragment in err, err
        assert err.count("\n") == 1 and "nothing was changed" in err
        assert snapshot(bench) == before, extra
    assert cli("verify", str(archive))[0] == 0      # the archive itself is sound


def test_a_database_below_another_targets_symlink(cli, installation, key_home, tmp_path):
    """agents' data/ccla is a symlink out of the installation: restoring a database the
    archive has below it would write through it, or replace agents' link."""
    outside = tmp_path / "outside"
    shutil.move(installation / "data/ccla", outside)
    os.symlink(outside, installation / "data/ccla")
    cli.pack()
    record, data = entry("data/ccla/x.db", data=_database(tmp_path / "x.db"),
                         target="database")
    record.sqlite = True
    archive = craft(cli.store, key_home, [(record, data)])
    _refused(cli, archive, "database", "data/ccla", tmp_path)
    assert os.path.islink(installation / "data/ccla") and not (outside / "x.db").exists()


def test_a_state_file_where_the_live_tree_has_a_database(cli, installation, key_home,
                                                         tmp_path):
    """state/tasks.db is a SQLite database now (target database's); an archive made when
    it was a state file must not replace it in a restore of state."""
    (tmp_path / "outside").mkdir()
    _database(installation / "state/tasks.db")
    cli.pack()
    archive = craft(cli.store, key_home, [entry("state", "dir"),
                                          entry("state/tasks.db", data=b"not a database")])
    _refused(cli, archive, "state", "state/tasks.db", tmp_path)


def test_a_log_below_a_symlink_no_target_owns(cli, installation, key_home, tmp_path):
    """logs/archive is nobody's directory (logs owns only *.gz files); made a symlink out
    of the installation, a restore of logs must not write its archived logs through it."""
    outside = tmp_path / "outside"
    shutil.move(installation / "logs/archive", outside)
    os.symlink(outside, installation / "logs/archive")
    cli.pack()
    archive = craft(cli.store, key_home, [entry("logs/archive/old.log.gz", data=b"\x1f\x8b",
                                                target="logs")])
    before = sorted(os.listdir(outside))
    _refused(cli, archive, "logs", "logs/archive", tmp_path)
    assert sorted(os.listdir(outside)) == before
