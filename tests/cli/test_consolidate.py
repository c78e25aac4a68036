"""consolidate (issue 26): a self-contained full archive from an incremental and its
chain, written into the same store, restoring to exactly what the chain restores to;
the chain verified first; a broken or damaged chain, a missing key: nothing written."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
from pathlib import Path

import pytest

from poppoarc.demo.changes import simulate_day
from tests.helpers import CLI, digest, is_database

SUFFIX = ".poppo.tar.zst"
SCHEMAS = Path(__file__).resolve().parents[2] / "spec" / "json"
PASS = "correct horse battery staple"


def configure(root: Path, **backup) -> None:
    path = root / "config/config.json"
    document = json.loads(path.read_text())
    document.setdefault("backup", {}).update(backup)
    path.write_text(json.dumps(document))


def full_digest(root: Path) -> dict:
    """``digest`` plus owners, hard-link groups and each database's rows."""
    out = digest(root)
    inodes: dict = {}
    for rel in sorted(out):
        st = os.lstat(root / rel)
        if stat.S_ISREG(st.st_mode):
            inodes.setdefault((st.st_dev, st.st_ino), []).append(rel)
            rows = _rows(root / rel) if is_database(root / rel) else None
            out[rel] = (*out[rel], st.st_uid, st.st_gid, rows)
    out["<hard links>"] = sorted(group for group in inodes.values() if len(group) > 1)
    return out


def _rows(path: Path) -> list:
    with sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True) as db:
        tables = [r[0] for r in db.execute(
            "select name from sqlite_master where type='table' order by name")]
        return [(t, sorted(map(repr, db.execute(f'select * from "{t}"')))) for t in tables]


def listing(store: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(store.iterdir())
            if not p.name.startswith(".poppoarc-runs")}


def archives(store: Path) -> list[str]:
    return sorted(p.name[:-len(SUFFIX)] for p in store.glob("*" + SUFFIX))


def restored(tmp_path: Path, store: Path, reference: str, capsys, name: str,
             *extra: str) -> Path:
    root = tmp_path / name
    root.mkdir()
    code, done = CLI(root, store, capsys).json("unpack", reference, "--skip-backup", *extra)
    assert code in (0, 1), done
    return root


def change(root: Path, day: int) -> None:
    """A day of work plus what simulate_day does not do: a deletion, a rename, a mode
    change, a new hard link and symlink."""
    simulate_day(root, fraction=0.05, seed=day)
    files = sorted(p for p in (root / "state").rglob("*.json") if p.is_file())
    files[0].unlink()
    files[1].rename(files[1].with_name(f"renamed-{day}.json"))
    files[2].chmod(0o640)
    os.link(files[3], files[3].with_name(f"hardlink-{day}.json"))
    (root / "state" / f"link-{day}").symlink_to(files[3].name)


@pytest.fixture
def chain(tmp_path, installation_template, capsys):
    """A full archive and three incrementals of the small installation, each after
    changes, deletions, renames, mode changes and database changes."""
    root = tmp_path / "inst"
    shutil.copytree(installation_template("small"), root, symlinks=True)
    cli = CLI(root, tmp_path / "store", capsys)
    packed = [cli.pack("--full")]
    for day in (1, 2, 3):
        change(root, day)
        packed.append(cli.pack("--incremental"))
    assert all(p["parent"] == q["id"] for q, p in zip(packed, packed[1:]))
    return cli, packed


