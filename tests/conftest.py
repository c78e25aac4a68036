"""Shared fixtures: isolated key home, generated installations, CLI runners."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest

from poppoarc.config import resolve
from poppoarc.demo.installation import make_installation
from poppoarc.options import PackOptions
from poppoarc.pack import share, steps
from poppoarc.parallel import SERIAL, TWO_PROCESS, Parallelism, process

from .helpers import CLI, EAGER

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


@pytest.fixture
def japanese(monkeypatch):
    """Messages in Japanese (a ja_JP locale)."""
    for name in ("LANGUAGE", "LC_ALL", "LC_MESSAGES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LANG", "ja_JP.UTF-8")


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


@pytest.fixture
def cli(installation, tmp_path, capsys):
    return CLI(installation, tmp_path / "store", capsys)


@pytest.fixture(params=[TWO_PROCESS, SERIAL])
def both_ways(request, cli):
    """``cli`` with every helper eager (each one runs on the tiny installation), first in
    two processes, then serial: an archive test that asks for this runs both ways."""
    cli.parallel = Parallelism(request.param, 2, EAGER)
    return request.param


NOW = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc)
FIXED_ID = "backup-2026-01-02T03-04-05-678Z-aaaaaa"


@pytest.fixture
def fixed_pack(installation, tmp_path, monkeypatch):
    """Packs of the installation with the clock and the archive id fixed (what else a
    pack records of its run: the host, the root, are the same here); returns the bytes,
    the processes started and the shares used."""
    store = tmp_path / "store"
    # A secret is sealed (to this machine's own identity) with a fresh data key and an
    # ephemeral X25519 share each time: no two packs of it are the same bytes.  Compared
    # here: the plain archive, as before secrets were always kept.
    (installation / ".env").unlink()
    started, shares = [], []
    real_start, real_result = process.start, share.Share.result

    def start(*args, **kwargs):
        started.append(args[0])
        return real_start(*args, **kwargs)

    def result(self):
        part = real_result(self)
        shares.append(part is not None)
        return part

    monkeypatch.setattr(process, "start", start)
    monkeypatch.setattr(share.Share, "result", result)

    def pack(parallel: Parallelism, incremental: bool | None = None) -> bytes:
        started.clear()
        shares.clear()
        settings = dataclasses.replace(resolve(str(installation), store=str(store)),
                                       parallel=parallel)
        with monkeypatch.context() as fixed:
            fixed.setattr(steps, "new_archive_id", lambda now: FIXED_ID)
            packed = steps.pack_locked(settings, PackOptions(incremental=incremental),
                                       clock=(lambda: NOW, lambda: 1000.0))
        data = Path(packed.path).read_bytes()
        os.unlink(packed.path)
        return data

    pack.store, pack.started, pack.shares = store, started, shares
    return pack


@pytest.fixture
def small_fs(tmp_path):
    """``small_fs(kib)``: a directory on a tmpfs of that size, unmounted afterwards."""
    mounted = []

    def mount(kib: int):
        where = tmp_path / f"fs-{uuid.uuid4().hex[:6]}"
        where.mkdir()
        if os.geteuid() != 0:
            pytest.skip("mounting a small tmpfs needs root")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kib}k,mode=0700", "tmpfs",
                               str(where)], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], check=False)


from .helpers.unprivileged import nobody  # noqa: E402,F401  (the fixture, for every test module)
