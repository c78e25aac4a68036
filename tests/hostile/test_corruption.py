"""Every single-byte change and every truncation must make verify fail.

The archive here is made from a minimal installation so that it is small
enough to flip each byte that carries information (headers, manifest,
signature, body, index) and a stride through the manifest padding.
"""

import os
import sqlite3

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from poppoarc.config import resolve
from poppoarc.errors import ArchiveError, PoppoarcError
from poppoarc.format import head as headfmt
from poppoarc.archives.listing import list_archives
from poppoarc.archives.verification import verify
from poppoarc.pack import pack


@pytest.fixture(scope="module")
def small_archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("mini") / "inst"
    (root / "config").mkdir(parents=True)
    (root / "config/config.json").write_text('{"backup": {"enabled": true}}\n')
    (root / "state").mkdir()
    (root / "state/running-tasks.json").write_text('{"tasks": [1, 2, 3]}\n' * 20)
    (root / "data").mkdir()
    conn = sqlite3.connect(root / "data/poppo-history.db")
    conn.execute("create table t (x)")
    conn.executemany("insert into t values (?)", [(i,) for i in range(50)])
    conn.commit()
    conn.close()
    keys = tmp_path_factory.mktemp("mini-keys")
    os.environ["POPPOARC_HOME"] = str(keys)
    try:
        settings_ = resolve(str(root), None, str(root.parent / "store"))
        result = pack(settings_)
    finally:
        del os.environ["POPPOARC_HOME"]
    return settings_, keys, result.path, result.path.read_bytes()


def _manifest_span(data: bytes) -> tuple[int, int]:
    start = headfmt.FRAME_HEADER_SIZE + 3 + 512
    text_end = data.index(b" " * 8, start)
    return start, text_end


def interesting_offsets(data: bytes) -> list[int]:
    """Every byte except most of the manifest's space padding (sampled every 61st)."""
    start, text_end = _manifest_span(data)
    head_size = int.from_bytes(data[5:13], "little")
    pad_end = headfmt.FRAME_HEADER_SIZE + 3 + 512 + headfmt.manifest_capacity(head_size) - 1
    return [i for i in range(len(data)) if not text_end + 8 <= i < pad_end or i % 61 == 0]


def verify_bytes(settings_, keys, path, data, monkeypatch) -> PoppoarcError | None:
    path.write_bytes(data)
    monkeypatch.setenv("POPPOARC_HOME", str(keys))
    try:
        verify(settings_, str(path))
    except ArchiveError as exc:
        return exc
    return None


def test_pristine_archive_verifies(small_archive, tmp_path, monkeypatch):
    settings_, keys, _, data = small_archive
    assert verify_bytes(settings_, keys, tmp_path / "a.poppo.tar.zst", data, monkeypatch) is None


def test_every_single_byte_change_is_detected(small_archive, tmp_path, monkeypatch):
    settings_, keys, _, data = small_archive
    target = tmp_path / "a.poppo.tar.zst"
    offsets = interesting_offsets(data)
    assert len(offsets) > 2000
    undetected = []
    for offset in offsets:
        damaged = bytearray(data)
        damaged[offset] ^= 0x01 if offset % 2 else 0xA5
        error = verify_bytes(settings_, keys, target, bytes(damaged), monkeypatch)
        if error is None:
            undetected.append(offset)
        else:
            message = str(error)
            assert "\n" not in message and str(target) in message
    assert undetected == []


def test_every_truncation_is_detected(small_archive, tmp_path, monkeypatch):
    settings_, keys, _, data = small_archive
    target = tmp_path / "a.poppo.tar.zst"
    body_offset = headfmt.head_frame_size(int.from_bytes(data[5:13], "little"))
    lengths = list(range(0, 64)) + list(range(64, body_offset, 509)) + list(range(body_offset, len(data)))
    for length in lengths:
        error = verify_bytes(settings_, keys, target, data[:length], monkeypatch)
        assert error is not None, length


@settings(max_examples=60, deadline=None)
@given(extra=st.binary(min_size=1, max_size=64))
def test_appended_bytes_are_detected(small_archive, tmp_path_factory, extra):
    settings_, keys, _, data = small_archive
    target = tmp_path_factory.mktemp("append") / "a.poppo.tar.zst"
    target.write_bytes(data + extra)
    os.environ["POPPOARC_HOME"] = str(keys)
    try:
        with pytest.raises(ArchiveError, match="unexpected bytes"):
            verify(settings_, str(target))
    finally:
        del os.environ["POPPOARC_HOME"]


def test_list_marks_damaged_archives_and_keeps_going(small_archive, tmp_path, monkeypatch):
    settings_, keys, path, data = small_archive
    store = tmp_path / "store"
    store.mkdir()
    good = store / path.name
    good.write_bytes(data)
    (store / ("backup-2020-01-01T00-00-00-000Z-aaaaaa.poppo.tar.zst")).write_bytes(b"garbage")
    (store / ("backup-2020-01-02T00-00-00-000Z-bbbbbb.poppo.tar.zst")).write_bytes(data[:1000])
    monkeypatch.setenv("POPPOARC_HOME", str(keys))
    settings_.store = store
    rows = {r.id: r for r in list_archives(settings_)}
    assert rows[path.name[:-14]].status == "ok"
    assert rows["backup-2020-01-01T00-00-00-000Z-aaaaaa"].status == "damaged"
    assert rows["backup-2020-01-02T00-00-00-000Z-bbbbbb"].status == "damaged"


def test_non_canonical_base64_in_the_signature_is_tampering(tmp_path):
    """b64decode ignores the unused low bits of the last character: 'Q==' and 'R==' decode
    alike.  A signature text that is not the canonical encoding is refused."""
    import base64

    from poppoarc.crypto import signing
    from poppoarc.errors import TamperedArchive

    key = signing.generate(tmp_path / "k")
    document = key.sign_document(b"message")
    pinned = {key.key_id: key.public}
    assert signing.verify_document(document, b"message", pinned, "x") == key.key_id
    text = document["signature"]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = alphabet.index(text[-3])
    twin = alphabet[last ^ 1]                      # differs only in an unused bit
    forged = dict(document, signature=text[:-3] + twin + "==")
    assert base64.b64decode(forged["signature"]) == base64.b64decode(text)
    with pytest.raises(TamperedArchive, match="canonical"):
        signing.verify_document(forged, b"message", pinned, "x")