def test_consolidated_archive_restores_what_the_chain_restores(chain, tmp_path, capsys):
    cli, packed = chain
    newest = packed[-1]["id"]
    live = full_digest(cli.root)
    code, plan = cli.json("consolidate", newest, "--dry-run")
    assert code == 0 and plan["dry_run"] and plan["id"] is None
    assert plan["chain"] == [p["id"] for p in packed[:-1]]
    assert archives(cli.store) == sorted(p["id"] for p in packed)

    code, out, err = cli("consolidate", newest, "--protect")
    assert code == 0, err
    assert f"Chain of {newest} verified: 3 ancestor(s)" in out and "verified" in out
    made = sorted(set(archives(cli.store)) - {p["id"] for p in packed})
    assert len(made) == 1
    assert full_digest(cli.root) == live                # the live tree untouched
    code, listed = cli.json("list")
    row = next(a for a in listed["archives"] if a["id"] == made[0])
    assert not row["incremental"] and row["parent"] is None and row["protected"]
    assert row["name"] == f"consolidated-{newest}"

    from_chain = restored(tmp_path, cli.store, newest, capsys, "from-chain")
    from_one = restored(tmp_path, cli.store, made[0], capsys, "from-one")
    assert full_digest(from_one) == full_digest(from_chain)
    assert any(k.startswith("state/hardlink-") for k in full_digest(from_one))

    # no leftovers in the store: only the archives, the records, the protection mark
    assert not [p for p in cli.store.iterdir() if "consolidate" in p.name]


def test_consolidated_archive_travels_alone_to_another_installation(chain, tmp_path, capsys):
    """The migration: consolidate, copy that one file, restore it on a machine whose key
    directory is another one (the signing key pinned, the identity imported)."""
    cli, packed = chain
    code, made = cli.json("consolidate", packed[-1]["id"])
    assert code in (0, 1), made
    other_store = tmp_path / "other-store"
    other_store.mkdir()
    shutil.copy2(made["path"], other_store)
    from_chain = restored(tmp_path, cli.store, packed[-1]["id"], capsys, "from-chain")
    # the second machine: an empty root; the key directory copied as the how-to says
    new_root = tmp_path / "new-machine"
    new_root.mkdir()
    code, done = CLI(new_root, other_store, capsys).json("unpack", made["id"], "--skip-backup")
    assert code in (0, 1), done
    assert full_digest(new_root) == full_digest(from_chain)


def test_a_full_archive_is_already_self_contained(chain):
    cli, packed = chain
    before = listing(cli.store)
    code, result = cli.json("consolidate", packed[0]["id"])
    assert code == 0 and result["incremental"] is False and result["id"] is None
    assert listing(cli.store) == before


def test_missing_parent_is_a_broken_chain_and_nothing_is_written(chain):
    cli, packed = chain
    (cli.store / f"{packed[1]['id']}{SUFFIX}").unlink()
    before = listing(cli.store)
    code, out, err = cli("consolidate", packed[-1]["id"])
    assert code == 17, err
    assert packed[1]["id"] in err
    assert listing(cli.store) == before


def test_tampered_middle_link_is_refused_and_nothing_is_written(chain):
    cli, packed = chain
    middle = cli.store / f"{packed[2]['id']}{SUFFIX}"
    data = bytearray(middle.read_bytes())
    data[len(data) - 200] ^= 0xFF
    middle.write_bytes(bytes(data))
    before = listing(cli.store)
    code, out, err = cli("consolidate", packed[-1]["id"])
    assert code in (13, 17), err
    assert packed[2]["id"] in err
    assert listing(cli.store) == before


def test_encrypted_chain_is_consolidated_sealed_and_needs_its_key(installation, tmp_path,
                                                                   capsys, monkeypatch):
    monkeypatch.setenv("POPPO_BACKUP_KEY", PASS)
    configure(installation, storage={"type": "local", "encrypt": True})
    cli = CLI(installation, tmp_path / "store", capsys)
    packed = [cli.pack("--full")]
    change(installation, 1)
    packed.append(cli.pack("--incremental"))
    assert packed[-1]["encryption"] == "archive"
    code, made = cli.json("consolidate", packed[-1]["id"])
    assert code in (0, 1), made
    assert made["encrypt"]
    code, listed = cli.json("list")
    row = next(a for a in listed["archives"] if a["id"] == made["id"])
    assert row["encryption"] == "archive"
    assert full_digest(restored(tmp_path, cli.store, made["id"], capsys, "one")) == \
        full_digest(restored(tmp_path, cli.store, packed[-1]["id"], capsys, "chain"))

    monkeypatch.delenv("POPPO_BACKUP_KEY")
    before = listing(cli.store)
    code, out, err = cli("consolidate", packed[-1]["id"])
    assert code in (40, 41, 42), err
    assert listing(cli.store) == before


