"""A signed archive writes only inside its own targets (spec §13).

Each archive here is made by the real writer and signed with the installation's own key,
as an attacker holding that key would make it.  Every one must be refused by verify,
inspect and unpack alike, with and without the safety archive, whole, targeted and as a
dry run, with the same exit code, and nothing may change: not the live tree, not the
store, not what lies beside them (``scene.assert_refused``)."""

from __future__ import annotations

import json
import os
import sqlite3

import pytest

from poppoarc.format.entry import IndexEntry

from tests.helpers import CLI
from tests.helpers.craft import craft, entry
from tests.helpers.scene import assert_refused, snapshot

UNSAFE, CORRUPT = 31, 13
CONFIG = [entry("config", "dir", target="config"),
          entry("config/config.json", data=b"{}\n", target="config")]
STATE = [entry("state", "dir", target="state"),
         entry("state/last-run.json", data=b'{"ok": true}\n', target="state")]


def owned(path, uid=None, gid=None, **kwargs):
    record, data = entry(path, **kwargs)
    record.uid = record.uid if uid is None else uid
    record.gid = record.gid if gid is None else gid
    return record, data


ATTACKS = {
    # class 1: records outside the area of the target they name
    "executable-at-the-root": (CONFIG + [entry("run.sh", data=b"#!/bin/sh\nrm -rf ~\n",
                                               target="config", mode=0o755)],
                               UNSAFE, "outside the area of target 'config'", "config"),
    "git-hook": (CONFIG + [entry(".git/hooks/pre-commit", data=b"#!/bin/sh\n", target="config",
                                 mode=0o755)], UNSAFE, "belongs to no target", "config"),
    "state-through-config": (CONFIG + [entry("state/running-tasks.json", data=b"[]\n",
                                             target="config")],
                             UNSAFE, "belongs to target 'state'", "config"),
    "database-through-config": (CONFIG + [entry("data/poppo-history.db", data=b"x" * 100,
                                                target="config")],
                                UNSAFE, "outside the area of target 'config'", "config"),
    "agents-dir-as-config": (CONFIG + [entry("config/agents", "dir", target="config")],
                             UNSAFE, "belongs to target 'agents'", "config"),
    "certificate-by-content": (CONFIG + [entry("config/server.key", data=b"-----BEGIN",
                                               target="config")],
                               UNSAFE, "belongs to no target", "config"),
    "unknown-target": (CONFIG + [entry("state/x.json", data=b"1", target="plugins")],
                       CORRUPT, "unknown target 'plugins'", "config"),
    # class 1: poppoarc's own places
    "journal-at-the-root": (CONFIG + [entry(".poppoarc-restore.json", data=b"{}",
                                            target="config")],
                            UNSAFE, "poppoarc's own", "config"),
    "journal-in-a-target": (STATE + [entry("state/.poppoarc-restore.json", data=b"{}")],
                            UNSAFE, "poppoarc's own", "state"),
    "staging-directory": (STATE + [entry("state/.poppoarc-stage-0/x", data=b"{}")],
                          UNSAFE, "poppoarc's own", "state"),
    "environment-not-generated": (CONFIG + [entry(".poppoarc/environment.json", data=b"{}",
                                                  target="config")],
                                  UNSAFE, "poppoarc's own", "config"),
    "stale-wal-beside-a-database": (STATE + [entry("state/tasks.db-wal", data=b"WAL")],
                                    UNSAFE, "belongs to no target", "state"),
    "shared-parent-of-nothing": ([entry(".git", "dir", target=None)] + CONFIG,
                                 CORRUPT, "shared parent directory '.git'", "config"),
    "file-without-a-target": (CONFIG + [entry("state/x", data=b"1", target=None)],
                              CORRUPT, "no target and is not a directory", "config"),
    # hard links stay inside their target
    "hard-link-across-targets": (CONFIG + STATE + [entry("state/h", "hardlink", b"{}\n",
                                                         link="config/config.json")],
                                 CORRUPT, "earlier file of the same target", "state"),
    # owners a system cannot hold (chown(-1) would silently change nothing)
    "huge-uid": (STATE + [owned("state/x.json", uid=2**62, data=b"1")],
                 UNSAFE, "not a valid user or group id", "state"),
    "uid-minus-one": (STATE + [owned("state/x.json", gid=2**32 - 1, data=b"1")],
                      UNSAFE, "not a valid user or group id", "state"),
    # class 3: symlinks, judged as the kernel resolves them
    "symlink-chain": (STATE + [entry("state/a", "symlink", link=".."),
                               entry("state/b", "symlink", link="a/../outside")],
                      UNSAFE, "through the archive's own symlinks", "state"),
    "symlink-chain-across-targets": (CONFIG + STATE + [
        entry("config/l1", "symlink", link="../state", target="config"),
        entry("state/l2", "symlink", link="../config/l1/../..")],
        UNSAFE, "through the archive's own symlinks", "state"),
    "symlink-chain-of-three": (STATE + [entry("state/x", "symlink", link="y/.."),
                                        entry("state/y", "symlink", link="z"),
                                        entry("state/z", "symlink", link="../.."),
                                        entry("state/w", "symlink", link="x/d")],
                               UNSAFE, "symlink to", "state"),
    "symlink-absolute": (STATE + [entry("state/l", "symlink", link="/etc")],
                         UNSAFE, "absolute link target", "state"),
    "symlink-lexical-escape": (STATE + [entry("state/l", "symlink", link="../../outside")],
                               UNSAFE, "leaves the installation", "state"),
    "symlink-longer-than-any-system-makes": (STATE + [entry("state/l", "symlink",
                                                            link="a/" * 2048)],
                                             UNSAFE, "longer than 4095 bytes", "state"),
    "write-through-an-archive-symlink": (STATE + [entry("state/d", "symlink", link="../config"),
                                                  entry("state/d/evil.json", data=b"x")],
                                         CORRUPT, "which is not a directory", "state"),
    # path syntax (§1)
    "traversal": (STATE + [entry("state/../../evil", data=b"x")], UNSAFE, "'..'", "state"),
    "absolute-path": (STATE + [entry("/tmp/evil", data=b"x")], UNSAFE, "absolute path", "state"),
}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_is_refused_everywhere_and_changes_nothing(name, cli, installation, key_home,
                                                         tmp_path):
    (tmp_path / "outside").mkdir()
    cli.pack()
    members, code, fragment, targets = ATTACKS[name]
    archive = craft(cli.store, key_home, members)
    assert_refused(cli, archive, code, fragment, targets=targets)


