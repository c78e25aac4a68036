"""Custom targets (issue 26): ``backup.targets.NAME`` with ``include`` globs for what the six
built-in targets do not hold (an ``uploads/`` folder, ``.poppobuilder/``): archived after the
built-in ones, listed, restorable (also alone, with --targets), their areas recorded in the
signed manifest and confined like the others."""

import json
import os
import shutil

import pytest

from poppoarc.demo.real_layout import make_real_layout
from tests.helpers import CLI, digest

CUSTOM = {"uploads": {"include": ["uploads/**"]},
          "poppobuilder": {"include": [".poppobuilder/**"], "exclude": [".poppobuilder/cache/**"]}}


def configure(root, **backup):
    path = root / "config" / "config.json"
    document = json.loads(path.read_text()) if path.exists() else {}
    document.setdefault("backup", {}).update(backup)
    path.write_text(json.dumps(document))


@pytest.fixture
def custom(installation):
    (installation / "uploads" / "2025").mkdir(parents=True)
    (installation / "uploads" / "2025" / "avatar.png").write_bytes(b"\x89PNG" + bytes(100))
    (installation / "uploads" / "readme.txt").write_text("user files\n")
    (installation / ".poppobuilder" / "cache").mkdir(parents=True)
    (installation / ".poppobuilder" / "config.json").write_text('{"project": "demo"}\n')
    (installation / ".poppobuilder" / "cache" / "big.bin").write_bytes(bytes(1000))
    configure(installation, targets=CUSTOM)
    return installation


def test_custom_targets_are_archived_listed_and_restored(cli, custom, tmp_path, both_ways):
    code, packed = cli.json("pack")
    assert code == 0, packed
    assert list(packed["targets"])[-2:] == ["poppobuilder", "uploads"]     # after the six
    assert packed["targets"]["uploads"]["files"] == 2
    assert packed["targets"]["poppobuilder"]["files"] == 1                 # cache excluded
    code, out, err = cli("verify", packed["id"])
    assert code == 0, err
    code, inspected = cli.json("inspect", packed["id"], "--entries")
    manifest = inspected["manifest"]
    assert manifest["areas"] == {"poppobuilder": [".poppobuilder/**"], "uploads": ["uploads/**"]}
    assert {e["path"]: e["target"] for e in inspected["entries"]
            if e["path"].startswith("uploads")} == {
        "uploads": "uploads", "uploads/2025": "uploads", "uploads/2025/avatar.png": "uploads",
        "uploads/readme.txt": "uploads"}
    code, out, err = cli("inspect", packed["id"])
    assert "  uploads " in out and "  poppobuilder " in out
    # a new machine whose configuration is the archived one: everything comes back
    empty = tmp_path / "new-machine"
    empty.mkdir()
    (empty / "config").mkdir()
    shutil.copy(custom / "config" / "config.json", empty / "config" / "config.json")
    code, out, err = CLI(empty, cli.store, cli.capsys, cli.parallel)("unpack", packed["id"])
    assert code in (0, 1), err
    assert digest(empty / "uploads") == digest(custom / "uploads")
    assert (empty / ".poppobuilder/config.json").read_bytes() == \
        (custom / ".poppobuilder/config.json").read_bytes()
    assert not (empty / ".poppobuilder/cache").exists()


def test_a_custom_target_alone_packs_restores_and_chains(cli, custom):
    full = cli.pack("--targets", "uploads")
    assert list(full["targets"]) == ["uploads"]
    (custom / "uploads" / "readme.txt").write_text("changed\n")
    (custom / "uploads" / "new.txt").write_text("new\n")
    incremental = cli.pack("--incremental")
    assert incremental["parent"] is not None and incremental["reused"] > 0
    saved = digest(custom / "uploads")
    shutil.rmtree(custom / "uploads")
    (custom / "uploads").mkdir()
    (custom / "uploads" / "stray.txt").write_text("removed by the restore\n")
    code, doc = cli.json("unpack", incremental["id"], "--targets", "uploads")
    assert code in (0, 1), doc
    assert [t["target"] for t in doc["plan"]["targets"]] == ["uploads"]
    assert doc["plan"]["areas"] == {"uploads": {"include": ["uploads/**"],
                                                "from": "installation"}}
    assert digest(custom / "uploads") == saved
    assert (custom / "config" / "config.json").exists()       # other targets untouched
    code, out, err = cli("unpack", full["id"], "--targets", "nosuch")
    assert code == 2 and "has no target 'nosuch'" in err


