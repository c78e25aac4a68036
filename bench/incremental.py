"""Full vs incremental, poppoarc beside restic, on the same day-by-day changes.

Run as `python -m bench.incremental [options]` from the repository root.

Usage:
  bench.incremental [--scale=SCALE] [--days=N] [--fraction=F] [--workdir=DIR] [--out=DIR]
                    [--keep]
  bench.incremental (-h | --help)

Options:
  --scale=SCALE     Installation size: tiny, small, medium [default: medium].
  --days=N          Simulated days, each followed by an incremental backup [default: 3].
  --fraction=F      New history rows per day, as a fraction of the existing [default: 0.01].
  --workdir=DIR     Where installations and repositories go (else a new one under /tmp).
  --out=DIR         Where incremental.md and incremental.json go (else bench/results).
  --keep            Keep the work directory.

Generates an installation, then: poppoarc `pack --full` and `restic backup` (first
backup, a fresh repository); then per day `simulate_day` (≈1 % new rows in the history
database, three state files rewritten, two logs appended) followed by poppoarc
`pack --incremental` and `restic backup`. Each step is timed (wall); sizes are the
archive file for poppoarc and the repository's growth (and restic's own `data_added`) for
restic. Finally the last incremental is restored (the whole chain is read) and compared with
`restic restore latest`. restic missing: its columns say so.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from docopt import docopt

from poppoarc.demo.changes import simulate_day
from poppoarc.demo.installation import make_installation

from .tools import tree_bytes


def timed(argv: list[str], env: dict, cwd: Path | None = None, ok=(0, 1)) -> tuple[float, str]:
    """Wall seconds and stdout; exit codes outside ``ok`` stop the benchmark."""
    started = time.monotonic()
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True)
    elapsed = time.monotonic() - started
    if done.returncode not in ok:
        raise SystemExit(f"bench: {' '.join(argv[:6])} failed ({done.returncode}):\n{done.stderr[-1500:]}")
    return elapsed, done.stdout


def restic_added(stdout: str) -> int | None:
    for line in stdout.splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict) and doc.get("message_type") == "summary":
            return doc.get("data_added_packed", doc.get("data_added"))
    return None


def main(argv=None) -> int:
    args = docopt(__doc__, argv=argv)
    work = Path(args["--workdir"] or tempfile.mkdtemp(prefix="poppoarc-incremental-"))
    out = Path(args["--out"] or Path(__file__).resolve().parent / "results")
    days, fraction = int(args["--days"]), float(args["--fraction"])
    app, store, repo = work / "app", work / "store", work / "restic-repo"
    env = dict(os.environ, POPPOARC_HOME=str(work / "home"), RESTIC_PASSWORD="bench",
               RESTIC_REPOSITORY=str(repo), RESTIC_CACHE_DIR=str(work / "restic-cache"))
    env.setdefault("PYTHONPATH", str(Path(__file__).resolve().parent.parent))
    poppoarc = [sys.executable, "-m", "poppoarc", "--root", str(app), "--store", str(store)]
    has_restic = shutil.which("restic") is not None
    rows = []
    try:
        print(f"bench: generating the {args['--scale']} installation in {app}", flush=True)
        make_installation(app, args["--scale"], 1)
        if has_restic:
            subprocess.run(["restic", "init", "-q"], env=env, check=True, capture_output=True)
        for day in range(days + 1):
            change = simulate_day(app, fraction, day) if day else {"rows_added": 0}
            kind = "--incremental" if day else "--full"
            seconds, stdout = timed(poppoarc + ["pack", kind, "--json"], env)
            packed = json.loads(stdout)
            row = {"day": day, "rows_added": change["rows_added"], "poppoarc_kind": kind[2:],
                   "poppoarc_s": round(seconds, 2), "poppoarc_bytes": packed["size"],
                   "poppoarc_reused": packed["reused"], "poppoarc_incremental": packed["incremental"],
                   "id": packed["id"]}
            if has_restic:
                before = tree_bytes(repo)
                seconds, stdout = timed(["restic", "backup", ".", "--json"], env, cwd=app, ok=(0,))
                row.update(restic_s=round(seconds, 2), restic_repo_growth=tree_bytes(repo) - before,
                           restic_data_added=restic_added(stdout))
            rows.append(row)
            print(f"bench: day {day}: {row}", flush=True)
        restore = {}
        target = work / "restored" / "root"
        target.mkdir(parents=True)
        seconds, _ = timed([sys.executable, "-m", "poppoarc", "--root", str(target), "--store",
                            str(store), "unpack", rows[-1]["id"], "--skip-backup", "-q"], env)
        restore["poppoarc_s"] = round(seconds, 2)
        if has_restic:
            seconds, _ = timed(["restic", "restore", "latest", "--target", str(work / "restic-restored"),
                                "-q"], env, ok=(0,))
            restore["restic_s"] = round(seconds, 2)
    finally:
        if not args["--keep"]:
            shutil.rmtree(work, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    document = {"scale": args["--scale"], "fraction": fraction, "days": rows, "restore_last": restore,
                "restic": has_restic}
    (out / "incremental.json").write_text(json.dumps(document, indent=2) + "\n")
    (out / "incremental.md").write_text(render(document))
    print(render(document))
    return 0


def render(document: dict) -> str:
    mb = lambda n: "–" if n is None else f"{n / 1e6:.2f}"     # noqa: E731
    full = document["days"][0]["poppoarc_bytes"]
    lines = [f"# Full vs incremental ({document['scale']}, {document['fraction']:.0%} new history "
             "rows per day)", "",
             "| day | new rows | poppoarc | poppoarc s | poppoarc MB | × full | restic s | "
             "restic repo +MB | restic data_added MB |", "|--:|--:|---|--:|--:|--:|--:|--:|--:|"]
    for row in document["days"]:
        lines.append(f"| {row['day']} | {row['rows_added']} | {row['poppoarc_kind']} | "
                     f"{row['poppoarc_s']:.2f} | {mb(row['poppoarc_bytes'])} | "
                     f"{row['poppoarc_bytes'] / full:.3f} | {row.get('restic_s', '–')} | "
                     f"{mb(row.get('restic_repo_growth'))} | {mb(row.get('restic_data_added'))} |")
    restore = document["restore_last"]
    lines += ["", f"Restore of the last incremental (the whole chain): poppoarc "
                  f"{restore.get('poppoarc_s')} s; `restic restore latest` {restore.get('restic_s', '–')} s.",
              "", "poppoarc archives the installation's targets (databases as consistent snapshots); "
                  "restic backs up the whole tree as files (`data_added`: before compression)."]
    if not document["restic"]:
        lines.append("restic is not installed here: its columns are empty.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