def test_a_huge_uid_is_refused_before_chown_with_same_owner(cli, installation, key_home):
    """A uid of 2^62 once raised OverflowError in os.fchown under --same-owner: now the
    rule refuses it before anything is written, as verify does."""
    cli.pack()
    archive = craft(cli.store, key_home, STATE + [owned("state/x.json", uid=2**62, data=b"1")])
    before = snapshot(installation.parent)
    code, _, err = cli("unpack", str(archive), "--same-owner", "--skip-backup")
    assert code == UNSAFE and "not a valid user or group id" in err, err
    assert snapshot(installation.parent) == before


def test_a_symlink_loop_resolves_nowhere_and_is_restored(cli, installation, key_home):
    """The kernel gives up on a loop (ELOOP): it leads nowhere, so it is no escape."""
    archive = craft(cli.store, key_home, STATE + [entry("state/a", "symlink", link="b"),
                                                  entry("state/b", "symlink", link="a"),
                                                  entry("state/c", "symlink", link="a/../..")])
    code, _, err = cli("verify", str(archive))
    assert code == 0, err
    code, _, err = cli("unpack", str(archive), "--skip-backup")
    assert code == 0, err
    assert (installation / "state/a").is_symlink()


def _database(path) -> bytes:
    conn = sqlite3.connect(path)
    conn.executescript("CREATE TABLE t(a); INSERT INTO t VALUES (1);")
    conn.close()
    return path.read_bytes()


def _listed(record: IndexEntry, **changes) -> dict:
    return {"path": record.path, "size": record.size, "sha256": record.sha256,
            "page_size": 4096, "user_version": 0, "tables": {"t": 1}, "check": "quick_check",
            **changes}


