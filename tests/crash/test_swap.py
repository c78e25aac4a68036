"""The restore transaction: fs primitives, journal, swap, rollback, recovery.

The crash tests run ``commit_swap`` / ``recover`` in a child process and
SIGKILL it, either from inside at the k-th ``on_event`` call (every k, so
every step boundary is hit) or from outside after a random delay (which also
lands inside journal writes and renames).  After ``recover`` in the test
process the whole root must equal the old tree or the new tree exactly: paths,
types, modes, file contents, symlink targets, and no leftovers.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import signal
import stat
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from poppoarc import fs
from poppoarc.restore import journal as jr, swap, trash
from poppoarc.restore.swap import RecoveryError, RestoreSwapError

REPO = Path(__file__).resolve().parents[2]


# -- trees --------------------------------------------------------------------

class Link(str):
    """A symlink with this target."""


class Dir(dict):
    """A directory with an explicit mode."""

    def __init__(self, children: dict, mode: int):
        super().__init__(children)
        self.mode = mode


def make(path: Path, value) -> None:
    if isinstance(value, Link):
        os.symlink(value, path)
    elif isinstance(value, dict):
        path.mkdir()
        for name, child in value.items():
            make(path / name, child)
        os.chmod(path, getattr(value, "mode", 0o755))   # after the children: may be read-only
    else:
        content, mode = value if isinstance(value, tuple) else (value, 0o644)
        path.write_bytes(content.encode())
        os.chmod(path, mode)


def materialize(base: Path, spec: dict) -> Path:
    base.mkdir(parents=True, exist_ok=True)
    for name, value in spec.items():
        make(base / name, value)
    return base


def snapshot(root: Path) -> dict[str, tuple]:
    """Relative path -> (type, mode, sha256 | link target), for exact comparisons."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            st = os.lstat(path)
            rel = path.relative_to(root).as_posix()
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode))
            elif stat.S_ISREG(st.st_mode):
                out[rel] = ("file", stat.S_IMODE(st.st_mode),
                            hashlib.sha256(path.read_bytes()).hexdigest())
            else:
                out[rel] = ("other", st.st_mode)
    return out


def old_spec(wide: int = 0) -> dict:
    spec = {
        "config": {"app.json": '{"v": 1}', "secrets": Dir({"token": ("old-token", 0o600)}, 0o700)},
        ".poppo": {"state.json": "old poppo", "cache": {"x": "1"}},
        "state": {"queue.db": "old-db-bytes"},
        "logs": {"a.log": "old log"},
        ".env": ("OLD=1\n", 0o600),
        "gone": Dir({"f": "to be removed"}, 0o555),          # read-only: removal must cope
        "current": Link("config"),
        "untouched": {"keep": "never named, never moved"},
    }
    spec.update({f"w{i:02d}": {"f": f"old {i}"} for i in range(wide)})
    return spec


def new_spec(wide: int = 0) -> dict:
    """The staged entries; a NAME absent here is removed by the restore."""
    spec = {
        "config": {"app.json": '{"v": 2}', "new.json": "added",
                   "secrets": Dir({"token": ("new-token", 0o600)}, 0o750)},
        ".poppo": {"state.json": "new poppo"},
        "state": ("a file now", 0o640),                      # directory -> file
        "logs": {"a.log": "old log"},
        ".env": ("NEW=2\n", 0o640),
        "data": {"fresh.db": "created by the restore"},     # not live before
        "current": Link("data"),
    }
    spec.update({f"w{i:02d}": {"f": f"new {i}", "g": "x"} for i in range(wide)})
    return spec


def names_for(wide: int = 0) -> list[str]:
    return ["config", ".poppo", "state", "logs", ".env", "data", "gone", "current", "missing",
            *(f"w{i:02d}" for i in range(wide))]


def expected_new_spec(wide: int = 0) -> dict:
    names = set(names_for(wide))
    merged = {k: v for k, v in old_spec(wide).items() if k not in names}
    merged.update(new_spec(wide))
    return merged


