"""A full disk is exit 23 (InsufficientSpace) wherever it happens: the archive in the
store, a database's snapshot copy, a spool in $TMPDIR, the safety archive, staging, the
swap, verify's database copies; nothing half-written stays (issue 24, 7).

Real full file systems where the test may mount a small tmpfs (root); the swap, which a
real full disk reaches only by chance, through the journal write it makes."""

import errno
import json
import os
import shutil
import sqlite3
import subprocess

import pytest

from tests.helpers import run_poppoarc
from tests.helpers import digest


def _run(installation, store, *args, env=None):
    done = run_poppoarc("--root", str(installation), "--store", str(store), *args, "--json",
                        env=env)
    return done.returncode, json.loads(done.stdout) if done.stdout else None, done.stderr


def _one_line(stderr):
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1, stderr


def test_a_store_that_fills_while_the_archive_is_written(installation, small_fs):
    (installation / "state/big.bin").write_bytes(os.urandom(2 << 20))
    store = small_fs(1024)
    code, document, err = _run(installation, store, "pack", "--targets", "state,config")
    assert code == 23, err
    assert document["error"]["type"] == "InsufficientSpace"
    assert "cannot write archive: No space left on device" in err
    _one_line(err)
    # no temporary archive, no snapshot copy (the failed run is recorded, for doctor)
    assert [n for n in os.listdir(store) if n not in (".poppoarc-runs.json", ".poppoarc-store.lock")] == []


def test_a_database_snapshot_that_does_not_fit(installation, small_fs):
    conn = sqlite3.connect(installation / "data/big.db")    # copied first: the largest
    conn.execute("CREATE TABLE t (b BLOB)")
    conn.executemany("INSERT INTO t VALUES (randomblob(65536))", [()] * 32)
    conn.commit()
    conn.close()
    store = small_fs(512)
    code, document, err = _run(installation, store, "pack", "--targets", "database")
    assert code == 23, err
    assert f"no room for its snapshot copy in {store}: database or disk is full" in err
    _one_line(err)
    assert [n for n in os.listdir(store) if n not in (".poppoarc-runs.json", ".poppoarc-store.lock")] == []


def test_a_full_temporary_directory(installation, tmp_path, small_fs):
    """The index spool (and a verify's database copies) go to $TMPDIR."""
    store = tmp_path / "store"
    code, packed, err = _run(installation, store, "pack")
    assert code in (0, 1), err
    tmp = small_fs(8)
    env = {**os.environ, "TMPDIR": str(tmp)}
    code, document, err = _run(installation, store, "pack", env=env)
    assert code == 23, err
    assert "No space left on device while writing a working file" in err
    _one_line(err)
    assert [p for p in os.listdir(store) if ".tmp-" in p or p.startswith(".poppoarc-snap")] == []
    code, document, err = _run(installation, store, "verify", packed["id"], env=env)
    assert code == 23, err
    _one_line(err)


def test_a_restore_whose_disk_fills_after_the_check(installation, tmp_path, small_fs):
    """The beforeRestore hook fills the disk (an application writing as it stops): the
    safety archive finds no room, then with --skip-backup staging finds none.  Exit 23
    both times, the live tree as it was."""
    fs = small_fs(48 << 10)     # room for the up-front check (stage + margin of 16 MB)
    root, store = fs / "inst", fs / "store"
    shutil.copytree(installation, root, symlinks=True)
    code, packed, err = _run(root, store, "pack")
    assert code in (0, 1), err
    (root / "config/config.json").write_text(json.dumps({"backup": {"hooks": {
        "beforeRestore": f"cat /dev/zero > {fs}/filler 2>/dev/null; true"}}}))
    before = digest(root)
    for extra in ([], ["--skip-backup"]):
        (fs / "filler").unlink(missing_ok=True)
        code, document, err = _run(root, store, "unpack", packed["id"], *extra)
        assert code == 23, (extra, err)
        assert document["error"]["type"] == "InsufficientSpace"
        assert "restore needs about" not in err     # not the up-front check: the hook ran
        _one_line(err)
        (fs / "filler").unlink()
        assert digest(root) == before
        assert not [p for p in root.iterdir() if p.name.startswith(".poppoarc-")
                    and p.name != ".poppoarc.lock"]


def test_a_swap_that_finds_no_room_for_its_journal(cli, installation, monkeypatch):
    from poppoarc.restore import journal, transaction

    packed = cli.pack()
    before = digest(installation)
    real = transaction.write_journal

    def full_disk(root, document):
        if document.phase == journal.SWAPPING:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(root, document)

    monkeypatch.setattr(transaction, "write_journal", full_disk)
    code, _, err = cli("unpack", packed["id"], "--skip-backup")
    assert code == 23, err
    assert "No space left on device" in err and "cannot start the swap" in err
    _one_line(err)
    monkeypatch.setattr(transaction, "write_journal", real)
    assert digest(installation) == before
    assert not (installation / journal.JOURNAL_NAME).exists()
