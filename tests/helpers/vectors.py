"""The committed test vectors (fixtures/vectors/): where they are, what each expects, and
settings that trust their signing key."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

from poppoarc.config import Settings

from . import REPO

VECTORS = REPO / "fixtures" / "vectors"
LEGACY = REPO / "fixtures" / "legacy"


def load_maker():
    spec = importlib.util.spec_from_file_location("make_vectors", REPO / "fixtures" / "make_vectors.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def expectations():
    for path in sorted(VECTORS.glob("*.expect")):
        fields = dict(line.split(": ", 1) for line in path.read_text().splitlines())
        yield path.name[:-len(".expect")], fields["expect"], fields


def settings(tmp_path, identity: str | None = None) -> Settings:
    pinned = (VECTORS / "test-signing.pub").read_text().strip()
    backup = {"signing": {"trustedKeys": [pinned]}}
    if identity:    # git keeps no 0600 mode, and poppoarc refuses an identity others can read
        copy = tmp_path / "identity.pem"
        shutil.copyfile(VECTORS / identity, copy)
        copy.chmod(0o600)
        backup["storage"] = {"identityFile": str(copy)}
    return Settings(root=tmp_path, config_path=tmp_path / "none.json", store=tmp_path,
                    backup=backup, key_dir=tmp_path / "keys")


def legacy() -> list[tuple[str, dict]]:
    found = []
    for path in sorted(LEGACY.glob("*.expect")):
        fields = dict(line.split(": ", 1) for line in path.read_text().splitlines())
        found.append((path.name[:-len(".expect")], fields))
    return found


def trust(tmp_path: Path, identity: bool = True) -> dict:
    """A backup section that pins the vectors' signing key and holds the test identity (git
    keeps no 0600 mode, and poppoarc refuses an identity others can read)."""
    copy = tmp_path / "identity.pem"
    if not copy.exists():
        shutil.copyfile(VECTORS / "test-identity.pem", copy)
        copy.chmod(0o600)
    backup = {"signing": {"trustedKeys": [(VECTORS / "test-signing.pub").read_text().strip()]}}
    if identity:
        backup["storage"] = {"identityFile": str(copy)}
    return backup
