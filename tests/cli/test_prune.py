"""prune: the retention policy applied to a real store, through the CLI and the library."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from poppoarc.config import resolve
from poppoarc.archives.pruning import prune
from poppoarc.store.local import SUFFIX, LocalStore

from tests.helpers.craft import craft, entry

NOW = datetime.now(timezone.utc).replace(microsecond=0)


def configure(root: Path, **backup) -> None:
    (root / "config/config.json").write_text(json.dumps({"backup": backup}))


def archives(store: Path) -> list[str]:
    return sorted(p.name[:-len(SUFFIX)] for p in store.glob("*" + SUFFIX))


def make(store: Path, key_dir: Path, days_ago: float, **manifest) -> str:
    path = craft(store, key_dir, [entry("state/x.json", data=b"{}")],
                 now=NOW - timedelta(days=days_ago), **manifest)
    return path.name[:-len(SUFFIX)]


def test_dry_run_deletes_nothing_and_prune_deletes_what_it_showed(cli, installation):
    configure(installation, maxBackups=2)
    ids = [cli.pack("--no-prune")["id"] for _ in range(4)]
    before = archives(cli.store)
    code, plan = cli.json("prune", "--dry-run")
    assert code == 0 and plan["dry_run"] and plan["deleted"] == []
    assert plan["would_delete"] == [ids[1], ids[0]]
    assert archives(cli.store) == before
    code, out, _ = cli("prune", "--dry-run")
    assert "Would delete 2 archives" in out and "number 3 by age, maxBackups 2" in out
    code, done = cli.json("prune")
    assert code == 0 and done["deleted"] == plan["would_delete"]
    assert archives(cli.store) == sorted(ids[2:])
    assert done["freed"] > 0 and list(done["verified"]) == [ids[3]]


def test_ages_pre_restore_and_incremental_chains(installation, tmp_path, key_home):
    store = tmp_path / "store"
    old_full = make(store, key_home, 60)
    inc1 = make(store, key_home, 50, incremental=True, parent={"id": old_full, "manifest_sha256": "0" * 64})
    inc2 = make(store, key_home, 2, incremental=True, parent={"id": inc1, "manifest_sha256": "0" * 64})
    stale = make(store, key_home, 45)
    pre_old = make(store, key_home, 40, type="pre-restore")
    pre_new = make(store, key_home, 1, type="pre-restore")
    recent = make(store, key_home, 0.5)
    configure(installation, retention=30, keep={"preRestore": {"last": 1, "days": 7}})
    settings_ = resolve(str(installation), store=str(store))
    result = prune(settings_, dry_run=True)
    decisions = {d.id: d for d in result.decisions}
    # inc2 is young, so it keeps its whole chain; the stale full goes, as does an old pre-restore
    assert {d.id for d in result.to_delete} == {stale, pre_old}
    assert "parent of" in decisions[inc1].reason and "parent of" in decisions[old_full].reason
    assert decisions[recent].rules == ("base", "newest-full")
    assert not decisions[pre_new].delete
    result = prune(settings_)
    assert set(result.deleted) == {stale, pre_old}
    assert archives(store) == sorted([old_full, inc1, inc2, pre_new, recent])


def test_the_newest_full_is_verified_before_anything_is_deleted(cli, installation):
    configure(installation, maxBackups=1)
    ids = [cli.pack("--no-prune")["id"] for _ in range(3)]
    newest = cli.store / (ids[2] + SUFFIX)
    data = bytearray(newest.read_bytes())
    data[-100] ^= 0xFF                   # the body, not the head: list still calls it ok
    newest.write_bytes(bytes(data))
    code, result = cli.json("prune")
    assert code == 1
    assert result["verified"][ids[2]] and result["verified"][ids[1]] is None
    # the damaged newest is kept (keep.damaged defaults to true); the next one is the good full
    assert result["deleted"] == [ids[0]]
    assert any("fails verification" in w for w in result["warnings"])
    assert archives(cli.store) == sorted(ids[1:])


def test_damaged_archives_are_reported_and_deleted_only_when_asked(cli, installation):
    configure(installation, maxBackups=1)
    cli.pack()
    broken = cli.store / ("backup-2020-01-01T00-00-00-000Z-broken" + SUFFIX)
    broken.write_bytes(b"not an archive")
    code, out, err = cli("prune")
    assert code == 1 and broken.exists() and "damaged" in err
    configure(installation, maxBackups=1, keep={"damaged": False})
    code, result = cli.json("prune")
    assert result["deleted"] == [broken.name[:-len(SUFFIX)]] and not broken.exists()


def test_prune_takes_the_installation_lock(cli, installation):
    configure(installation, maxBackups=1)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import time; from poppoarc.lock import InstallationLock\n"
        f"with InstallationLock({str(installation)!r}, 'test'):\n"
        "    print('locked', flush=True); time.sleep(30)\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        code, _, err = cli("prune")
        assert code == 6 and f"pid {holder.pid}" in err
    finally:
        holder.kill()
        holder.wait()


def test_store_delete_refuses_anything_but_its_own_archives(tmp_path):
    store = LocalStore(tmp_path / "store")
    store.ensure()
    outside = tmp_path / ("x" + SUFFIX)
    outside.write_bytes(b"x")
    for path in (outside, store.path / "notes.txt", store.path / (".hidden" + SUFFIX)):
        path.write_bytes(b"x")
        try:
            store.delete(path)
        except Exception as exc:        # noqa: BLE001 - the type is checked below
            assert type(exc).__name__ == "StoreError"
        else:
            raise AssertionError(f"deleted {path}")
        assert path.exists()


# -- property: dry-run is exactly the plan, and deletes nothing -----------------------

AGES = [0, 0.2, 1, 1.5, 3, 8, 9, 15, 33, 40, 70, 200]


@settings(max_examples=40, deadline=None)
@given(max_backups=st.one_of(st.none(), st.integers(1, 8)),
       retention=st.one_of(st.none(), st.integers(1, 90)),
       keep=st.fixed_dictionaries({}, optional={"daily": st.integers(0, 5),
                                                "weekly": st.integers(0, 3),
                                                "monthly": st.integers(0, 3)}),
       incremental=st.lists(st.booleans(), min_size=len(AGES), max_size=len(AGES)))
def test_dry_run_then_prune_on_real_stores(installation_template, max_backups, retention, keep,
                                           incremental):
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        root, store, keys = work / "inst", work / "store", work / "keys"
        shutil.copytree(installation_template("tiny"), root, symlinks=True)
        ids, previous = [], None
        for age, inc in zip(reversed(AGES), incremental):       # oldest first
            parent = {"id": previous, "manifest_sha256": "0" * 64} if inc and previous else None
            previous = make(store, keys, age, incremental=parent is not None, parent=parent)
            ids.append(previous)
        backup = {"signing": {"keyDir": str(keys)}, "keep": keep}
        if max_backups:
            backup["maxBackups"] = max_backups
        if retention:
            backup["retention"] = retention
        configure(root, **backup)
        settings_ = resolve(str(root), store=str(store))
        before = {p.name: p.stat().st_mtime_ns for p in store.iterdir() if p.name != ".poppoarc-store.lock"}
        plan = prune(settings_, dry_run=True)
        assert {p.name: p.stat().st_mtime_ns for p in store.iterdir()
                if p.name != ".poppoarc-store.lock"} == before
        done = prune(settings_)
        assert sorted(done.deleted) == sorted(d.id for d in plan.to_delete)
        left = set(archives(store))
        assert left == set(ids) - set(done.deleted) and left
        chain = {d.id: d.archive.parent for d in plan.decisions}
        for kept in left:
            assert chain[kept] is None or chain[kept] in left