@pytest.mark.parametrize("targets, fragment", [
    ({"uploads": True}, "a custom target is an object with 'include'"),
    ({"Uploads": {"include": ["uploads/**"]}}, "unknown key 'backup.targets.Uploads'"),
    ({"uploads": {"include": ["../uploads/**"]}}, "'..' name"),
    ({"uploads": {"include": ["/srv/uploads/**"]}}, "is absolute"),
    ({"uploads": {"include": ["**"]}}, "reaches poppoarc's own directory"),
    ({"uploads": {"include": []}}, "needs 1 to 64 include globs"),
    ({"logz": False}, "did you mean 'logs'?"),
])
def test_a_custom_target_the_configuration_gets_wrong_stops_pack(cli, installation, targets,
                                                                 fragment):
    configure(installation, targets=targets)
    code, out, err = cli("pack")
    assert code == 3 and fragment in err, err
    assert not list(cli.store.glob("*.poppo.tar.zst"))


def test_pack_names_an_unknown_custom_target(cli, custom):
    code, out, err = cli("pack", "--targets", "config,upload")
    assert code == 2 and "unknown target 'upload': backup.targets defines no custom target" \
        in err, err


def test_a_custom_target_overlapping_a_built_in_one_gets_only_what_is_left(cli, custom):
    """Built-in targets claim first: config/** stays config's, whatever a custom area says."""
    configure(custom, targets={"uploads": {"include": ["uploads/**", "config/**"]}})
    packed = cli.pack()
    code, inspected = cli.json("inspect", packed["id"], "--entries")
    owners = {e["path"]: e["target"] for e in inspected["entries"]}
    assert owners["config/config.json"] == "config" and owners["uploads/readme.txt"] == "uploads"
    assert cli("verify", packed["id"])[0] == 0


def test_the_shipped_configs_uploads_item_maps_to_a_defined_custom_target(tmp_path, capsys,
                                                                          monkeypatch):
    """PoppoBuilder's own config lists items [..., "uploads"]: a warning while no target
    holds it; none once backup.targets.uploads is defined, and uploads/ is archived."""
    monkeypatch.setenv("POPPO_BACKUP_KEY", "custom targets")
    root = tmp_path / "real"
    make_real_layout(root)
    cli = CLI(root, tmp_path / "store", capsys)
    code, out, err = cli("pack")
    assert "'uploads': names no target" in err
    text = (root / "config" / "config.json").read_text()
    last = text.rindex('"backup": {')
    text = text[:last] + '"backup": {\n    "targets": {"uploads": {"include": ["uploads/**"]}},' \
        + text[last + len('"backup": {'):]
    (root / "config" / "config.json").write_text(text)
    code, packed = cli.json("pack")
    assert code in (0, 1), packed
    assert not any("names no target" in w for w in packed["warnings"])
    assert packed["targets"]["uploads"]["files"] == sum(
        len(files) for _, _, files in os.walk(root / "uploads"))
    assert cli("verify", packed["id"])[0] == 0


def test_a_custom_target_restores_in_part_and_browses(cli, custom):
    """With #28's --include and ls, as any target."""
    packed = cli.pack()
    (custom / "uploads" / "2024").mkdir()
    (custom / "uploads" / "2024" / "old.png").write_bytes(b"old")
    shutil.rmtree(custom / "uploads" / "2025")
    code, doc = cli.json("unpack", packed["id"], "--targets", "uploads",
                         "--include", "uploads/2025/**")
    assert code in (0, 1), doc
    assert (custom / "uploads/2025/avatar.png").read_bytes() == b"\x89PNG" + bytes(100)
    assert (custom / "uploads/2024/old.png").exists()          # outside the selection: kept
    code, out, err = cli("ls", packed["id"], "uploads")
    assert code == 0 and "uploads/2025/avatar.png" in out, err
