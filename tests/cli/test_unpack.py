"""unpack: round trips, dry runs, partial restores, hooks, hostile archives."""

import json
import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from poppoarc.restore.plan import ADD, CHANGE, KEEP, REMOVE

from tests.helpers import db_rows, digest, is_database, vandalize
from tests.helpers.craft import craft, entry

def test_round_trip_restores_the_archived_tree_and_the_safety_archive_undoes_it(both_ways, cli, installation):
    packed = cli.pack()
    archived_rows = db_rows(installation / "data/poppo-history.db")
    cli.pack("--targets", "config")        # the later archive must not confuse the restore
    vandalize(installation)
    modified = digest(installation)
    code, result = cli.json("unpack", packed["id"])
    assert code in (0, 1), result
    assert result["outcome"] == "committed" and result["safety_archive"]

    # the tree equals the archived one: re-pack and compare the two indexes
    restored = digest(installation)
    # (before anything reads it: a reader of a WAL-mode database makes a fresh -wal)
    assert not (installation / "data/poppo-history.db-wal").exists(), "stale WAL left behind"
    assert db_rows(installation / "data/poppo-history.db") == archived_rows
    assert (installation / "state/locks").is_dir() and not (installation / "state/new-task.json").exists()
    assert not (installation / "config/extra.json").exists()
    assert not (installation / "logs/rogue.log.gz").exists()
    code, again = cli.json("unpack", packed["id"], "--dry-run")
    for target in again["plan"]["targets"]:
        # a sealed secret (.env) is paired with the live one (restore.plan.live_match):
        # unchanged, not "add" (as it was each time before)
        assert target["add"]["paths"] == 0 and target["remove"]["paths"] == 0, target
        # a restored database is unchanged too: compared by content (its snapshot, taken
        # as pack takes it, is the archived one byte for byte), not by its file
        assert target["change"]["paths"] == 0, target
    assert again["plan"]["databases"] and all(db["identical"] for db in again["plan"]["databases"])

    # the safety archive holds exactly the vandalized tree
    code, _ = cli.json("unpack", result["safety_archive"], "--skip-backup")
    after_undo = digest(installation)
    for rel, value in modified.items():
        if value[0] == "file" and not rel.endswith("-wal") and not is_database(installation / rel):
            assert after_undo.get(rel) == value, rel
    assert restored != after_undo


def test_dry_run_changes_nothing_and_predicts_the_real_run(cli, installation, tmp_path):
    packed = cli.pack()
    vandalize(installation)
    before = digest(installation)
    store_before = sorted(p.name for p in cli.store.iterdir())
    code, planned = cli.json("unpack", packed["id"], "--dry-run")
    assert code in (0, 1) and planned["dry_run"] and planned["outcome"] == "planned"
    assert digest(installation) == before
    assert sorted(p.name for p in cli.store.iterdir()) == store_before
    state = next(t for t in planned["plan"]["targets"] if t["target"] == "state")
    changes = {c["path"]: c["action"] for c in state["changes"]}
    assert changes["state/new-task.json"] == REMOVE
    assert changes["state/running-tasks.json"] == CHANGE
    assert changes["state/locks"] == ADD
    config = next(t for t in planned["plan"]["targets"] if t["target"] == "config")
    assert {c["path"]: c["action"] for c in config["changes"]}["config/defaults.json"] == ADD
    assert config[KEEP]["paths"] > 5
    code, real = cli.json("unpack", packed["id"])
    assert real["plan"]["targets"] == planned["plan"]["targets"]


def test_targets_state_changes_nothing_outside_state(both_ways, cli, installation):
    packed = cli.pack()
    vandalize(installation)
    outside = {k: v for k, v in digest(installation).items() if not k.startswith("state")}
    code, result = cli.json("unpack", packed["id"], "--targets", "state")
    assert code in (0, 1) and result["outcome"] == "committed"
    after = digest(installation)
    assert {k: v for k, v in after.items() if not k.startswith("state")} == outside
    assert not (installation / "state/new-task.json").exists()
    assert (installation / "state/locks").is_dir()


