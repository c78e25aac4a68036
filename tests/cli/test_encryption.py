"""Encrypted archives: round trips, no leaks, and the segment layer under attack."""

import json
import os
import subprocess
from pathlib import Path

import pytest
import pyzstd

from poppoarc.crypto import segments
from poppoarc.crypto.segments import SEGMENT, SegmentError, open_sealed, seal


from tests.helpers.rebuild import members, rebuild
from tests.helpers import CLI, digest, recipient_only, vandalize

PASS = "correct horse battery staple"


@pytest.fixture
def passphrase(monkeypatch):
    monkeypatch.setenv("POPPO_BACKUP_KEY", PASS)
    return PASS


def decompressed(path) -> bytes:
    return subprocess.run(["zstd", "-dc", str(path)], capture_output=True, check=True).stdout


# -- round trips ------------------------------------------------------------------

def test_passphrase_round_trip(both_ways, cli, installation, passphrase, monkeypatch):
    packed = cli.pack("--encrypt")
    assert packed["encryption"] == "archive"
    code, verified = cli.json("verify", packed["id"])
    assert code == 0 and verified["not_checked"] == [] and verified["databases_checked"] >= 5
    archived = digest(installation)
    vandalize(installation)
    code, result = cli.json("unpack", packed["id"])
    assert code in (0, 1) and result["outcome"] == "committed"
    restored = digest(installation)
    for rel, value in archived.items():
        if value[0] == "file" and not rel.endswith(("-wal", ".db", ".sqlite3")):
            assert restored.get(rel) == value, rel
    assert (installation / ".env").read_bytes()      # the secret came back too


def test_public_key_recipient_only(cli, installation, key_home, tmp_path, monkeypatch, capsys):
    # the offline machine makes an identity; the server only knows the recipient
    offline = tmp_path / "offline-keys"
    recipient_only(cli, installation, key_home, offline, monkeypatch)
    config = json.loads((installation / "config/config.json").read_text())
    config["backup"]["signing"] = {"trustedKeys": []}
    (installation / "config/config.json").write_text(json.dumps(config))
    packed = cli.pack("--encrypt")
    # the server cannot read its own archive back
    code, verified = cli.json("verify", packed["id"])
    assert code == 0 and verified["not_checked"]
    code, _, err = cli("unpack", packed["id"], "--dry-run")
    assert code == 42
    # with the identity it can
    monkeypatch.setenv("POPPO_BACKUP_IDENTITY", str(offline / "encryption.key"))
    code, verified = cli.json("verify", packed["id"])
    assert code == 0 and verified["not_checked"] == []
    vandalize(installation)
    code, result = cli.json("unpack", packed["id"])
    assert code in (0, 1) and result["outcome"] == "committed"


def test_wrong_key_is_refused_before_anything_is_written(cli, installation, passphrase, monkeypatch):
    packed = cli.pack("--encrypt")
    vandalize(installation)
    before = digest(installation)
    monkeypatch.setenv("POPPO_BACKUP_KEY", "not the passphrase")
    code, _, err = cli("unpack", packed["id"])
    assert code == 41 and "cannot open" in err
    assert digest(installation) == before
    assert sorted(p.name for p in cli.store.iterdir()) == [".poppoarc-runs.json",
                                                           ".poppoarc-store.lock",
                                                           Path(packed["path"]).name]


