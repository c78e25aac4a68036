"""Retention after each successful pack (issue 26): the configured policy (retention,
maxBackups, keep) is applied by the same prune as ``poppoarc prune``, chain-aware, never
to the new archive; printed, in pack --json; --no-prune skips it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from poppoarc.demo.real_layout import LEGACY_BACKUP
from poppoarc.store.local import SUFFIX
from tests.helpers import CLI
from tests.helpers.vectors import VECTORS


def configure(root: Path, backup: dict) -> None:
    (root / "config/config.json").write_text(json.dumps({"backup": backup}))


def archives(store: Path) -> list[str]:
    return sorted(p.name[:-len(SUFFIX)] for p in store.glob("*" + SUFFIX))


def every_one_verifies(cli: CLI) -> None:
    for archive_id in archives(cli.store):
        code, verified = cli.json("verify", archive_id)
        assert code == 0 and verified["not_checked"] == [], verified


def test_four_packs_with_max_backups_3_in_the_shipped_shape_leave_three(cli, installation):
    shipped = {**LEGACY_BACKUP, "maxBackups": 3, "encryptionEnabled": False,
               "incrementalEnabled": False}
    configure(installation, shipped)
    packed = [cli.pack() for _ in range(3)]
    assert all(p["retention"]["deleted"] == [] for p in packed)
    code, out, err = cli("pack")
    assert code in (0, 1), err
    assert "retention (maxBackups 3; retention 30 days; pre-restore: newest 3 and 7 days): " \
           "deleted 1 archive" in out
    assert f"    deleted {packed[0]['id']}" in out
    remaining = archives(cli.store)
    assert len(remaining) == 3 and packed[0]["id"] not in remaining
    every_one_verifies(cli)


def test_chains_stay_whole_and_the_new_archive_is_never_pruned(cli, installation):
    configure(installation, {"maxBackups": 3,
                             "incremental": {"enabled": True, "maxIncrementals": 1}})
    first = [cli.pack() for _ in range(4)]         # full, incremental, full, incremental
    assert [p["incremental"] for p in first] == [False, True, False, True]
    # the newest three keep the oldest full as their parent: nothing can go yet
    assert all(p["retention"]["deleted"] == [] for p in first)
    fifth = cli.pack()
    assert not fifth["incremental"]
    assert fifth["retention"]["deleted"] == [first[1]["id"], first[0]["id"]]   # a whole chain
    assert archives(cli.store) == sorted([first[2]["id"], first[3]["id"], fifth["id"]])
    every_one_verifies(cli)


def test_no_prune_and_no_policy_leave_the_store_alone(cli, installation):
    configure(installation, {"maxBackups": 1})
    ids = [cli.pack("--no-prune")["id"] for _ in range(3)]
    assert archives(cli.store) == sorted(ids)
    code, out, _ = cli("pack", "--no-prune")
    assert "retention" not in out
    configure(installation, {})
    document = cli.pack()
    assert document["retention"] is None and len(archives(cli.store)) == 5


def test_damaged_and_newer_format_archives_are_kept_and_named(cli, installation):
    configure(installation, {"maxBackups": 1})
    junk = cli.store / ("backup-2020-01-01T00-00-00-000Z-broken" + SUFFIX)
    cli.pack()
    junk.write_bytes(b"not an archive")
    newer = "backup-2025-06-19T12-00-00-000Z-abc123"      # the future-format vector's id
    shutil.copyfile(VECTORS / "future-format.poppo.tar.zst", cli.store / (newer + SUFFIX))
    code, document = cli.json("pack")
    assert code == 1, document
    assert document["retention"]["deleted"] and junk.exists()
    assert (cli.store / (newer + SUFFIX)).exists()
    assert any(w.startswith(f"retention: {junk.name[:-len(SUFFIX)]}: damaged")
               for w in document["warnings"]), document["warnings"]
    # even an operator who lets prune delete damaged archives loses no newer-format one
    configure(installation, {"maxBackups": 1, "keep": {"damaged": False}})
    code, document = cli.json("pack")
    assert not junk.exists() and (cli.store / (newer + SUFFIX)).exists()
    assert sorted(archives(cli.store)) == sorted([newer, document["id"]])


def test_a_failing_prune_is_a_warning_the_archive_stays(cli, installation, monkeypatch):
    configure(installation, {"maxBackups": 1})
    cli.pack()
    from poppoarc.store.local import LocalStore

    def refuse(self, archive):
        raise PermissionError(13, "Permission denied", str(archive))
    monkeypatch.setattr(LocalStore, "delete", refuse)
    code, document = cli.json("pack")
    assert code == 1 and document["retention"] is None
    assert any(w.startswith("retention: the prune after this pack failed") and
               "Permission denied" in w for w in document["warnings"]), document["warnings"]
    assert document["id"] in archives(cli.store)