def test_restore_onto_an_empty_directory_is_a_migration(cli, installation, tmp_path, capsys):
    packed = cli.pack()
    from tests.helpers import CLI

    fresh = tmp_path / "new-machine"
    fresh.mkdir()
    other = CLI(fresh, cli.store, capsys)
    code, result = other.json("unpack", packed["path"])
    assert code in (0, 1) and result["safety_archive"] is None
    original = digest(installation)
    moved = digest(fresh)
    for rel, value in moved.items():
        if value[0] == "file" and not is_database(fresh / rel):
            assert original[rel] == value, rel
    assert db_rows(fresh / "data/poppo-history.db") == db_rows(installation / "data/poppo-history.db")
    # the secret comes back (sealed to this machine's identity, which opens it here);
    # certificates are recorded by reference only
    assert (fresh / ".env").read_bytes() == (installation / ".env").read_bytes()
    assert not (fresh / "certs").exists()


def test_failed_health_check_puts_the_old_tree_back(cli, installation):
    packed = cli.pack()
    vandalize(installation)
    config = json.loads((installation / "config/config.json").read_text())
    config["backup"]["restore"] = {"healthCheck": "test -f state/new-task.json"}
    (installation / "config/config.json").write_text(json.dumps(config))
    before = digest(installation)
    code, _, err = cli("unpack", packed["id"])
    assert code == 33 and "put back" in err
    assert digest(installation) == before


def test_before_restore_hook_failure_changes_nothing(cli, installation, tmp_path):
    packed = cli.pack()
    marker = tmp_path / "hook-ran"
    config = json.loads((installation / "config/config.json").read_text())
    config["backup"]["hooks"] = {"beforeRestore": f"touch {marker}; exit 7",
                                 "afterRestore": "exit 0"}
    (installation / "config/config.json").write_text(json.dumps(config))
    before = digest(installation)
    code, _, err = cli("unpack", packed["id"])
    assert code == 32 and "exited with 7" in err and marker.exists()
    assert digest(installation) == before


@pytest.mark.parametrize("safety", [True, False])
def test_what_the_before_restore_hook_writes_into_a_restored_target_is_replaced(
        cli, installation, safety):
    """An application stopping writes its last state; the restored target must still be the
    archive's, not a mix (the live paths are taken again after the hook)."""
    packed = cli.pack()
    config = json.loads((installation / "config/config.json").read_text())
    config["backup"]["hooks"] = {"beforeRestore": "echo '{\"stopped\": 1}' > state/on-stop.json"
                                                  " && touch logs/on-stop.log.gz"}
    (installation / "config/config.json").write_text(json.dumps(config))
    code, result = cli.json("unpack", packed["id"], "--targets", "state",
                            *(() if safety else ("--skip-backup",)))
    assert code in (0, 1) and result["outcome"] == "committed", result
    assert not (installation / "state/on-stop.json").exists()
    assert (installation / "logs/on-stop.log.gz").exists(), "logs was not restored: kept"
    assert (installation / "state/running-tasks.json").exists()
    if safety:      # what the restore dropped is in the safety archive
        code, listed = cli.json("inspect", result["safety_archive"], "--entries")
        assert "state/on-stop.json" in {e["path"] for e in listed["entries"]}


def test_a_live_path_the_walk_does_not_list_is_replaced_not_kept(cli, installation):
    """The staged tree keeps every live path the restore does not write.  A path the
    archive restores but the walk of the live tree skipped (here a FIFO where the archive
    has a file) must still count as restored, or it would be kept and collide."""
    packed = cli.pack()
    archived = (installation / "state/running-tasks.json").read_bytes()
    (installation / "state/running-tasks.json").unlink()
    os.mkfifo(installation / "state/running-tasks.json")
    code, result = cli.json("unpack", packed["id"], "--targets", "state")
    assert code in (0, 1) and result["outcome"] == "committed", result
    assert (installation / "state/running-tasks.json").read_bytes() == archived


