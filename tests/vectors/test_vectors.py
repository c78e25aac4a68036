"""The committed test vectors pin the format: spec, code and bytes move together."""

import hashlib
import json
import re
import shutil
import unicodedata

import pyzstd
import pytest

from poppoarc.config import Settings
from poppoarc.errors import PoppoarcError, WrongKey
from poppoarc.format.manifest import LAYOUT_KEYS, OPTIONAL_KEYS, REQUIRED_KEYS
from poppoarc.archives.verification import verify

from tests.helpers import REPO, unpack
from tests.helpers.vectors import VECTORS, expectations, load_maker, settings

SPEC = (REPO / "spec" / "FORMAT.md").read_text()
# libzstd versions known to compress the vectors to the committed bytes (checked by hand:
# regenerate, compare); another version may differ and only skips the byte comparison
ZSTD_VERSIONS_OF_VECTORS = ("1.5.7", "1.6.0")


@pytest.mark.parametrize("name,expect,fields", list(expectations()))
def test_reader_reaches_each_vectors_verdict(name, expect, fields, tmp_path, monkeypatch):
    path = VECTORS / fields.get("file", f"{name}.poppo.tar.zst")
    if fields.get("passphrase"):
        monkeypatch.setenv("POPPO_BACKUP_KEY", fields["passphrase"])
    else:
        monkeypatch.delenv("POPPO_BACKUP_KEY", raising=False)
    monkeypatch.delenv("POPPO_BACKUP_IDENTITY", raising=False)
    chosen = settings(tmp_path, fields.get("identity"))
    if expect == "ok":
        result = verify(chosen, str(path))
        assert result.entries > 0 and result.not_checked == []
    elif expect == "NoKey":
        # without a key everything but content verifies, and says what it could not check;
        # reading the content (a restore) is refused before anything is written
        result = verify(chosen, str(path))
        assert "file contents and their digests" in result.not_checked
        root = tmp_path / "root"
        root.mkdir()
        with pytest.raises(PoppoarcError) as caught:
            unpack(Settings(**{**chosen.__dict__, "root": root}), str(path), skip_backup=True)
        assert type(caught.value).__name__ == expect, str(caught.value)
        assert {p.name for p in root.iterdir()} <= {".poppoarc.lock"}     # nothing restored
    else:
        with pytest.raises(PoppoarcError) as caught:
            verify(settings(tmp_path), str(path))
        assert type(caught.value).__name__ == expect, str(caught.value)


def test_every_case_is_committed():
    maker = load_maker()
    assert {name for name, _, _ in expectations()} == set(maker.CASES)


@pytest.mark.skipif(pyzstd.zstd_version not in ZSTD_VERSIONS_OF_VECTORS,
                    reason="compressed bytes depend on the libzstd version the vectors were made with")
def test_writer_reproduces_committed_vectors_byte_for_byte(tmp_path):
    load_maker().build(tmp_path)
    for committed in VECTORS.rglob("*"):
        fresh = tmp_path / committed.relative_to(VECTORS)
        if committed.is_dir():
            assert fresh.is_dir()
            continue
        assert fresh.read_bytes() == committed.read_bytes(), (
            f"{committed.name} changed: the format changed; update spec/FORMAT.md and "
            "regenerate with `python fixtures/make_vectors.py`")


def test_spec_worked_example_matches_the_vector():
    block = re.search(r"<!-- vector-head-hexdump:begin -->\n```\n(.*?)```\n<!-- vector-head-hexdump:end -->",
                      SPEC, re.S)
    assert block, "spec/FORMAT.md lost its worked example"
    data = (VECTORS / "minimal.poppo.tar.zst").read_bytes()
    assert block.group(1) == hexdump(data[:64])


def test_spec_lists_exactly_the_manifest_fields():
    section = SPEC.split("### 5.2 Manifest fields")[1].split("### 5.3")[0]
    documented = set()
    for row in re.findall(r"^\| (`[^|]*`) \|", section, re.M):
        documented.update(re.findall(r"`(\w+)`", row))
    assert documented == REQUIRED_KEYS | OPTIONAL_KEYS
    layout_row = re.search(r"^\| `layout` \|.*$", section, re.M).group(0)
    assert set(re.findall(r'"(\w+)"', layout_row)) == LAYOUT_KEYS


