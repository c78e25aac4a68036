"""The committed test vectors pin the format: spec, code and bytes move together."""

import hashlib
import importlib.util
import json
import re
from pathlib import Path

import pyzstd
import pytest

from poppoarc.config import Settings
from poppoarc.errors import PoppoarcError
from poppoarc.format.manifest import LAYOUT_KEYS, REQUIRED_KEYS
from poppoarc.inspection import verify

REPO = Path(__file__).resolve().parent.parent
VECTORS = REPO / "fixtures" / "vectors"
SPEC = (REPO / "spec" / "FORMAT.md").read_text()
ZSTD_VERSION_OF_VECTORS = "1.5.7"


def load_maker():
    spec = importlib.util.spec_from_file_location("make_vectors", REPO / "fixtures" / "make_vectors.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def expectations():
    for path in sorted(VECTORS.glob("*.expect")):
        fields = dict(line.split(": ", 1) for line in path.read_text().splitlines())
        yield path.name[:-len(".expect")], fields["expect"], fields.get("passphrase")


def settings(tmp_path) -> Settings:
    pinned = (VECTORS / "test-signing.pub").read_text().strip()
    return Settings(root=tmp_path, config_path=tmp_path / "none.json", store=tmp_path,
                    backup={"signing": {"trustedKeys": [pinned]}}, key_dir=tmp_path / "keys")


@pytest.mark.parametrize("name,expect,passphrase", list(expectations()))
def test_reader_reaches_each_vectors_verdict(name, expect, passphrase, tmp_path, monkeypatch):
    path = VECTORS / f"{name}.poppo.tar.zst"
    if passphrase:
        monkeypatch.setenv("POPPO_BACKUP_KEY", passphrase)
    else:
        monkeypatch.delenv("POPPO_BACKUP_KEY", raising=False)
    if expect == "ok":
        result = verify(settings(tmp_path), str(path))
        assert result.entries > 0 and result.not_checked == []
    else:
        with pytest.raises(PoppoarcError) as caught:
            verify(settings(tmp_path), str(path))
        assert type(caught.value).__name__ == expect, str(caught.value)


def test_every_case_is_committed():
    maker = load_maker()
    assert {name for name, _, _ in expectations()} == set(maker.CASES)


@pytest.mark.skipif(pyzstd.zstd_version != ZSTD_VERSION_OF_VECTORS,
                    reason="compressed bytes depend on the libzstd version the vectors were made with")
def test_writer_reproduces_committed_vectors_byte_for_byte(tmp_path):
    load_maker().build(tmp_path)
    for committed in VECTORS.iterdir():
        fresh = tmp_path / committed.name
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
    assert documented == REQUIRED_KEYS
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
