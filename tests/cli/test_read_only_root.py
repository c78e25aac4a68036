"""F12: an installation on a read-only file system (a snapshot mounted ro, the usual way
to back up a consistent copy) can be packed and dry-run restored: the lock it cannot create
in the root is taken in the store, keyed by the root's device and inode, and a dry run
reads without one."""

import os
import shutil
import subprocess

import pytest

from poppoarc.lock import LOCK_NAME, ROOT_LOCK_PREFIX, InstallationLock


@pytest.fixture
def read_only_root(installation, tmp_path):
    """The installation copied onto a tmpfs, then remounted read-only (needs root)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "ro"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)],
                      capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        root = mount / "inst"
        shutil.copytree(installation, root, symlinks=True)
        (root / LOCK_NAME).unlink(missing_ok=True)
        yield mount, root
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def _remount_read_only(mount):
    subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)


def test_a_read_only_root_is_packed_under_a_lock_in_the_store(cli, read_only_root):
    mount, root = read_only_root
    _remount_read_only(mount)
    cli.root = root
    packed = cli.pack()
    assert packed["id"]
    st = os.stat(root)
    lock = cli.store / f"{ROOT_LOCK_PREFIX}{st.st_dev:x}-{st.st_ino}"
    assert lock.exists() and not (root / LOCK_NAME).exists()
    # the same root packed meanwhile into the same store: the store's lock is held
    with InstallationLock(root, "pack", fallback=cli.store):
        code, _, err = cli("pack")
    assert code == 6 and "installation is locked by pid" in err and str(lock) in err
    code, out, err = cli("unpack", packed["id"], "--dry-run")
    assert code in (0, 1) and "lock" not in err, err        # (1: warnings of the plan)


def test_a_lock_file_already_on_the_read_only_root_still_locks(cli, read_only_root):
    mount, root = read_only_root
    (root / LOCK_NAME).touch()
    _remount_read_only(mount)
    cli.root = root
    packed = cli.pack()
    assert not list(cli.store.glob(ROOT_LOCK_PREFIX + "*"))
    with InstallationLock(root, "pack"):           # held through a read-only descriptor
        assert cli("pack")[0] == 6
        code, _, err = cli("unpack", packed["id"], "--dry-run")     # a shared lock waits
    assert code == 6
    code, _, err = cli("unpack", packed["id"], "--dry-run")
    assert code in (0, 1) and "lock" not in err, err


def test_a_cleanly_stopped_installation_on_a_read_only_mount_keeps_its_databases(
        cli, read_only_root):
    """A stopped application leaves its WAL-mode databases checkpointed, with no -wal or
    -shm beside them; on a read-only mount SQLite cannot open such a file mode=ro (a WAL
    reader needs a -shm it cannot create), so every database was left out (exit 1). They
    are read immutable there (nothing can change them), and archived whole."""
    import sqlite3

    mount, root = read_only_root
    databases = []
    for wal in root.rglob("*-wal"):
        database = wal.with_name(wal.name[:-len("-wal")])
        connection = sqlite3.connect(database)
        connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
        connection.close()          # the last connection checkpoints, removes -wal/-shm
        assert not wal.exists()
        databases.append(database.relative_to(root).as_posix())
    assert databases, "the installation has no WAL-mode database in use"
    _remount_read_only(mount)
    cli.root = root
    code, packed = cli.json("pack", "--no-prune")
    assert code == 0, packed["warnings"]
    assert not packed.get("skipped")
    archived = cli.json("inspect", packed["id"])[1]["manifest"]["databases"]
    assert set(databases) <= {d["path"] for d in archived}
    code, out, err = cli("unpack", packed["id"], "--dry-run")
    assert code == 0 and "cannot be read" not in out + err, out + err