def test_encryption_without_a_key_seals_to_this_machines_identity(cli, monkeypatch, key_home,
                                                                 tmp_path):
    """encryptionEnabled: true in the config PoppoBuilder ships, and no key: a backup is
    still made (none at all is the worst outcome), sealed to an identity pack creates; every
    pack says that it exists only here until it is exported, and another machine restores
    with the exported copy (issue 26)."""
    monkeypatch.delenv("POPPO_BACKUP_KEY", raising=False)
    code, out, err = cli("pack", "--encrypt")
    assert code == 1 and "  encrypted: everything" in out
    assert "poppoarc: created the encryption identity " in err
    assert "exists only on this machine (never exported)" in err
    assert (key_home / "encryption.key").exists()
    code, out, err = cli("pack", "--encrypt")
    assert code == 1 and "created" not in err and "never exported" in err
    copy = tmp_path / "offline" / "identity.key"
    copy.parent.mkdir()
    code, out, _ = cli("keygen", f"--export={copy}")
    assert code == 0 and "Copied the encryption identity" in out
    assert (copy.stat().st_mode & 0o777) == 0o600
    assert cli("keygen", f"--export={copy}")[0] == 40          # no silent overwrite
    code, packed = cli.json("pack", "--encrypt")
    assert code == 0 and not packed["warnings"]
    # another machine: its own key directory, the exported identity, the signer pinned
    other = tmp_path / "other-keys"
    monkeypatch.setenv("POPPOARC_HOME", str(other))
    empty = tmp_path / "empty"
    (empty / "config").mkdir(parents=True)
    signer = (key_home / "signing.pub").read_text().strip()
    (empty / "config" / "config.json").write_text(json.dumps(
        {"backup": {"signing": {"trustedKeys": [signer]}}}))
    restore = CLI(empty, cli.store, cli.capsys)
    assert restore("unpack", packed["id"], "--skip-backup")[0] == 42      # no key here
    monkeypatch.setenv("POPPO_BACKUP_IDENTITY", str(copy))
    code, out, err = restore("unpack", packed["id"], "--skip-backup")
    assert code in (0, 1), err
    assert (empty / ".env").read_bytes() == (cli.root / ".env").read_bytes()


def test_backup_encryption_key_is_a_key_source(cli, monkeypatch, key_home):
    """PoppoBuilder Suite's own variable, a key in hex."""
    monkeypatch.delenv("POPPO_BACKUP_KEY", raising=False)
    monkeypatch.setenv("BACKUP_ENCRYPTION_KEY", "0f" * 32)
    packed = cli.pack("--encrypt")
    assert not (key_home / "encryption.key").exists() and not packed["warnings"]
    code, inspected = cli.json("inspect", packed["id"])
    assert [r["type"] for r in inspected["manifest"]["encryption"]["recipients"]] == ["argon2id"]
    monkeypatch.setenv("BACKUP_ENCRYPTION_KEY", "0F" * 32)              # the same key
    assert cli("verify", packed["id"])[0] == 0
    monkeypatch.setenv("BACKUP_ENCRYPTION_KEY", "1f" * 32)
    assert cli("verify", packed["id"])[0] == 41
    monkeypatch.setenv("BACKUP_ENCRYPTION_KEY", "not-hex")
    code, _, err = cli("pack", "--encrypt")
    assert code == 40 and "BACKUP_ENCRYPTION_KEY must be a key in hex" in err


# -- nothing leaks -------------------------------------------------------------------

def test_decompressed_tar_leaks_no_secret_marker_or_path(cli, installation, passphrase, monkeypatch):
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_PROCESS_ENV_SECRET_1234")
    (installation / "state/marker.json").write_text('{"marker": "PLAINTEXT-MARKER-7f3a"}')
    packed = cli.pack("--encrypt")
    raw = decompressed(packed["path"])
    token = next(line.split("=", 1)[1] for line in (installation / ".env").read_text().splitlines()
                 if line.startswith("GITHUB_TOKEN="))
    for needle in [token, "ghp_PROCESS_ENV_SECRET_1234", "PLAINTEXT-MARKER-7f3a", str(installation),
                   "config/config.json", "state/", "poppo-history", "data/ccla", ".env",
                   "process_history", "environment.json", "CN=localhost"]:
        assert needle.encode() not in raw, needle
    listing = subprocess.run(["tar", "--zstd", "-tf", packed["path"]], capture_output=True,
                             text=True, check=True).stdout.split()
    assert all(n.startswith((".poppoarc/", "objects/")) for n in listing)


