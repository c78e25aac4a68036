"""A large index is checked by two processes (format/index_part.py): the records, the
flags and every error are those of one process reading every line, wherever the lines
are split, and whatever happens to the helper."""

import dataclasses
import io
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from poppoarc.errors import CorruptArchive
from poppoarc.format import index_part, versions
from poppoarc.format.entry import IndexEntry
from poppoarc.format.manifest import decode_index
from poppoarc.parallel import SERIAL, TWO_PROCESS, Parallelism, Tuning, process

from tests.helpers import CLI, digest, encode_index, is_database

# an index's helper for any size of index
HELPED = Parallelism(TWO_PROCESS, tuning=Tuning(index_min_bytes=0))

DIGEST = "a" * 64


def record(target, path, kind, size=1):
    if kind == "file":
        return IndexEntry(path, target, kind, 0o644, 0, 0, 1, size, DIGEST, ino=3)
    if kind == "hardlink":
        return IndexEntry(path, target, kind, 0o644, 0, 0, 1, size, DIGEST, link="state/a")
    if kind == "symlink":
        return IndexEntry(path, target, kind, 0o777, 0, 0, 1, link="x")
    return IndexEntry(path, target, kind, 0o755, 0, 0, 1)


class Decoder:
    """decode_index with the helper forced on (any size) or off; counts the helper's
    parts that were used."""

    def __init__(self, monkeypatch):
        self.patch, self.parts = monkeypatch, []
        real = index_part.IndexHelper.result

        def result(helper):
            part = real(helper)
            self.parts.append(part is not None)
            return part

        monkeypatch.setattr(index_part.IndexHelper, "result", result)

    def __call__(self, data: bytes, helped: bool, share: float = 0.45):
        parallel = HELPED if helped else Parallelism(SERIAL)
        try:
            records, sealed_manifest = decode_index(data, "backup-x", "t", incremental=True,
                                                    parallel=parallel, share=share)
        except CorruptArchive as exc:
            return "error", str(exc)
        return ("ok", list(records), len(records), records.sealed, records.in_index_order,
                sealed_manifest)


@pytest.fixture
def decode(monkeypatch):
    return Decoder(monkeypatch)


names = st.lists(st.sampled_from(["a", "b", "a.b"]), min_size=1, max_size=3).map("/".join)
listings = st.lists(st.tuples(st.sampled_from([None, "config", "state"]), names,
                              st.sampled_from(["dir", "file", "symlink", "hardlink"])),
                    min_size=2, max_size=16)
BAD_LINES = [b'{"gid":0, "mode":420}', b"NaN", b"", b'{"path":"x"}',
             b'{"gid":0,"mode":420,"mtime_ns":1,"path":"../x","size":0,"target":"state",'
             b'"type":"dir","uid":0}']


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(listings, st.booleans(), st.floats(0.05, 0.95), st.none() | st.tuples(
    st.integers(0, 20), st.sampled_from(BAD_LINES)), st.booleans())
def test_same_records_and_verdicts_as_one_process(decode, listed, ordered, share, bad,
                                                  unterminated):
    if ordered:     # as writers list them: runs of paths in order
        listed = sorted(listed, key=lambda r: ((r[0] or ""), r[1]))
    data = encode_index("backup-x", [record(*r) for r in listed])
    if bad is not None:     # a line no reader may accept, somewhere
        lines = data.split(b"\n")
        lines.insert(1 + bad[0] % (len(lines) - 1), bad[1])
        data = b"\n".join(lines)
    if unterminated:
        data = data[:-1]
    assert decode(data, True, share) == decode(data, False)


def _long_index(count: int, twice_at: int | None = None) -> bytes:
    """``count`` records of equal length in one run; record ``twice_at`` repeats the path
    before it."""
    entries = []
    for n in range(count):
        path = f"state/{(n - 1 if n == twice_at else n):04d}"
        entries.append(record("state", path, "file"))
    return encode_index("backup-x", entries)


def test_the_helper_checks_part_of_the_lines_and_the_records_come_out_whole(decode):
    data = _long_index(200)
    helped = decode(data, True)
    assert decode.parts == [True]
    assert helped == decode(data, False)
    assert helped[2] == 200 and [r.path for r in helped[1]] == [f"state/{n:04d}"
                                                                 for n in range(200)]


