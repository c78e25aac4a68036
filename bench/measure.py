"""Run one command and measure it: wall time, peak RSS of its process tree, exit code.

Peak RSS comes from GNU time (``/usr/bin/time -f '%M'``), which reports the
``ru_maxrss`` that ``wait4`` returns for its child.  Linux folds into that
value the peak of every descendant the child reaped itself, so for
``bash -c 'tar … | zstd …'`` it is max(bash, tar, zstd) — the largest single
process of the pipeline, never a sum, and per command (unlike
``getrusage(RUSAGE_CHILDREN)``, the maximum over every child so far).

Why GNU time and not ``os.wait4`` from here: ``ru_maxrss`` survives
``execve``, so a child forked (or vforked) from this Python process starts
with this process's RSS as its floor (≈ 40 MiB).  GNU time is a small C
program; what it forks starts at ≈ 2 MiB.  Without ``/usr/bin/time`` the
benchmark falls back to ``os.wait4`` and says so (``RSS_METHOD``).

``ru_maxrss`` is one process's peak.  ``TreeMemory`` adds what the whole command
occupies at once: the peak of its processes' summed PSS (shared pages divided among
the processes that share them), sampled every 50 ms from /proc — poppoarc may pack
with a helper process, and ``tar | zstd`` is two processes.

Wall time is measured here (``perf_counter`` around the whole launch).  Each
command runs in its own session, so a time limit kills the whole tree.  After
the command, ``sync`` is timed separately: tools that do not fsync leave dirty
pages behind, and that time would otherwise be charged to the next command.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path


GNU_TIME = "/usr/bin/time"
RSS_METHOD = ("GNU time %M (ru_maxrss of the command's process tree, largest single process)"
              if os.access(GNU_TIME, os.X_OK) and shutil.which(GNU_TIME) else
              "os.wait4 from the benchmark process (floor ≈ the benchmark's own RSS: "
              "install GNU time for exact numbers)")
USE_GNU_TIME = RSS_METHOD.startswith("GNU")


class CommandFailed(Exception):
    """A measured command exited with an unexpected code or ran out of time."""


@dataclass
class Measurement:
    command: str
    wall_s: float
    sync_s: float
    rss_kb: int
    exit_code: int
    cpu_s: float | None = None   # user + sys of the command's process tree
    tree_pss_kb: int | None = None  # peak of the summed PSS of its processes (TreeMemory)
    # CPU seconds the rest of the machine (other processes, kernel threads) used while
    # the command ran: the machine-wide busy time minus the command's own.
    other_cpu_s: float | None = None
    extra: dict = field(default_factory=dict)

    @property
    def durable_s(self) -> float:
        return self.wall_s + self.sync_s

    def to_json(self) -> dict:
        doc = asdict(self)
        doc["durable_s"] = round(self.durable_s, 4)
        doc["wall_s"], doc["sync_s"] = round(self.wall_s, 4), round(self.sync_s, 4)
        for key in ("cpu_s", "other_cpu_s"):
            if doc[key] is not None:
                doc[key] = round(doc[key], 3)
        return doc


def _tail(path: Path, limit: int = 1500) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    return data[-limit:].decode("utf-8", "replace").strip()


QUIET = {"max_wait": 0.0}   # set by run.py from --quiet-wait


def run(argv: list[str], *, cwd: str | os.PathLike, env: dict, timeout: float,
        log_dir: Path, label: str, ok_codes: tuple[int, ...] = (0,),
        stdout_path: Path | None = None) -> Measurement:
    """Run ``argv`` (no shell unless argv says so) and measure it.

    stdout goes to ``stdout_path`` (else ``log_dir/label.out``), stderr to
    ``log_dir/label.err``.  Raises CommandFailed on a time-out or an exit code
    outside ``ok_codes``, with the tail of stderr in the message.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    out_path = stdout_path or log_dir / f"{label}.out"
    err_path = log_dir / f"{label}.err"
    time_path = log_dir / f"{label}.time"
    command = " ".join(argv)
    launch = [GNU_TIME, "-q", "-f", "%e %M %x %U %S", "-o", str(time_path), "--"] + argv \
        if USE_GNU_TIME else argv
    os.sync()  # start from a clean page cache writeback state (untimed)
    quiet = wait_for_quiet(QUIET["max_wait"]) if QUIET["max_wait"] > 0 else None
    busy_before = busy_cpu_seconds()
    timed_out = threading.Event()
    lock, reaped = threading.Lock(), [False]
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(launch, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=err, start_new_session=True)

        def kill_tree() -> None:
            with lock:  # never signal a process group whose leader was already reaped
                if reaped[0]:
                    return
                timed_out.set()
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

        timer = threading.Timer(timeout, kill_tree)
        timer.start()
        memory = TreeMemory(proc.pid, skip_root=USE_GNU_TIME)
        try:
            try:
                _pid, status, usage = os.wait4(proc.pid, 0)  # retried on EINTR (PEP 475)
            except BaseException:  # interrupted (Ctrl-C, SIGTERM): take the command down too
                timer.cancel()
                kill_tree()
                os.wait4(proc.pid, 0)
                raise
        finally:
            with lock:
                reaped[0] = True
            timer.cancel()
        wall = time.perf_counter() - started
        tree_pss_kb = memory.stop()
    busy_after = busy_cpu_seconds()
    proc.returncode = os.waitstatus_to_exitcode(status)  # so Popen never waits again
    sync_started = time.perf_counter()
    os.sync()
    sync_s = time.perf_counter() - sync_started
    if timed_out.is_set():
        raise CommandFailed(f"{label}: timed out after {timeout:.0f} s: {command}")
    if proc.returncode not in ok_codes:
        raise CommandFailed(f"{label}: exit code {proc.returncode}: {command}\n"
                            f"--- stderr tail ({err_path}) ---\n{_tail(err_path)}")
    if USE_GNU_TIME:
        rss_kb, cpu_s = _gnu_time(time_path, proc.returncode, label)
    else:
        rss_kb, cpu_s = usage.ru_maxrss, usage.ru_utime + usage.ru_stime
    other = None
    if busy_before is not None and busy_after is not None:
        other = max(0.0, busy_after - busy_before - cpu_s)
    return Measurement(command=command, wall_s=wall, sync_s=sync_s, rss_kb=rss_kb,
                       exit_code=proc.returncode, cpu_s=cpu_s, tree_pss_kb=tree_pss_kb,
                       other_cpu_s=other,
                       extra={"quiet_gate": quiet} if quiet else {})


