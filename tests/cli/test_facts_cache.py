"""The facts cache (archives/facts.py, format/facts.py): an incremental reads its parent's
facts from it instead of the parent's index, writes the same archive as from the index,
and a cache that was edited, cut, replayed from another archive or written with another
key is ignored with a warning, so it can never hide a change."""

import dataclasses
import json
import marshal
import os

import pyzstd
import pytest

from poppoarc.archives import facts
from poppoarc.config import resolve
from poppoarc.crypto import signing
from poppoarc.format import facts as factsfmt
from poppoarc.format import reader
from poppoarc.format.records import encode_entry
from poppoarc.format.chains import reference
from poppoarc.parallel import SERIAL, Parallelism

from poppoarc.format.entry import IndexEntry

from tests.helpers import CLI, EAGER, incremental_four_ways


def settings_of(cli):
    return resolve(str(cli.root), store=str(cli.store))


def records(cli, packed) -> list[IndexEntry]:
    code, inspected = cli.json("inspect", packed["path"], "--entries")
    assert code == 0
    return [IndexEntry(**entry) for entry in inspected["entries"]]


def cache_files(cli):
    where = facts.directory(settings_of(cli))
    return sorted(where.iterdir()) if where.is_dir() else []


def index_reads(monkeypatch):
    """The archives whose index is read (the parent's, when its cache is not used)."""
    read = []
    real = reader.read_index

    def spy(source, head, where, *args, **kwargs):
        read.append(head.manifest["id"])
        return real(source, head, where, *args, **kwargs)

    monkeypatch.setattr(reader, "read_index", spy)
    return read


def test_a_chain_keeps_one_cache_and_an_incremental_reads_it(cli, both_ways, monkeypatch):
    plain = cli.pack()                  # not in a chain: no cache
    assert cache_files(cli) == []
    full = cli.pack("--full")
    assert [p.name for p in cache_files(cli)] == [f"{full['id']}.facts"]
    read = index_reads(monkeypatch)
    (cli.root / "state" / "new.json").write_text("{}")
    first = cli.pack("--incremental")
    assert first["parent"] == full["id"] and full["id"] not in read
    assert first["reused"] > 10 and not any("facts cache" in w for w in first["warnings"])
    # one cache: the newest archive's
    assert [p.name for p in cache_files(cli)] == [f"{first['id']}.facts"]
    second = cli.pack("--incremental")
    assert second["parent"] == first["id"] and first["id"] not in read
    assert second["reused"] == first["reused"] + 1          # state/new.json now too
    assert plain["id"] not in read
    for packed in (first, second):
        assert cli.json("verify", packed["id"])[0] == 0


def test_from_the_cache_or_from_the_index_the_same_archive(cli, fixed_pack, installation):
    """Byte for byte, both ways: the cache only changes where the parent's facts come from."""
    cli.pack("--full")
    (installation / "state" / "new.json").write_text("{}")
    (installation / "logs" / "app.log").write_text("a changed log\n")
    archives = incremental_four_ways(fixed_pack, installation)
    assert len(archives) == 4 and len(set(archives.values())) == 1


def test_reference_lines_are_the_writers(cli):
    """format/facts.reference_line builds what encode_entry(chains.reference(...)) does."""
    full = cli.pack("--full")
    checked = 0
    for record in records(cli, full):
        found = factsfmt.file_facts(record)
        if found is None:
            continue
        referenced = factsfmt.referenced(found, full["id"])
        expected = encode_entry(reference(record, full["id"], path=record.path,
                                          target=record.target, mode=record.mode,
                                          uid=record.uid, gid=record.gid,
                                          mtime_ns=record.mtime_ns, ctime_ns=record.ctime_ns,
                                          ino=record.ino))
        assert factsfmt.reference_line(referenced) == expected
        assert encode_entry(factsfmt.reference_entry(found, full["id"])) == expected
        checked += 1
    assert checked > 10


def _rewrite(path, key, edit):
    """The cache at ``path`` with its facts changed by ``edit(list of facts)``, tagged again
    with ``key``."""
    data = path.read_bytes()
    position, chunks = len(factsfmt.MAGIC), []
    while position < len(data):
        (length,) = factsfmt._LENGTH.unpack_from(data, position)
        start = position + factsfmt._LENGTH.size
        chunks.append(pyzstd.decompress(data[start:start + length]))
        position = start + length + factsfmt.TAG
    header, *middle, trailer = chunks
    records = [r for chunk in middle for r in marshal.loads(chunk)]
    edit(records)
    out = bytearray(factsfmt.MAGIC)
    pieces = [header, marshal.dumps(records), trailer]
    binding = factsfmt._binding(json.loads(header)["archive_id"], json.loads(header)["root"])
    for number, piece in enumerate(pieces):
        packed = pyzstd.compress(piece, 1)
        out += factsfmt._LENGTH.pack(len(packed)) + packed + factsfmt._tag(
            key, binding, number, number == len(pieces) - 1, packed)
    path.write_bytes(bytes(out))


