"""Rules of spec/FORMAT.md that a second implementation could get wrong, each pinned by
reading the bytes poppoarc writes (not by calling the function that wrote them)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest
from pyzstd import ZstdDecompressor

from poppoarc.crypto import recipients
from poppoarc.errors import CorruptArchive
from poppoarc.format import tarheader
from poppoarc.format.entry import IndexEntry
from poppoarc.format.reader import expected_header
from poppoarc.archives.chain import Assembly
from tests.helpers import CLI
from tests.helpers.craft import craft, entry
from tests.helpers.rebuild import rebuild

VECTORS = Path(__file__).resolve().parents[2] / "fixtures" / "vectors"
VECTOR_TIME = 1750334400            # 2025-06-19T12:00:00.000Z, the vectors' manifest time
CHAIN1 = "backup-2025-06-20T12-00-00-000Z-chain1.poppo.tar.zst"


def decompressed(path: Path, start: int, end: int | None = None) -> bytes:
    """Every frame from ``start`` to ``end``, decompressed (a general decoder on purpose)."""
    data = path.read_bytes()[start:end]
    out = bytearray()
    while data:
        decoder = ZstdDecompressor()
        out += decoder.decompress(data)
        data = decoder.unused_data
    return bytes(out)


def manifest_of(path: Path) -> dict:
    head = path.read_bytes()[:16 + 8192]
    return json.loads(head[16 + 512:16 + 512 + 8192 - 1536].rstrip())


def fields(header: bytes) -> dict:
    """The ustar fields of one header block, read by offset as §4.2's table gives them."""
    def text(start, size):
        return header[start:start + size].rstrip(b"\0")
    return {"name": text(0, 100), "mode": header[100:108], "uid": header[108:116],
            "gid": header[116:124], "size": int(text(124, 12), 8), "mtime": header[136:148],
            "typeflag": header[156:157], "magic": header[257:265], "uname": text(265, 32)}


def test_the_index_member_header_has_the_fixed_fields():
    """§4.3 (issue 29 point 1): mode 0644, owner 0, the manifest time in whole seconds."""
    path = VECTORS / "minimal.poppo.tar.zst"
    layout = manifest_of(path)["layout"]
    header = fields(decompressed(path, layout["index_offset"])[:512])
    assert header == {"name": b".poppoarc/index.jsonl", "mode": b"0000644\0", "uid": b"0000000\0",
                      "gid": b"0000000\0", "size": layout["index_size"],
                      "mtime": b"%011o\0" % VECTOR_TIME, "typeflag": b"0",
                      "magic": b"ustar\x0000", "uname": b""}


def test_sealed_members_carry_the_archive_time_and_no_owner():
    """§11.3 (point 10): the manifest time truncated to seconds, mode 0600, owner 0."""
    path = VECTORS / "encrypted.poppo.tar.zst"
    manifest = manifest_of(path)
    assert manifest["timestamp"] == "2025-06-19T12:00:00.000Z"
    body = decompressed(path, manifest["layout"]["body_offset"], manifest["layout"]["index_offset"])
    names = []
    while body:
        header = fields(body[:512])
        names.append(header["name"])
        assert (header["mode"], header["uid"], header["mtime"]) == (
            b"0000600\0", b"0000000\0", b"%011o\0" % VECTOR_TIME)
        body = body[512 + header["size"] + tarheader.padding(header["size"]):]
    assert names == [b"objects/00000001.b", b"objects/00000004.0000", b"objects/00000006.b"]


def test_the_ascii_rendering_replaces_each_code_point_not_each_byte():
    """§4.2 (point 2), and (point 3) a directory's pax path keeps its trailing slash."""
    record = IndexEntry("state/処理済み", "state", "dir", 0o700, 0, 0, VECTOR_TIME * 10**9)
    raw = expected_header(record)
    pax, ustar = raw[:512], raw[-512:]
    assert fields(ustar)["name"] == b"state/????/"
    assert b"path=state/\xe5\x87\xa6\xe7\x90\x86\xe6\xb8\x88\xe3\x81\xbf/\n" in raw[512:1024]
    assert fields(pax)["name"] == b"././@PaxHeader" and fields(pax)["typeflag"] == b"x"
    long = IndexEntry("a/" + "é" * 120, "state", "file", 0o644, 0, 0, 0)
    assert fields(expected_header(long)[-512:])["name"] == b"a/" + b"?" * 98