class Case:
    """An installation root holding the old tree, plus the two expected snapshots."""

    def __init__(self, base: Path, wide: int = 0):
        self.wide = wide
        self.root = materialize(base / "root", old_spec(wide))
        self.old = snapshot(self.root)
        self.new = snapshot(materialize(base / "ref", expected_new_spec(wide)))
        self.names = names_for(wide)

    def stage(self, area: swap.StagingArea) -> None:
        for name, value in new_spec(self.wide).items():
            make(area.path / name, value)


@pytest.fixture
def case(tmp_path):
    return Case(tmp_path)


@pytest.fixture(params=["exchange", "rename"])
def method(request, monkeypatch, tmp_path):
    """Both swap methods; "rename" is the fallback for filesystems without exchange."""
    if request.param == "rename":
        monkeypatch.setattr(fs, "supports_exchange", lambda path: False)
    elif not fs.supports_exchange(tmp_path):
        pytest.skip("this filesystem has no RENAME_EXCHANGE")
    return request.param


class Crash(BaseException):
    """Simulated in-process crash: escapes every ``except Exception``."""


def crash_at(message_part: str):
    def on_event(message: str) -> None:
        if message_part in message:
            raise Crash(message)
    return on_event


# -- fs --------------------------------------------------------------------

def test_rename_exchange_swaps_entries_of_different_types(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "inner").write_text("x")
    (tmp_path / "f").write_text("file")
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fs.rename_exchange(fd, "d", "f")
        with pytest.raises(FileNotFoundError):
            fs.rename_exchange(fd, "d", "nope")
    finally:
        os.close(fd)
    assert (tmp_path / "d").read_text() == "file"
    assert (tmp_path / "f" / "inner").read_text() == "x"


@pytest.mark.parametrize("native", [True, False])
def test_rename_noreplace(tmp_path, monkeypatch, native):
    if not native:      # kernel without RENAME_NOREPLACE: check-then-rename fallback
        def unsupported(*args):
            raise OSError(errno.EINVAL, "unsupported")
        monkeypatch.setattr(fs, "_renameat2", unsupported)
    (tmp_path / "a").write_text("a")
    (tmp_path / "b").mkdir()                 # plain rename would replace an empty dir
    with pytest.raises(FileExistsError):
        fs.rename_noreplace(None, tmp_path / "a", tmp_path / "b")
    fs.rename_noreplace(None, tmp_path / "a", tmp_path / "c")
    assert (tmp_path / "c").read_text() == "a" and not (tmp_path / "a").exists()
    with pytest.raises(OSError) as info:     # a directory into itself is still refused
        fs.rename_noreplace(None, tmp_path / "b", tmp_path / "b" / "x")
    assert info.value.errno == errno.EINVAL


def test_supports_exchange_probes_without_leftovers(tmp_path):
    fs._exchange_support.clear()
    assert fs.supports_exchange(tmp_path) is True          # ext4/tmpfs/xfs/btrfs all do
    assert os.listdir(tmp_path) == []
    assert fs._exchange_support[os.stat(tmp_path).st_dev] is True


def test_write_file_durably(tmp_path):
    target = tmp_path / "j.json"
    fs.write_file_durably(target, b"one", mode=0o640)
    fs.write_file_durably(target, b"two")
    assert target.read_bytes() == b"two"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == ["j.json"]
    fd = os.open(tmp_path, os.O_RDONLY)
    fs.fsync_dir(fd)                                        # an fd works too
    os.close(fd)