def test_sealed_secrets_and_custom_targets_are_kept(installation, tmp_path, capsys):
    configure(installation, targets={"uploads": {"include": ["uploads/**"]}})
    (installation / "uploads").mkdir()
    (installation / "uploads" / "a.bin").write_bytes(os.urandom(3000))
    assert (installation / ".env").exists()
    cli = CLI(installation, tmp_path / "store", capsys)
    packed = [cli.pack("--full")]
    (installation / "uploads" / "b.bin").write_bytes(b"second day")
    (installation / ".env").write_text("TOKEN=changed\n")
    packed.append(cli.pack("--incremental"))
    assert packed[-1]["parent"] == packed[0]["id"]
    code, made = cli.json("consolidate", packed[-1]["id"])
    assert code in (0, 1), made
    assert "uploads" in made["targets"]
    # an empty root defines no custom target: name them all (unpack's rule)
    every = ("--targets", ",".join(made["targets"]))
    one = restored(tmp_path, cli.store, made["id"], capsys, "one", *every)
    chain_root = restored(tmp_path, cli.store, packed[-1]["id"], capsys, "chain", *every)
    assert (one / ".env").read_text() == "TOKEN=changed\n"
    assert (one / "uploads" / "b.bin").read_bytes() == b"second day"
    assert full_digest(one) == full_digest(chain_root)


def test_consolidate_json_matches_its_schema(chain):
    from jsonschema import Draft202012Validator
    cli, packed = chain
    schema = json.loads((SCHEMAS / "consolidate.schema.json").read_text())
    for args in (("--dry-run",), ()):
        code, document = cli.json("consolidate", packed[-1]["id"], *args)
        assert code in (0, 1)
        errors = list(Draft202012Validator(schema).iter_errors(document))
        assert not errors, [e.message for e in errors]


def test_no_room_for_the_consolidation_is_exit_23_and_leaves_nothing(chain, small_fs):
    """The store's file system holds the chain and little more: the scratch restore (or
    the new archive) does not fit; exit 23, the store as it was, no scratch root left."""
    cli, packed = chain
    room = sum(p.stat().st_size for p in cli.store.iterdir() if p.is_file())
    where = small_fs(room // 1024 + 96)
    for path in cli.store.iterdir():
        if path.is_file():
            shutil.copy2(path, where / path.name)
    before = listing(where)
    code, out, err = CLI(cli.root, where, cli.capsys)("consolidate", packed[-1]["id"])
    assert code == 23, err
    assert listing(where) == before
    assert not [p for p in where.iterdir() if p.name.startswith(".poppoarc-consolidate")]


@pytest.mark.parametrize("failure", ["refused", "fewer files"])
def test_the_result_is_verified_before_it_is_published(chain, monkeypatch, failure):
    """consolidate verified its archive after renaming it into the store: a reader (list,
    copy, a restore) could take an unchecked archive, and a kill between the rename and
    the deletion left a bad one.  It is verified in a staging store; a failure leaves
    nothing in the store."""
    from poppoarc.errors import CorruptArchive
    from poppoarc.operations import consolidate

    cli, packed = chain
    before = listing(cli.store)
    seen = []

    def verify(settings, reference, *args, **kwargs):
        if reference in {p["id"] for p in packed}:      # the plan's check of the chain
            return real_verify(settings, reference, *args, **kwargs)
        seen.append(archives(cli.store))
        if failure == "refused":
            raise CorruptArchive("made to fail by the test", path=reference)
        checked = real_verify(settings, reference, *args, **kwargs)
        checked.files -= 1
        return checked

    real_verify = consolidate.verify
    monkeypatch.setattr(consolidate, "verify", verify)
    code, out, err = cli("consolidate", packed[-1]["id"])
    assert code == 13, err
    assert seen == [archives(cli.store)] == [sorted(p["id"] for p in packed)]
    assert listing(cli.store) == before
    assert not [p for p in cli.store.iterdir() if p.name.startswith(".poppoarc-consolidate")]
