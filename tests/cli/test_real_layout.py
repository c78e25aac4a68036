"""A real installation (issue 26): the upstream layout, its shipped config, its databases."""

import os
import shutil
import sqlite3

import pytest

from poppoarc.demo.real_layout import DATABASES, make_real_layout
from poppoarc.restore import trash
from tests.helpers import CLI, run_poppoarc


@pytest.fixture(scope="session")
def real_template(tmp_path_factory):
    root = tmp_path_factory.mktemp("real") / "inst"
    make_real_layout(root)
    return root


@pytest.fixture
def real(real_template, tmp_path):
    root = tmp_path / "inst"
    shutil.copytree(real_template, root, symlinks=True)
    return root


def header_modes(path) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(20)[18:20]


def test_restored_databases_keep_their_journal_mode(real, tmp_path, capsys, monkeypatch):
    """WAL stays WAL and a rollback journal stays one, through a full archive, an
    incremental (page deltas) and a restore over the live tree, with no sidecar left."""
    monkeypatch.setenv("POPPOARC_HOME", str(tmp_path / "keys"))
    (real / "config" / "config.json").write_text('{"backup": {}}\n')   # the modern defaults
    live = {rel: header_modes(real / rel) for rel in DATABASES}
    assert live == {"data/poppobuilder.db": b"\2\2", "data/metrics.db": b"\1\1",
                    "data/audit.db": b"\2\2"}
    cli = CLI(real, tmp_path / "store", capsys)
    full = cli.pack("--full")
    with sqlite3.connect(real / "data" / "poppobuilder.db") as db:
        db.execute("INSERT INTO archive_history (archive_file, records_count) VALUES ('x', 1)")
    incremental = cli.pack("--incremental")
    assert incremental["parent"] == full["id"]
    for archive in (full["id"], incremental["id"]):
        assert cli("verify", archive)[0] == 0
        empty = tmp_path / f"empty-{archive}"
        empty.mkdir()
        code, out, err = CLI(empty, tmp_path / "store", capsys)("unpack", archive, "--skip-backup")
        assert code in (0, 1), err
        assert {rel: header_modes(empty / rel) for rel in DATABASES} == live
        assert not [n for n in os.listdir(empty / "data") if n.endswith(("-wal", "-shm"))]
        with sqlite3.connect(empty / "data" / "poppobuilder.db") as db:
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    code, out, err = cli("unpack", full["id"])                # over the live tree
    assert code in (0, 1), err
    assert {rel: header_modes(real / rel) for rel in DATABASES} == live