def test_the_manifest_databases_and_the_index_must_agree(cli, installation, key_home, tmp_path):
    """Class 2: a file where the manifest lists a database was accepted; a database record
    the manifest does not list; a listed one whose bytes differ."""
    (tmp_path / "outside").mkdir()
    cli.pack()
    data = _database(tmp_path / "t.db")
    db, _ = entry("data/app.db", data=data, target="database")
    db.sqlite = True
    plain, _ = entry("data/app.db", data=data, target="database")
    cases = [
        ([(plain, data)], [_listed(plain)], "is not a database record"),
        ([(db, data)], [], "manifest databases differ"),
        ([(db, data)], [_listed(db, size=db.size + 1)], "manifest databases differ"),
        ([(db, data)], [_listed(db, sha256="0" * 64)], "manifest databases differ"),
        ([], [_listed(db)], "manifest databases differ"),
    ]
    for members, listed, fragment in cases:
        archive = craft(cli.store, key_home, CONFIG + members, databases=listed)
        assert_refused(cli, archive, CORRUPT, fragment, targets="config")


def test_the_manifest_counts_must_agree_with_the_index(cli, installation, key_home, tmp_path):
    (tmp_path / "outside").mkdir()
    cli.pack()
    counts = {"config": {"files": 1, "size": 3, "entries": 2, "stored": [0, 0]}}
    for lie, fragment in ((dict(entries=3), "has 3 records"), (dict(files=2), "2 files"),
                          (dict(size=4), "4 bytes")):
        targets = {"config": {**counts["config"], **lie}}
        archive = craft(cli.store, key_home, CONFIG, targets=targets)
        assert_refused(cli, archive, CORRUPT, fragment, targets="config")
    archive = craft(cli.store, key_home, CONFIG, files=7)
    assert_refused(cli, archive, CORRUPT, "manifest says 7 files, its index 1", targets="config")
    archive = craft(cli.store, key_home, CONFIG + STATE,
                    targets={"config": counts["config"]})
    assert_refused(cli, archive, CORRUPT, "which the manifest does not list", targets="config")


def test_the_store_inside_a_target_is_out_of_reach(installation, key_home, capsys, tmp_path):
    """The store kept under state/: state's area, but no record may land in it, nor
    replace the directory that holds it; a genuine archive still restores around it."""
    (tmp_path / "outside").mkdir()
    cli = CLI(installation, installation / "state/backups", capsys)
    genuine = cli.pack()
    name = genuine["id"] + ".poppo.tar.zst"
    for members, fragment in (
            (STATE + [entry(f"state/backups/{name}", data=b"forged")], "lies in the store"),
            (STATE + [entry("state/backups/evil.sh", data=b"x")], "lies in the store"),
            (STATE + [entry("state/backups", data=b"x")], "store (state/backups)"),
            (STATE + [entry("state/backups", "symlink", link="..")], "store (state/backups)"),
            ([entry("state", "symlink", link="config")], "directory holding the store")):
        archive = craft(tmp_path / "elsewhere", key_home, members)
        assert_refused(cli, archive, UNSAFE, fragment, targets="state")
    before = snapshot(installation / "state/backups")
    code, _, err = cli("unpack", genuine["id"], "--targets", "state", "--skip-backup")
    assert code in (0, 1), err
    assert snapshot(installation / "state/backups") == before


def test_the_store_at_the_root_keeps_its_archives(installation, key_home, capsys, tmp_path):
    (tmp_path / "outside").mkdir()
    cli = CLI(installation, installation / "backups", capsys)
    genuine = cli.pack()
    archive = craft(tmp_path / "elsewhere", key_home,
                    CONFIG + [entry(f"backups/{genuine['id']}.poppo.tar.zst", data=b"forged",
                                    target="config")])
    assert_refused(cli, archive, UNSAFE, "lies in the store (backups)", targets="config")


