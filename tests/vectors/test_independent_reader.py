"""A reader written from spec/FORMAT.md alone (tests/independent/) reaches poppoarc's verdict
on every vector and the tree poppoarc restores, from the vectors and from fresh archives:
the spec says enough to read the format without poppoarc's code (issue 29)."""

from __future__ import annotations

import base64
import json
import os
import shutil
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from poppoarc.demo.changes import simulate_day
from poppoarc.restore import trash
from tests.helpers import CLI, recipient_only
from tests.helpers.craft import craft, entry
from tests.independent.reader import read
from tests.independent.tar import Verdict
from tests.helpers.vectors import LEGACY, VECTORS, expectations, legacy, settings, trust

SKIP = (".poppoarc.lock",)


def public_key(text: str) -> bytes:
    """§11.7: ``ed25519:`` and the base64 of 32 bytes."""
    prefix, _, encoded = text.strip().partition(":")
    assert prefix == "ed25519"
    return base64.b64decode(encoded, validate=True)


def identity(path: Path):
    return load_pem_private_key(path.read_bytes(), password=None)


def verdict(path: Path, pinned: list[bytes], passphrase=None, key=None) -> str:
    try:
        read(path, pinned, passphrase, key)
    except Verdict as reached:
        return reached.verdict
    return "ok"


VECTOR_PINNED = [public_key((VECTORS / "test-signing.pub").read_text())]


@pytest.mark.parametrize("name,expect,fields", list(expectations()))
def test_the_independent_reader_reaches_each_vectors_verdict(name, expect, fields):
    path = VECTORS / fields.get("file", f"{name}.poppo.tar.zst")
    passphrase = fields["passphrase"].encode() if "passphrase" in fields else None
    key = identity(VECTORS / fields["identity"]) if "identity" in fields else None
    assert verdict(path, VECTOR_PINNED, passphrase, key) == expect


