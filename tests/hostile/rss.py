"""Peak memory of ``verify`` on archives shaped to exhaust a reader, within the spec's limits.

    python -m tests.hostile.rss [--scale N] [--only SHAPE,...] [--baseline DIR] [--keep DIR]

Each archive is made by the real writer and signed with a fresh key (its public half is
pinned for the run).  Each verify runs in a process of its own under GNU time
(``/usr/bin/time -f %M``: the peak RSS of the largest process it waited for).  With
``--baseline DIR`` (a checkout of an earlier poppoarc, e.g. ``git archive REV | tar -x``)
the same archives are verified by that code too, in the same run, for a before/after
table.  ``tests/hostile/test_memory.py`` runs the small scale and asserts the bound.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

from poppoarc.crypto import signing
from poppoarc.format.entry import IndexEntry

from tests.helpers.craft import T, craft

BOUND_MIB = 100
NAME = "n" * 14


def _file(path: str, target: str = "state") -> tuple:
    return IndexEntry(path, target, "file", 0o644, os.getuid(), os.getgid(), T, 0), b""


def deep_paths(scale: int) -> list:
    """Unique paths of 4,000 bytes and 250 levels: a reader that keeps every parent
    prefix of every path holds records x depth strings of ~2 KB each."""
    middle = "/".join([NAME] * 250)[:3900]
    return [(IndexEntry("state", "state", "dir", 0o755, os.getuid(), os.getgid(), T), b"")] + \
        [_file(f"state/d{n:06d}/{middle}/f") for n in range(500 * scale)]


def long_symlinks(scale: int) -> list:
    """Symlinks with 4,000-byte paths and 4,000-byte targets: the table a reader resolves
    them through leaves memory for disk."""
    middle = "/".join([NAME] * 200)[:3000]
    members = [(IndexEntry("state", "state", "dir", 0o755, os.getuid(), os.getgid(), T), b"")]
    for n in range(400 * scale):
        link = "/".join([".."] * 2 + ["state"] + [NAME] * 60)[:3990].rstrip("/")
        members.append((IndexEntry(f"state/s{n:06d}/{middle}", "state", "symlink", 0o777,
                                   os.getuid(), os.getgid(), T, link=link), b""))
    return members


def shuffled(scale: int) -> list:
    """Records in no order at all: runs cannot be merged, the reader sorts on disk."""
    members = [_file(f"state/{n:07d}/{NAME * 15}") for n in range(4000 * scale)]
    random.Random(7).shuffle(members)
    return members


def hard_links(scale: int) -> list:
    """Each of many long-named files with a hard link to it."""
    members = []
    for n in range(1000 * scale):
        record, data = _file(f"state/f{n:06d}/{NAME * 15}")
        link = IndexEntry(f"state/h{n:06d}/{NAME * 15}", "state", "hardlink", 0o644,
                          os.getuid(), os.getgid(), T, 0, link=record.path)
        members += [(record, data), (link, b"")]
    return sorted(members, key=lambda m: m[0].path)


SHAPES = {"deep-paths": deep_paths, "long-symlinks": long_symlinks, "shuffled": shuffled,
          "hard-links": hard_links}


def build(workdir: Path, scale: int, only=None) -> tuple[Path, dict[str, Path]]:
    """A key home and the archives of every shape (or those ``only`` names), in ``workdir``."""
    keys = workdir / "keys"
    signing.load_or_generate(keys)
    store = workdir / "store"
    return keys, {name: craft(store, keys, shape(scale)) for name, shape in SHAPES.items()
                  if only is None or name in only}


def peak_rss(archive: Path, keys: Path, root: Path,
             code_dir: Path | None = None) -> tuple[int, int]:
    """(exit code, peak RSS in KiB) of ``poppoarc verify`` in a process of its own."""
    env = {**os.environ, "POPPOARC_HOME": str(keys), "LANG": "C.UTF-8"}
    if code_dir is not None:
        env["PYTHONPATH"] = str(code_dir)
    with tempfile.NamedTemporaryFile("r") as report:
        result = subprocess.run(["/usr/bin/time", "-o", report.name, "-f", "%M", sys.executable,
                                 "-m", "poppoarc", "--root", str(root), "--store",
                                 str(archive.parent), "verify", str(archive), "-q"],
                                env=env, capture_output=True, text=True,
                                cwd=code_dir or Path.cwd())
        lines = report.read().split()
    return result.returncode, int(lines[-1]) if lines else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--baseline", type=Path, help="a checkout of an earlier poppoarc")
    parser.add_argument("--keep", type=Path, help="build the archives here and keep them")
    parser.add_argument("--only", help="comma-separated shapes: " + ", ".join(SHAPES))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.keep or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        keys, archives = build(workdir, args.scale, args.only.split(",") if args.only else None)
        root = workdir / "root"
        root.mkdir(exist_ok=True)
        print(f"{'archive':<16}{'size':>12}  {'this: exit, peak RSS':>24}"
              + (f"  {'baseline: exit, peak RSS':>28}" if args.baseline else ""))
        worst = 0
        for name, archive in archives.items():
            code, rss = peak_rss(archive, keys, root)
            worst = max(worst, rss)
            line = f"{name:<16}{archive.stat().st_size:>12,}  {code:>6}, {rss / 1024:>9.1f} MiB"
            if args.baseline:
                old_code, old_rss = peak_rss(archive, keys, root, args.baseline)
                line += f"  {old_code:>10}, {old_rss / 1024:>9.1f} MiB"
            print(line, flush=True)
    return 0 if worst <= BOUND_MIB * 1024 else 1


if __name__ == "__main__":
    raise SystemExit(main())