def test_the_key_directory_inside_a_target_is_out_of_reach(installation, key_home, capsys,
                                                           tmp_path):
    """With backup.signing.keyDir under config/, a signed archive must not replace the
    signing key pair (config's area, but the key directory's)."""
    (tmp_path / "outside").mkdir()
    config = installation / "config/config.json"
    document = json.loads(config.read_text())
    document.setdefault("backup", {})["signing"] = {"keyDir": str(installation / "config/keys")}
    config.write_text(json.dumps(document))
    cli = CLI(installation, tmp_path / "store", capsys)
    cli.pack()
    keys = installation / "config/keys"
    assert (keys / "signing.key").exists()
    archive = craft(cli.store, keys, CONFIG + [
        entry("config/keys", "dir", target="config"),
        entry("config/keys/signing.key", data=b"attacker's key", target="config", mode=0o600)])
    assert_refused(cli, archive, UNSAFE, "lies in the key directory", targets="config")


def test_a_record_stays_inside_its_target_when_the_installation_widens_the_area(
        installation, key_home, capsys, tmp_path):
    """A target's area is this installation's: with backup.targets.config.include set to
    more patterns, the archive made with them restores; with the default, it is refused
    and the error says why."""
    config = installation / "config/config.json"
    document = json.loads(config.read_text())
    document.setdefault("backup", {})["targets"] = {
        "config": {"include": ["config/**", ".poppo/**", "settings/**"]}}
    config.write_text(json.dumps(document))
    (installation / "settings").mkdir()
    (installation / "settings/app.ini").write_text("[app]\n")
    cli = CLI(installation, tmp_path / "store", capsys)
    packed = cli.pack("--targets", "config")
    code, _, err = cli("unpack", packed["id"], "--skip-backup")
    assert code in (0, 1), err
    document["backup"]["targets"] = {}
    config.write_text(json.dumps(document))
    code, _, err = cli("verify", packed["id"])
    assert code == UNSAFE and "'settings'" in err and "backup.targets" in err, err


def test_excludes_set_after_a_backup_do_not_refuse_it(installation, capsys, tmp_path):
    """exclude says what to archive from now on, not what an older archive may restore."""
    cli = CLI(installation, tmp_path / "store", capsys)
    packed = cli.pack("--targets", "state")
    config = installation / "config/config.json"
    document = json.loads(config.read_text())
    document.setdefault("backup", {})["targets"] = {"state": {"exclude": ["state/requests/**"]}}
    config.write_text(json.dumps(document))
    assert cli("verify", packed["id"])[0] == 0
    code, _, err = cli("unpack", packed["id"], "--skip-backup")
    assert code in (0, 1), err


def test_an_archive_at_every_limit_verifies_and_restores(cli, installation, key_home, tmp_path):
    """The other side of the limits: a path of 4,096 bytes, 256 levels, a name of 255 bytes,
    a symlink text of 4,095 bytes, an owner of 2^32 - 2: verify accepts, and the restore
    writes it (into the live tree, and into an empty root)."""
    deep = "state/" + "/".join(["d"] * 254) + "/" + "f" * 255
    longest = "state/" + "/".join(["m" * 254] * 16)     # 6 + 16 x 254 + 15 = 4085
    longest += "/" + "z" * (4096 - len(longest) - 1)
    link = "../" + "x/" * 2045 + "yy"
    members = STATE + [entry(deep, data=b"deep"), entry(longest, data=b"long"),
                       entry("state/link", "symlink", link=link),
                       owned("state/owner.json", uid=2**32 - 2, data=b"1")]
    assert len(deep.encode()) <= 4096 and deep.count("/") == 255 and len(link) == 4095
    assert len(longest.encode()) == 4096
    archive = craft(cli.store, key_home, members)
    code, _, err = cli("verify", str(archive))
    assert code == 0, err
    code, _, err = cli("unpack", str(archive), "--skip-backup")
    assert code in (0, 1), err
    assert (installation / deep).read_bytes() == b"deep"
    assert os.readlink(installation / "state/link") == link
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = CLI(empty, cli.store, cli.capsys)("unpack", str(archive))
    assert code in (0, 1), err
    assert _read_below(empty, longest) == b"long"


def _read_below(root, path: str) -> bytes:
    """A file at a relative path longer than PATH_MAX allows in one call: one directory
    at a time, as the restore writes it."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for name in path.split("/")[:-1]:
            fd, parent = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd), fd
            os.close(parent)
        with open(os.open(path.rsplit("/", 1)[1], os.O_RDONLY, dir_fd=fd), "rb") as handle:
            return handle.read()
    finally:
        os.close(fd)
