"""SIGKILL during a partial restore (``unpack --include state/pending-tasks.json``): after
the next command recovers, the file is its old or its new version, whole, and nothing else
of the installation moved; no staging, journal or temporary file is left."""

from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import sys
import time

from tests.helpers import REPO, digest, run_poppoarc

PENDING = "state/pending-tasks.json"
CHILD = r"""
import json, os, signal, sys
from poppoarc.commands import unpack
from poppoarc.config import resolve
from poppoarc.options import UnpackOptions
from poppoarc.snapshot.selection import PathSelection

cfg = json.loads(sys.argv[1])
count = 0

def on_event(message):
    global count
    count += 1
    if count == cfg["kill_at"]:
        os.kill(os.getpid(), signal.SIGKILL)

settings = resolve(cfg["root"], None, cfg["store"], strict=False)
unpack.run(settings, UnpackOptions(cfg["archive"], paths=PathSelection.of([cfg["include"]]),
                                   skip_backup=cfg["skip"]), on_event=on_event)
print(json.dumps({"events": count}), flush=True)
"""


def _scene(installation_template, tmp_path):
    base = tmp_path / "base"
    shutil.copytree(installation_template("tiny"), base, symlinks=True)
    store = tmp_path / "store"
    packed = run_poppoarc("--root", str(base), "--store", str(store), "pack", "--json")
    archive = json.loads(packed.stdout)["id"]
    (base / PENDING).write_text('{"live": "version"}\n')
    (base / "state/last-run.json").write_text('{"live": "kept"}\n')
    old = digest(base)
    reference = tmp_path / "reference"
    shutil.copytree(base, reference, symlinks=True)
    done = run_poppoarc("--root", str(reference), "--store", str(store), "unpack", archive,
                        "--include", PENDING, "-q")
    assert done.returncode == 0, done.stderr
    new = digest(reference)
    assert {p for p in set(old) | set(new) if old.get(p) != new.get(p)} == {PENDING}
    return base, store, archive, old, new


def _check(root, store, old, new) -> str:
    after = run_poppoarc("--root", str(root), "--store", str(store), "list", "-q")
    assert after.returncode == 0, after.stderr
    state = digest(root)
    assert state in (old, new), "a mixed tree after recovery"
    assert [p.name for p in root.rglob(".poppoarc-*")] == []
    assert not list(root.rglob("*.tmp"))
    return "old" if state == old else "new"


def test_sigkill_at_every_step_of_a_partial_restore(installation_template, tmp_path, key_home):
    base, store, archive, old, new = _scene(installation_template, tmp_path)
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {"PYTHONPATH": str(REPO), "POPPOARC_HOME": str(key_home)}

    def run(kill_at, skip, n):
        root = tmp_path / f"run{n}"
        shutil.copytree(base, root, symlinks=True)
        cfg = {"root": str(root), "store": str(store), "archive": archive, "include": PENDING,
               "skip": skip, "kill_at": kill_at}
        child = subprocess.run([sys.executable, str(script), json.dumps(cfg)],
                               capture_output=True, text=True,
                               env={**__import__("os").environ, **env})
        assert child.returncode in (0, -signal.SIGKILL), child.stderr
        outcome = _check(root, store, old, new)
        shutil.rmtree(root)
        return child, outcome

    calibration, outcome = run(None, False, "calibration")
    assert outcome == "new"
    steps = json.loads(calibration.stdout)["events"]
    assert steps >= 5
    outcomes = []
    for skip in (False, True):
        for k in range(1, steps + 1):
            child, outcome = run(k, skip, f"{k}-{skip}")
            assert child.returncode == -signal.SIGKILL
            outcomes.append(outcome)
    assert "old" in outcomes and "new" in outcomes


def test_sigkill_at_random_instants_of_a_partial_restore(installation_template, tmp_path,
                                                         key_home):
    base, store, archive, old, new = _scene(installation_template, tmp_path)
    rng = random.Random("partial")
    outcomes = []
    for n in range(8):
        root = tmp_path / f"random{n}"
        shutil.copytree(base, root, symlinks=True)
        child = subprocess.Popen([sys.executable, "-m", "poppoarc", "--root", str(root),
                                  "--store", str(store), "unpack", archive, "--include",
                                  PENDING, "-q"], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.05, 1.2))
        child.send_signal(signal.SIGKILL)
        child.wait()
        outcomes.append(_check(root, store, old, new))
        shutil.rmtree(root)
    assert set(outcomes) <= {"old", "new"}