def test_remove_tree_never_follows_symlinks(tmp_path):
    outside = materialize(tmp_path / "outside", {"precious": "keep", "sub": {"x": "keep"}})
    tree = materialize(tmp_path / "tree", {"a": {"b": Dir({"c": "1"}, 0o500)}, "f": "2"})
    os.symlink(outside, tree / "to-outside")
    os.symlink(outside / "precious", tree / "a" / "to-file")
    os.chmod(tree / "a", 0o000)
    before = snapshot(outside)
    fs.remove_tree(tree)
    assert not os.path.lexists(tree) and snapshot(outside) == before
    os.symlink(outside, tmp_path / "link")                     # the path itself a symlink
    fs.remove_tree(tmp_path / "link")
    assert not os.path.lexists(tmp_path / "link") and snapshot(outside) == before
    fs.remove_tree(tmp_path / "never-existed")


def test_remove_tree_permission_retry_touches_only_directories(tmp_path, monkeypatch):
    """As root rmtree never meets EACCES, so force the retry path once."""
    live = tmp_path / "live.env"
    live.write_text("secret")
    os.chmod(live, 0o400)
    tree = materialize(tmp_path / "tree", {"ro": Dir({"sub": Dir({}, 0o500)}, 0o500)})
    os.link(live, tree / "ro" / "hardlink")                   # shares live.env's mode
    real_rmtree, calls = fs.shutil.rmtree, []

    def flaky(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 1:
            raise PermissionError(errno.EACCES, "denied", path)
        return real_rmtree(path, *args, **kwargs)
    monkeypatch.setattr(fs.shutil, "rmtree", flaky)
    fs.remove_tree(tree)
    assert len(calls) == 2 and not tree.exists()
    assert stat.S_IMODE(live.stat().st_mode) == 0o400 and live.read_text() == "secret"


# -- journal ------------------------------------------------------------------

def test_journal_round_trip_and_refusals(tmp_path):
    journal = jr.Journal("r1", "a1", os.getpid(), jr.utc_now_iso(), jr.SWAPPING,
                         ".poppoarc-stage-r1", ".poppoarc-old-r1", method="rename", dev=5,
                         items=[jr.JournalItem("config", True, False, live_ino=12)])
    jr.write_journal(tmp_path, journal)
    assert jr.read_journal(tmp_path) == journal
    assert json.loads((tmp_path / jr.JOURNAL_NAME).read_text())["format"] == "poppoarc-journal/1"
    (tmp_path / ".poppoarc-restore.json.abc123.tmp").write_text("torn")
    jr.remove_journal(tmp_path)
    assert jr.read_journal(tmp_path) is None and os.listdir(tmp_path) == []
    (tmp_path / jr.JOURNAL_NAME).write_text("{not json")
    with pytest.raises(jr.JournalError):
        jr.read_journal(tmp_path)
    journal.items[0].live_ino = None                          # exists but no inode
    with pytest.raises(jr.JournalError):
        jr.write_journal(tmp_path, journal)


def test_process_liveness():
    me = os.getpid()
    assert fs.process_is_alive(me, fs.process_start_time(me))
    assert not fs.process_is_alive(me, (fs.process_start_time(me) or 0) + 1)   # recycled pid
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not fs.process_is_alive(child.pid)


# -- the swap -----------------------------------------------------------------

def test_commit_swaps_in_the_new_tree(case, method):
    events: list[str] = []
    area = swap.begin(case.root, "r1", "archive-1", on_event=events.append)
    assert area.path == case.root / ".poppoarc-stage-r1"
    assert stat.S_IMODE(area.path.stat().st_mode) == 0o700
    case.stage(area)
    (area.path / "stray").write_text("staged but not named: ignored, then deleted")
    untouched_ino = (case.root / "untouched").stat().st_ino
    result = swap.commit_swap(area, case.names, on_event=events.append)
    assert any("not named: stray" in e for e in events)
    assert result.outcome == "committed" and result.method == method
    assert result.replaced == ["config", ".poppo", "state", "logs", ".env", "current"]
    assert result.created == ["data"] and result.removed == ["gone"] and result.unchanged == []
    assert snapshot(case.root) == case.new                    # also: no .poppoarc* leftovers
    assert (case.root / "untouched").stat().st_ino == untouched_ino
    assert any("exchanging" in e for e in events) == (method == "exchange")
    assert swap.recover(case.root) is None


def test_fresh_root_gets_everything_created(tmp_path, method):
    root = tmp_path / "root"
    root.mkdir()
    area = swap.begin(root, "fresh", "a1")
    for name, value in new_spec().items():
        make(area.path / name, value)
    result = swap.commit_swap(area, names_for())
    assert result.created == sorted(new_spec(), key=names_for().index)
    assert result.replaced == result.removed == []
    assert snapshot(root) == snapshot(materialize(tmp_path / "ref", new_spec()))


def test_names_can_all_become_absent(case, method):
    area = swap.begin(case.root, "r1", "a1")                  # nothing staged at all
    result = swap.commit_swap(area, ["config", ".env", "current", "gone"])
    assert result.removed == ["config", ".env", "current", "gone"]
    expected = {k: v for k, v in old_spec().items() if k not in result.removed}
    assert snapshot(case.root) == snapshot(materialize(case.root.parent / "ref2", expected))


@pytest.mark.parametrize("check", ["false", "raises"])
def test_failed_health_check_puts_back_the_identical_old_tree(case, method, check):
    inodes = {name: os.lstat(case.root / name).st_ino for name in os.listdir(case.root)}
    area = swap.begin(case.root, "r1", "a1")
    case.stage(area)

    seen: list[dict] = []

    def health() -> bool:
        seen.append({k: v for k, v in snapshot(case.root).items() if not k.startswith(".poppoarc")})
        if check == "raises":
            raise RuntimeError("service did not come up")
        return False
    result = swap.commit_swap(area, case.names, health_check=health)
    assert seen == [case.new]                                 # the check saw the new tree
    assert result.outcome == "rolled_back"
    assert ("service did not come up" if check == "raises" else "failed") in result.health_error
    assert snapshot(case.root) == case.old
    assert {name: os.lstat(case.root / name).st_ino for name in os.listdir(case.root)} == inodes


def test_interrupted_health_check_rolls_back_then_reraises(case):
    area = swap.begin(case.root, "r1", "a1")
    case.stage(area)

    def health() -> bool:
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        swap.commit_swap(area, case.names, health_check=health)
    assert snapshot(case.root) == case.old


def _fail_renames(monkeypatch, fails, error: OSError) -> None:
    """Make the swap's renames raise ``error`` on the calls where ``fails(n)`` is true."""
    calls = {"n": 0}
    for fn_name in ("rename_exchange", "rename_noreplace"):
        def failing(*args, _real=getattr(fs, fn_name)):
            calls["n"] += 1
            if fails(calls["n"]):
                raise error
            return _real(*args)
        monkeypatch.setattr(fs, fn_name, failing)


def test_failed_rename_midway_rolls_back(case, method, monkeypatch):
    _fail_renames(monkeypatch, lambda n: n == 4, OSError(errno.EIO, "disk on fire"))
    area = swap.begin(case.root, "r1", "a1")
    case.stage(area)
    with pytest.raises(RestoreSwapError, match="disk on fire") as info:
        swap.commit_swap(area, case.names)
    assert info.value.exit_code == 34
    assert snapshot(case.root) == case.old


def test_failed_undo_keeps_the_journal_for_the_next_recover(case, method, monkeypatch):
    _fail_renames(monkeypatch, lambda n: n >= 3,             # and every rename after it
                  OSError(errno.EROFS, "went read-only"))
    area = swap.begin(case.root, "r1", "a1")
    case.stage(area)
    with pytest.raises(RecoveryError, match="went read-only.*journal was kept") as info:
        swap.commit_swap(area, case.names)
    assert info.value.exit_code == 35
    assert jr.read_journal(case.root).phase == jr.ROLLING_BACK
    monkeypatch.undo()                                        # the disk recovers
    result = swap.recover(case.root)
    assert (result.action, result.restored) == ("rolled_back", False)
    assert snapshot(case.root) == case.old


def test_staged_hard_link_of_live_file_counts_as_unchanged(case, method):
    ino = (case.root / ".env").stat().st_ino
    area = swap.begin(case.root, "r1", "a1")
    os.link(case.root / ".env", area.path / ".env")
    result = swap.commit_swap(area, [".env"])
    assert result.unchanged == [".env"] and (case.root / ".env").stat().st_ino == ino
    assert snapshot(case.root) == case.old


@pytest.mark.parametrize("names", [["../etc"], ["a/b"], [".poppoarc-old-r1"], [""],
                                   ["config", "config"]])
def test_bad_names_are_refused_and_staging_dropped(case, names):
    area = swap.begin(case.root, "r1", "a1")
    case.stage(area)
    with pytest.raises(RestoreSwapError):
        swap.commit_swap(area, names)
    assert snapshot(case.root) == case.old


def test_begin_refusals(case, tmp_path):
    with pytest.raises(ValueError):
        swap.begin(case.root, "../x", "a1")
    with pytest.raises(RestoreSwapError):
        swap.begin(tmp_path / "absent", "r1", "a1")
    area = swap.begin(case.root, "r1", "a1")
    with pytest.raises(RestoreSwapError, match="unfinished restore r1"):
        swap.begin(case.root, "r2", "a1")
    swap.discard(area)
    assert snapshot(case.root) == case.old


# -- recovery (in-process simulated crashes) ------------------------------------

def test_recover_without_journal_is_none(case):
    assert swap.recover(case.root) is None


def test_recover_staged_rolls_back_nothing_changed(case):
    area = swap.begin(case.root, "r1", "a1")
    case.stage(area)
    result = swap.recover(case.root)
    assert (result.action, result.restored, result.archive_id) == ("rolled_back", False, "a1")
    assert "nothing had changed" in result.details[0]
    assert snapshot(case.root) == case.old


@pytest.mark.parametrize("point, action, tree", [
    ("moving gone", "rolled_back", "old"),
    ("phase SWAPPED", "rolled_forward", "new"),
    ("phase COMMITTED", "cleaned_up", "new"),
    ("phase ROLLED_BACK", "cleaned_up", "old"),
])
def test_recover_after_simulated_crash(case, method, point, action, tree):
    area = swap.begin(case.root, "r1", "a1")
    case.stage(area)
    with pytest.raises(Crash):
        swap.commit_swap(area, case.names, health_check=lambda: "ROLLED" not in point,
                         on_event=crash_at(point))
    events: list[str] = []
    result = swap.recover(case.root, on_event=events.append)
    assert result.action == action and result.restored == (tree == "new") and events
    assert snapshot(case.root) == getattr(case, tree)


def test_recover_refuses_live_owner_but_not_recycled_pid(case):
    area = swap.begin(case.root, "r1", "a1")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        time.sleep(0.05)
        area.journal.pid, area.journal.pid_start = sleeper.pid, fs.process_start_time(sleeper.pid)
        jr.write_journal(case.root, area.journal)
        with pytest.raises(RecoveryError, match=f"in progress by pid {sleeper.pid}") as info:
            swap.recover(case.root)
        assert info.value.exit_code == 35
        area.journal.pid_start += 1                           # same pid, another process
        jr.write_journal(case.root, area.journal)
        assert swap.recover(case.root).action == "rolled_back"
    finally:
        sleeper.kill()
        sleeper.wait()
    assert snapshot(case.root) == case.old


def test_recover_refuses_journal_pointing_elsewhere(case):
    swap.begin(case.root, "r1", "a1")
    path = case.root / jr.JOURNAL_NAME
    for field, value in (("staging", "config"), ("aside", ".."),      # would rm -rf them
                         ("items", [{"name": "../etc", "live_exists": False,
                                     "staged_exists": False, "state": "pending"}])):
        document = json.loads(path.read_text())
        path.write_text(json.dumps({**document, field: value}))
        with pytest.raises(RecoveryError, match="unexpected paths"):
            swap.recover(case.root)
    assert (case.root / "config" / "app.json").exists()


def test_recover_stops_on_entry_it_does_not_know(case, method):
    area = swap.begin(case.root, "r1", "a1")
    case.stage(area)
    with pytest.raises(Crash):
        swap.commit_swap(area, case.names, on_event=crash_at("moving gone"))
    # Someone else's directory at the live name (the moved-away one stays alive,
    # so the new directory cannot reuse its inode number).
    os.rename(case.root / "config", case.root.parent / "elsewhere")
    (case.root / "config").mkdir()
    with pytest.raises(RecoveryError, match="neither the old nor the restored"):
        swap.recover(case.root)
    assert jr.read_journal(case.root) is not None             # kept for a human


# -- real SIGKILL crash injection ---------------------------------------------

CHILD = r"""
import json, os, signal, sys, time
from pathlib import Path
from poppoarc import fs
from poppoarc.restore import swap

cfg = json.loads(sys.argv[1])
if cfg["method"] == "rename":
    fs.supports_exchange = lambda path: False
count = 0

def on_event(message):
    global count
    count += 1
    if count == cfg.get("kill_at"):
        os.kill(os.getpid(), signal.SIGKILL)

root = Path(cfg["root"])
start = time.perf_counter()
if cfg["op"] == "recover":
    swap.recover(root, on_event=on_event)
else:
    area = swap.begin(root, "r1", "a1")
    for name in os.listdir(cfg["src"]):
        os.rename(os.path.join(cfg["src"], name), area.path / name)
    print("ready", flush=True)
    start = time.perf_counter()
    health = (lambda: False) if cfg["health"] == "fail" else None
    swap.commit_swap(area, cfg["names"], health_check=health, on_event=on_event,
                     remove_behind=cfg.get("behind", False))
print(json.dumps({"events": count, "seconds": time.perf_counter() - start}), flush=True)
"""

WIDE = 2
OLD_PHASES = {jr.STAGED, jr.SWAPPING, jr.ROLLING_BACK, jr.ROLLED_BACK}


@pytest.fixture(scope="module")
def crash_env(tmp_path_factory):
    base = tmp_path_factory.mktemp("crash")
    script = base / "child.py"
    script.write_text(CHILD)
    template = Case(base / "template", wide=WIDE)
    path = [str(REPO), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    return {"base": base, "script": script, "old": template.old, "new": template.new, "env": env,
            "counter": iter(range(10**6))}


def spawn(env: dict, cfg: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(env["script"]), json.dumps(cfg)],
                            stdout=subprocess.PIPE, text=True, env=env["env"])


def crash_scenario(env: dict, method: str, health: str, kill_at: int | None = None,
                   delay: float | None = None, recovery_kills: tuple[int, ...] = (),
                   behind: bool = False) -> dict:
    """Run commit_swap in a child, kill it, recover (maybe crashing again), check the tree."""
    work = env["base"] / f"s{next(env['counter'])}"
    root = materialize(work / "root", old_spec(WIDE))
    src = materialize(work / "src", new_spec(WIDE))
    cfg = {"op": "commit", "root": str(root), "src": str(src), "names": names_for(WIDE),
           "method": method, "health": health, "kill_at": kill_at, "behind": behind}
    child = spawn(env, cfg)
    if delay is not None:
        assert child.stdout.readline().strip() == "ready"
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
    out, _ = child.communicate(timeout=30)
    killed = child.returncode == -signal.SIGKILL
    assert killed or child.returncode == 0, out
    journal = jr.read_journal(root)
    phase = journal.phase if journal else None
    if journal is None:
        expect = "old" if health == "fail" else "new"
    else:
        expect = "old" if phase in OLD_PHASES else "new"
    recovery_killed = 0
    for kill in recovery_kills:                # crash during recovery, possibly repeatedly
        again = spawn(env, {"op": "recover", "root": str(root), "method": method, "kill_at": kill})
        again.communicate(timeout=30)
        assert again.returncode in (0, -signal.SIGKILL)
        recovery_killed += again.returncode == -signal.SIGKILL
    result = swap.recover(root)
    if journal is not None and not recovery_kills:
        assert result is not None and result.restored == (expect == "new"), (phase, result)
    # the trash a killed (or still running) remover left: what every command sweeps
    trash.sweep(root, wait=True)
    tree = snapshot(root)
    assert tree in (env["old"], env["new"]), f"mixed tree after crash in {phase}"
    assert tree == env[expect], (phase, kill_at, delay)
    return {"killed": killed, "phase": phase, "expect": expect, "out": out,
            "recovery_killed": recovery_killed}


def run_all(scenarios) -> list[dict]:
    with ThreadPoolExecutor(max_workers=3) as pool:
        return list(pool.map(lambda args: crash_scenario(*args[0], **args[1]), scenarios))


@pytest.mark.parametrize("behind", [False, True], ids=["removed-here", "removed-behind"])
@pytest.mark.parametrize("crash_method", ["exchange", "rename"])
def test_sigkill_at_every_step(crash_env, crash_method, behind):
    """Kill at each on_event call of a healthy commit, then of a failed health check."""
    steps = {}
    for health in ("ok", "fail"):
        calibration = crash_scenario(crash_env, crash_method, health, behind=behind)
        steps[health] = json.loads(calibration["out"].splitlines()[-1])["events"]
    # Up to "phase SWAPPED" (event steps - 4 of a healthy run) both runs emit
    # the same events, so the failing run is only killed after that point.
    results = run_all([((crash_env, crash_method, "ok"), {"kill_at": k, "behind": behind})
                       for k in range(1, steps["ok"] + 1)] +
                      [((crash_env, crash_method, "fail"), {"kill_at": k, "behind": behind})
                       for k in range(steps["ok"] - 3, steps["fail"] + 1)])
    phases = {r["phase"] for r in results if r["killed"]}
    assert {jr.SWAPPING, jr.SWAPPED, jr.COMMITTED, jr.ROLLING_BACK, jr.ROLLED_BACK} <= phases
    assert {r["expect"] for r in results} == {"old", "new"}


@pytest.mark.parametrize("crash_method", ["exchange", "rename"])
def test_sigkill_at_random_instants(crash_env, crash_method):
    calibration = crash_scenario(crash_env, crash_method, "ok")
    seconds = json.loads(calibration["out"].splitlines()[-1])["seconds"]
    rng = random.Random(f"poppoarc-{crash_method}")
    # Timing depends on the machine's load, so keep going (bounded) until enough
    # kills have landed mid-run; every run, killed or not, is checked by crash_scenario.
    # POPPOARC_CRASH_KILLS (a soak run) asks for more kills than the CI's 6.
    kills = int(os.environ.get("POPPOARC_CRASH_KILLS", "6"))
    results: list[dict] = []
    while sum(r["killed"] for r in results) < kills and len(results) < 10 * kills:
        results += run_all([((crash_env, crash_method, rng.choice(["ok", "ok", "fail"])),
                             {"delay": rng.uniform(0, seconds), "behind": rng.random() < 0.5})
                            for _ in range(6)])
    assert sum(r["killed"] for r in results) >= kills


@pytest.mark.parametrize("crash_method", ["exchange", "rename"])
def test_sigkill_during_recovery_still_converges(crash_env, crash_method):
    """First crash mid-swap, after SWAPPED, and mid-rollback; then 1-3 crashed recoveries."""
    calibration = crash_scenario(crash_env, crash_method, "ok")
    steps = json.loads(calibration["out"].splitlines()[-1])["events"]
    rng = random.Random(f"recovery-{crash_method}")
    scenarios = []
    # steps - 4 is the "phase SWAPPED" event; with a failing health check the
    # rollback starts two events later.
    for health, first_kill in (("ok", steps // 2), ("ok", steps - 4), ("fail", steps + 1)):
        for _ in range(2):
            kills = tuple(rng.randint(1, 15) for _ in range(rng.randint(1, 3)))
            scenarios.append(((crash_env, crash_method, health),
                              {"kill_at": first_kill, "recovery_kills": kills}))
    results = run_all(scenarios)
    assert all(r["killed"] for r in results)
    assert sum(r["recovery_killed"] for r in results) >= len(results) // 2
    assert [r["phase"] for r in results[::2]] == [jr.SWAPPING, jr.SWAPPED, jr.ROLLING_BACK]


# -- the trash: the swapped-out tree removed after the command returns ----------

def test_removed_behind_the_swapped_out_tree_goes_after_the_return(case, method):
    area = swap.begin(case.root, "r1", "archive-1")
    case.stage(area)
    result = swap.commit_swap(area, case.names, remove_behind=True)
    assert result.outcome == "committed"
    assert jr.read_journal(case.root) is None
    assert not (case.root / ".poppoarc-stage-r1").exists()
    assert not (case.root / ".poppoarc-old-r1").exists()
    trash.sweep(case.root, wait=True)                          # waits for the remover
    assert snapshot(case.root) == case.new                     # no .poppoarc* leftovers
    assert swap.recover(case.root) is None


def test_the_trash_is_never_an_entry_or_packed():
    from poppoarc.snapshot.catalogue import build_catalogue
    assert not jr.valid_entry_name(".poppoarc-trash-r1")
    assert not jr.valid_entry_name("data/.poppoarc-trash-r1")
    catalogue = build_catalogue({}, None)
    for path in (".poppoarc-trash-r1", ".poppoarc-trash-r1/.poppoarc-old-r1/config/app.json",
                 ".poppoarc-trash-r1/.poppoarc-stage-r1/data/poppo.db"):
        assert list(catalogue.claim(path)) == [], path


def test_a_killed_removers_trash_is_swept_but_not_a_working_ones(tmp_path):
    left = tmp_path / ".poppoarc-trash-r1"
    (left / "old" / "data").mkdir(parents=True)
    (left / "old" / "data" / "f").write_text("x")
    working = tmp_path / ".poppoarc-trash-r2"
    working.mkdir()
    import fcntl
    fd = os.open(working, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)                         # a remover at work
        assert trash.busy(working) and not trash.busy(left)
        assert trash.sweep(tmp_path) == [str(left)]
        assert not left.exists() and working.exists()
    finally:
        os.close(fd)
    assert trash.sweep(tmp_path) == [str(working)]


def test_a_crash_after_committed_leaves_the_trash_to_recovery(case, method, monkeypatch):
    area = swap.begin(case.root, "r1", "archive-1")
    case.stage(area)
    monkeypatch.setattr(trash, "remove_behind", lambda path, fd: (_ for _ in ()).throw(Crash()))
    import poppoarc.restore.transaction as tr
    monkeypatch.setattr(tr, "remove_journal", lambda root: (_ for _ in ()).throw(Crash()))
    with pytest.raises(Crash):
        swap.commit_swap(area, case.names, remove_behind=True)
    assert (case.root / ".poppoarc-trash-r1" / ".poppoarc-old-r1").exists() or \
        (case.root / ".poppoarc-trash-r1" / ".poppoarc-stage-r1").exists()
    assert jr.read_journal(case.root).phase == jr.COMMITTED
    monkeypatch.undo()
    if method == "rename":
        monkeypatch.setattr(fs, "supports_exchange", lambda path: False)
    result = swap.recover(case.root)
    assert result.restored
    assert snapshot(case.root) == case.new