def test_config_upgrade_writes_only_the_backup_section(real, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("POPPOARC_HOME", str(tmp_path / "keys"))
    path = real / "config" / "config.json"
    os.chmod(path, 0o640)
    before = path.read_text()
    cli = CLI(real, tmp_path / "store", capsys)
    code, out, err = cli("config", "--upgrade")
    assert code == 1 and path.read_text() == before                  # printed only
    assert '"backup": {' in out and "backupPath → storage.path" in out
    assert "'uploads': names no target" in err and "warning: " + str(path) not in err
    code, out, err = cli("config", "--upgrade", "--write")
    after = path.read_text()
    assert code == 1 and "Wrote the backup section" in out
    assert (path.stat().st_mode & 0o777) == 0o640
    # every byte outside the sections is kept: the text before the first one, between
    # them (the earlier, ignored one is gone) and after the last one
    first, last = before.index('  "backup": {'), before.rindex('  "backup": {')
    assert after.startswith(before[:first]) and '"redis"' in after
    assert after.endswith(before[before.index('  "disasterRecovery"') - 4:])
    assert before[before.index('  "redis"'):last] in after
    code, out, err = cli("doctor")
    assert "PoppoBuilder ships" not in out              # no legacy key left
    code, out, err = cli("config", "--upgrade")
    assert code == 0 and "nothing to change" in out
    assert not list(path.parent.glob("*.tmp"))


def test_pack_reads_the_shipped_config_with_one_notice(real, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("POPPOARC_HOME", str(tmp_path / "keys"))
    monkeypatch.setenv("POPPO_BACKUP_KEY", "real layout")
    cli = CLI(real, tmp_path / "store", capsys)
    code, out, err = cli("pack")
    assert code in (0, 1), err
    notices = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert len(notices) == 3, notices
    assert "read as the documented keys: backupPath → storage.path" in notices[0]
    assert "'uploads': names no target" in notices[1]
    assert "2 'backup' sections" in notices[2]
    code, out, err = cli("doctor")
    assert "12 legacy key(s) read as the documented ones" in out
    assert "- excludePatterns → exclude" in out


def restored_equals_source(source, restored, entries) -> None:
    """Every archived record is restored as it was (files by bytes, mode and mtime,
    databases by their rows), and the restored root holds nothing else."""
    import hashlib
    import stat

    def rows(path) -> list:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return list(db.iterdump())
        finally:
            db.close()

    wanted = {e["path"] for e in entries if not e.get("generated")}
    for record in entries:
        if record.get("generated"):
            continue
        rel = record["path"]
        live, back = source / rel, restored / rel
        st, rt = os.lstat(live), os.lstat(back)
        assert stat.S_IFMT(st.st_mode) == stat.S_IFMT(rt.st_mode), rel
        if record["type"] == "dir":
            continue
        if stat.S_ISLNK(st.st_mode):
            assert os.readlink(live) == os.readlink(back), rel
        elif record.get("sqlite"):
            assert rows(live) == rows(back), rel
        else:
            assert hashlib.sha256(live.read_bytes()).digest() == \
                hashlib.sha256(back.read_bytes()).digest(), rel
            assert (st.st_mode & 0o7777, st.st_mtime_ns) == (rt.st_mode & 0o7777, rt.st_mtime_ns), rel
    found = set()
    trash.sweep(restored, wait=True)   # a restore's old tree, deleted behind it
    for directory, dirs, files in os.walk(restored):
        for name in dirs + files:
            rel = os.path.relpath(os.path.join(directory, name), restored)
            if not rel.startswith(".poppoarc") and not rel.endswith(("-wal", "-shm")):
                found.add(rel)
    assert found == wanted


def test_shipped_config_packs_and_restores_whole_on_an_empty_root(real, tmp_path, capsys,
                                                                  monkeypatch):
    """Issue 26, acceptance 1: the real layout with the config PoppoBuilder ships (its
    legacy section: encryptionEnabled true, no key anywhere): pack exits 0 or 1 with the
    legacy-key notices and what the missing key makes it do (an identity created for it,
    every archive sealed to it alone until it is exported); verify; unpack into an empty
    root gives the identical tree, .env.production included, opened with that identity."""
    keys = tmp_path / "keys"
    monkeypatch.setenv("POPPOARC_HOME", str(keys))
    for variable in ("POPPO_BACKUP_KEY", "BACKUP_ENCRYPTION_KEY", "POPPO_BACKUP_IDENTITY"):
        monkeypatch.delenv(variable, raising=False)
    store = real / "backups"                    # backupPath: "./backups"
    cli = CLI(real, store, capsys)
    code, out, err = cli("pack")
    assert code in (0, 1), err
    lines = err.splitlines()
    assert len(lines) == 5, lines
    assert "the backup section has the shape PoppoBuilder ships" in lines[0]
    assert "backup.items: 'uploads': names no target" in lines[1]
    assert "2 'backup' sections" in lines[2]
    assert lines[3].startswith(f"poppoarc: created the encryption identity {keys}/encryption.key")
    assert "exists only on this machine (never exported)" in lines[4]
    assert "  encrypted: everything" in out
    archive = out.split()[1]
    assert cli("verify", archive)[0] == 0
    code, inspected = cli.json("inspect", archive, "--entries")
    entries = inspected["entries"]
    assert ".env.production" in {e["path"] for e in entries}
    assert {d["path"] for d in inspected["manifest"]["databases"]} == set(DATABASES)
    empty = tmp_path / "empty"
    empty.mkdir()
    code, out, err = CLI(empty, store, capsys)("unpack", archive)
    assert code in (0, 1), err
    restored_equals_source(real, empty, entries)
    assert (empty / ".env.production").read_bytes() == (real / ".env.production").read_bytes()


def test_a_wrong_root_is_refused_with_exit_20(real, tmp_path):
    """Issue 26, acceptance: the cron line of a real installation with a typo in POPPO_ROOT
    (a directory that does not exist), or its disk not mounted (the mount point, empty):
    pack, schedule and unpack exit 20 naming the root, and create nothing there; the real
    root packs."""
    env = {"POPPOARC_HOME": str(tmp_path / "keys"), "POPPO_BACKUP_KEY": "cron"}
    typo = tmp_path / "inst-typo"
    mount_point = tmp_path / "unmounted"
    mount_point.mkdir()
    for root in (typo, mount_point):
        for args in (["pack"], ["schedule", "--once"]):
            result = run_poppoarc(*args, env={**env, "POPPO_ROOT": str(root)})
            assert result.returncode == 20, (args, result.stderr)
            assert str(root) in result.stderr and "POPPO_ROOT" in result.stderr
            assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert not typo.exists() and os.listdir(mount_point) == []
    result = run_poppoarc("pack", env={**env, "POPPO_ROOT": str(real)})
    assert result.returncode in (0, 1), result.stderr
    archive = next((real / "backups").glob("*.poppo.tar.zst"))
    (mount_point / "Documents").mkdir()                         # someone's files: not a root
    result = run_poppoarc("--store", str(real / "backups"), "unpack", str(archive),
                          env={**env, "POPPO_ROOT": str(mount_point)})
    assert result.returncode == 20 and "--force" in result.stderr, result.stderr
    assert os.listdir(mount_point) == ["Documents"]
