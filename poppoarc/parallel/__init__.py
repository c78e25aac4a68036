"""Who does the work: this process alone, or this process and one helper process.

Everything poppoarc does only to be faster goes through one ``Parallelism`` object:

* the pack's helpers: a share of one target packed by a second process
  (``pack/share.py``) and the directories of one target walked by it from the start
  (``pack/subtree.py``);
* the index's helper: the last part of a large index checked by a second process
  (``format/index_part.py``), for verify, inspect, unpack and an incremental's parent;
* the KDF's helper: Argon2id derived in a process of its own (``crypto/kdf.py``);
* threads beside the main one: the restore's write-behind (``restore/writebehind.py``),
  the pack's reading of its parent beside the walk, the database snapshot copies;
* the swapped-out tree of a restore, deleted by a detached process after the restore
  returns (``restore/trash.py``; ``Tuning.trash_behind``);
* the facts cache an incremental reads instead of its parent's index, and with it the
  databases it need not capture again (``archives/facts.py``, ``pack/databases.py``;
  ``Tuning.facts_cache``, in both modes);
* how soon a thread gets the GIL back after a system call while another runs Python
  (``Parallelism.switching``, ``Tuning.switch_interval``).

Two implementations, chosen by ``mode``:

* ``two-process``: helpers run in a second process (``process.py``), background work
  on threads;
* ``serial``: no second process and no thread of these: a helper's work runs in this
  process when its result is wanted (``inline.py``), and what would only save time
  (the index's and the KDF's helpers, write-behind) is not done apart at all.

The mode decides where the work runs, never what is written: how a pack is cut into a
helper's share is decided from the tree and ``compression_threads`` (``shares``), so
both modes write the same archive, byte for byte, and restore the same tree.  zstd's
own worker threads (``compression_threads``) are a compression setting, not one of
these: the frames are the same bytes with any number of workers from one on.

The mode comes from ``--parallel``, else ``POPPOARC_PARALLEL``, else ``backup.parallel``
(``auto``: two-process where this process may use two CPUs or more: its affinity
mask and cgroup quota, ``cpus.py``).  ``Tuning`` holds the cost
models' thresholds; tests make them small to exercise the helpers on small trees.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field

from . import process
from .cpus import available_cpus
from .inline import DeferredExecutor, InlineHelper
from .process import ProcessHelper

SERIAL, TWO_PROCESS, AUTO = "serial", "two-process", "auto"
MODES = (SERIAL, TWO_PROCESS)
CHOICES = (AUTO, *MODES)
ENVIRONMENT = "POPPOARC_PARALLEL"
# zstd's workers at most: each holds a job's input and output (``format/writer.py``'s
# job size) and its match state, so a pack stays within its memory budget on any machine.
MAX_COMPRESSION_THREADS = 4


@dataclass(frozen=True)
class Tuning:
    """When a second process is worth its start: the thresholds of the cost models."""

    # a target's share (pack/share.py); the cost model counts records
    share_start: int = 8000             # a helper's start, in records' time
    share_min_records: int = 20000      # a smaller share is not worth a process
    share_max_bytes: int = 512 << 20    # its members pass through a temporary file
    share_saving: float = 0.2           # taken only if it saves this part of the pack
    # directories walked apart (pack/subtree.py)
    subtree_min_entries: int = 20000    # a directory is worth a process from this size
    subtree_min_share: int = 2000       # fewer records are packed here
    subtree_spill_at: int = 1 << 15     # walk records the helper holds in memory
    # an index checked in two parts (format/index_part.py)
    index_min_bytes: int = 4 << 20      # below this, a process costs more than it saves
    index_share: float = 0.45           # the helper's part (it starts later)
    parent_index_share: float = 0.75    # ... beside the walk of an incremental pack
    # an incremental compares its parent's facts from the cache a pack in a chain leaves
    # (archives/facts.py) instead of reading the parent's index: the same archive either way
    facts_cache: bool = True
    # a restore returns once its swap is final; the swapped-out tree is deleted by a
    # detached process (restore/trash.py; two-process mode only)
    trash_behind: bool = True
    # seconds a thread that wants the GIL waits before the thread running Python is asked
    # to drop it (CPython's default is 5 ms).  The background threads (write-behind,
    # the frame reader, database copies and checks) run system calls that release the
    # GIL and need it back for a few microseconds after each; at 5 ms they waited behind
    # the main thread's Python for most of a restore or pack, and the threads took turns
    # on one CPU instead of overlapping on two (a profile of each: bench/RESULTS.md)
    switch_interval: float = 0.0001
    # a fixed share, (target, first record), or () for none, instead of the cost model's
    plan: tuple[str, int] | tuple[()] | None = None


@dataclass(frozen=True)
class Parallelism:
    mode: str = TWO_PROCESS
    compression_threads: int = 2        # zstd workers; from 2 on, a pack plans shares
    tuning: Tuning = field(default_factory=Tuning)

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"parallel mode {self.mode!r} (known: {', '.join(CHOICES)})")

    @property
    def processes(self) -> bool:
        """Helpers run in a second process."""
        return self.mode == TWO_PROCESS

    @property
    def shares(self) -> bool:
        """A pack may cut a target into a share that a helper writes (in either mode)."""
        return self.compression_threads > 1

    def helper(self, module: str, spec: dict, files: list = (), keep_stdin: bool = False):
        """A helper running ``module.run(spec)``: in a second process, or in this one
        when its report or answer is asked for.  None when a process cannot start (the
        caller does the work itself)."""
        if not self.processes:
            return InlineHelper(module, spec)
        try:
            return ProcessHelper(process.start(module, spec, files, keep_stdin=keep_stdin))
        except (OSError, ValueError):
            return None

    def apart(self, module: str, spec: dict, files: list = (), payload: bytes = b"",
              boot: str | None = None):
        """A process for work that only saves time (the caller can do it itself and
        does, when this is None: always in serial mode, or when no process starts)."""
        if not self.processes:
            return None
        try:
            return process.start(module, spec, files, payload, boot)
        except (OSError, ValueError):
            return None

    @contextmanager
    def switching(self):
        """While a command runs: ``Tuning.switch_interval`` for its threads.  Serial mode
        starts none of its own (zstd's workers run without the GIL): nothing changes."""
        if not self.processes or not self.tuning.switch_interval:
            yield
            return
        previous = sys.getswitchinterval()
        sys.setswitchinterval(self.tuning.switch_interval)
        try:
            yield
        finally:
            sys.setswitchinterval(previous)

    def executor(self, name: str) -> Executor:
        """One background worker (a thread), or work deferred to whoever asks for it."""
        if not self.processes:
            return DeferredExecutor()
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)


def choose(option: str | None = None, environ=None, configured: str | None = None,
           tuning: Tuning | None = None) -> Parallelism:
    """The parallelism asked for: ``option`` (``--parallel``), else the environment's
    ``POPPOARC_PARALLEL``, else ``configured`` (``backup.parallel``), else ``auto``.
    ``POPPOARC_THREADS`` sets zstd's workers (default: the CPUs this process may use,
    ``cpus.available_cpus``, at most ``MAX_COMPRESSION_THREADS``)."""
    environ = os.environ if environ is None else environ
    choice = option or environ.get(ENVIRONMENT) or configured or AUTO
    if choice not in CHOICES:
        raise ValueError(f"parallel mode {choice!r} (known: {', '.join(CHOICES)})")
    cpus = available_cpus()
    threads = environ.get("POPPOARC_THREADS") or min(cpus, MAX_COMPRESSION_THREADS)
    if not str(threads).isdigit():
        raise ValueError(f"POPPOARC_THREADS={threads!r}: not a whole number of threads")
    threads = int(threads)
    mode = (TWO_PROCESS if cpus > 1 else SERIAL) if choice == AUTO else choice
    return Parallelism(mode, threads, tuning or Tuning())