def restored_tree(root: Path) -> dict:
    """What a restore left under ``root``, in the independent reader's terms."""
    trash.sweep(root, wait=True)       # a restore's old tree, deleted behind it
    tree, inodes = {}, {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.name in SKIP:
            continue
        st = path.lstat()
        if path.is_symlink():
            tree[rel] = ("symlink", os.readlink(path))
        elif path.is_dir():
            tree[rel] = ("dir", st.st_mode & 0o7777)
        elif (st.st_dev, st.st_ino) in inodes:
            tree[rel] = ("hardlink", inodes[(st.st_dev, st.st_ino)])
        else:
            inodes[(st.st_dev, st.st_ino)] = rel
            tree[rel] = ("file", st.st_mode & 0o7777, path.read_bytes())
    return tree


def assert_same_tree(independent: dict, restored: dict) -> None:
    # shared parent directories are made by a restore, but no target owns them (§5.4)
    extra = {p for p, v in restored.items() if p not in independent and v[0] != "dir"}
    assert not extra, sorted(extra)[:5]
    for path, entry in independent.items():
        assert restored.get(path) == entry, path
    assert sum(v[0] == "file" for v in independent.values()) > 0


def restore(cli: CLI, archive_id: str, root: Path) -> dict:
    root.mkdir()
    code, result = CLI(root, cli.store, cli.capsys).json("unpack", archive_id, "--skip-backup")
    assert code in (0, 1) and result["outcome"] == "committed", result
    return restored_tree(root)


@pytest.mark.parametrize("name", [name for name, expect, _ in expectations() if expect == "ok"])
def test_the_independent_reader_extracts_what_poppoarc_restores_from_each_vector(
        name, tmp_path, capsys, monkeypatch):
    store = tmp_path / "store"
    shutil.copytree(VECTORS, store)
    fields = dict(next(f for n, _, f in expectations() if n == name))
    monkeypatch.delenv("POPPO_BACKUP_KEY", raising=False)
    if "passphrase" in fields:
        monkeypatch.setenv("POPPO_BACKUP_KEY", fields["passphrase"])
    vector_settings = settings(tmp_path, fields.get("identity"))
    config = tmp_path / "restored" / "config" / "config.json"
    config.parent.mkdir(parents=True)
    config.write_text(json.dumps({"backup": vector_settings.backup}))
    os.chmod(config, 0o600)
    root = tmp_path / "restored"
    path = str(store / f"{name}.poppo.tar.zst")
    # every target it holds, named: a custom target whose area only the archive states is
    # restored only when named (spec §13 rule 3); the independent reader extracts them all
    held = CLI(root, store, capsys).json("inspect", path)[1]["manifest"]["targets"]
    code, result = CLI(root, store, capsys).json("unpack", path, "--skip-backup",
                                                 "--targets", ",".join(held))
    assert code in (0, 1) and result["outcome"] == "committed", result
    passphrase = fields["passphrase"].encode() if "passphrase" in fields else None
    key = identity(VECTORS / fields["identity"]) if "identity" in fields else None
    independent = read(store / f"{name}.poppo.tar.zst", VECTOR_PINNED, passphrase, key)
    restored = restored_tree(root)
    assert_same_tree(independent, restored)


@pytest.mark.parametrize("kind", ["full", "incremental", "passphrase", "recipient", "secrets"])
def test_the_independent_reader_extracts_what_poppoarc_restores_from_fresh_archives(
        kind, cli, installation, key_home, tmp_path, monkeypatch):
    """Archives poppoarc writes now, of a realistic tree: plain, a chain with page deltas and
    references, sealed whole for a passphrase or for a recipient, and with secrets sealed."""
    monkeypatch.delenv("POPPO_BACKUP_KEY", raising=False)
    passphrase = key = None
    args = ["--full"]
    if kind in ("passphrase", "secrets"):
        passphrase = b"independent reader passphrase"
        monkeypatch.setenv("POPPO_BACKUP_KEY", passphrase.decode())
        args = ["--encrypt"] if kind == "passphrase" else []
    if kind == "recipient":
        offline = tmp_path / "offline-keys"
        recipient_only(cli, installation, key_home, offline, monkeypatch)
        monkeypatch.setenv("POPPO_BACKUP_IDENTITY", str(offline / "encryption.key"))
        key, args = identity(offline / "encryption.key"), ["--encrypt"]
    archive = cli.pack(*args)
    if kind == "incremental":
        for day in (1, 2):
            simulate_day(installation, fraction=0.05, seed=day)
            archive = cli.pack("--incremental")
        assert archive["reused"] > 0
        entries = cli.json("inspect", archive["id"], "--entries")[1]["entries"]
        assert any(e.get("delta") for e in entries) and any(e.get("stored_in") for e in entries)
    if key is None and passphrase is None:      # secrets sealed to this machine's identity
        key = identity(key_home / "encryption.key")
    pinned = [public_key((key_home / "signing.pub").read_text())]
    path = next(cli.store.glob(archive["id"] + "*"))
    independent = read(path, pinned, passphrase, key)
    if kind == "secrets":
        assert any(p.startswith(".env") for p in independent), "the sealed secrets are read"
    assert_same_tree(independent, restore(cli, archive["id"], tmp_path / "restored"))


def _short(members):
    record, data = members[1]
    record.size = len(data) + 10        # the index promises 10 bytes the body does not have
    return members


def _below_a_link(members):
    return members + [entry("state/link", "symlink", link="/etc"),
                      entry("state/link/passwd", data=b"root::0:0\n")]


def _header(record, raw):
    return raw[:100] + b"0000777\0" + raw[108:] if record.path == "state/a.json" else raw


@pytest.mark.parametrize("case", ["short", "below-a-link", "header", "extra", "good"])
def test_both_readers_agree_on_crafted_archives(case, key_home, tmp_path):
    """Hostile archives signed by a trusted key, made by the real writer: the same verdict."""
    from poppoarc.errors import PoppoarcError
    from poppoarc.format import reader
    from poppoarc.crypto import signing

    members = [entry("state", "dir"), entry("state/a.json", data=b'{"a": 1}\n')]
    members = {"short": _short, "below-a-link": _below_a_link}.get(case, lambda m: m)(members)
    path = craft(tmp_path / "store", key_home, members, extra_body=bytes(512) * (case == "extra"),
                 header_hook=_header if case == "header" else None)
    try:
        with open(path, "rb") as handle:
            head = reader.open_trusted(handle, signing.trusted_keys(key_home, []), path)
            index = reader.read_index(handle, head, path)
            reader.read_body(handle, head, index.entries, path, reader.MemberSink())
        theirs = "ok"
    except PoppoarcError as exc:
        theirs = type(exc).__name__
    pinned = [public_key((key_home / "signing.pub").read_text())]
    assert verdict(path, pinned) == theirs == ("ok" if case == "good" else "CorruptArchive")


NAMES = ["config", "data", "state", "logs", "agents", ".poppo", "certs", "ccla", "x.db",
         "a.sqlite3", ".env", ".env.local", "t.token", "k.pem", "c.crt", "access.log.1", "x.gz",
         "y.json", "poppoarc", ".poppoarc-x", "z.db-wal", "j-journal"]


def test_the_areas_of_section_13_as_written_are_poppoarcs():
    """§13 rule 3's table and its words, read by the independent reader, give every record
    kind at every path of three names the target poppoarc's catalogue gives it."""
    import itertools

    from poppoarc.snapshot.catalogue import area_catalogue
    from tests.independent.confinement import area

    catalogue = area_catalogue({})
    differ = []
    for depth in (1, 2, 3):
        for names in itertools.product(NAMES, repeat=depth):
            path = "/".join(names)
            for kind in ("file", "dir", "symlink", "sqlite"):
                record = {"path": path, "type": "file" if kind == "sqlite" else kind,
                          "sqlite": kind == "sqlite"}
                if area(record) != catalogue.owner(path, kind):
                    differ.append((kind, path))
    assert not differ, differ[:10]


def test_the_link_rule_of_section_13_as_written_is_poppoarcs():
    """§13 rule 5 on random sets of links whose texts climb, loop and pass through others."""
    import random

    from poppoarc.format.paths import link_target_problem
    from poppoarc.restore.safety import escapes
    from tests.independent.confinement import _escapes

    rng = random.Random(29)
    checked = 0
    for _ in range(3000):
        links = {"/".join(rng.choice("abcd") for _ in range(rng.randint(1, 3))):
                 "/".join(rng.choice(["..", "a", "b", "x", ".", "c"])
                          for _ in range(rng.randint(1, 4))) for _ in range(rng.randint(1, 4))}
        links = {p: t for p, t in links.items() if not any(p.startswith(q + "/") for q in links)}
        for path, text in links.items():
            theirs = link_target_problem(path, text) is not None or escapes(path, text, links.get)
            assert _escapes(path, text, links) == theirs, (path, text, links)
            checked += 1
    assert checked > 3000


@pytest.mark.parametrize("archive_id,fields", legacy(), ids=[f[0][-6:] for f in legacy()])
def test_the_independent_reader_reads_each_legacy_archive_as_poppoarc_restores_it(
        archive_id, fields, tmp_path, monkeypatch):
    """Format 1 by §15's rules: the same verdict (ok) and the same tree."""
    from poppoarc.config import Settings
    from tests.helpers import unpack

    monkeypatch.setenv("POPPO_BACKUP_KEY", "poppoarc test vector passphrase")
    passphrase = fields["passphrase"].encode() if "passphrase" in fields else None
    key = identity(VECTORS / fields["identity"]) if "identity" in fields else None
    independent = read(LEGACY / f"{archive_id}.poppo.tar.zst", VECTOR_PINNED, passphrase, key)
    store = tmp_path / "store"
    shutil.copytree(LEGACY, store)
    root = tmp_path / "root"
    root.mkdir()
    unpack(Settings(root=root, config_path=tmp_path / "none.json", store=store,
                    backup=trust(tmp_path), key_dir=tmp_path / "keys"), archive_id,
           skip_backup=True)
    assert_same_tree(independent, restored_tree(root))