def test_every_frame_after_the_head_is_checksummed(cli, passphrase):
    # sealed members are framed on the sealing pool, beside the main compressor
    packed = cli.pack("--encrypt")
    data = Path(packed["path"]).read_bytes()
    offset, frames = 0, 0
    while offset < len(data):
        size = pyzstd.get_frame_size(data[offset:offset + (1 << 24)])
        assert data[offset:offset + 4] == b"\x28\xb5\x2f\xfd"
        if offset:      # the head frame is raw and unchecksummed by design (§3.1)
            assert data[offset + 4] & 0x04, f"frame at {offset} has no content checksum"
        offset, frames = offset + size, frames + 1
    assert offset == len(data) and frames > 3
    subprocess.run(["zstd", "-tq", packed["path"]], check=True)


def test_secrets_are_sealed_even_in_a_plain_archive(cli, installation, passphrase, monkeypatch,
                                                     capsys, tmp_path):
    packed = cli.pack()
    assert packed["encryption"] == "secrets"
    assert not any(".env" in w for w in packed["warnings"])
    listing = subprocess.run(["tar", "--zstd", "-tf", packed["path"]], capture_output=True,
                             text=True, check=True).stdout.split()
    assert "security/env.encrypted" in listing and ".env" not in listing
    token = (installation / ".env").read_text().split("GITHUB_TOKEN=")[1].split()[0]
    assert token.encode() not in decompressed(packed["path"])
    # restoring without the key leaves the live .env alone, with a warning
    (installation / ".env").write_text("LOCAL=1\n")
    monkeypatch.delenv("POPPO_BACKUP_KEY")
    code, result = cli.json("unpack", packed["id"], "--targets", "security")
    assert code == 1 and any("not restored" in w for w in result["warnings"])
    assert (installation / ".env").read_text() == "LOCAL=1\n"
    monkeypatch.setenv("POPPO_BACKUP_KEY", PASS)
    code, result = cli.json("unpack", packed["id"], "--targets", "security")
    assert code in (0, 1) and token in (installation / ".env").read_text()


# -- attacks by someone holding the signing key but not the data key ----------------------

def _sealed_archive(cli, tmp_path, name="a"):
    # two files above the bundle limit and of one size: objects of their own to swap
    for blob in ("blob-a.bin", "blob-b.bin"):
        if not (cli.root / "state" / blob).exists():
            (cli.root / "state" / blob).write_bytes(os.urandom(100_000))
    packed = cli.pack("--encrypt")
    return Path(packed["path"])


def _expect_rejected(cli, path, installation):
    before = digest(installation)
    code, _, err = cli("unpack", str(path))
    assert code == 13, err
    assert "checksum" not in err, "rejected for a rebuild artefact, not by the segment layer"
    assert "Traceback" not in err and err.count("\n") == 1
    assert digest(installation) == before


@pytest.mark.parametrize("attack", ["swap-entries", "drop-member", "duplicate-member",
                                    "truncate-last-segment", "flip-ciphertext", "edit-object-header"])
def test_resigned_tampering_is_caught_by_the_segments(attack, cli, installation, passphrase,
                                                      key_home, tmp_path):
    source = _sealed_archive(cli, tmp_path)
    _, found = members(source)
    sizes = {}
    for index, member in enumerate(found):
        sizes.setdefault(len(member[2]), []).append(index)
    same = next(v for v in sizes.values() if len(v) >= 2)

    def transform(items):
        if attack == "swap-entries":           # two equal-size objects change places
            a, b = same[:2]
            items[a][2], items[b][2] = items[b][2], items[a][2]
        elif attack == "drop-member":
            del items[3]
        elif attack == "duplicate-member":
            items.insert(3, list(items[3]))
        elif attack == "truncate-last-segment":
            items[3][2] = items[3][2][:-16]
        elif attack == "flip-ciphertext":
            data = bytearray(items[3][2])
            data[40] ^= 1
            items[3][2] = bytes(data)
        elif attack == "edit-object-header":
            data = bytearray(items[3][2])
            data[10] ^= 1                       # a salt byte: different key
            items[3][2] = bytes(data)
        return items

    forged = rebuild(source, tmp_path / "forged.poppo.tar.zst", key_home, transform)
    _expect_rejected(cli, forged, installation)