def hexdump(data: bytes) -> str:
    lines = []
    for offset in range(0, len(data), 16):
        chunk = data[offset:offset + 16]
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{offset:08x}  {chunk.hex(' '):<47}  |{text}|\n")
    return "".join(lines)


def test_segment_known_answers_and_accumulated_check():
    committed = json.loads((VECTORS / "segments.json").read_text())
    assert load_maker().segment_vectors() == committed
    from poppoarc.crypto import segments
    key = bytes.fromhex(committed["key_hex"])
    salt = bytes.fromhex(committed["salt_hex"])
    for name, case in committed["cases"].items():
        plaintext = bytes(i % 251 for i in range(case["plaintext_length"]))
        sealed = segments.seal(key, committed["archive_id"], 7, 0, plaintext, salt=salt)
        assert hashlib.sha256(sealed).hexdigest() == case["sealed_sha256"], name
        assert segments.open_sealed(key, committed["archive_id"], 7, 0, sealed) == plaintext
    assert committed["accumulated"]["sha256"] in SPEC, "spec/FORMAT.md must state the accumulated hash"


def test_recipient_stanzas_known_answers_and_passphrase_bytes(tmp_path):
    """§11.2: the passphrase is bytes as given (a normalizing reader would fail: NFC and NFD
    are two keys), the stanza's kind is its `type`; §11.7: the identity is PKCS#8 PEM and
    its recipient `x25519:` base64."""
    from poppoarc.crypto import recipients

    committed = json.loads((VECTORS / "stanzas.json").read_text())
    assert load_maker().stanza_vectors() == committed
    data_key = bytes.fromhex(committed["data_key_hex"])
    archive_id = committed["archive_id"]
    nfc, nfd, x25519 = committed["cases"]
    text = load_maker().STANZA_PASSPHRASE
    for case, form in ((nfc, "NFC"), (nfd, "NFD")):
        passphrase = unicodedata.normalize(form, text).encode("utf-8")
        assert passphrase.hex() == case["passphrase_utf8_hex"] and case["stanza"]["type"] == "argon2id"
        assert recipients.unwrap([case["stanza"]], archive_id,
                                 recipients.Secrets(passphrase=passphrase), "v") == data_key
    with pytest.raises(WrongKey):       # the other normalization is another passphrase
        recipients.unwrap([nfc["stanza"]], archive_id, recipients.Secrets(
            passphrase=unicodedata.normalize("NFD", text).encode("utf-8")), "v")
    identity = tmp_path / "identity.pem"
    shutil.copyfile(VECTORS / x25519["identity"], identity)
    identity.chmod(0o600)
    key = recipients.load_identity(identity)
    public = recipients.parse_recipient((VECTORS / "test-identity.pub").read_text(), "v")
    assert recipients._public(key) == public
    assert x25519["stanza"]["key_id"] == hashlib.sha256(public).hexdigest()[:16]
    assert recipients.unwrap([x25519["stanza"]], archive_id,
                             recipients.Secrets(identities=(key,)), "v") == data_key


def test_the_verdict_table_matches_the_error_classes_the_exit_codes_and_the_vectors():
    """§7.1 is the error-class table of the format: every class a reader of an archive can
    reach, with poppoarc's exit code (as errors.py and docs/exit-codes.md have it), and
    vectors whose .expect names that class."""
    from poppoarc import errors

    section = SPEC.split("### 7.1 Verdicts")[1].split("\n## ")[0]
    rows = re.findall(r"^\| `(\w+)` \| (\d+) \| .* \| (.*) \|$", section, re.M)
    readme = dict(re.findall(r"^\|\s*(\d+)\s*\|\s*`(\w+)`", (REPO / "docs/exit-codes.md").read_text(), re.M))
    archive_classes = {cls.__name__ for cls in errors.all_error_classes()
                       if issubclass(cls, errors.ArchiveError) and cls is not errors.ArchiveError}
    assert {name for name, _, _ in rows} == archive_classes | {"WrongKey", "NoKey",
                                                               "UnsafeArchiveEntry"}
    verdicts = {name: expect for name, expect, _ in expectations()}
    for name, code, vectors in rows:
        assert getattr(errors, name).exit_code == int(code) and readme[code] == name
        named = re.findall(r"`([\w-]+)`", vectors)
        assert named and all(verdicts[vector] == name for vector in named), (name, named)
