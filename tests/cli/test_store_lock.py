"""One writer of a local store at a time: pack, prune, consolidate and copy lock
``STORE/.poppoarc-store.lock`` (lock.StoreLock).  copy knows nothing of the installation
that owns the destination, so before this lock two copies into one store, or a copy and
that store's own pack or prune, could interleave (a failed copy deleting what the other
had just committed; a prune deleting an ancestor a copy had counted as present)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from poppoarc.lock import STORE_LOCK_NAME, StoreLock
from tests.helpers import CLI

SUFFIX = ".poppo.tar.zst"

HOLD = """\
import sys, time
from poppoarc.lock import StoreLock
with StoreLock(sys.argv[1], "a test holding it"):
    print("held", flush=True)
    sys.stdin.read()
"""


class _Holder:
    """Another process holding the store's lock until the block ends."""

    def __init__(self, store: Path):
        self.store = store

    def __enter__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", HOLD, str(self.store)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "held"
        return self.proc

    def __exit__(self, *exc_info):
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def _listing(store: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in store.iterdir() if p.name != STORE_LOCK_NAME}


def test_a_copy_into_a_store_another_process_writes_is_refused_and_writes_nothing(cli, tmp_path):
    first = cli.pack("--full")
    other = tmp_path / "other"
    code, _, err = cli("copy", first["id"], "--to", str(other))
    assert code == 0, err
    assert (other / STORE_LOCK_NAME).exists()          # left behind, empty, like the root's
    assert (other / STORE_LOCK_NAME).stat().st_size == 0
    second = cli.pack("--full")
    before = _listing(other)
    with _Holder(other) as holder:
        code, out, err = cli("copy", second["id"], "--to", str(other))
    assert code == 6, err
    assert err.count("\n") == 1 and "the store is locked by pid" in err and "(a test holding it)" in err
    assert str(holder.pid) in err and str(other / STORE_LOCK_NAME) in err
    assert _listing(other) == before                    # nothing written, nothing swept
    # the lock file is no archive: list, verify and doctor of that store do not see it
    code, _, err = cli("copy", second["id"], "--to", str(other))
    assert code == 0, err
    assert sorted(p.name for p in other.glob("*" + SUFFIX)) == sorted(
        a["id"] + SUFFIX for a in (first, second))
    there = CLI(cli.root, other, cli.capsys)
    code, listed = there.json("list")
    assert code == 0 and sorted(row["id"] for row in listed["archives"]) == sorted(
        (first["id"], second["id"]))
    code, _, err = there("verify", "--all")
    assert code == 0, err
    code, report = there.json("doctor")
    assert not [c for c in report["checks"] if c["status"] == "fail"], report


@pytest.mark.parametrize("command", ["pack", "prune", "consolidate"])
def test_the_stores_own_writers_wait_for_a_copy_into_it(cli, installation, command):
    cli.pack("--full")
    newest = cli.pack("--incremental")
    args = {"pack": ["pack"], "prune": ["prune"],
            "consolidate": ["consolidate", newest["id"]]}[command]
    archives = sorted(p.name for p in cli.store.iterdir() if p.name.endswith(SUFFIX))
    with _Holder(cli.store):
        code, _, err = cli(*args)
    assert code == 6, err
    assert "the store is locked by pid" in err
    assert sorted(p.name for p in cli.store.iterdir() if p.name.endswith(SUFFIX)) == archives
    assert not [p for p in cli.store.iterdir() if ".tmp-" in p.name]


def test_a_refused_copy_into_a_new_store_leaves_no_store_behind(cli, tmp_path):
    cli.pack("--full")
    newest = cli.pack("--incremental")
    nowhere = tmp_path / "new-store"
    code, _, err = cli("copy", newest["id"], "--to", str(nowhere), "--no-ancestors")
    assert code == 17, err
    assert not nowhere.exists()