def test_object_from_another_archive_with_the_same_passphrase(cli, installation, passphrase,
                                                              key_home, tmp_path):
    first = _sealed_archive(cli, tmp_path)
    second = _sealed_archive(cli, tmp_path)
    _, other = members(second)

    def transform(items):
        items[3][2] = other[3][2]
        return items

    assert members(first)[1][3][2] != other[3][2]
    forged = rebuild(first, tmp_path / "forged.poppo.tar.zst", key_home, transform)
    _expect_rejected(cli, forged, installation)


@pytest.mark.parametrize("edit,fragment", [
    (lambda r: r.update(memory_kib=4 * 1024 * 1024), "memory_kib"),
    (lambda r: r.update(time_cost=10**6), "time_cost"),
    (lambda r: r.update(memory_kib=8), "memory_kib"),
    (lambda r: r.update(wrapped=r["wrapped"][:-4]), "48 bytes"),
    (lambda r: r.update(type="scrypt"), "unknown recipient type"),
])
def test_hostile_recipient_stanzas_are_refused_before_any_kdf(edit, fragment, cli, installation,
                                                              passphrase, key_home, tmp_path):
    source = _sealed_archive(cli, tmp_path)

    def manifest_edit(manifest):
        stanza = dict(manifest["encryption"]["recipients"][0])
        edit(stanza)
        manifest["encryption"] = dict(manifest["encryption"], recipients=[stanza])

    forged = rebuild(source, tmp_path / "forged.poppo.tar.zst", key_home, lambda items: items,
                     manifest_edit)
    code, _, err = cli("verify", str(forged))
    assert code == 13 and fragment in err     # signed as it is: corrupt, not tampered (§7.1)


def test_two_passphrase_stanzas_are_refused(cli, passphrase, key_home, tmp_path):
    source = _sealed_archive(cli, tmp_path)

    def manifest_edit(manifest):
        stanza = manifest["encryption"]["recipients"][0]
        manifest["encryption"] = dict(manifest["encryption"], recipients=[stanza, stanza])

    forged = rebuild(source, tmp_path / "forged.poppo.tar.zst", key_home, lambda i: i, manifest_edit)
    code, _, err = cli("verify", str(forged))
    assert code == 13 and "more than one passphrase" in err


# -- the segment layer itself ------------------------------------------------------------

KEY = bytes(range(32))


@pytest.mark.parametrize("length", [0, 1, SEGMENT - 1, SEGMENT, SEGMENT + 1, 3 * SEGMENT])
def test_one_segmentation_per_length(length):
    data = os.urandom(length)
    sealed = seal(KEY, "backup-x", 5, 0, data)
    assert len(sealed) == segments.sealed_size(length)
    assert segments.plaintext_size(len(sealed)) == length
    assert open_sealed(KEY, "backup-x", 5, 0, sealed) == data


def test_segment_manipulations_fail_authentication():
    data = os.urandom(3 * SEGMENT + 100)
    sealed = seal(KEY, "backup-x", 1, 0, data)
    seg = SEGMENT + 16
    head, body = sealed[:segments.HEADER], sealed[segments.HEADER:]
    parts = [body[i:i + seg] for i in range(0, len(body), seg)]
    cases = {
        "swap": head + parts[1] + parts[0] + parts[2] + parts[3],
        "duplicate": head + parts[0] + parts[0] + parts[2] + parts[3],
        "drop-last": head + b"".join(parts[:3]),
        "drop-middle": head + parts[0] + parts[2] + parts[3],
        "truncate-last": sealed[:-1],
        "extend": sealed + b"\0" * 16,
    }
    for name, forged in cases.items():
        with pytest.raises(SegmentError):
            open_sealed(KEY, "backup-x", 1, 0, forged)
    for wrong in [("backup-y", 1, 0), ("backup-x", 2, 0), ("backup-x", 1, 1)]:
        with pytest.raises(SegmentError):
            open_sealed(KEY, *wrong, sealed)
    for offset in range(segments.HEADER):
        forged = bytearray(sealed)
        forged[offset] ^= 0x80
        with pytest.raises(SegmentError):
            open_sealed(KEY, "backup-x", 1, 0, bytes(forged))


