"""Custom targets' areas, as an attacker holding the installation's key would record them
(spec §5.2 ``areas``, §13 rules 2 and 3).

An area is the signer's word: verify, inspect and unpack refuse, alike and before anything
is written, one that names paths other than plainly or reaches poppoarc's own places (the
store, the key directory, ``.poppoarc``), and a record of a custom target where a built-in
target claims the path.  A custom target this installation does not define is judged by
the recorded area, and restored only when named."""

from __future__ import annotations

import json

import pytest

from tests.helpers import CLI
from tests.helpers.craft import craft, entry
from tests.helpers.scene import assert_refused, snapshot

UNSAFE, CORRUPT = 31, 13
CONFIG = [entry("config", "dir", target="config"),
          entry("config/config.json", data=b"{}\n", target="config")]
UPLOADS = [entry("uploads", "dir", target="uploads"),
           entry("uploads/avatar.png", data=b"\x89PNG", target="uploads")]


def uploads_with(*globs, **more):
    return {"areas": {"uploads": list(globs), **more}}


ATTACKS = {
    "dotdot": (UPLOADS, uploads_with("../outside/**"), UNSAFE, "'..' name"),
    "dotdot-inside": (UPLOADS, uploads_with("uploads/../config/**"), UNSAFE, "'..' name"),
    "absolute": (UPLOADS, uploads_with("/"), UNSAFE, "is absolute"),
    "absolute-etc": (UPLOADS, uploads_with("/etc/**"), UNSAFE, "is absolute"),
    "empty-name": (UPLOADS, uploads_with("uploads//x"), UNSAFE, "empty, '.' or '..' name"),
    "everything": (UPLOADS, uploads_with("**"), UNSAFE, "reaches poppoarc's own directory"),
    "every-top-level-name": (UPLOADS, uploads_with("*"), UNSAFE, "reaches poppoarc's own"),
    "poppoarc-directory": (UPLOADS, uploads_with("uploads/**", ".poppoarc/**"), UNSAFE,
                           "reaches poppoarc's own directory .poppoarc"),
    "area-of-an-unlisted-target": (UPLOADS, uploads_with("uploads/**", media=["media/**"]),
                                   CORRUPT, "areas names 'media', which targets does not list"),
    "custom-target-without-area": (UPLOADS, {}, CORRUPT, "unknown target 'uploads'"),
    "built-in-name-as-custom": (CONFIG, {"areas": {"config": ["config/**"]}}, CORRUPT,
                                "not a custom target's name"),
}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_a_recorded_area_no_restore_may_use_is_refused_everywhere(name, cli, installation,
                                                                  key_home, tmp_path):
    (tmp_path / "outside").mkdir()
    cli.pack()
    members, manifest, code, fragment = ATTACKS[name]
    if not any(record.path == "config" for record, _ in members):
        members = CONFIG + members      # (the targeted runs name config: it must be there)
    archive = craft(cli.store, key_home, members, **manifest)
    assert_refused(cli, archive, code, fragment, targets="config")


# records of a custom target outside its area: judged wherever the target is restored (a
# restore judges the records it writes; verify every one)
RECORD_ATTACKS = {
    "overlaps-config": (CONFIG + UPLOADS + [entry("config/evil.json", data=b"{}",
                                                  target="uploads")],
                        uploads_with("uploads/**", "config/**"),
                        "here it belongs to target 'config'"),
    "outside-its-area": (UPLOADS + [entry("src/app.js", data=b"evil()", target="uploads")],
                         uploads_with("uploads/**"), "belongs to no target"),
    "executable-at-the-root": (UPLOADS + [entry("run.sh", data=b"#!/bin/sh\n", mode=0o755,
                                                target="uploads")],
                               uploads_with("uploads/**"),
                               "outside the area of target 'uploads'"),
}


@pytest.mark.parametrize("name", sorted(RECORD_ATTACKS))
def test_a_record_outside_its_custom_area_is_refused_wherever_it_is_restored(
        name, cli, installation, key_home, tmp_path):
    (tmp_path / "outside").mkdir()
    _with_config(installation, targets={"uploads": {"include": ["uploads/**"]}})
    cli.pack()
    members, manifest, fragment = RECORD_ATTACKS[name]
    archive = craft(cli.store, key_home, members, **manifest)
    assert_refused(cli, archive, UNSAFE, fragment, targets="uploads")


