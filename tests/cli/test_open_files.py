"""A restore keeps O(depth) directories open: an installation with more directories than
``ulimit -n`` restores (issue 24, 4).  It failed with "Too many open files" (exit 30):
staging cached a descriptor for every directory it wrote.

The default run restores 2,000 directories under a limit of 256 descriptors; with
``POPPOARC_SLOW_TESTS=1`` the issue's 100,000 directories (a minute or two)."""

import json
import os
import resource
import shutil
import subprocess
import sys
import time

import pytest

from tests.helpers import digest

LIMIT = 256
DIRECTORIES = 100_000 if os.environ.get("POPPOARC_SLOW_TESTS") else 2_000


def _limited():
    resource.setrlimit(resource.RLIMIT_NOFILE, (LIMIT, LIMIT))


def _poppoarc(*args):
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "poppoarc", *args], capture_output=True,
                          text=True, preexec_fn=_limited)
    return done, time.monotonic() - started


def _many_directories(root, count):
    """``count`` directories in agents' and state's trees, two levels deep, a file in each."""
    for n in range(count):
        top = "state/tasks" if n % 2 else "data/ccla/runs"
        directory = root / top / f"{n // 100:04d}" / f"{n:06d}"
        directory.mkdir(parents=True)
        (directory / "task.json").write_text(f'{{"n": {n}}}')


def _generated(root):
    return {top: digest(root / top) for top in ("state/tasks", "data/ccla/runs")}


@pytest.mark.parametrize("over_live_tree", [False, True])
def test_a_restore_of_more_directories_than_open_files(installation, tmp_path, over_live_tree,
                                                         capsys):
    _many_directories(installation, DIRECTORIES)
    store = tmp_path / "store"
    packed, pack_time = _poppoarc("--root", str(installation), "--store", str(store), "pack",
                                  "--json")
    assert packed.returncode in (0, 1), packed.stderr
    archive = json.loads(packed.stdout)["id"]
    expected = _generated(installation)
    if over_live_tree:
        root = installation
        for n in range(0, DIRECTORIES, 7):      # changed, and removed, in both trees
            top = "state/tasks" if n % 2 else "data/ccla/runs"
            shutil.rmtree(root / top / f"{n // 100:04d}" / f"{n:06d}")
    else:
        root = tmp_path / "empty"
        root.mkdir()
    restored, restore_time = _poppoarc("--root", str(root), "--store", str(store), "unpack",
                                       archive, "--json")
    assert restored.returncode in (0, 1), restored.stderr
    assert _generated(root) == expected
    with capsys.disabled():
        print(f"\n{DIRECTORIES} directories, ulimit -n {LIMIT}: pack {pack_time:.1f} s, "
              f"restore {'over the live tree' if over_live_tree else 'into an empty root'} "
              f"{restore_time:.1f} s")