def test_rebuild_with_no_change_still_verifies(cli, installation, passphrase, key_home, tmp_path):
    """The forgeries above are rejected for their change, not for a rebuild artefact."""
    source = _sealed_archive(cli, tmp_path)
    same = rebuild(source, tmp_path / "same.poppo.tar.zst", key_home, lambda items: items)
    code, verified = cli.json("verify", str(same))
    assert code == 0 and verified["not_checked"] == []


# -- the passphrase KDF helper ------------------------------------------------------

def test_kdf_helper_derives_the_in_process_key_and_falls_back(monkeypatch):
    from poppoarc.crypto import kdf, recipients
    from poppoarc.parallel import SERIAL, Parallelism, process
    params = {"time_cost": 2, "memory_kib": 19 * 1024, "lanes": 1}
    pending = kdf.PendingKek(b"pass", params, recipients._argon2)
    assert pending._process is not None
    assert pending.result() == recipients._argon2(b"pass", pending.salt, params)
    serial = kdf.PendingKek(b"pass", params, recipients._argon2, parallel=Parallelism(SERIAL))
    assert serial._process is None
    assert serial.result() == recipients._argon2(b"pass", serial.salt, params)
    monkeypatch.setattr(process.sys, "executable", "/nonexistent/python")
    fallback = kdf.PendingKek(b"pass", params, recipients._argon2)
    assert fallback._process is None
    assert fallback.result() == recipients._argon2(b"pass", fallback.salt, params)


def test_a_pending_passphrase_key_wraps_once_and_unwraps():
    from poppoarc.crypto import recipients
    archive_id = "backup-2025-06-19T12-00-00-000Z-abc123"
    secrets = recipients.start_passphrase_kdf(recipients.Secrets(passphrase=b"pass"))
    data_key = os.urandom(32)
    first = recipients.wrap(data_key, archive_id, secrets)
    second = recipients.wrap(data_key, archive_id, secrets)     # derived afresh: a new salt
    assert first[0]["salt"] != second[0]["salt"]
    opener = recipients.Secrets(passphrase=b"pass")
    assert recipients.unwrap(first, archive_id, opener, "x") == data_key
    assert recipients.unwrap(second, archive_id, opener, "x") == data_key


# -- the sealing pool ----------------------------------------------------------------

