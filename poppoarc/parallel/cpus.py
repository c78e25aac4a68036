"""How many CPUs this process may use: its affinity mask, bounded by the cgroup's quota.

``os.cpu_count()`` is the machine's count; a process started under ``taskset``, in a
container with ``--cpus`` or in a systemd unit with ``CPUQuota=`` may run on fewer.  Work
planned for the machine's count would then only queue: two busy threads on one CPU
finish later than one.  The quota is read from cgroup v2 (``cpu.max`` of this process's
cgroup and every one above it) or v1 (``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``); a
quota of 1.5 CPUs counts as 2 (the second CPU still helps).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable

CGROUP_ROOT = Path("/sys/fs/cgroup")


def available_cpus(read: Callable[[str], str] | None = None,
                   affinity: Callable[[], int] | None = None) -> int:
    """The CPUs this process may run on (at least 1); ``read``/``affinity`` for tests."""
    read = read or _read
    try:
        cpus = affinity() if affinity else len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    quota = cgroup_quota(read)
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota)))
    return max(1, cpus)


def cgroup_quota(read: Callable[[str], str]) -> float | None:
    """The CPU quota of this process's cgroup in CPUs (the smallest along its path), or
    None when there is none (or it cannot be read)."""
    try:
        membership = read("/proc/self/cgroup")
    except OSError:
        return None
    quotas = []
    for line in membership.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":                   # cgroup v2: the unified hierarchy
            quotas += _v2_quotas(read, path)
        elif "cpu" in controllers.split(","):   # cgroup v1: the cpu controller's mount
            quotas += _v1_quotas(read, controllers, path)
    return min(quotas) if quotas else None


def _v2_quotas(read, path: str) -> list[float]:
    found = []
    for directory in _upwards(CGROUP_ROOT, path):
        try:
            quota, period = (read(str(directory / "cpu.max")).split() + ["100000"])[:2]
        except OSError:
            continue
        if quota != "max" and _positive(quota) and _positive(period):
            found.append(int(quota) / int(period))
    return found


def _v1_quotas(read, controllers: str, path: str) -> list[float]:
    found = []
    for mount in (CGROUP_ROOT / controllers, CGROUP_ROOT / "cpu,cpuacct", CGROUP_ROOT / "cpu"):
        for directory in _upwards(mount, path):
            try:
                quota = read(str(directory / "cpu.cfs_quota_us")).strip()
                period = read(str(directory / "cpu.cfs_period_us")).strip()
            except OSError:
                continue
            if _positive(quota) and _positive(period):
                found.append(int(quota) / int(period))
        if found:
            break
    return found


def _upwards(mount: Path, path: str):
    """``mount/path`` and each directory above it up to ``mount``."""
    parts = [p for p in path.strip().split("/") if p and p != ".."]
    for n in range(len(parts), -1, -1):
        yield mount.joinpath(*parts[:n])


def _positive(text: str) -> bool:
    return text.isdigit() and int(text) > 0


def _read(path: str) -> str:
    with open(path, encoding="ascii", errors="replace") as handle:
        return handle.read(4096)
