"""What a killed command leaves (a temporary archive, the database snapshot copies, a
verify's database copies, a replaced record's temporary) is removed by the next command
that takes the installation lock, and only when its process is gone (issue 24, 5)."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from poppoarc.fs import host_tag, owner_tag
from poppoarc.store import leftovers

from tests.helpers import run_poppoarc

DEAD_PID = 2**22 + 12345          # above pid_max on common systems: never running


def _big_database(path, megabytes):
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE blobs (data BLOB)")
    for _ in range(megabytes):
        conn.execute("INSERT INTO blobs VALUES (randomblob(1048576))")
    conn.commit()
    conn.close()


def _kill_when(command, env, ready, timeout=60):
    """Start ``command``, SIGKILL it as soon as ``ready()`` is true; False if it ended first."""
    child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and child.poll() is None:
            if ready():
                child.send_signal(signal.SIGKILL)
                return True
            time.sleep(0.002)
        return False
    finally:
        child.kill()
        child.wait()


def _snapshot_dirs(where):
    return [p for p in where.iterdir() if p.name.startswith(leftovers.SNAPSHOT_PREFIX)]


def test_a_killed_pack_and_verify_leave_nothing_the_next_pack_keeps(installation, tmp_path):
    _big_database(installation / "data/big.db", 160)
    store, temp = tmp_path / "store", tmp_path / "tmp"
    temp.mkdir()
    env = {**os.environ, "TMPDIR": str(temp), "POPPOARC_PROGRESS": "none"}
    done = run_poppoarc("--root", str(installation), "--store", str(store), "pack", "--json",
                        env=env)
    assert done.returncode in (0, 1), done.stderr
    archive = json.loads(done.stdout)["id"]
    pack = [sys.executable, "-m", "poppoarc", "--root", str(installation), "--store", str(store),
            "pack", "-q"]

    def copying():      # the snapshot copy of the large database is being written
        return any(any(d.iterdir()) for d in _snapshot_dirs(store))

    assert _kill_when(pack, env, copying), "the pack ended before its snapshot copy was seen"
    first = _snapshot_dirs(store)
    assert len(first) == 1 and any(first[0].iterdir()), "it holds a copy of the database"
    # a second pack killed likewise: it removed the first one's copies when it started
    assert _kill_when(pack, env, lambda: copying() and not first[0].exists())
    left = _snapshot_dirs(store) + [p for p in store.iterdir() if ".poppo.tar.zst.tmp-" in p.name]
    assert len(left) == 2 and first[0] not in left
    verify = [sys.executable, "-m", "poppoarc", "--root", str(installation), "--store",
              str(store), "verify", archive, "-q"]

    def checking():     # verify has copied a database out to check it
        return any(p.name.startswith(leftovers.VERIFY_PREFIX) and any(p.iterdir())
                   for p in temp.iterdir())

    assert _kill_when(verify, env, checking), "verify ended before its copies could be seen"
    left += [p for p in temp.iterdir() if p.name.startswith(leftovers.VERIFY_PREFIX)]
    assert len(left) == 3
    # doctor names them all as stale, and removes nothing
    report = json.loads(run_poppoarc("--root", str(installation), "--store", str(store),
                                     "doctor", "--json", env=env).stdout)
    temps_check = next(c for c in report["checks"] if c["id"] == "temps")
    assert temps_check["status"] == "warn"
    assert set(temps_check["details"]) == {str(p) for p in left}
    assert "the next pack, restore or prune removes them" in temps_check["fix"]
    assert all(p.exists() for p in left)

    done = run_poppoarc("--root", str(installation), "--store", str(store), "pack", "--json",
                        "--targets", "state", env=env)
    assert done.returncode in (0, 1), done.stderr
    assert set(json.loads(done.stdout)["cleaned"]) == {str(p) for p in left}
    assert not any(p.exists() for p in left)
    report = json.loads(run_poppoarc("--root", str(installation), "--store", str(store),
                                     "doctor", "--json", env=env).stdout)
    assert next(c for c in report["checks"] if c["id"] == "temps")["status"] == "ok"


@pytest.mark.parametrize("command", [("unpack", "LATEST"), ("prune",)])
def test_restore_and_prune_remove_leftovers_too(cli, command):
    archive = cli.pack()["id"]
    snap = cli.store / f"{leftovers.SNAPSHOT_PREFIX}{DEAD_PID}-1-h{host_tag()}-abcdef"
    snap.mkdir()
    (snap / "1.db").write_bytes(b"a copy of a database")
    legacy = cli.store / f"{leftovers.SNAPSHOT_PREFIX}k2j4h5"     # before owners were named
    legacy.mkdir()
    recent = cli.store / f"{leftovers.SNAPSHOT_PREFIX}a7b8c9"     # (an older poppoarc's, now)
    recent.mkdir()
    an_hour_ago = time.time() - leftovers.UNOWNED_AFTER - 1
    os.utime(legacy, (an_hour_ago, an_hour_ago))
    record = cli.store / f".poppoarc-verified.json.{DEAD_PID}-7-h{host_tag()}-x1y2.tmp"
    record.write_text("{}")
    mine = cli.store / f"{leftovers.SNAPSHOT_PREFIX}{owner_tag()}-live"   # a running process's
    mine.mkdir()
    args = [archive if a == "LATEST" else a for a in command]
    code, document = cli.json(*args)
    assert code in (0, 1), document
    assert set(document["cleaned"]) == {str(snap), str(legacy), str(record)}
    assert not snap.exists() and not legacy.exists() and not record.exists()
    assert mine.exists() and recent.exists()


def test_a_dry_run_removes_nothing(cli):
    archive = cli.pack()["id"]
    snap = cli.store / f"{leftovers.SNAPSHOT_PREFIX}{DEAD_PID}-1-h{host_tag()}-abcdef"
    snap.mkdir()
    code, document = cli.json("unpack", archive, "--dry-run")
    assert code in (0, 1) and document["cleaned"] == [] and snap.exists()
    code, document = cli.json("prune", "--dry-run")
    assert code in (0, 1) and document["cleaned"] == [] and snap.exists()


def test_names_carry_their_owner():
    kind, pid, start, host = leftovers.classify(f"{leftovers.SNAPSHOT_PREFIX}{owner_tag()}-x")
    assert (kind, pid, host) == ("snapshot", os.getpid(), host_tag())
    assert not leftovers.owner_gone(pid, start, host)
    dead = f".a.poppo.tar.zst.tmp-{DEAD_PID}-5-h{host_tag()}"
    assert leftovers.classify(dead) == ("archive", DEAD_PID, 5, host_tag())
    assert leftovers.owner_gone(*leftovers.classify(dead)[1:])
    assert leftovers.classify("poppoarc-verify-1-2-abc")[:3] == ("verify", 1, 2)
    assert leftovers.classify(".poppoarc-schedule.json.5-6-abc.tmp")[0] == "record"
    assert leftovers.classify(".poppoarc-schedule.json.5-6-h0123abcd-x.tmp")[3] == "0123abcd"
    assert leftovers.classify("backup-x.poppo.tar.zst") is None


def _age(path, seconds):
    then = time.time() - seconds
    os.utime(path, (then, then), follow_symlinks=False)


def test_another_hosts_work_in_a_shared_store_is_left_alone(cli):
    """F19: a pack here removed the temporary archive and the snapshot copies a pack on
    another machine sharing the store was writing (its pid does not exist here).  Now
    another host's names are judged by age, never by this host's /proc, and names without
    a host (older poppoarc, maybe another machine's) by the hour of no change."""
    other = "h" + ("0" * 8 if host_tag() != "0" * 8 else "1" * 8)
    temp = cli.store / f".backup-2026-12-07T18-25-00-000Z-other1.poppo.tar.zst.tmp-{DEAD_PID}"
    cli.store.mkdir(parents=True, exist_ok=True)
    temp.write_text("x")                                           # the reproduction's names
    snap = cli.store / f"{leftovers.SNAPSHOT_PREFIX}{DEAD_PID}-123-abc"
    snap.mkdir()
    busy = cli.store / f".backup-x.poppo.tar.zst.tmp-{DEAD_PID}-9-{other}"   # host B, now
    busy.write_text("x")
    b_snap = cli.store / f"{leftovers.SNAPSHOT_PREFIX}{DEAD_PID}-9-{other}-k2j4h5"
    b_snap.mkdir()
    (b_snap / "1.db").write_bytes(b"copy")
    _age(b_snap, 3 * leftovers.UNOWNED_AFTER)      # the directory is old, its copy is not
    quiet = cli.store / f"{leftovers.SNAPSHOT_PREFIX}{DEAD_PID}-9-{other}-q9w8e7"
    quiet.mkdir()                                  # B crashed a day and more ago
    _age(quiet, leftovers.OTHER_HOST_AFTER + 60)
    document = cli.pack()
    assert str(quiet) in document["cleaned"]
    assert not {str(p) for p in (temp, snap, busy, b_snap)} & set(document["cleaned"])
    assert temp.exists() and snap.exists() and busy.exists() and b_snap.exists()
    assert not quiet.exists()
    for path in (temp, snap):                      # no host: an hour without a change
        _age(path, leftovers.UNOWNED_AFTER + 60)
    cli.pack()
    assert not temp.exists() and not snap.exists() and busy.exists() and b_snap.exists()
