"""``make demo``: build a demo installation and walk through the main commands.

    python -m poppoarc.demo.run [DIR]

DIR (default: a new temporary directory) receives ``installation/``,
``backups/`` and ``keys/``.  Each step prints the command as an operator
would type it, then its real output.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from .changes import simulate_day
from .installation import make_installation


def run(workdir: Path) -> int:
    root = workdir / "installation"
    store = workdir / "backups"
    env = {**os.environ, "POPPOARC_HOME": str(workdir / "keys"), "POPPO_ROOT": str(root),
           "GITHUB_TOKEN": "ghp_demo_not_a_real_token",
           # a demo passphrase: .env is then archived sealed, and --encrypt works
           "POPPO_BACKUP_KEY": "demo passphrase, not for real use"}
    summary = make_installation(root, scale="small", seed=1)
    print(f"Demo installation: {root} ({summary['files']} files, "
          f"{summary['bytes'] / 1e6:.1f} MB)\n")

    def step(*args: str) -> subprocess.CompletedProcess:
        shown = " ".join(shlex.quote(a) for a in ("poppoarc", "--store", str(store), *args))
        print(f"$ {shown}", flush=True)
        result = subprocess.run([sys.executable, "-m", "poppoarc", "--store", str(store), *args],
                                env=env, text=True, capture_output=True)
        sys.stdout.write(result.stdout)
        sys.stdout.write(result.stderr)
        print(f"[exit {result.returncode}]\n", flush=True)
        return result

    # --full starts a chain: its databases carry the page digests the incremental needs
    packed = step("pack", "--full", "--name", "demo")
    if packed.returncode not in (0, 1):
        return packed.returncode
    # a day of work (new history rows, state and logs), then an incremental archive
    changed = simulate_day(root, fraction=0.01, seed=1)
    print(f"(a day passes: {changed['rows_added']} new history rows, "
          f"{len(changed['files_changed'])} files changed)\n")
    incremental = step("pack", "--incremental", "--name", "day 1")
    step("pack", "--targets", "config,state", "--name", "config-only")
    step("pack", "--encrypt", "--name", "encrypted")
    step("list")
    archive_id = packed.stdout.split()[1]
    if step("verify", archive_id).returncode:
        return 1
    step("inspect", archive_id)
    if incremental.returncode in (0, 1) and step("verify", incremental.stdout.split()[1]).returncode:
        return 1                                    # the chain: the full archive, then it
    # a bad day: state is damaged; plan the restore, then restore only that target
    (root / "state" / "running-tasks.json").write_text("{ broken")
    (root / "state" / "stray.json").write_text("{}")
    step("unpack", archive_id, "--targets", "state", "--dry-run")
    if step("unpack", archive_id, "--targets", "state").returncode not in (0, 1):
        return 1
    step("list")
    step("doctor")
    path = store / f"{archive_id}.poppo.tar.zst"
    print(f"$ tar --zstd -tvf {path} | head -8")
    listing = subprocess.run(["tar", "--zstd", "-tvf", str(path)], capture_output=True, text=True)
    print("\n".join(listing.stdout.splitlines()[:8]) or listing.stderr)
    print(f"\nEverything is in {workdir}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    if argv:
        workdir = Path(argv[0]).absolute()
        workdir.mkdir(parents=True, exist_ok=True)
        if any(workdir.iterdir()):
            print(f"poppoarc demo: {workdir}: directory is not empty", file=sys.stderr)
            return 2
    else:
        workdir = Path(tempfile.mkdtemp(prefix="poppoarc-demo-"))
    return run(workdir)


if __name__ == "__main__":
    raise SystemExit(main())