def test_a_negative_time_rounds_toward_negative_infinity():
    """§4.2 (point 4): -1.5 s is -2 in the pax record, 0 in the clamped ustar field."""
    record = IndexEntry("old.txt", "state", "file", 0o644, 0, 0, -1_500_000_000, 0)
    raw = expected_header(record)
    assert b"12 mtime=-2\n" in raw[512:1024]
    assert fields(raw[-512:])["mtime"] == b"%011o\0" % 0
    assert fields(raw[:512])["mtime"] == b"%011o\0" % 0       # the pax header's own


def own_counts(entries: list[dict]) -> tuple[dict, int, dict]:
    """§5.2's counting rule, written out again from the spec's words."""
    targets: dict = {}
    for record in entries:
        if record["target"] is None:
            continue
        counts = targets.setdefault(record["target"], {"entries": 0, "files": 0, "size": 0})
        counts["entries"] += 1
        if record.get("generated"):
            continue
        if record["type"] in ("file", "hardlink"):
            counts["files"] += 1
        if record["type"] == "file":
            counts["size"] += record["size"]
    databases = {r["path"]: (r["size"], r.get("sha256")) for r in entries if r.get("sqlite")}
    return targets, sum(c["files"] for c in targets.values()), databases


@pytest.mark.parametrize("kind", ["full", "incremental", "sealed"])
def test_the_manifest_counts_follow_the_index(kind, cli, installation, monkeypatch):
    """§5.2 (points 6, 7): counts leave out the generated document, a hard link counts as a
    file without bytes, a stored_in record with all its bytes; databases[].sha256 is null
    in an archive sealed whole."""
    os.link(installation / "state" / "running-tasks.json", installation / "state" / "linked.json")
    monkeypatch.setenv("POPPO_BACKUP_KEY", "counting passphrase")
    if kind == "incremental":
        cli.pack("--full")
    archive = cli.pack(*{"full": ["--full"], "incremental": ["--incremental"],
                         "sealed": ["--encrypt"]}[kind])
    code, inspected = cli.json("inspect", archive["id"], "--entries")
    manifest, entries = inspected["manifest"], inspected["entries"]
    targets, files, databases = own_counts(entries)
    assert {name: {k: v for k, v in stats.items() if k != "stored"}
            for name, stats in manifest["targets"].items()} == targets
    assert manifest["files"] == files
    assert {d["path"]: (d["size"], d["sha256"]) for d in manifest["databases"]} == databases
    assert any(e["type"] == "hardlink" for e in entries)
    assert any(e.get("generated") for e in entries)
    if kind == "incremental":
        assert any(e.get("stored_in") for e in entries) and any("delta" in e for e in entries)
    if kind == "sealed":
        assert databases and all(sha256 is None for _, sha256 in databases.values())
    assert cli("verify", archive["id"])[0] == 0


def test_a_signed_manifest_whose_counts_differ_from_its_index_is_corrupt(cli, key_home):
    members = [entry("state", "dir"), entry("state/a.json", data=b"{}\n")]
    lying = {"state": {"files": 1, "size": 4, "entries": 2, "stored": [0, 0]}}
    path = craft(cli.store, key_home, members, targets=lying)
    code, _, err = cli("verify", str(path))
    assert code == 13 and "manifest says target state has 2 records, 1 files, 4 bytes" in err


def test_the_passphrase_is_the_bytes_of_the_variable_or_the_key_file(tmp_path):
    """§11.2 (point 9): no normalization, no re-encoding; a key file loses only its
    trailing CR and LF bytes."""
    secrets = recipients.load_secrets({}, tmp_path, {"POPPO_BACKUP_KEY": os.fsdecode(b"caf\xe9")},
                                      [])
    assert secrets.passphrase == b"caf\xe9"     # not UTF-8: still its bytes, not an error
    decomposed = "cafe\u0301"
    assert recipients.load_secrets({}, tmp_path, {"POPPO_BACKUP_KEY": decomposed},
                                   []).passphrase == b"cafe\xcc\x81"
    key_file = tmp_path / "key"
    key_file.write_bytes(b" two words \r\n\n")
    backup = {"storage": {"keyFile": str(key_file)}}
    assert recipients.load_secrets(backup, tmp_path, {}, []).passphrase == b" two words "