def test_the_lock_is_reentrant_within_a_process_and_none_locks_nothing(tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    with StoreLock(store, "outer"), StoreLock(store, "inner"):
        assert "outer" in (store / STORE_LOCK_NAME).read_text()
    assert (store / STORE_LOCK_NAME).read_text() == ""
    with StoreLock(None, "a bucket"):
        pass
    assert not os.path.exists(tmp_path / "absent")
    with StoreLock(tmp_path / "absent", "nothing to keep apart"):
        assert not os.path.exists(tmp_path / "absent")


def test_a_lock_file_that_is_a_symbolic_link_is_never_written_through(cli, tmp_path):
    """ROOT/.poppoarc.lock and STORE/.poppoarc-store.lock were opened O_RDWR|O_CREAT
    following symbolic links, then truncated for the holder's pid: a link planted by
    whoever can write the installation or the store made a root-run pack truncate its
    target (/etc/shadow).  Now exit 22 naming the lock, the target untouched."""
    cli.pack()
    victim = tmp_path / "victim"
    for lock in (cli.root / ".poppoarc.lock", cli.store / STORE_LOCK_NAME):
        victim.write_text("precious\n")
        saved = lock.read_bytes()
        lock.unlink()
        lock.symlink_to(victim)
        code, _, err = cli("pack")
        assert code == 22, err
        assert "symbolic link" in err and str(lock) in err
        assert victim.read_text() == "precious\n"
        lock.unlink()
        lock.write_bytes(saved)


def test_a_store_lock_another_user_made_still_locks_for_this_one(nobody, installation_template):
    """root packed into the service user's store once: its lock file is root's.  The
    user's next pack still locks it (read-only descriptor, flock), and is not refused."""
    root, store, _ = nobody.packed(installation_template("tiny"))
    lock = store / STORE_LOCK_NAME
    lock.unlink()
    with StoreLock(store, "root's pack"):       # made by root, as root's pack makes it
        pass
    assert lock.stat().st_mode & 0o777 == 0o644
    assert lock.stat().st_uid == os.geteuid()
    done = nobody.run("--root", str(root), "--store", str(store), "pack", "--json")
    assert done.returncode in (0, 1), done.stderr
    assert json.loads(done.stdout)["id"]


def test_prune_frees_a_full_store(cli, small_fs):
    """prune is what an operator runs on a full store: the store's lock must not need the
    byte of room its holder's note takes (it is taken without the note then)."""
    where = small_fs(2048)
    there = CLI(cli.root, where, cli.capsys)
    old = there.pack("--full", "--no-prune")
    there.pack("--full", "--no-prune")
    (where / STORE_LOCK_NAME).unlink()          # made again on the full disk
    fd = os.open(where / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while os.write(fd, b"\0" * 65536):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    config = cli.root / "config/config.json"
    document = json.loads(config.read_text())
    document.setdefault("backup", {})["maxBackups"] = 1
    config.write_text(json.dumps(document))
    code, out, err = there("prune")
    assert code in (0, 1), err
    assert not (where / f"{old['id']}{SUFFIX}").exists()


def test_copy_to_an_empty_destination_is_a_usage_error(cli, tmp_path, monkeypatch):
    """copy ID --to '' opened the store '' (the current directory) and copied the archive
    there, exit 0."""
    archive = cli.pack()
    here = tmp_path / "cwd"
    here.mkdir()
    monkeypatch.chdir(here)
    for empty in ("", " "):
        code, _, err = cli("copy", archive["id"], "--to", empty)
        assert code == 2 and "--to needs a store" in err
    assert list(here.iterdir()) == []


def test_a_bad_thread_count_names_its_variable(cli, monkeypatch):
    """POPPOARC_THREADS=abc was 'POPPOARC_PARALLEL: invalid literal for int() ...'."""
    monkeypatch.setenv("POPPOARC_THREADS", "abc")
    code, _, err = cli("list")
    assert code == 3 and err.strip().endswith("POPPOARC_THREADS='abc': not a whole number of threads")


def test_a_store_on_a_file_system_without_flock_is_written_unlocked(cli, monkeypatch):
    """Some network and FUSE mounts answer flock with ENOLCK or EOPNOTSUPP: that was an
    unexpected exception (exit 70) wherever a lock was taken.  A store there is written
    as before the store's lock existed; an installation there is exit 22 naming it."""
    import errno
    import fcntl

    real = fcntl.flock
    cli.pack()

    def flock(fd, operation):
        if os.readlink(f"/proc/self/fd/{fd}").endswith(STORE_LOCK_NAME):
            raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))
        return real(fd, operation)

    monkeypatch.setattr(fcntl, "flock", flock)
    code, _, err = cli("pack")
    assert code in (0, 1), err

    def no_locks(fd, operation):
        raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    code, _, err = cli("pack")
    assert code == 22 and "cannot lock" in err and ".poppoarc.lock" in err, err


def test_dry_runs_take_no_store_lock(cli):
    """prune --dry-run and consolidate --dry-run write nothing: a store this user may only
    read (no lock file in it, none can be made) must not stop them, nor a writer holding
    the store."""
    cli.pack("--full")
    newest = cli.pack("--incremental")
    (cli.store / STORE_LOCK_NAME).unlink()
    with _Holder(cli.store):
        for args in (("prune", "--dry-run"), ("consolidate", newest["id"], "--dry-run")):
            code, _, err = cli(*args)
            assert code in (0, 1), (args, err)
