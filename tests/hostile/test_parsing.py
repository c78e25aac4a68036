"""Parsing is bounded before it trusts anything, and no hostile document makes a reader
crash (spec §14): whatever a signed manifest or index holds, every command ends with an
archive error class (or accepts a harmless change), one line, never the internal-error
code 70 and never a traceback."""

from __future__ import annotations

import io
import os
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from poppoarc.crypto import signing
from poppoarc.format import head as headfmt
from poppoarc.format import reader
from poppoarc.format.entry import IndexEntry
from poppoarc.format.manifest import REQUIRED_KEYS, timestamp_seconds

from tests.helpers.craft import T, craft, entry
from tests.helpers.rebuild import reindex
from tests.helpers.scene import assert_refused

ARCHIVE_CLASSES = set(range(10, 18)) | {31}
# POPPOARC_PROPERTY_EXAMPLES=2500 for a long run (no crash found in 2 x 2500)
EXAMPLES = int(os.environ.get("POPPOARC_PROPERTY_EXAMPLES", "100"))

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=12)


def resign(path: Path, key_dir: Path, mutate) -> Path:
    """``path`` with its manifest changed by ``mutate`` and signed with the local key,
    the body kept (an attacker with the key: only the reader's rules stand)."""
    data = path.read_bytes()
    raw = headfmt.decode_head(data, path)
    manifest = dict(raw.manifest)
    mutate(manifest)
    member = headfmt.pad_manifest(headfmt.canonical_json(manifest), raw.head_size)
    key = signing.load(key_dir)
    signature = headfmt.canonical_json(key.sign_document(headfmt.signed_message(member)))
    out = path.with_name("forged.poppo.tar.zst")
    out.write_bytes(headfmt.encode_head(member, signature, raw.head_size,
                                        timestamp_seconds(raw.manifest["timestamp"]))
                    + data[len(raw.frame):])
    return out


@pytest.fixture
def packed(cli):
    return Path(cli.pack()["path"])


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.sampled_from(sorted(REQUIRED_KEYS - {"format"})), json_values,
       st.sampled_from(["replace", "nest"]))
def test_any_signed_manifest_value_ends_in_an_archive_error(cli, key_home, packed, key, value,
                                                             how):
    def mutate(manifest):
        if how == "nest" and isinstance(manifest[key], dict) and manifest[key]:
            inner = sorted(manifest[key])[0]
            manifest[key] = {**manifest[key], inner: value}
        else:
            manifest[key] = value

    try:
        forged = resign(packed, key_home, mutate)
    except OverflowError:           # does not fit the head: nothing to read
        return
    for command in (("verify", str(forged)), ("inspect", str(forged)),
                    ("unpack", str(forged), "--dry-run")):
        code, _, err = cli(*command)
        assert code in ARCHIVE_CLASSES | {0, 1}, (command, key, value, err)
        assert "Traceback" not in err and err.count("\n") <= 1, err
    code, listing = cli.json("list")
    assert code == 0 and listing["archives"], listing


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.integers(0, 10**6), st.sampled_from(["path", "target", "type", "mode", "uid", "gid",
                                                "mtime_ns", "size", "sha256", "link",
                                                "sqlite", "blocks", "delta", "stored_in"]),
       json_values)
def test_any_signed_index_value_ends_in_an_archive_error(cli, key_home, packed, tmp_path,
                                                          pick, field, value):
    def edit(entries):
        setattr(entries[pick % len(entries)], field, value)
        return entries

    try:
        forged = reindex(packed, tmp_path / "forged.poppo.tar.zst", key_home, edit)
    except (TypeError, ValueError, AttributeError, KeyError):   # the writer cannot say it
        return
    for command in (("verify", str(forged)), ("unpack", str(forged), "--dry-run")):
        code, _, err = cli(*command)
        assert code in ARCHIVE_CLASSES | {0, 1}, (command, field, value, err)
        assert "Traceback" not in err and err.count("\n") <= 1, err


def test_an_index_line_nested_deep_or_too_long_is_refused_before_it_is_parsed(
        cli, key_home, packed, tmp_path):
    """Signed lines a recursive parser would choke on: 50,000 arrays deep, and a line of
    5 MiB (a symlink text that long: no record of a writer is)."""
    from poppoarc.format import records

    deep = IndexEntry("state/deep", "state", "symlink", 0o777, 0, 0, T, link="x")
    long = IndexEntry("state/long", "state", "symlink", 0o777, 0, 0, T, link="a/" * (5 << 19))

    def add(record):
        return lambda entries: entries + [record]

    (tmp_path / "outside").mkdir()
    forged = reindex(packed, tmp_path / "long.poppo.tar.zst", key_home, add(long))
    assert_refused(cli, forged, 13, "index line longer than", targets="state")
    import poppoarc.format.manifest as manifest_module

    real = records.encode_entry
    with pytest.MonkeyPatch.context() as patch:     # the forger writes the line by hand
        patch.setattr(manifest_module, "encode_entry", lambda e: real(e).replace(
            b'"link":"x"', b'"link":' + b"[" * 50000 + b"]" * 50000) if e is deep else real(e))
        forged = reindex(packed, tmp_path / "deep.poppo.tar.zst", key_home, add(deep))
    assert_refused(cli, forged, 13, "nests deeper than 8", targets="state")