def test_pool_keeps_members_in_order_across_batches_and_chunks(tmp_path):
    import io

    from poppoarc.crypto.sealer import Sealer
    from poppoarc.format import tarheader
    from poppoarc.format.head import head_frame_size
    from poppoarc.format.entry import CHUNK_SIZE
    from poppoarc.format.reader import FrameStream
    from poppoarc.format.writer import BodyWriter

    sealer = Sealer(bytes(range(32)), "backup-2025-06-19T12-00-00-000Z-abc123")
    contents = [os.urandom(n) for n in (0, 1, 5000, 2 * CHUNK_SIZE + 7, 300, CHUNK_SIZE)] * 2
    path = tmp_path / "body"
    with open(path, "w+b") as handle:
        writer = BodyWriter(handle, 4096, level=1, threads=2)
        stored = []
        for entry, data in enumerate(contents):
            names = [f"objects/{entry:08x}.{n:04x}" for n in range(max(1, -(-len(data) // CHUNK_SIZE)))]
            stored.append(writer.add_sealed_file(io.BytesIO(data).read, len(data), entry, names,
                                                 sealer, 0))
        writer.close()
        end = writer.offset
    with open(path, "rb") as handle:
        stream = FrameStream(handle, head_frame_size(4096), end, path)
        for entry, (data, result) in enumerate(zip(contents, stored)):
            expected = sealer.new_mac()
            expected.update(data)
            assert result.hmac_sha256 == expected.hexdigest(), entry
            opened = b""
            for number, (name, size) in enumerate(result.sealed):
                header = stream.read(512)
                assert header[:100].rstrip(b"\0").decode() == name
                sealed = stream.read(size)
                stream.read(tarheader.padding(size))
                opened += sealer.open_chunk(entry, number, sealed, min(CHUNK_SIZE, len(data) - len(opened)))
            assert opened == data, entry
        assert stream.at_end()


def test_small_files_share_bundle_objects(cli, installation, passphrase):
    packed = cli.pack("--encrypt")
    _, found = members(Path(packed["path"]))
    assert any(name.endswith(".b") for name, _, _ in found)
    assert len(found) < packed["files"] / 4          # tiny files share objects
    code, inspected = cli.json("inspect", packed["id"], "--entries")
    assert [e["bundle"] for e in inspected["entries"] if e.get("bundle")], "a bundle of several"
    assert cli("verify", packed["id"])[0] == 0


@pytest.mark.parametrize("lie", ["offset", "short", "unclaimed"])
def test_a_signed_index_that_lies_about_a_bundle_is_rejected(cli, key_home, passphrase, lie):
    """Written through the real writer with the real keys; only the index lies."""
    import hashlib
    import io
    from datetime import datetime, timezone

    from poppoarc.crypto import recipients, signing
    from poppoarc.crypto.sealer import Sealer
    from poppoarc.format.entry import CHUNK_SIZE, IndexEntry
    from poppoarc.format.manifest import ENCRYPTION_SCHEME, new_archive_id
    from poppoarc.format.writer import BodyWriter, finish_archive

    key, _ = signing.load_or_generate(key_home)
    now = datetime.now(timezone.utc)
    archive_id = new_archive_id(now)
    data_key = recipients.new_data_key()
    sealer = Sealer(data_key, archive_id)
    encryption = {"scheme": ENCRYPTION_SCHEME, "scope": "archive", "chunk_size": CHUNK_SIZE,
                  "recipients": recipients.wrap(data_key, archive_id,
                                                recipients.Secrets(passphrase=PASS.encode()))}
    contents = [b"first file\n", b"second, longer file\n", b"third\n"]
    cli.store.mkdir(parents=True, exist_ok=True)
    path = cli.store / f"{archive_id}.poppo.tar.zst"
    entries = [IndexEntry("state", "state", "dir", 0o755, 0, 0, 0)]
    with open(path, "w+b") as handle:
        writer = BodyWriter(handle, 8192, level=1)
        for n, data in enumerate(contents):
            entry = IndexEntry(f"state/{n}.json", "state", "file", 0o644, 0, 0, 0, len(data))
            stored = writer.add_bundled_file(io.BytesIO(data).read, len(data), len(entries),
                                             sealer, int(now.timestamp()) * 10**9)
            entry.sealed, entry.hmac_sha256, entry.bundle = (stored.sealed, stored.hmac_sha256,
                                                             stored.bundle)
            entries.append(entry)
        offset, length = writer.end_frame()
        if lie == "offset":             # the third file claims to start one byte later
            entries[3].bundle += 1
            entries[3].size -= 1
            entries[3].hmac_sha256 = hashlib.sha256().hexdigest()
        elif lie == "short":            # the last file claims more bytes than the bundle has
            entries[3].size += 1
        else:                           # the bundle holds bytes no file claims
            del entries[3]
        fields = {"version": None, "tool": {"name": "poppoarc", "version": "test"},
                  "type": "manual", "name": None, "incremental": False, "parent": None,
                  "host": None, "root": None, "databases": [], "certificates": [],
                  "files": len(entries) - 1, "duration": 0,
                  "targets": {"state": {"files": len(entries) - 1,
                                        "size": sum(e.size for e in entries[1:]),
                                        "entries": len(entries), "stored": [offset, length]}}}
        finish_archive(handle, writer, archive_id=archive_id, now=now, entries=entries,
                       fields=fields, warnings=[], key=key, head_size=8192, level=1,
                       encryption=encryption, sealer=sealer)
    code, _, err = cli("verify", archive_id)
    expected = {"offset": "bundle offset", "short": "bundle ends inside",
                "unclaimed": "bytes no file claims"}[lie]
    assert code == 13 and expected in err, err
