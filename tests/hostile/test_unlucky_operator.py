"""The operator's machine, not the archive, is what goes wrong: a temporary directory that
fills, a configuration this user cannot reach, little address space.  Each ends in the
documented class of what happened, never in a verdict about a good archive and never in
the internal-error code (70)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import uuid

import pytest

from poppoarc import fs
from poppoarc.errors import InsufficientSpace
from poppoarc.snapshot import sqlite as sqlite_snapshot

from tests.helpers import run_poppoarc


def _tmpfs(where, kib: int):
    where.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kib}k,mode=0700", "tmpfs",
                           str(where)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    return where


def test_verify_with_a_nearly_full_temporary_directory_never_calls_a_good_archive_corrupt(
        installation, tmp_path):
    """verify copies each database to $TMPDIR to check it; when the disk filled on the
    copy's last chunk, the short write went unnoticed and a good archive was exit 13
    ("database disk image is malformed").  Whatever room is left: 0 or 23."""
    conn = sqlite3.connect(installation / "data/big.db")
    conn.execute("CREATE TABLE t (b BLOB)")
    conn.executemany("INSERT INTO t VALUES (randomblob(3000))", [()] * 40)
    conn.commit()
    conn.close()
    store = tmp_path / "store"
    done = run_poppoarc("--root", str(installation), "--store", str(store), "pack")
    assert done.returncode in (0, 1), done.stderr
    databases = sum(p.stat().st_size for p in installation.rglob("*")
                    if p.is_file() and sqlite_snapshot.is_sqlite_file(p))
    codes = set()
    for tenth in range(3, 19):
        kib = databases * tenth // 10 // 1024
        tmp = _tmpfs(tmp_path / f"tmp-{uuid.uuid4().hex[:6]}", kib)
        try:
            done = run_poppoarc("--root", str(installation), "--store", str(store), "verify",
                                "--quiet", sorted(os.listdir(store))[-1],
                                env={"TMPDIR": str(tmp)})
        finally:
            subprocess.run(["umount", "-l", str(tmp)], check=False)
        assert done.returncode in (0, 23), (kib, done.stderr)
        assert len(done.stderr.strip().splitlines()) <= 1, done.stderr
        codes.add(done.returncode)
    assert codes == {0, 23}         # the sizes spanned too little room and enough


def test_a_short_write_of_a_database_copy_is_written_on(cli, monkeypatch):
    """The same, without a file system: every write writes less than it is given."""
    packed = cli.pack("--targets", "database")
    real_write = os.write

    def short_write(fd, data):
        return real_write(fd, bytes(data[:max(1, len(data) // 3)]))

    from poppoarc.archives import verification
    monkeypatch.setattr(verification.os, "write", short_write)
    code, out, err = cli("verify", packed["id"])
    assert code == 0, err


def test_sqlite_full_while_checking_is_no_space_not_damage(tmp_path, monkeypatch):
    path = tmp_path / "a.db"
    sqlite3.connect(path).close()

    class Full:
        def execute(self, sql):
            error = sqlite3.OperationalError("database or disk is full")
            error.sqlite_errorname = "SQLITE_FULL"
            raise error

        def close(self):
            pass

    monkeypatch.setattr(sqlite_snapshot.sqlite3, "connect", lambda *a, **k: Full())
    with pytest.raises(InsufficientSpace):
        sqlite_snapshot.integrity_errors(path)


def test_a_configuration_this_user_cannot_reach(nobody, installation_template):
    """config/ unsearchable, the file behind a link that is gone or loops: one line, the
    file named (pack: exit 3; list: defaults with a warning) — was exit 70, or, for a
    dangling link, a pack with default settings and not a word."""
    root = nobody.home / "inst"
    shutil.copytree(installation_template("tiny"), root, symlinks=True)
    nobody.give(root)
    config = root / "config"
    os.chmod(config, 0o000)
    try:
        done = nobody.run("--root", str(root), "--store", str(nobody.home / "store"), "pack")
        assert done.returncode == 3, done.stderr
        assert f"{config}/config.json: cannot read: Permission denied" in done.stderr
        done = nobody.run("--root", str(root), "--store", str(nobody.home / "store"), "list")
        assert done.returncode == 0, done.stderr
        assert "using default settings" in done.stderr
    finally:
        os.chmod(config, 0o755)
    (config / "config.json").rename(config / "real.json")
    (config / "config.json").symlink_to("/nonexistent/poppo/config.json")
    done = nobody.run("--root", str(root), "--store", str(nobody.home / "store"), "pack")
    assert done.returncode == 3, done.stderr
    assert "a symbolic link to /nonexistent/poppo/config.json, which does not exist" \
        in done.stderr
    (config / "config.json").unlink()
    (config / "config.json").symlink_to("config.json")
    done = nobody.run("--root", str(root), "--store", str(nobody.home / "store"), "pack")
    assert done.returncode == 3 and "Traceback" not in done.stderr, done.stderr
    assert not (nobody.home / "store").exists() or not os.listdir(nobody.home / "store")


def test_a_small_file_of_poppoarc_is_read_without_allocating_its_limit(tmp_path):
    """The journal's limit is 64 MiB: reading a 300-byte journal allocated 64 MiB, and
    under `ulimit -v` a restore or verify died with MemoryError (exit 70)."""
    import resource
    path = tmp_path / "record.json"
    path.write_bytes(b"x" * 300)
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    child = subprocess.run(
        [sys.executable, "-c",
         "import resource, sys; from poppoarc import fs;"
         "resource.setrlimit(resource.RLIMIT_AS, (1 << 30, resource.getrlimit("
         "resource.RLIMIT_AS)[1]));"
         f"sys.exit(0 if len(fs.read_small_file({str(path)!r}, 8 << 30)) == 300 else 1)"],
        capture_output=True, text=True)
    assert child.returncode == 0, child.stderr
    assert (soft, hard) == resource.getrlimit(resource.RLIMIT_AS)
    assert fs.read_small_file(path, 300) == b"x" * 300
    with pytest.raises(ValueError):
        fs.read_small_file(path, 299)


def test_a_live_database_this_user_cannot_read_is_unreadable_not_foreign(
        nobody, installation_template):
    """Restoring a database after a permission mishap (a root-owned 0600 copy in the
    user's data/): it was refused as "a file or symlink no restored target owns; move it
    aside", even with --skip-backup.  It is the database target's, unreadable: the plan
    says so, the safety archive's refusal names it, --skip-backup replaces it."""
    root, store, archive = nobody.packed(installation_template("tiny"))
    database = root / "data/security.db"
    os.chown(database, 0, 0)
    os.chmod(database, 0o600)
    base = ("--root", str(root), "--store", str(store), "unpack", archive, "--targets",
            "database")
    done = nobody.run(*base, "--dry-run", "--json")
    plan = json.loads(done.stdout)["plan"]
    assert plan["unreadable"] == ["data/security.db"] and plan["foreign"] == [], plan
    done = nobody.run(*base)
    assert done.returncode == 30, done.stderr
    assert "cannot be read by this user" in done.stderr and "security.db" in done.stderr
    assert os.stat(database).st_uid == 0            # nothing changed
    done = nobody.run(*base, "--skip-backup")
    assert done.returncode in (0, 1), done.stderr
    assert os.stat(database).st_uid != 0
    with sqlite3.connect(database) as conn:
        assert conn.execute("PRAGMA quick_check").fetchall() == [("ok",)]
