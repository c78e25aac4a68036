"""Archives the released poppoarc wrote stay restorable (spec/FORMAT.md §15).

fixtures/legacy/ holds archives written by poppoarc 0.1 (commit 8dd70ef, format
``poppoarc/1``; fixtures/make_legacy_vectors.py says how): plain, sealed whole for a
passphrase and for a recipient, secrets sealed, two incremental chains with page deltas
and references, a pre-restore safety archive, and two archives 8dd70ef wrote but could not
read itself.  Each verifies, restores into an empty root to the tree its ``.expect`` records,
is healthy for list, doctor and prune, and can be the parent of a new incremental.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from poppoarc.cli import main
from poppoarc.config import Settings
from poppoarc.format import reader, versions
from poppoarc.archives.verification import verify
from poppoarc.format import chains as chains_policy

from poppoarc.restore import trash
from tests.helpers import REPO, unpack
from tests.helpers.vectors import LEGACY, VECTORS, legacy, trust

SUFFIX = ".poppo.tar.zst"


def _maker():
    spec = importlib.util.spec_from_file_location("make_legacy_vectors",
                                                  REPO / "fixtures" / "make_legacy_vectors.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_tree_digest = _maker().tree_digest


def tree_digest(root):
    trash.sweep(root, wait=True)       # a restore's old tree, deleted behind it
    return _tree_digest(root)


def manifest_of(archive_id: str) -> dict:
    path = LEGACY / (archive_id + SUFFIX)
    with open(path, "rb") as handle:
        return reader.read_head(handle, path).manifest


def chains() -> list[str]:
    """The legacy incrementals (each with its parent beside it)."""
    return [archive_id for archive_id, _ in legacy() if manifest_of(archive_id)["incremental"]]


@pytest.fixture
def store(tmp_path) -> Path:
    """A copy of fixtures/legacy: verify records what it verified in the store."""
    copy = tmp_path / "store"
    shutil.copytree(LEGACY, copy)
    return copy


@pytest.fixture
def passphrase(monkeypatch):
    monkeypatch.setenv("POPPO_BACKUP_KEY", "poppoarc test vector passphrase")
    monkeypatch.delenv("POPPO_BACKUP_IDENTITY", raising=False)


def test_the_legacy_vectors_are_what_the_released_poppoarc_wrote():
    """Every archive kind 8dd70ef wrote, each of format 1, a few kilobytes each."""
    kinds = set()
    for archive_id, fields in legacy():
        manifest = manifest_of(archive_id)
        assert manifest["format"] == fields["format"] == versions.FORMAT_1.name
        assert fields["expect"] == "ok" and len(fields["tree"]) == 64
        encryption = manifest["encryption"]
        kinds.add((manifest["type"], manifest["incremental"], encryption and encryption["scope"],
                   tuple(sorted(s["type"] for s in encryption["recipients"])) if encryption else ()))
    assert kinds >= {("manual", False, None, ()), ("manual", True, None, ()),
                     ("manual", False, "archive", ("argon2id",)),
                     ("manual", True, "archive", ("argon2id",)),
                     ("manual", False, "secrets", ("argon2id",)),
                     ("manual", False, "archive", ("x25519",)),
                     ("pre-restore", False, "secrets", ("x25519",))}
    refused = [f for _, f in legacy() if f["released-reader"] != "ok"]
    assert len(refused) == 2 and all(f["released-reader"].startswith("CorruptArchive")
                                     for f in refused)
    assert sum(p.stat().st_size for p in LEGACY.iterdir()) < 512 * 1024


@pytest.mark.parametrize("archive_id,fields", legacy(), ids=[f[0][-6:] for f in legacy()])
def test_each_legacy_archive_verifies_and_restores_its_tree(archive_id, fields, store, tmp_path,
                                                            passphrase):
    settings = Settings(root=tmp_path, config_path=tmp_path / "none.json", store=store,
                        backup=trust(tmp_path), key_dir=tmp_path / "keys")
    result = verify(settings, archive_id)
    assert result.entries > 0 and result.not_checked == []
    root = tmp_path / "root"
    root.mkdir()
    outcome = unpack(Settings(**{**settings.__dict__, "root": root}), archive_id,
                     skip_backup=True)
    assert outcome.outcome == "committed"
    assert tree_digest(root) == fields["tree"], "not the tree the released poppoarc restores"


def run(root: Path, store: Path, config: Path, capsys, *args: str) -> tuple[int, dict]:
    capsys.readouterr()
    code = main(["--root", str(root), "--store", str(store), f"--config={config}", *args, "--json"])
    return code, json.loads(capsys.readouterr().out)


def write_config(path: Path, backup: dict) -> Path:
    path.write_text(json.dumps({"backup": backup}))
    os.chmod(path, 0o600)
    return path


def test_list_doctor_and_prune_find_the_legacy_archives_healthy(store, tmp_path, capsys,
                                                                passphrase):
    root = tmp_path / "root"
    root.mkdir()
    config = write_config(tmp_path / "config.json", {**trust(tmp_path), "maxBackups": 1})
    code, rows = run(root, store, config, capsys, "list")
    assert code == 0 and len(rows["archives"]) == len(legacy())
    assert {row["status"] for row in rows["archives"]} == {"ok"}, rows
    code, report = run(root, store, config, capsys, "doctor")
    found = {c["id"]: c for c in report["checks"]}
    assert found["archives"]["status"] == "ok" and found["chains"]["status"] == "ok", found
    code, plan = run(root, store, config, capsys, "prune", "--dry-run")
    # prune verifies the newest full before it would delete anything: a legacy archive
    assert code == 0 and plan["warnings"] == [], plan
    assert list(plan["verified"].values()) == [None] and len(plan["would_delete"]) > 0


def _change_database(root: Path) -> None:
    connection = sqlite3.connect(root / "data" / "poppo.db")
    connection.execute("UPDATE issues SET state = 'reopened after the upgrade' WHERE id = 150")
    connection.commit()
    connection.close()
    (root / "state" / "issues.json").write_text('{"processed": [1, 2, 3, 200]}\n')


@pytest.mark.parametrize("legacy_id", chains(), ids=["plain", "sealed"])
def test_a_new_incremental_on_a_legacy_parent_packs_verifies_and_restores(
        legacy_id, tmp_path, capsys, passphrase, monkeypatch):
    """A chain that mixes versions: 1 (full), 1 (incremental), 2 (incremental)."""
    # The upgraded poppoarc runs where the old one did; here the root is another directory
    # than the one the legacy chain was packed from, which pack would take for another
    # installation (and make a full archive): that rule is not what this test is about.
    same_installation = chains_policy.parent_problem
    monkeypatch.setattr(chains_policy, "parent_problem",
                        lambda manifest, **rules: same_installation(manifest, **{**rules, "root": None}))
    parent = manifest_of(legacy_id)
    sealed = parent["encryption"] is not None
    store = tmp_path / "store"
    store.mkdir()
    for archive_id in (parent["parent"]["id"], legacy_id):
        shutil.copyfile(LEGACY / (archive_id + SUFFIX), store / (archive_id + SUFFIX))
    root = tmp_path / "root"
    root.mkdir()
    config = write_config(tmp_path / "config.json",
                          {**trust(tmp_path, identity=False), "storage": {"encrypt": sealed}})
    code, restored = run(root, store, config, capsys, "unpack", legacy_id, "--skip-backup")
    assert code == 0 and restored["outcome"] == "committed", restored
    _change_database(root)
    # restored files have new inodes and ctimes: compare contents to find the unchanged ones
    code, packed = run(root, store, config, capsys, "pack", "--incremental", "--check-content")
    assert code in (0, 1) and packed["incremental"] and packed["parent"] == legacy_id, \
        packed["warnings"]
    code, inspected = run(root, store, config, capsys, "inspect", packed["id"], "--entries")
    assert inspected["manifest"]["format"] == versions.CURRENT.name
    entries = inspected["entries"]
    held = {e["stored_in"] for e in entries if e.get("stored_in")}
    assert held and held <= {parent["parent"]["id"], legacy_id}     # references into format 1
    database = next(e for e in entries if e["path"] == "data/poppo.db")
    assert 0 < len(database["delta"]) < 5                           # pages over a format-1 base
    code, verified = run(root, store, config, capsys, "verify", packed["id"])
    assert code == 0, verified
    again = tmp_path / "again"
    again.mkdir()
    code, restored = run(again, store, config, capsys, "unpack", packed["id"], "--skip-backup")
    assert code == 0 and restored["outcome"] == "committed", restored
    # a snapshot of a database is its rows, not its bytes (SQLite's header counters differ)
    assert dump(again / "data" / "poppo.db") == dump(root / "data" / "poppo.db")
    assert "reopened after the upgrade" in dump(again / "data" / "poppo.db")
    for tree in (again, root):
        (tree / "data" / "poppo.db").unlink()
    assert tree_digest(again) == tree_digest(root)


def dump(database: Path) -> str:
    connection = sqlite3.connect(database)
    try:
        return "\n".join(connection.iterdump())
    finally:
        connection.close()


def test_the_spec_table_of_versions_is_the_readers():
    """spec §15.1 and poppoarc/format/versions.py say the same."""
    spec = (REPO / "spec" / "FORMAT.md").read_text()
    table = spec.split("### 15.1 What changed from 1 to 2")[1].split("\n\n")[1]
    cells = [[cell.strip() for cell in row.strip("|").split(" | ")] for row in table.splitlines()[2:]]
    rows = {row[0]: row[1:] for row in cells}
    old, new = versions.FORMAT_1, versions.FORMAT_2
    assert set(versions.VERSIONS) == {old.name, new.name} and versions.CURRENT is new
    assert rows["manifest `format` (§5.2)"] == [f'`"{old.name}"`', f'`"{new.name}"`']
    assert rows["index header `format` (§5.4)"] == [f'`"{old.index_format}"`',
                                                     f'`"{new.index_format}"`']
    assert (old.incremental_note, new.incremental_note) == (False, True)
    assert (old.index_warnings, new.index_warnings) == (False, True)
    assert (old.zero_offset_continues, new.zero_offset_continues) == (True, False)


def test_a_bundle_continued_at_offset_0_is_format_1s_rule_only():
    from poppoarc.format.entry import IndexEntry, check_entry

    empty = IndexEntry("state/1-empty.json", "state", "file", 0o644, 0, 0, 0, 0,
                       hmac_sha256="0" * 64, bundle=0)
    check_entry(empty, versions.FORMAT_1)
    with pytest.raises(ValueError, match="malformed bundle reference"):
        check_entry(empty, versions.FORMAT_2)


def test_a_newer_format_needs_a_newer_poppoarc(tmp_path, capsys):
    capsys.readouterr()
    code = main(["--root", str(tmp_path), "--store", str(tmp_path), "verify",
                 str(VECTORS / "future-format.poppo.tar.zst")])
    err = capsys.readouterr().err
    assert code == 12 and "'poppoarc/3'" in err and "needs a newer poppoarc" in err


def test_an_archive_only_a_newer_poppoarc_reads_is_kept_not_called_damaged(cli, installation):
    """The other way round (§15.2): this poppoarc meeting a later format in its store lists
    it as newer, never as damaged, and prune keeps it even with keep.damaged false."""
    (installation / "config/config.json").write_text(json.dumps(
        {"backup": {"maxBackups": 1, "keep": {"damaged": False}}}))
    ids = [cli.pack("--no-prune")["id"] for _ in range(2)]
    cli.store.joinpath("backup-2020-01-01T00-00-00-000Z-broken" + SUFFIX).write_bytes(b"junk")
    newer = "backup-2025-06-19T12-00-00-000Z-abc123"      # the future-format vector's id
    shutil.copyfile(VECTORS / "future-format.poppo.tar.zst", cli.store / (newer + SUFFIX))
    code, rows = cli.json("list")
    status = {row["id"]: row["status"] for row in rows["archives"]}
    assert status[newer] == "newer" and status[ids[0]] == "ok", status
    code, out, _ = cli("list")
    assert "NEWER FORMAT" in out
    code, report = cli.json("doctor")
    archives = next(c for c in report["checks"] if c["id"] == "archives")
    assert archives["status"] == "fail" and any(newer in d for d in archives["details"])
    code, done = cli.json("prune")
    assert sorted(done["deleted"]) == sorted([ids[0], "backup-2020-01-01T00-00-00-000Z-broken"])
    kept = next(d for d in done["decisions"] if d["id"] == newer)
    assert kept["action"] == "keep" and kept["rules"] == ["newer-format"], kept
    assert (cli.store / (newer + SUFFIX)).exists()
    code, report = cli.json("doctor")
    archives = next(c for c in report["checks"] if c["id"] == "archives")
    assert archives["status"] == "warn" and "newer poppoarc" in archives["message"], archives