def _with_config(installation, **backup):
    path = installation / "config/config.json"
    document = json.loads(path.read_text())
    document.setdefault("backup", {}).update(backup)
    path.write_text(json.dumps(document))


def test_an_area_reaching_the_store_or_the_key_directory_is_refused(installation, key_home,
                                                                    capsys, tmp_path):
    (tmp_path / "outside").mkdir()
    keys = installation / "keys"
    _with_config(installation, signing={"keyDir": str(keys)})
    cli = CLI(installation, installation / "backups", capsys)
    cli.pack()
    for globs, fragment in ((["backups/**"], "reaches the store (backups)"),
                            (["back*"], "reaches the store (backups)"),
                            (["keys/*"], "reaches the key directory (keys)"),
                            (["k*/signing.key"], "reaches the key directory (keys)")):
        archive = craft(tmp_path / "elsewhere", keys, CONFIG + UPLOADS, **uploads_with(*globs))
        assert_refused(cli, archive, UNSAFE, fragment, targets="config")
    # the same areas in this installation's own configuration: pack refuses them (exit 3)
    _with_config(installation, targets={"uploads": {"include": ["backups/**"]}})
    code, _, err = cli("pack")
    assert code == 3 and "reaches the store (backups)" in err, err


def test_the_store_at_the_root_keeps_its_archives_from_a_custom_area(installation, key_home,
                                                                     capsys, tmp_path):
    (tmp_path / "outside").mkdir()
    cli = CLI(installation, installation, capsys)       # the store is the root itself
    _with_config(installation, storage={"path": str(installation)})
    cli.pack()
    archive = craft(tmp_path / "elsewhere", key_home, CONFIG + UPLOADS,
                    **uploads_with("*.zst"))
    assert_refused(cli, archive, UNSAFE, "the store's archives", targets="config")


def test_a_custom_target_the_installation_does_not_define(cli, installation, key_home,
                                                          tmp_path):
    """Judged by the recorded area: verify says ok; unpack restores it only when named, and
    says so otherwise; the restore plan shows the area and where it comes from."""
    cli.pack()
    archive = craft(cli.store, key_home, CONFIG + UPLOADS, **uploads_with("uploads/**"))
    assert cli("verify", str(archive))[0] == 0
    code, doc = cli.json("unpack", str(archive), "--skip-backup")
    assert code == 1 and doc["outcome"] == "committed"
    assert [t["target"] for t in doc["plan"]["targets"]] == ["config"]
    assert any("target uploads is not restored: backup.targets here does not define it"
               in w and "--targets uploads" in w for w in doc["warnings"])
    assert not (installation / "uploads").exists()
    code, doc = cli.json("unpack", str(archive), "--targets", "uploads", "--dry-run")
    assert code == 0 and doc["plan"]["areas"] == {
        "uploads": {"include": ["uploads/**"], "from": "archive"}}
    code, out, err = cli("unpack", str(archive), "--targets", "uploads", "--dry-run")
    assert "uploads: uploads/**  (the archive's area, used as recorded)" in out
    code, doc = cli.json("unpack", str(archive), "--targets", "uploads", "--skip-backup")
    assert code == 0, doc
    assert (installation / "uploads/avatar.png").read_bytes() == b"\x89PNG"


def test_a_custom_target_defined_here_keeps_this_installations_area(cli, installation,
                                                                    key_home, tmp_path):
    """As for a built-in target: an archive whose custom target's records lie outside the
    area this installation gives it is refused, naming the setting."""
    (tmp_path / "outside").mkdir()
    _with_config(installation, targets={"uploads": {"include": ["media/**"]}})
    cli.pack()
    archive = craft(cli.store, key_home, CONFIG + UPLOADS, **uploads_with("uploads/**"))
    assert_refused(cli, archive, UNSAFE, "needs the same settings here", targets="uploads")
    before = snapshot(installation)
    code, doc = cli.json("unpack", str(archive), "--targets", "uploads", "--dry-run")
    assert code == UNSAFE and snapshot(installation) == before
