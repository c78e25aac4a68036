"""Shared fixtures: isolated key home, generated installations, CLI runners."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from poppoarc.cli import main
from poppoarc.demo.installation import make_installation

_CACHE: dict[str, Path] = {}


@pytest.fixture(autouse=True)
def key_home(tmp_path_factory, monkeypatch):
    """Every test gets its own signing-key directory, never ~/.config."""
    home = tmp_path_factory.mktemp("keys")
    monkeypatch.setenv("POPPOARC_HOME", str(home))
    monkeypatch.delenv("POPPO_ROOT", raising=False)
    return home


@pytest.fixture(autouse=True)
def english(monkeypatch):
    """Messages in English whatever the developer's locale (tests ask for Japanese)."""
    for name in ("LANGUAGE", "LC_ALL", "LC_MESSAGES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LANG", "C.UTF-8")


@pytest.fixture(scope="session")
def installation_template(tmp_path_factory):
    """Generated installations, built once per session and copied per test."""

    def build(scale: str) -> Path:
        if scale not in _CACHE:
            dest = tmp_path_factory.mktemp(f"template-{scale}") / "inst"
            make_installation(dest, scale=scale, seed=0)
            _CACHE[scale] = dest
        return _CACHE[scale]

    return build


@pytest.fixture
def installation(tmp_path, installation_template):
    """A fresh copy of the tiny installation, with its WAL files and symlinks."""
    dest = tmp_path / "inst"
    shutil.copytree(installation_template("tiny"), dest, symlinks=True)
    return dest


class CLI:
    """Runs poppoarc in-process (fast) against one installation and store."""

    def __init__(self, root: Path, store: Path, capsys):
        self.root, self.store, self.capsys = root, store, capsys

    def __call__(self, *args: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = main(["--root", str(self.root), "--store", str(self.store), *args])
        out, err = self.capsys.readouterr()
        return code, out, err

    def json(self, *args: str) -> tuple[int, dict]:
        code, out, _ = self(*args, "--json")
        return code, json.loads(out)

    def pack(self, *args: str) -> dict:
        code, document = self.json("pack", *args)
        assert code in (0, 1), document
        return document


@pytest.fixture
def cli(installation, tmp_path, capsys):
    return CLI(installation, tmp_path / "store", capsys)


def run_poppoarc(*args: str, env=None, **kwargs) -> subprocess.CompletedProcess:
    """The real console entry point in a subprocess."""
    return subprocess.run([sys.executable, "-m", "poppoarc", *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, **kwargs)


from .unprivileged import nobody  # noqa: E402,F401  (the fixture, for every test module)