def test_restore_into_a_partly_present_root_keeps_what_it_does_not_restore(
        cli, installation, tmp_path, capsys):
    """Restored paths are looked up in the live tree only where a directory exists:
    the live files of a restored directory that the archive lacks stay, the rest is
    written whole."""
    packed = cli.pack()
    from tests.helpers import CLI

    fresh = tmp_path / "half-machine"
    (fresh / "logs").mkdir(parents=True)
    (fresh / "logs" / "todays.log").write_text("kept")
    shutil.copy(installation / "config/config.json", fresh / "stray.json")
    other = CLI(fresh, cli.store, capsys)
    # neither empty nor an installation (none of config/config.json, .poppo/, state/,
    # data/): refused unless forced, nothing written
    code, refused = other.json("unpack", packed["path"], "--skip-backup")
    assert code == 20 and "--force" in refused["error"]["message"]
    assert sorted(os.listdir(fresh)) == ["logs", "stray.json"]
    code, result = other.json("unpack", packed["path"], "--skip-backup", "--force")
    assert code in (0, 1) and result["outcome"] == "committed", result
    assert (fresh / "stray.json").exists()
    assert (fresh / "config/config.json").read_bytes() == \
        (installation / "config/config.json").read_bytes()
    assert (fresh / "logs/todays.log").read_text() == "kept"     # no target claims it
    archived_logs = sorted(p.relative_to(installation) for p in installation.glob("logs/**/*.gz"))
    assert archived_logs and all((fresh / p).read_bytes() == (installation / p).read_bytes()
                                 for p in archived_logs)
    assert result["plan"]["top_level"] and "stray.json" not in result["plan"]["top_level"]


@pytest.mark.parametrize("spill_at", [None, 4])
def test_kept_and_dropped_live_paths_in_path_order(cli, installation, monkeypatch, spill_at):
    """The staged tree meets live paths in path order and the walk's in the same order:
    unclaimed names that sort between a directory and its contents ("archive-notes.txt",
    "archive.txt" between "archive" and "archive/...") are kept, paths of the restored
    target the archive lacks go, also when the walk waits on disk (spill_at)."""
    from poppoarc.snapshot import groups

    if spill_at:
        monkeypatch.setattr(groups, "SPILL_AT", spill_at)
    logs = installation / "logs"
    (logs / "archive").mkdir(exist_ok=True)
    archived = sorted(p.relative_to(installation) for p in logs.glob("**/*.gz"))
    packed = cli.pack()
    kept = {"logs/archive-notes.txt": "a", "logs/archive.txt": "b", "logs/archive/zz.log": "c",
            "logs/0.log": "d", "logs/~.log": "e"}
    for rel, text in kept.items():
        (installation / rel).write_text(text)
    for rel in ("logs/a.gz", "logs/archive/new.gz", "logs/archive-x.gz"):
        (installation / rel).write_bytes(b"not in the archive")
    code, result = cli.json("unpack", packed["id"], "--targets", "logs", "--skip-backup")
    assert code in (0, 1) and result["outcome"] == "committed", result
    for rel, text in kept.items():
        assert (installation / rel).read_text() == text, rel
    left = sorted(p.relative_to(installation) for p in logs.glob("**/*.gz"))
    assert left == archived


def test_hard_links_come_back_as_hard_links(both_ways, cli, installation):
    first = installation / "state/shared.json"
    first.write_text('{"shared": true}')
    os.link(first, installation / "state/shared-2.json")
    packed = cli.pack()
    (installation / "state/shared-2.json").unlink()
    first.write_text("changed since")
    code, result = cli.json("unpack", packed["id"], "--targets", "state")
    assert code in (0, 1) and result["outcome"] == "committed", result
    again = installation / "state/shared-2.json"
    assert first.read_text() == again.read_text() == '{"shared": true}'
    assert os.stat(first).st_ino == os.stat(again).st_ino


