"""Small files carry no SHA-256 of their own (spec/FORMAT.md §5.4): what is kept, what
readers require, and that the signed body checksum still guards every small file."""

from __future__ import annotations

import os
import random
import shutil
from io import BytesIO

import pytest

from poppoarc.errors import CorruptArchive
from poppoarc.format.entry import DIGEST_MIN_SIZE, IndexEntry
from poppoarc.format.manifest import decode_index, write_index
from poppoarc.format.reader import read_head

from tests.helpers import CLI
from tests.helpers.craft import craft, entry
from tests.helpers import digest

ARCHIVE_ID = "backup-2025-06-19T12-00-00-000Z-abc123"
SHA = "ab" * 32


def decode(*records: IndexEntry):
    out = BytesIO()
    write_index(out, ARCHIVE_ID, list(records))
    return list(decode_index(out.getvalue(), ARCHIVE_ID, "test")[0])


def record(size: int, sha256: str | None, **extra) -> IndexEntry:
    return IndexEntry(f"state/f{size}", "state", "file", 0o644, 0, 0, 10**18, size, sha256,
                      **extra)


@pytest.mark.parametrize("size", [0, 1, DIGEST_MIN_SIZE - 1])
def test_a_small_file_may_come_with_or_without_a_digest(size):
    assert decode(record(size, None))[0].sha256 is None
    assert decode(record(size, SHA))[0].sha256 == SHA       # archives written before §5.4


@pytest.mark.parametrize("broken, problem", [
    (record(DIGEST_MIN_SIZE, None), "missing digest"),
    (record(10 << 20, None), "missing digest"),
    (record(100, None, sqlite=True), "missing digest"),
    (record(100, None, sealed=[["objects/00000001.0000", 64]]), "missing digest"),  # no HMAC
    (record(100, "AB" * 32), "malformed digest"),
    (IndexEntry("state", "state", "dir", 0o755, 0, 0, 0, 0, SHA), "has no content digest"),
])
def test_readers_reject_a_missing_or_misplaced_digest(broken, problem):
    with pytest.raises(CorruptArchive, match=problem):
        decode(broken)


def test_a_hard_link_to_a_small_file_has_no_digest_either():
    target = record(100, None)
    link = IndexEntry("state/link", "state", "hardlink", 0o644, 0, 0, 10**18, 100, None,
                      link=target.path)
    assert [e.sha256 for e in decode(target, link)] == [None, None]
    with pytest.raises(CorruptArchive, match="same target and content"):
        decode(target, IndexEntry("state/link", "state", "hardlink", 0o644, 0, 0, 10**18, 100,
                                  SHA, link=target.path))


def test_pack_keeps_the_digest_of_large_files_and_databases_only(cli, installation):
    (installation / "state/large.json").write_bytes(b"[1]\n" * (DIGEST_MIN_SIZE // 4))
    (installation / "state/just-small.json").write_bytes(b"x" * (DIGEST_MIN_SIZE - 1))
    packed = cli.pack()
    _, inspected = cli.json("inspect", packed["id"], "--entries")
    files = {e["path"]: e for e in inspected["entries"] if e["type"] == "file"}
    assert "sha256" in files["state/large.json"]
    assert "sha256" not in files["state/just-small.json"]
    for path, found in files.items():
        expected = found.get("sqlite") or found["size"] >= DIGEST_MIN_SIZE
        assert ("sha256" in found) == bool(expected), path
    assert any(f.get("sqlite") for f in files.values())
    assert cli("verify", packed["id"])[0] == 0


def test_a_forged_small_file_is_refused_by_the_body_checksum(cli, installation, key_home):
    """The head of one archive spliced onto a body that holds other content of the same
    length, in frames that decode cleanly: with no per-file digest to catch it, the signed
    body checksum must, and nothing reaches the live tree."""
    cli.pack()
    before = digest(installation)

    def archive(content: bytes):
        small, data = entry("state/tasks.json", data=content)
        small.sha256 = None
        return craft(cli.store, key_home, [entry("state", "dir"), (small, data)])

    def body(path) -> bytes:
        with open(path, "rb") as handle:
            layout = read_head(handle, path).manifest["layout"]
        return path.read_bytes()[layout["body_offset"]:layout["index_offset"]]

    # Random bytes do not compress, so zstd stores them raw and two bodies nearly always
    # have one length (the headers around them may differ by a byte: draw again).
    draw = random.Random(8).randbytes
    genuine = archive(draw(3000))
    original = body(genuine)
    forged = next(b for b in (body(archive(draw(3000))) for _ in range(20))
                  if len(b) == len(original))
    assert forged != original
    data = genuine.read_bytes()
    start = data.index(original)
    genuine.write_bytes(data[:start] + forged + data[start + len(forged):])

    code, _, err = cli("verify", str(genuine))
    assert code == 13 and "body checksum does not match" in err, err
    code, _, err = cli("unpack", str(genuine), "--skip-backup")
    assert code == 13 and "body checksum does not match" in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert digest(installation) == before
    assert not [p for p in installation.iterdir() if p.name.startswith(".poppoarc-stag")]


def test_check_content_compares_a_small_file_by_size_and_mtime(installation, tmp_path, capsys):
    """A small file copied to a new machine (new inode and ctime, same bytes and mtime) is
    reused by --check-content, not by stat; one whose mtime moved is stored again by both,
    since no digest can vouch for it."""
    by_stat = CLI(installation, tmp_path / "by-stat", capsys)
    by_content = CLI(installation, tmp_path / "by-content", capsys)
    by_stat.pack()
    by_content.pack()
    copied, touched = installation / "config/config.json", installation / "state/running-tasks.json"
    assert copied.stat().st_size < DIGEST_MIN_SIZE and touched.stat().st_size < DIGEST_MIN_SIZE
    shutil.copy2(copied, tmp_path / "copy")
    copied.unlink()
    shutil.copy2(tmp_path / "copy", copied)      # same bytes and mtime, another inode
    os.utime(touched, ns=(1, 1))                 # same bytes, another mtime

    def records(cli: CLI, *flags: str) -> dict:
        packed = cli.pack("--incremental", *flags)
        return {e["path"]: e for e in cli.json("inspect", packed["id"], "--entries")[1]["entries"]}

    stat_records, content_records = records(by_stat), records(by_content, "--check-content")
    assert "stored_in" not in stat_records["config/config.json"]
    assert "stored_in" in content_records["config/config.json"]
    for found in (stat_records, content_records):
        assert "stored_in" not in found["state/running-tasks.json"]
        untouched = [r for r in found.values() if r["type"] == "file"
                     and not (r.get("sqlite") or r.get("generated"))
                     and r["size"] < DIGEST_MIN_SIZE and r["path"] != "config/config.json"
                     and r["path"] != "state/running-tasks.json"]
        assert untouched and all("stored_in" in r for r in untouched)