class TreeMemory:
    """Samples the summed PSS of a process and its descendants on a thread of its own;
    ``stop()`` returns the peak in KiB (None where /proc cannot tell: not Linux).

    Descendants come from ``/proc/PID/task/PID/children`` (no scan of all of /proc);
    ``skip_root``: leave out the root itself (GNU time, which only waits).  A process
    that lives less than one interval may be missed; poppoarc's helper lives for most
    of a pack.
    """

    def __init__(self, root_pid: int, skip_root: bool = False, interval: float = 0.05):
        self._root, self._skip_root, self._interval = root_pid, skip_root, interval
        self._peak: int | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tree-memory", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            total = self._sample()
            if total is not None:
                self._peak = max(self._peak or 0, total)
            if self._done.wait(self._interval):
                return

    def _sample(self) -> int | None:
        pids, queue = [], [self._root]
        while queue:
            pid = queue.pop()
            pids.append(pid)
            try:
                with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as fh:
                    queue.extend(int(child) for child in fh.read().split())
            except (OSError, ValueError):
                pass
        total, seen = 0, False
        for pid in pids[1:] if self._skip_root else pids:
            try:
                with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as fh:
                    for line in fh:
                        if line.startswith("Pss:"):
                            total += int(line.split()[1])
                            seen = True
                            break
            except (OSError, ValueError):
                continue
        return total if seen else None

    def stop(self) -> int | None:
        self._done.set()
        self._thread.join()
        return self._peak


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def wait_for_quiet(max_wait: float, threshold: float = 0.15, sample: float = 0.5) -> dict:
    """Wait (at most ``max_wait`` s) until the machine is idle before a timed command.

    Idle = other work used less than ``threshold`` of all cores over one ``sample``
    (0.15 × 2 cores over 0.5 s = 0.15 CPU-s).  Other sessions' test suites on a shared
    machine otherwise inflate wall times.  Returns what happened, for the record.
    """
    cores = os.cpu_count() or 1
    started = time.perf_counter()
    share = None
    while True:
        before = busy_cpu_seconds()
        time.sleep(sample)
        after = busy_cpu_seconds()
        if before is None or after is None:
            return {"waited_s": 0.0, "idle_share": None}
        share = (after - before) / (sample * cores)
        waited = time.perf_counter() - started
        if share < threshold or waited >= max_wait:
            return {"waited_s": round(waited, 2), "idle_share": round(1 - share, 3),
                    "quiet": share < threshold}
        time.sleep(1.0)


def busy_cpu_seconds() -> float | None:
    """Machine-wide non-idle CPU seconds since boot (/proc/stat: all but idle and iowait)."""
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            fields = fh.readline().split()
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[1:9])
        return (user + nice + system + irq + softirq + steal) / _TICK
    except (OSError, ValueError):
        return None


def _gnu_time(path: Path, exit_code: int, label: str) -> tuple[int, float]:
    """Peak RSS in KiB and user+sys seconds from GNU time's last line ``%e %M %x %U %S``."""
    try:
        last = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-1]
        _elapsed, rss, code, user, system = last.split()
        if int(code) != exit_code:
            raise ValueError(f"exit code {code} there, {exit_code} here")
        return int(rss), float(user) + float(system)
    except (OSError, IndexError, ValueError) as exc:
        raise CommandFailed(f"{label}: cannot read GNU time's output {path}: {exc}") from exc


def shell(script: str) -> list[str]:
    """argv for a bash pipeline whose exit code is the first failure's."""
    return ["bash", "-o", "pipefail", "-c", script]


def quick(argv: list[str], *, env: dict | None = None, cwd: str | os.PathLike | None = None,
          timeout: float = 120, ok_codes: tuple[int, ...] = (0,)) -> str:
    """Run an unmeasured helper command; return stdout or raise CommandFailed."""
    try:
        done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except FileNotFoundError as exc:
        raise CommandFailed(f"{argv[0]}: not found") from exc
    except subprocess.TimeoutExpired as exc:
        raise CommandFailed(f"timed out after {timeout:.0f} s: {' '.join(argv)}") from exc
    if done.returncode not in ok_codes:
        raise CommandFailed(f"exit code {done.returncode}: {' '.join(argv)}\n"
                            + done.stderr.decode("utf-8", "replace")[-1500:])
    return done.stdout.decode("utf-8", "replace")