def _sealed_archive(cli, key_home, monkeypatch, **fields) -> Path:
    """A small archive sealed whole with a passphrase, ``fields`` in its manifest
    (host, root, databases, certificates, warnings go into the sealed index header)."""
    from poppoarc.crypto import recipients
    from poppoarc.crypto.sealer import Sealer
    from poppoarc.format.entry import CHUNK_SIZE
    from poppoarc.format.manifest import ENCRYPTION_SCHEME, new_archive_id
    from poppoarc.format.writer import BodyWriter, finish_archive

    monkeypatch.setenv("POPPO_BACKUP_KEY", "a passphrase")
    key, _ = signing.load_or_generate(key_home)
    now = datetime.now(timezone.utc)
    archive_id = new_archive_id(now)
    data_key = recipients.new_data_key()
    sealer = Sealer(data_key, archive_id)
    encryption = {"scheme": ENCRYPTION_SCHEME, "scope": "archive", "chunk_size": CHUNK_SIZE,
                  "recipients": recipients.wrap(data_key, archive_id, recipients.Secrets(
                      passphrase=b"a passphrase"), {"time_cost": 2, "memory_kib": 19456,
                                                    "lanes": 1})}
    cli.store.mkdir(parents=True, exist_ok=True)
    path = cli.store / f"{archive_id}.poppo.tar.zst"
    entries = [IndexEntry("state", "state", "dir", 0o755, 0, 0, 0)] + [
        IndexEntry(f"state/{n:03d}", "state", "dir", 0o755, 0, 0, 0) for n in range(50)]
    with open(path, "w+b") as handle:
        writer = BodyWriter(handle, 8192, level=1)
        offset, length = writer.end_frame()
        base = {"version": None, "tool": {"name": "poppoarc", "version": "test"},
                "type": "manual", "name": None, "incremental": False, "parent": None,
                "host": None, "root": None, "databases": [], "certificates": [], "files": 0,
                "duration": 0, "targets": {"state": {"files": 0, "size": 0, "entries": 51,
                                                     "stored": [offset, length]}}}
        finish_archive(handle, writer, archive_id=archive_id, now=now, entries=entries,
                       fields={**base, **fields}, warnings=[], key=key, head_size=8192,
                       level=1, encryption=encryption, sealer=sealer)
    return path


@pytest.mark.parametrize("fields,fragment", [
    ({"host": ["not", "a", "name"]}, "host or root is not a string"),
    ({"databases": [{"path": 7}]}, "databases entry has wrong keys"),
    ({"certificates": "none"}, "certificates is not an array"),
])
def test_a_sealed_manifest_of_the_wrong_shape_is_refused(cli, key_home, monkeypatch, fields,
                                                         fragment):
    archive = _sealed_archive(cli, key_home, monkeypatch, **fields)
    for command in ("verify", "inspect"):
        code, _, err = cli(command, str(archive))
        assert code == 13 and fragment in err, (command, err)


def test_an_encrypted_index_that_inflates_past_the_bound_is_refused(cli, key_home, monkeypatch):
    """The sealed index streams through decryption and decompression and stops at the
    bound (1 GiB; here one byte more than the sealed index), holding neither in memory."""
    archive = _sealed_archive(cli, key_home, monkeypatch)
    assert cli("verify", str(archive))[0] == 0
    sealed = headfmt.decode_head(archive.read_bytes()[:20000], archive).manifest["layout"][
        "index_size"]
    monkeypatch.setattr(reader, "MAX_INDEX_SIZE", sealed + 1)
    code, _, err = cli("verify", str(archive))
    assert code == 13 and f"inflates beyond its limit of {sealed + 1} bytes" in err, err


@pytest.mark.parametrize("edit,fragment", [
    (lambda r: r.update(memory_kib=256 * 1024 + 1), "memory_kib"),
    (lambda r: r.update(time_cost=9), "time_cost"),
    (lambda r: r.update(lanes=9), "lanes"),
])
def test_argon2id_above_the_ceilings_is_refused_before_any_derivation(cli, key_home, packed,
                                                                      monkeypatch, edit,
                                                                      fragment):
    archive = _sealed_archive(cli, key_home, monkeypatch)

    def mutate(manifest):
        stanza = dict(manifest["encryption"]["recipients"][0])
        edit(stanza)
        manifest["encryption"] = dict(manifest["encryption"], recipients=[stanza])

    forged = resign(archive, key_home, mutate)
    code, _, err = cli("verify", str(forged))
    assert code == 13 and fragment in err, err


def test_a_low_order_x25519_ephemeral_key_is_a_forged_stanza(cli, key_home, monkeypatch,
                                                            tmp_path):
    """X25519 with the all-zero point gives an all-zero shared secret whatever the
    identity: refused as corrupt, not tried as a wrong key."""
    import base64
    import hashlib

    from poppoarc.crypto import recipients

    monkeypatch.delenv("POPPO_BACKUP_KEY", raising=False)
    public = recipients.generate_identity(key_home, force=True)
    archive = _sealed_archive(cli, key_home, monkeypatch)
    monkeypatch.delenv("POPPO_BACKUP_KEY")

    def mutate(manifest):
        stanza = {"type": "x25519", "key_id": hashlib.sha256(public).hexdigest()[:16],
                  "ephemeral": base64.b64encode(bytes(32)).decode(),
                  "wrapped": base64.b64encode(bytes(48)).decode()}
        manifest["encryption"] = dict(manifest["encryption"], recipients=[stanza])

    forged = resign(archive, key_home, mutate)
    code, _, err = cli("verify", str(forged))
    assert code == 13 and "all-zero shared secret" in err, err