def test_insufficient_space_is_refused_up_front(cli, installation, monkeypatch):
    packed = cli.pack()
    before = digest(installation)
    from collections import namedtuple
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9, 1000))
    code, _, err = cli("unpack", packed["id"])
    assert code == 23 and "MB free" in err
    assert digest(installation) == before


def test_newer_archive_version_warns(cli, installation):
    packed = cli.pack()
    cfg = installation / ".poppo/config.json"
    cfg.write_text(cfg.read_text().replace('"version": "1.0.0"', '"version": "0.9.2"'))
    code, result = cli.json("unpack", packed["id"], "--dry-run")
    assert code == 1 and any("newer than the installed 0.9.2" in w for w in result["warnings"])


# -- hostile archives -----------------------------------------------------------

HOSTILE = {
    "symlink-absolute": [entry("state", "dir"), entry("state/link", "symlink", link="/etc")],
    "symlink-escape": [entry("state", "dir"), entry("state/link", "symlink", link="../../outside")],
    "write-through-symlink": [entry("state", "dir"), entry("state/d", "symlink", link="../config"),
                              entry("state/d/evil.json", data=b"x")],
    "hardlink-outside": [entry("state", "dir"), entry("state/h", "hardlink", b"x", link="../../etc/passwd")],
    "hardlink-later": [entry("state", "dir"), entry("state/h", "hardlink", b"x", link="state/z"),
                       entry("state/z", data=b"x")],
    "traversal": [entry("state", "dir"), entry("state/../../evil", data=b"x")],
    "absolute": [entry("/tmp/evil", data=b"x")],
    "duplicate": [entry("state", "dir"), entry("state/a", data=b"1"), entry("state/a", data=b"2")],
    "deep": [entry("state/" + "/".join(["d"] * 300), data=b"x")],
    "long-name": [entry("state", "dir"), entry("state/" + "n" * 300, data=b"x")],
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_index_is_rejected_and_nothing_is_written(case, cli, installation, key_home, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    cli.pack()
    before = digest(installation)
    path = craft(cli.store, key_home, HOSTILE[case])
    code, _, err = cli("unpack", str(path))
    assert code in (13, 31), (code, err)
    assert err.count("\n") == 1 and "Traceback" not in err
    assert digest(installation) == before
    assert list(outside.iterdir()) == []
    assert not [p for p in installation.iterdir() if p.name.startswith((".poppoarc-stage", ".poppoarc-old"))]
    assert not (installation / ".poppoarc-restore.json").exists()


def test_smuggled_member_and_bomb_are_rejected(cli, installation, key_home):
    from poppoarc.format import tarheader

    before = digest(installation)
    smuggled = tarheader.member_header("state/evil.sh", tarheader.REGULAR, mode=0o755, size=4) + b"evil" + bytes(508)
    path = craft(cli.store, key_home, [entry("state", "dir"), entry("state/a", data=b"1")],
                 extra_body=smuggled)
    code, _, err = cli("unpack", str(path))
    assert code == 13 and "after the last indexed member" in err
    # a member that inflates far past its declared size: 64 MiB of zeros after 1 byte
    bomb = craft(cli.store, key_home, [entry("state", "dir"), entry("state/a", data=b"1")],
                 extra_body=bytes(64 << 20))
    code, _, err = cli("unpack", str(bomb))
    assert code == 13
    assert digest(installation) == before


def test_a_signed_database_that_sqlite_cannot_read_is_not_restored(cli, installation, key_home,
                                                                   tmp_path):
    # Every digest matches and the archive is signed: only the restore's quick_check
    # can tell that the database inside is broken.
    source = tmp_path / "app.db"
    conn = sqlite3.connect(source)
    conn.executescript("CREATE TABLE t(a); INSERT INTO t SELECT randomblob(900) "
                       "FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c "
                       "WHERE x < 40) SELECT x FROM c);")
    conn.close()
    damaged = bytearray(source.read_bytes())
    damaged[4096:4096 + 16] = b"\x0d" + b"\xff" * 15       # page 2: a leaf with nonsense cells
    record, data = entry("state/app.db", data=bytes(damaged), target="database")
    record.sqlite = True
    listed = {"path": record.path, "size": record.size, "sha256": record.sha256,
              "page_size": 4096, "user_version": 0, "tables": {"t": 40}, "check": "quick_check"}
    path = craft(cli.store, key_home, [entry("state", "dir"), (record, data)], databases=[listed])
    before = digest(installation)
    code, _, err = cli("unpack", str(path), "--skip-backup")
    assert code == 13 and "state/app.db" in err and "quick_check" in err, err
    assert digest(installation) == before
    assert not [p for p in installation.iterdir() if p.name.startswith(".poppoarc-stag")]


def test_a_disk_that_fills_while_staging_leaves_the_tree_alone(cli, installation, monkeypatch):
    """The staged tree is written on its own thread (write-behind): a failure there still
    ends the restore with one line and an exit code, the live tree untouched, no staging."""
    import errno

    from poppoarc.restore import stage

    packed = cli.pack()
    before = digest(installation)
    writes = {"n": 0}
    real_write = os.write

    def filling_write(fd, data):
        writes["n"] += 1
        if writes["n"] > 40:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(stage.os, "write", filling_write)
    code, _, err = cli("unpack", packed["id"], "--skip-backup")
    assert code == 23 and "No space left on device" in err and "nothing was changed" in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    monkeypatch.setattr(stage.os, "write", real_write)
    assert digest(installation) == before
    assert not [p for p in installation.iterdir() if p.name.startswith(".poppoarc-stag")]


def test_truncated_and_damaged_archives_leave_the_tree_alone(cli, installation):
    packed = cli.pack()
    vandalize(installation)
    before = digest(installation)
    data = Path(packed["path"]).read_bytes()
    for name, content in (("short", data[:len(data) // 2]),
                          ("flipped", data[:-3000] + bytes([data[-3000] ^ 0x40]) + data[-2999:])):
        damaged = cli.store / f"{name}.poppo.tar.zst"
        damaged.write_bytes(content)
        code, _, err = cli("unpack", str(damaged))
        assert code in (13, 14), err
        assert digest(installation) == before
        assert not (installation / ".poppoarc-restore.json").exists()


def test_a_damaged_live_database_does_not_block_the_restore(cli, installation):
    packed = cli.pack()
    archived_rows = db_rows(installation / "data/poppo-history.db")
    with open(installation / "data/poppo-history.db", "r+b") as handle:
        handle.seek(4096)
        handle.write(b"\xff" * 4096 * 20)
    code, result = cli.json("unpack", packed["id"])
    assert code == 1 and result["outcome"] == "committed"
    assert any("stored unchecked" in w for w in result["warnings"])
    assert db_rows(installation / "data/poppo-history.db") == archived_rows
    # the safety archive kept the damaged database, unchecked, and still verifies
    code, inspected = cli.json("inspect", result["safety_archive"], "--entries")
    record = next(e for e in inspected["entries"] if e["path"] == "data/poppo-history.db")
    assert "sqlite" not in record and record["size"] > 0
    assert cli("verify", result["safety_archive"])[0] == 0


def test_a_normal_pack_refuses_a_damaged_database(cli, installation):
    with open(installation / "data/poppo-history.db", "r+b") as handle:
        handle.seek(4096)
        handle.write(b"\xff" * 4096 * 20)
    code, _, err = cli("pack")
    assert code == 21 and "data/poppo-history.db" in err and "malformed" in err
    assert not list(cli.store.glob("*.poppo.tar.zst"))