@pytest.mark.parametrize("share", [0.1, 0.3, 0.45, 0.5, 0.7, 0.9])
def test_a_path_listed_twice_across_the_split_is_found(decode, share):
    # records 99 and 100 share a path; the split falls before, between or after them
    data = _long_index(200, twice_at=100)
    assert decode(data, True, share) == ("error", "t: index is malformed: 'state/0099': "
                                                  "listed twice")
    # found by the pass in path order after both halves were read, the helper's as its
    # records and the replay of its rule calls
    assert decode.parts == [True]
    assert decode(data, False) == decode(data, True, share)


def test_a_fault_in_the_helpers_half_is_named_as_one_process_names_it(decode):
    line = f'"path":"state/0150","sha256":"{DIGEST}","size":1,"target":"state","type":"file"'
    data = _long_index(200).replace(line.encode(), line.replace('"file"', '"fifo"').encode())
    assert decode(data, True) == decode(data, False)
    assert decode(data, False)[0] == "error" and "'fifo'" in decode(data, False)[1]
    assert decode.parts == [False]      # it reported the fault: its half was read here


@pytest.mark.parametrize("boot", [
    "import sys; sys.exit(3)",
    "import os, signal; os.kill(os.getpid(), signal.SIGKILL)",
    "import sys; sys.stdout.write('not JSON'); sys.exit(0)",
])
def test_a_helper_that_fails_changes_nothing(decode, monkeypatch, boot):
    monkeypatch.setattr(process, "BOOT", boot)
    data = _long_index(300)
    assert decode(data, True) == decode(data, False)
    assert decode.parts == [False]


def test_no_process_means_every_line_is_read_here(decode, monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("no process")

    monkeypatch.setattr(process.subprocess, "Popen", refuse)
    data = _long_index(300)
    assert decode(data, True) == decode(data, False)
    assert decode.parts == []


def test_small_indexes_files_in_memory_and_serial_mode_are_read_in_one_process():
    assert Tuning().index_min_bytes >= 1 << 20
    with tempfile.TemporaryFile() as handle:
        handle.write(_long_index(50))
        handle.seek(0)
        assert index_part.start(handle, False, versions.CURRENT, Parallelism()) is None
        assert index_part.start(handle, False, versions.CURRENT,
                                Parallelism(SERIAL, tuning=HELPED.tuning)) is None
        assert index_part.start(handle, False, versions.CURRENT, None) is None
        helper = index_part.start(handle, False, versions.CURRENT, HELPED)
        assert helper is not None and handle.tell() == 0
        helper.close()
    assert index_part.start(io.BytesIO(_long_index(50)), False, versions.CURRENT,
                            HELPED) is None


def test_verify_and_restore_of_a_real_archive_with_the_helper(cli, installation, tmp_path,
                                                              capsys, decode, monkeypatch):
    packed = cli.pack()
    cli.parallel = HELPED
    assert cli("verify", packed["id"], "-q")[0] == 0
    fresh = tmp_path / "elsewhere"
    fresh.mkdir()
    code, result = CLI(fresh, cli.store, capsys, HELPED).json("unpack", packed["path"])
    assert code in (0, 1) and result["outcome"] == "committed"
    original, moved = digest(installation), digest(fresh)
    files = [rel for rel, value in moved.items() if value[0] == "file"]
    assert len(files) > 10
    assert all(original[rel] == moved[rel] for rel in files if not is_database(fresh / rel))
    assert decode.parts and all(decode.parts)


def test_an_encrypted_archive_and_an_incremental_chain_with_the_helper(cli, installation,
                                                                       decode, monkeypatch):
    """Sealed records (member lists, keyed digests) and an incremental's references to its
    parent are checked by the helper as here: its part is used, not read again."""
    monkeypatch.setenv("POPPO_BACKUP_KEY", "helper passphrase")
    # the incremental reads its parent's index (not the facts cache the full leaves)
    cli.parallel = dataclasses.replace(
        HELPED, tuning=dataclasses.replace(HELPED.tuning, facts_cache=False))
    sealed = cli.pack("--encrypt")
    assert sealed["encryption"] == "archive"
    assert cli("verify", sealed["id"], "-q")[0] == 0
    monkeypatch.delenv("POPPO_BACKUP_KEY")
    full = cli.pack("--full")
    (installation / "state" / "new.json").write_text("{}")
    incremental = cli.pack("--incremental")
    assert incremental["parent"] == full["id"] and incremental["reused"] > 0
    assert cli("verify", incremental["id"], "-q")[0] == 0
    assert len(decode.parts) >= 4 and all(decode.parts)
