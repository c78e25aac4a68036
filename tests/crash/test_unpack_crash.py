"""SIGKILL at random instants during unpack; the next command recovers.

After any poppoarc command following the kill, the installation must be
exactly the old tree or exactly the archived one: never a mix, and no
staging, journal or half-written files left behind.
"""

import random
import shutil
import signal
import subprocess
import sys
import time

from poppoarc.restore import trash
from tests.helpers import run_poppoarc
from tests.helpers import digest, vandalize


def copy_tree(source, dest):
    shutil.copytree(source, dest, symlinks=True)
    return dest


def test_sigkill_during_unpack_leaves_old_or_new_tree(installation_template, tmp_path, key_home):
    base = copy_tree(installation_template("small"), tmp_path / "base")
    store = tmp_path / "store"
    packed = run_poppoarc("--root", str(base), "--store", str(store), "pack", "--json")
    archive = __import__("json").loads(packed.stdout)["path"]
    vandalize(base)
    old = digest(base)

    reference = copy_tree(base, tmp_path / "reference")
    started = time.monotonic()
    done = run_poppoarc("--root", str(reference), "--store", str(store), "unpack", archive, "-q")
    duration = time.monotonic() - started
    assert done.returncode in (0, 1), done.stderr
    new = digest(reference)
    assert new != old

    rng = random.Random(1234)
    outcomes = {"old": 0, "new": 0}
    attempt, scale = 0, 1.1
    # Kill times are drawn from the measured duration; under load a run may take
    # longer or shorter, so go on (bounded) until both outcomes have been seen.
    while attempt < 10 or (not (outcomes["old"] and outcomes["new"]) and attempt < 30):
        root = copy_tree(base, tmp_path / f"run{attempt}")
        extra = ["--skip-backup"] if attempt % 3 == 0 else []
        child = subprocess.Popen([sys.executable, "-m", "poppoarc", "--root", str(root), "--store",
                                  str(store), "unpack", archive, "-q", *extra],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.05, duration * scale))
        child.send_signal(signal.SIGKILL)
        child.wait()
        after_kill = run_poppoarc("--root", str(root), "--store", str(store), "list", "-q")
        assert after_kill.returncode == 0, after_kill.stderr
        state = digest(root)
        assert state in (old, new), f"attempt {attempt}: a mixed tree after recovery"
        outcomes["old" if state == old else "new"] += 1
        trash.sweep(root, wait=True)     # a completed restore's remover may still run
        leftovers = [p.name for p in root.iterdir() if p.name.startswith(".poppoarc-")]
        assert leftovers == [], leftovers
        temps = [p.name for p in store.iterdir() if ".tmp-" in p.name]
        if temps:   # a killed safety archive: the next pack removes it
            run_poppoarc("--root", str(root), "--store", str(store), "pack", "-q", "--targets", "state")
            assert not [p for p in store.iterdir() if ".tmp-" in p.name]
        shutil.rmtree(root)
        attempt += 1
        if attempt >= 10:     # steer the kill window towards the outcome not yet seen
            scale *= 1.4 if not outcomes["new"] else 0.6 if not outcomes["old"] else 1
    assert outcomes["old"] and outcomes["new"], outcomes
