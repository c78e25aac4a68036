"""Running poppoarc as an unprivileged user from a test suite that may run as root.

Root reads every file, so "a file this user cannot read" only exists for another user.
When the tests run as root, ``Nobody`` runs poppoarc as uid/gid 65534 with ``setpriv``
(no supplementary groups) in a directory of its own that user owns; when they already
run unprivileged, it runs poppoarc as the current user.  The interpreter must be one that
user can run and import poppoarc with: this one, or the system's Python of the same
version with this environment's packages on its path (a Python under /root is not
readable by others).  A test skips, saying why, only when no such interpreter exists or
``setpriv`` is missing.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import site
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

NOBODY = 65534
REPO = Path(__file__).resolve().parents[2]


def _drop() -> list[str]:
    if os.geteuid() != 0:
        return []
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]


def _python_path() -> str:
    paths = [str(REPO), *site.getsitepackages()]
    return os.pathsep.join(p for p in paths if os.path.isdir(p))


@functools.lru_cache(maxsize=None)
def interpreter() -> str | None:
    """A Python the unprivileged user can run that imports poppoarc, or None."""
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        return None
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (sys.executable, f"/usr/bin/{version}", f"/usr/local/bin/{version}"):
        if not os.path.exists(candidate):
            continue
        probe = subprocess.run(
            [*_drop(), candidate, "-c", "import poppoarc.cli, cryptography, pyzstd"],
            capture_output=True, cwd="/", env={"PATH": os.environ.get("PATH", ""),
                                               "PYTHONPATH": _python_path()})
        if probe.returncode == 0:
            return candidate
    return None


class Nobody:
    """A directory owned by the unprivileged user, and poppoarc run as that user in it."""

    def __init__(self):
        python = interpreter()
        if python is None:
            pytest.skip("no Python that an unprivileged user can run imports poppoarc here "
                        "(setpriv missing, or only an interpreter under a private directory)")
        self.python = python
        self.home = Path(tempfile.mkdtemp(prefix="poppoarc-nobody-", dir="/tmp"))
        os.chmod(self.home, 0o755)
        if os.geteuid() == 0:
            os.chown(self.home, NOBODY, NOBODY)

    def give(self, path: Path) -> None:
        """Make ``path`` (recursively, without following links) the user's."""
        if os.geteuid() != 0:
            return
        for dirpath, dirnames, filenames in os.walk(path):
            os.chown(dirpath, NOBODY, NOBODY)
            for name in dirnames + filenames:
                os.chown(os.path.join(dirpath, name), NOBODY, NOBODY, follow_symlinks=False)

    def packed(self, template: Path) -> tuple[Path, Path, str]:
        """A copy of the installation ``template`` this user owns (HOME/inst), packed by
        this user into HOME/store: (root, store, the archive's id)."""
        root = self.home / "inst"
        shutil.copytree(template, root, symlinks=True)
        self.give(root)
        store = self.home / "store"
        done = self.run("--root", str(root), "--store", str(store), "pack", "--json")
        assert done.returncode in (0, 1), done.stderr
        return root, store, json.loads(done.stdout)["id"]

    def run(self, *args: str, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
        """``poppoarc ARGS`` as the unprivileged user (text output captured)."""
        environment = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": _python_path(),
                       "HOME": str(self.home), "POPPOARC_HOME": str(self.home / "keys"),
                       "TMPDIR": str(self.home), "LANG": "C.UTF-8",
                       "POPPOARC_PROGRESS": "none", **(env or {})}
        return subprocess.run([*_drop(), self.python, "-m", "poppoarc", *args],
                              capture_output=True, text=True, env=environment,
                              cwd=str(self.home), **kwargs)

    def cleanup(self) -> None:
        for dirpath, dirnames, _ in os.walk(self.home):
            for name in dirnames:       # directories a test made unreadable (never a link's
                path = os.path.join(dirpath, name)      # target: os.walk lists those too)
                if not os.path.islink(path):
                    os.chmod(path, 0o700)
        shutil.rmtree(self.home, ignore_errors=True)


@pytest.fixture
def nobody():
    user = Nobody()
    try:
        yield user
    finally:
        user.cleanup()