def _hide(path: str, st):
    """An edit that makes the cache say ``path`` has the live stat facts ``st``."""
    def edit(records):
        for n, r in enumerate(records):
            if r[factsfmt.PATH] == path:
                ctime = None if st.st_ctime_ns == st.st_mtime_ns else st.st_ctime_ns
                records[n] = r[:factsfmt.SIZE] + (st.st_size, st.st_mtime_ns, ctime, st.st_ino,
                                                  st.st_mode & 0o7777, st.st_uid,
                                                  st.st_gid) + r[factsfmt.SHA256:]
                return
        raise AssertionError(f"{path} not in the cache")
    return edit


def _changed_behind_the_cache(cli, path="logs/archive/app-1.log"):
    """A file of the full archive changed (same size, same mtime; its ctime moves), and the
    stat facts the cache would need to call it unchanged."""
    live = cli.root / path
    before = live.stat()
    live.write_bytes(bytes(b ^ 1 for b in live.read_bytes()))
    os.utime(live, ns=(before.st_atime_ns, before.st_mtime_ns))
    return live.stat()


@pytest.mark.parametrize("forgery", ["another key", "flipped byte", "cut short",
                                     "another archive's cache"])
def test_a_tampered_cache_cannot_hide_a_change(cli, both_ways, forgery):
    path = "logs/archive/app-1.log"
    if not (cli.root / path).is_file():
        path = next(str(p.relative_to(cli.root)) for p in sorted((cli.root / "logs").rglob("*"))
                    if p.is_file() and p.stat().st_size > 0)
    other = cli.pack("--full")
    other_cache = cache_files(cli)[0].read_bytes()
    full = cli.pack("--full")
    cached = cache_files(cli)[0]
    st = _changed_behind_the_cache(cli, path)
    if forgery == "another key":
        _rewrite(cached, b"\0" * 32, _hide(path, st))
    elif forgery == "flipped byte":
        _rewrite(cached, facts.key_of(signing.load(settings_of(cli).key_dir)), _hide(path, st))
        data = bytearray(cached.read_bytes())
        data[len(data) // 2] ^= 1
        cached.write_bytes(bytes(data))
    elif forgery == "cut short":
        cached.write_bytes(cached.read_bytes()[:-40])
    else:       # a genuine cache, of another archive, under this parent's name
        cached.write_bytes(other_cache)
    packed = cli.pack("--incremental")
    assert packed["parent"] == full["id"] and other["id"] != full["id"]
    assert any(f"the facts cache of {full['id']} is ignored" in w for w in packed["warnings"])
    record = next(r for r in records(cli, packed) if r.path == path)
    assert record.stored_in is None             # stored again: the change was seen
    root = cli.root.parent / f"restored-{forgery.replace(' ', '-')}"
    root.mkdir()
    code, _ = CLI(root, cli.store, cli.capsys, cli.parallel).json(
        "unpack", packed["id"], "--skip-backup")
    assert code in (0, 1)
    assert (root / path).read_bytes() == (cli.root / path).read_bytes()


def test_the_genuine_key_is_what_protects_it(cli):
    """The control of the test above: a cache tagged with the installation's own key is
    believed (so the tag is the only thing that keeps an edit from hiding a change)."""
    path = next(str(p.relative_to(cli.root)) for p in sorted((cli.root / "logs").rglob("*"))
                if p.is_file() and p.stat().st_size > 0)
    cli.pack("--full")
    cached = cache_files(cli)[0]
    st = _changed_behind_the_cache(cli, path)
    _rewrite(cached, facts.key_of(signing.load(settings_of(cli).key_dir)), _hide(path, st))
    packed = cli.pack("--incremental")
    assert not any("facts cache" in w for w in packed["warnings"])
    record = next(r for r in records(cli, packed) if r.path == path)
    assert record.stored_in is not None


def test_no_cache_for_archives_that_cannot_be_parents_or_are_sealed_whole(cli, monkeypatch):
    monkeypatch.setenv("POPPO_BACKUP_KEY", "a passphrase")
    cli.pack("--full", "--encrypt")
    assert cache_files(cli) == []
    packed = cli.pack("--incremental", "--encrypt")
    assert packed["incremental"] and cache_files(cli) == []


def test_switched_off_the_index_is_read(cli, monkeypatch):
    cli.parallel = Parallelism(SERIAL, 2, dataclasses.replace(EAGER, facts_cache=False))
    full = cli.pack("--full")
    assert cache_files(cli) == []
    read = index_reads(monkeypatch)
    packed = cli.pack("--incremental")
    assert packed["parent"] == full["id"] and read == [full["id"]]


def test_a_parent_whose_stored_index_is_damaged_takes_no_link(cli, both_ways):
    """The cache stands in for the parent's records, not for its bytes: with a valid cache,
    a parent whose index was damaged in the store still cannot take a link (what pack
    noticed when it read the index, it notices from the index's signed SHA-256)."""
    full = cli.pack("--full")
    assert cache_files(cli)
    path = cli.store / os.path.basename(full["path"])
    data = bytearray(path.read_bytes())
    data[-2] ^= 0x01                   # the index frame's content checksum
    path.write_bytes(bytes(data))
    packed = cli.pack("--incremental")
    assert not packed["incremental"] and packed.get("parent") is None
    assert any(full["id"] in w and "making a full archive" in w for w in packed["warnings"])
