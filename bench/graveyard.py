"""Deleting the benchmark's own output without slowing the next tool's restore.

On ext4 without a journal (the kernel's no-journal mode, as on this project's
development machines), the inode allocator skips every inode freed in the last 60
seconds, or 360 seconds once its inode-table block is dirty again, which the next
creations in that block make it: ``find_inode_bit`` calls ``recently_deleted`` for
each candidate, so creating N files soon after deleting N files costs O(N²) in the
kernel.  Measured here with ``perf``: ``tar -x`` of 100,000 files took 2.7-5 s on a
quiet file system and 16-20 s of system time after the previous extraction had been
deleted, 84 % of it in ``recently_deleted``.  Whichever tool restored soon after a
large ``rm -rf`` lost, by up to 4x.

So on such a file system the benchmark frees no inode while a scale runs: restored
trees and work directories are renamed into a graveyard and their files truncated to
nothing (which frees their blocks and page cache but keeps their inodes), the graveyard
is emptied after the scale, and the next scale's timed rounds start once that deletion
has left the window (its generation and warm-up round run meanwhile).  Keeping the
files whole instead filled the page cache with 18 GB of restored trees by the end of a
medium scale, and the reclaim that followed added a CPU-second to each later pack.
Elsewhere everything is deleted at once.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

# ext4's RECENTCY_MIN (60 s) + RECENTCY_DIRTY (300 s), and a second to spare.
RECENTLY_DELETED_S = 361.0


def no_journal_ext4(path: Path) -> bool | None:
    """True if ``path`` is on ext4 mounted without a journal; None if that cannot be told."""
    try:
        dev = os.stat(path).st_dev
        block = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}").resolve().name
        ext4 = Path(f"/sys/fs/ext4/{block}")
        if not ext4.is_dir():
            return False                    # not ext4 (tmpfs, xfs, btrfs, ...)
        return (ext4 / "journal_task").read_text().strip() == "<none>"
    except OSError:
        return None


def _truncate_files(directory: Path) -> None:
    """Every regular file below ``directory`` emptied in place: blocks and cached pages
    go, the inodes stay."""
    with os.scandir(directory) as children:
        for child in children:
            if child.is_dir(follow_symlinks=False):
                _truncate_files(Path(child.path))
            elif child.is_file(follow_symlinks=False):
                try:
                    os.truncate(child.path, 0)
                except OSError:
                    pass        # read-only file (a tool's repository): it only stays whole


class Graveyard:
    """Defers deletions while a scale runs, where the file system punishes them."""

    def __init__(self, directory: Path):
        self.directory = directory
        journal_less = no_journal_ext4(directory.parent)
        # When unknown, defer: some disk and minutes are cheaper than a skewed table.
        self.defers = journal_less is not False
        self.fs_note = {True: "ext4 without a journal", False: "not affected",
                        None: "unknown, treated as affected"}[journal_less]
        self._emptied_at: float | None = None
        self._count = 0
        if self.defers:
            self.directory.mkdir(exist_ok=True)

    def retire(self, path: Path) -> None:
        """Delete ``path``: now, or (renamed into the graveyard) at the next ``empty``."""
        if not path.exists():
            return
        if not self.defers:
            shutil.rmtree(path, ignore_errors=True)
            return
        self._count += 1
        grave = self.directory / f"{self._count:05d}-{path.name}"
        os.rename(path, grave)
        _truncate_files(grave)

    def empty(self) -> None:
        """Delete what was retired, then sync, so the allocator's window starts now."""
        if not self.defers or not any(self.directory.iterdir()):
            return
        for child in self.directory.iterdir():
            shutil.rmtree(child, ignore_errors=True)
        os.sync()
        self._emptied_at = time.monotonic()

    def settle(self) -> float:
        """Wait until the last ``empty`` has left the allocator's window; seconds waited."""
        if self._emptied_at is None:
            return 0.0
        left = self._emptied_at + RECENTLY_DELETED_S - time.monotonic()
        if left > 0:
            time.sleep(left)
        return max(left, 0.0)
