"""The last run of each kind of work (pack, verify, drill, prune): when it last
succeeded, when it last failed, how long it took, what it made.

Kept in ``.poppoarc-runs.json`` in ``Settings.records_dir`` (the local store directory,
beside the schedule's state; with an S3 store, the key directory) so that ``doctor`` and
``metrics`` report what happened without reading an archive.  Written durably under a flock on the store directory, like the verified record; a damaged
file is a record lost, never a reason to fail: recording is done after the work, and a
record that cannot be written is a warning of the run, not its failure.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import resource_limit
from ..fs import read_small_file, write_file_durably

RUNS_NAME = ".poppoarc-runs.json"
RUNS_FORMAT = "poppoarc-runs/1"
KINDS = ("pack", "verify", "drill", "prune")
MAX_BYTES = 1 << 20


def runs_path(store: Path) -> Path:
    return Path(store) / RUNS_NAME


def load(store: Path) -> dict[str, dict]:
    """Kind -> its record (see ``Observation.merge``); {} when none or damaged."""
    try:
        document = json.loads(read_small_file(runs_path(store), MAX_BYTES))
    except (OSError, ValueError, RecursionError):
        return {}
    kinds = document.get("kinds") if isinstance(document, dict) else None
    if not isinstance(kinds, dict):
        return {}
    return {k: v for k, v in kinds.items() if k in KINDS and isinstance(v, dict)}


def number(record: dict, key: str) -> float | None:
    """A numeric field of a record (a damaged or hand-edited file may hold anything)."""
    value = record.get(key)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        else None


@dataclass
class Observation:
    """One run being observed: the caller fills ``archive``, ``size`` and ``details``."""

    kind: str
    started: float = field(default_factory=time.time)
    clock: float = field(default_factory=time.monotonic)
    ok: bool = True
    problem: str | None = None
    archive: str | None = None
    size: int | None = None
    details: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)   # recording's own, for the run's report

    def duration(self) -> float:
        return round(time.monotonic() - self.clock, 3)

    def merge(self, previous: dict) -> dict:
        """The kind's record after this run: the last success and the last failure each
        keep their own time, so an alert sees both."""
        record = dict(previous)
        ended = round(time.time(), 3)
        record.update(last_run=ended, last_ok=self.ok, duration_seconds=self.duration())
        if self.ok:
            record.update(last_success=ended, archive=self.archive, size=self.size,
                          details=self.details)
            record.pop("problem", None)
        else:
            record.update(last_failure=ended, problem=self.problem, failed_archive=self.archive)
        return record


def record(store: Path, observation: Observation) -> bool:
    """Add one run to the record; False when the store cannot be written."""
    store = Path(store)
    try:
        store.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(store, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        kinds = load(store)
        kinds[observation.kind] = observation.merge(kinds.get(observation.kind, {}))
        data = json.dumps({"format": RUNS_FORMAT, "kinds": kinds}, indent=1, sort_keys=True,
                          ensure_ascii=False).encode() + b"\n"
        write_file_durably(runs_path(store), data, 0o600)
    except (OSError, TypeError, ValueError):
        return False
    finally:
        os.close(fd)
    return True


@contextmanager
def observed(store: Path, kind: str, after=None):
    """Observe the work in the ``with`` block: recorded as a success when it ends, as a
    failure (with the error's one line) when it raises; then ``after(observation)``
    (metrics: returns a problem or None).  Neither replaces the work's own outcome: what
    they could not write is in ``observation.warnings``, for the caller's report."""
    observation = Observation(kind)
    try:
        yield observation
    except BaseException as exc:
        observation.ok = False      # a limit of this machine is said as such, not as what met it
        shown = resource_limit(exc) or exc
        observation.problem = " ".join(str(shown).split())[:500] or type(exc).__name__
        _finish(store, observation, after)
        raise
    _finish(store, observation, after)


def _finish(store: Path, observation: Observation, after) -> None:
    if not record(store, observation):
        observation.warnings.append(f"{runs_path(store)}: cannot record this {observation.kind} "
                                    f"(doctor and metrics will not show it)")
    if after is not None:
        problem = after(observation)
        if problem:
            observation.warnings.append(problem)
