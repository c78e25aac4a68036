"""Hand-written tar headers must read back identically in CPython's tarfile and GNU tar."""

import io
import subprocess
import tarfile

from hypothesis import given, settings
from hypothesis import strategies as st

from poppoarc.format import tarheader

segment = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/\0"),
                  min_size=1, max_size=40)
paths = st.lists(segment, min_size=1, max_size=6).map("/".join).filter(
    lambda p: all(part not in (".", "..") for part in p.split("/")))


def _one_member(name, typeflag, data=b"", **fields):
    header = tarheader.member_header(name, typeflag, size=len(data), **fields)
    return header + data + bytes(tarheader.padding(len(data))) + tarheader.END_OF_ARCHIVE


@settings(max_examples=200, deadline=None)
@given(name=paths, data=st.binary(max_size=3000), mode=st.integers(0, 0o7777),
       uid=st.integers(0, 2**21 - 1) | st.integers(2**21, 2**31),
       mtime=st.integers(0, 2**33) | st.integers(2**33, 2**40))
def test_regular_file_round_trips_through_tarfile(name, data, mode, uid, mtime):
    raw = _one_member(name, tarheader.REGULAR, data, mode=mode, uid=uid, gid=uid, mtime=mtime)
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as archive:
        (member,) = archive.getmembers()
        assert member.name == name
        assert member.size == len(data)
        assert member.mode == mode
        assert member.uid == uid and member.gid == uid
        assert member.mtime == mtime
        assert archive.extractfile(member).read() == data


@settings(max_examples=100, deadline=None)
@given(name=paths, target=paths)
def test_symlink_targets_of_any_length_round_trip(name, target):
    raw = _one_member(name, tarheader.SYMLINK, mode=0o777, linkname=target)
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as archive:
        (member,) = archive.getmembers()
        assert member.issym() and member.linkname == target and member.name == name


def test_pax_header_only_when_needed():
    short = tarheader.member_header("config/config.json", tarheader.REGULAR, mode=0o644, size=5)
    assert len(short) == 512
    long_name = "data/ccag/" + "x" * 120
    assert len(tarheader.member_header(long_name, tarheader.REGULAR, mode=0o644)) == 1536
    assert len(tarheader.member_header("ja/バックアップ.md", tarheader.REGULAR, mode=0o644)) == 1536


def test_pax_record_length_counts_itself():
    # 9 + len(" path=") ... lengths crossing a power of ten are the classic bug
    for n in range(80, 120):
        record = tarheader._pax_record("path", "a" * n)
        length, _, rest = record.partition(b" ")
        assert int(length) == len(record)


def test_gnu_tar_lists_unicode_and_long_names(tmp_path):
    names = ["a/バックアップ・リストア機能.md", "b/" + "long" * 40 + ".json"]
    raw = b"".join(tarheader.member_header(n, tarheader.REGULAR, mode=0o644, size=3) + b"abc" +
                   bytes(509) for n in names) + tarheader.END_OF_ARCHIVE
    (tmp_path / "t.tar").write_bytes(raw)
    listed = subprocess.run(["tar", "-tf", str(tmp_path / "t.tar")], capture_output=True,
                            text=True, check=True).stdout.splitlines()
    assert listed == names
