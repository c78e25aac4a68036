"""How poppoarc's pack and restore scale from one core to two, with ``taskset``.

Run as ``python -m bench.scaling [--scale=medium] [--rounds=3] [--cpus=0;0,1]``.

Generates an installation, then in each round (the order of the CPU sets rotating) runs
``poppoarc pack`` into a fresh store and ``poppoarc unpack --skip-backup`` into a fresh
empty root under ``taskset -c SET`` for each CPU set.  poppoarc is left to choose its
parallelism itself (no ``POPPOARC_THREADS``, no ``--parallel``): it follows the CPUs the
process may use (``poppoarc/parallel/cpus.py``), so one CPU is serial and two are
two-process with two zstd workers.  Reports medians and the speed-up of each set over the
first (its throughput divided by the first's).  Writes ``scaling.md``/``scaling.json`` to
``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from .graveyard import Graveyard
from .run import base_env, git_revision, machine_facts
from .trees import warm


def timed(argv: list[str], env: dict, cwd: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the command's process tree)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode not in (0, 1):
        raise RuntimeError(f"{' '.join(argv)}: exit {done.returncode}: {done.stderr[-800:]}")
    return seconds, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.scaling")
    parser.add_argument("--scale", default="medium")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cpus", default="0;0,1", help="CPU sets, ';'-separated")
    parser.add_argument("--out", default="bench/results")
    parser.add_argument("--seed", type=int, default=1)
    options = parser.parse_args(argv)
    from poppoarc.demo.installation import make_installation

    sets = options.cpus.split(";")
    work = Path(tempfile.mkdtemp(prefix="poppoarc-scaling-", dir="/tmp"))
    try:
        env = base_env(work)
        graveyard = Graveyard(work / "graveyard")
        (work / "tmp").mkdir()
        code = work / "code"
        shutil.copytree(Path(__file__).resolve().parent.parent / "poppoarc", code / "poppoarc")
        env["PYTHONPATH"] = str(code)
        installation = work / "installation"
        summary = make_installation(installation, options.scale, options.seed)
        poppoarc = [sys.executable, "-m", "poppoarc", "--root", str(installation)]
        timed(poppoarc + ["--store", str(work / "setup"), "pack", "-q"], env, work)
        times: dict[str, dict[str, list]] = {s: {"pack": [], "restore": []} for s in sets}
        for rnd in range(options.rounds + 1):
            order = sets[rnd % len(sets):] + sets[:rnd % len(sets)]
            for cpus in order:
                store, root = work / f"store-{rnd}-{cpus}", work / f"root-{rnd}-{cpus}" / "root"
                root.mkdir(parents=True)
                warm(installation)
                pack = timed(["taskset", "-c", cpus, *poppoarc, "--store", str(store), "pack",
                              "-q"], env, work)
                archive = next(store.glob("*.poppo.tar.zst"))
                restore = timed(["taskset", "-c", cpus, sys.executable, "-m", "poppoarc",
                                 "--root", str(root), "--store", str(store), "unpack",
                                 str(archive), "--skip-backup", "-q"], env, work)
                print(f"round {rnd}{' (warm-up)' if rnd == 0 else ''} cpus {cpus}: pack "
                      f"{pack[0]:.2f} s ({pack[1]:.2f} CPU-s), restore {restore[0]:.2f} s "
                      f"({restore[1]:.2f} CPU-s), load {os.getloadavg()[0]:.1f}", flush=True)
                if rnd:
                    times[cpus]["pack"].append(pack)
                    times[cpus]["restore"].append(restore)
                # not deleted now: on ext4 without a journal the next round's restore
                # would create its files in the inodes just freed, slowly (graveyard.py)
                graveyard.retire(store)
                graveyard.retire(root.parent)
        first = sets[0]
        rows = []
        for cpus in sets:
            row = {"cpus": cpus}
            for op in ("pack", "restore"):
                row[op] = statistics.median(w for w, _ in times[cpus][op])
                row[f"{op}_cpu"] = statistics.median(c for _, c in times[cpus][op])
                row[f"{op}_speedup"] = statistics.median(w for w, _ in times[first][op]) / row[op]
            rows.append(row)
        result = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  "revision": git_revision(), "machine": machine_facts(work),
                  "load": os.getloadavg(), "scale": options.scale, "files": summary["files"],
                  "bytes": summary["bytes"], "rounds": options.rounds, "rows": rows,
                  "times": times}
        out = Path(options.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "scaling.json").write_text(json.dumps(result, indent=2))
        lines = [f"# taskset scaling, {options.scale} ({summary['files']:,} files, "
                 f"{summary['bytes'] / 1e6:.0f} MB), {options.rounds} rounds, "
                 f"{result['date']}, {result['revision']}", "",
                 f"Load average at the end: {result['load'][0]:.1f}. Work file system: "
                 f"{graveyard.fs_note}" + (" (no inode freed until the end: "
                                           "bench/graveyard.py)." if graveyard.defers else "."),
                 "",
                 "| CPUs | pack s | pack CPU-s | pack speed-up | restore s | restore CPU-s "
                 "| restore speed-up |", "| --- | --- | --- | --- | --- | --- | --- |"]
        lines += [f"| {r['cpus']} | {r['pack']:.2f} | {r['pack_cpu']:.2f} | "
                  f"{r['pack_speedup']:.2f}× | {r['restore']:.2f} | {r['restore_cpu']:.2f} | "
                  f"{r['restore_speedup']:.2f}× |" for r in rows]
        (out / "scaling.md").write_text("\n".join(lines) + "\n")
        print("\n".join(lines))
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