def _without(root: Path, database: str, keep: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        source = root / (database + suffix)
        if source.exists():
            shutil.move(source, keep / (Path(database).name + suffix))


def test_an_unchanged_database_is_an_empty_delta_and_a_gap_restarts_the_sequence(
        installation, tmp_path, capsys):
    """§12.4 (point 14): `delta: []` with a member of size 0; §12.5 (point 15): a link
    without the database ends its sequence, the next link stores it whole."""
    cli = CLI(installation, tmp_path / "store", capsys)
    full = cli.pack("--full")
    unchanged = cli.pack("--incremental")
    records = {e["path"]: e for e in cli.json("inspect", unchanged["id"], "--entries")[1]["entries"]}
    assert records["data/ccla.db"]["delta"] == []
    manifest = manifest_of(next(cli.store.glob(unchanged["id"] + "*")))
    assert manifest["parent"]["id"] == full["id"]
    body = decompressed(next(cli.store.glob(unchanged["id"] + "*")),
                        manifest["layout"]["body_offset"], manifest["layout"]["index_offset"])
    at = body.find(b".poppoarc/delta/data/ccla.db\0")
    assert at >= 0 and fields(body[at:at + 512])["size"] == 0

    kept = tmp_path / "kept"
    kept.mkdir()
    _without(installation, "data/ccla.db", kept)
    gap = cli.pack("--incremental")
    for name in os.listdir(kept):
        shutil.move(kept / name, installation / "data" / name)
    back = cli.pack("--incremental")
    records = {e["path"]: e for e in cli.json("inspect", back["id"], "--entries")[1]["entries"]}
    assert "delta" not in records["data/ccla.db"] and "stored_in" not in records["data/ccla.db"]
    assert cli("verify", back["id"])[0] == 0
    assert gap["parent"] == unchanged["id"] and back["parent"] == gap["id"]
    restored = tmp_path / "restored"
    restored.mkdir()
    code, result = CLI(restored, cli.store, capsys).json("unpack", back["id"], "--skip-backup")
    assert code in (0, 1) and result["outcome"] == "committed"
    query = "SELECT count(*) FROM sqlite_master"
    assert sqlite3.connect(restored / "data/ccla.db").execute(query).fetchone() == \
        sqlite3.connect(installation / "data/ccla.db").execute(query).fetchone()


def test_a_delta_whose_parent_link_lacks_the_database_is_refused(tmp_path):
    """§12.5 step 3 (point 15): after a gap the sequence has no base for a delta."""
    blocks = {"size": 4096, "digests": "A" * 24}
    whole = IndexEntry("data/app.db", "database", "file", 0o644, 0, 0, 0, 4096, "0" * 64,
                       sqlite=True, blocks=blocks)
    delta = IndexEntry("data/app.db", "database", "file", 0o644, 0, 0, 0, 4096, "0" * 64,
                       sqlite=True, blocks=blocks, delta=[0])
    assembly = Assembly(tmp_path / "work.db")
    try:
        assembly.begin("backup-a", None, whole)
        assembly.data(bytes(4096))
        assembly.end("backup-a", whole)
        assembly.forget()                   # the next link has no record of the path
        with pytest.raises(CorruptArchive, match="no base snapshot"):
            assembly.begin("backup-c", "backup-b", delta)
    finally:
        assembly.close()


def test_the_keyless_check_needs_whole_blocks_and_parses_no_header(cli, key_home, monkeypatch):
    """§11.4 (point 12): without the key, verify checks the frames, whole 512-byte blocks and
    the checksum, and says what it could not check."""
    monkeypatch.setenv("POPPO_BACKUP_KEY", "keyless check")
    archive = cli.pack("--encrypt")
    monkeypatch.delenv("POPPO_BACKUP_KEY")
    code, result = cli.json("verify", archive["id"])
    assert code == 0 and "file contents and their digests" in result["not_checked"]
    assert any("index" in item for item in result["not_checked"])
    # a re-signed body with 100 bytes after its last member: not whole blocks
    path = next(cli.store.glob(archive["id"] + "*"))
    rebuild(path, path, key_home, lambda members: members, extra=b"x" * 100)
    code, _, err = cli("verify", archive["id"])
    assert code == 13 and "whole number of tar blocks" in err, err



@pytest.mark.parametrize("index", ["minimal.index.jsonl", "chain1.index.jsonl"])
def test_the_vectors_follow_the_writer_rules_they_illustrate(index):
    """§5.4 (point 22): records in index order (target order, then code point order of the
    path), and a SHA-256 only where a writer puts one: 64 KiB and more, or a database."""
    rank = ("config", "database", "logs", "agents", "state", "security")
    records = [json.loads(line) for line in (VECTORS / index).read_text().splitlines()[1:]]
    # code point order is UTF-8 byte order: the spec's two words for one order
    keys = [(-1 if r["target"] is None else rank.index(r["target"]), r["path"].encode())
            for r in records]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    for record in records:
        if record["type"] in ("file", "hardlink"):
            assert ("sha256" in record) == (record["size"] >= 65536 or bool(record.get("sqlite")))


def _read_alone(path: Path, key_home: Path) -> None:
    """Every check of one archive's own bytes (§7 steps 1-9), without its chain."""
    from poppoarc.crypto import signing
    from poppoarc.format import reader

    pinned = signing.trusted_keys(key_home, [])
    with open(path, "rb") as handle:
        head = reader.open_trusted(handle, pinned, path)
        index = reader.read_index(handle, head, path)
        reader.read_body(handle, head, index.entries, path, reader.MemberSink())


@pytest.mark.parametrize("case", ["good", "altered", "missing", "in-a-full-archive"])
def test_an_incremental_opens_with_its_note_and_nothing_else_does(case, tmp_path, key_home):
    """§12.8: the note's bytes are a function of the manifest; a reader compares them."""
    from poppoarc.format.note import note_member

    members = [entry("state", "dir"), entry("state/a.json", data=b"{}\n")]
    parent = {"id": "backup-2025-06-19T12-00-00-000Z-abc123", "manifest_sha256": "0" * 64,
              "depth": 1}
    stranger = note_member("backup-2025-06-19T12-00-00-000Z-zzzzzz", parent, 0)
    note = {"good": None, "altered": stranger, "missing": b"", "in-a-full-archive": stranger}[case]
    chained = {} if case == "in-a-full-archive" else {"incremental": True, "parent": parent}
    path = craft(tmp_path / "store", key_home, members, note=note, **chained)
    if case == "good":
        _read_alone(path, key_home)
        layout = manifest_of(path)["layout"]
        first = fields(decompressed(path, layout["body_offset"], layout["index_offset"])[:512])
        assert (first["name"], first["mode"], first["uid"]) == (
            b".poppoarc/README", b"0000644\0", b"0000000\0")
        return
    with pytest.raises(CorruptArchive, match="note|tar header differs"):
        _read_alone(path, key_home)


def test_plain_tar_lists_the_note_right_after_the_manifest():
    """The point of §12.8: `tar -tvf` shows what kind of archive this is, and the text says
    how to restore it."""
    listed = subprocess.run(["tar", "--zstd", "-tf", str(VECTORS / CHAIN1)], capture_output=True,
                            text=True, check=True).stdout.splitlines()
    assert listed[:3] == [".poppoarc/manifest.json", ".poppoarc/manifest.sig", ".poppoarc/README"]
    out = subprocess.run(["tar", "--zstd", "-xOf", str(VECTORS / CHAIN1), ".poppoarc/README"],
                         capture_output=True, check=True).stdout.decode()
    assert out.startswith("THIS IS AN INCREMENTAL POPPOARC ARCHIVE: "
                          "backup-2025-06-20T12-00-00-000Z-chain1\n")
    assert "poppoarc unpack backup-2025-06-20T12-00-00-000Z-chain1" in out
    listed = subprocess.run(["tar", "--zstd", "-tf", str(VECTORS / "minimal.poppo.tar.zst")],
                            capture_output=True, text=True, check=True).stdout.splitlines()
    assert ".poppoarc/README" not in listed


def test_the_spec_gives_the_notes_text_exactly():
    from poppoarc.format.note import note_text

    spec = (VECTORS.parent.parent / "spec" / "FORMAT.md").read_text()
    template = spec.split("<!-- incremental-note:begin -->\n```text\n")[1].split("```\n")[0]
    parent = {"id": "backup-2025-06-19T12-00-00-000Z-chain0", "depth": 1}
    expected = template.replace("{id}", "backup-2025-06-20T12-00-00-000Z-chain1").replace(
        "{parent}", parent["id"]).replace("{depth}", "1")
    assert note_text("backup-2025-06-20T12-00-00-000Z-chain1", parent) == expected.encode()


@pytest.mark.parametrize("field,value", [("changed", "false"), ("changed", '"yes"'),
                                         ("sqlite", "1"), ("generated", "false"),
                                         ("link", "5"), ("target", "7")])
def test_a_record_value_of_the_wrong_type_is_corrupt(field, value):
    """§5.4: flags are only ever true; link and target are strings (target may be null)."""
    from poppoarc.format.manifest import decode_index

    record = {"gid": 0, "mode": 0o644, "mtime_ns": 0, "path": "a", "size": 3, "target": "state",
              "type": "file", "uid": 0}
    if field == "link":
        record.update(type="symlink", size=0, mode=0o777)
    line = json.dumps(record, sort_keys=True, separators=(",", ":"))[:-1]
    line = line.replace('"target":"state"', '"target":7') if field == "target" else \
        line + f',"{field}":{value}'
    document = json.dumps(json.loads(line + "}"), sort_keys=True, separators=(",", ":"))
    index = b'{"archive_id":"backup-x","entries":1,"format":"poppoarc-index/1"}\n' + \
        document.encode() + b"\n"
    with pytest.raises(CorruptArchive):
        decode_index(index, "backup-x", "t")
