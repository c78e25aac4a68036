"""Benchmark poppoarc against tar|zstd, restic and borg on generated installations.

Run as `python -m bench.run [options]` from the repository root (or `make bench
BENCH_ARGS="..."`).

Usage:
  bench.run [--scales=LIST] [--rounds=N] [--out=DIR] [--workdir=DIR] [--keep]
            [--tools=LIST] [--threads=N] [--timeout=SECONDS] [--seed=N]
            [--quiet-wait=SECONDS] [--live=LIST]
  bench.run (-h | --help)

Options:
  --scales=LIST       Installation scales, comma-separated: tiny, small, medium, manyfiles
                      [default: medium,manyfiles].
  --rounds=N          Timed rounds per scale, after one untimed warm-up round [default: 3].
  --out=DIR           Where results.md and results.json are written [default: bench/results].
  --workdir=DIR       Where installations, archives and restores go (must be empty or absent);
                      else a new temporary directory under /tmp.
  --keep              Keep the work directory (it is removed otherwise, also after an error).
  --tools=LIST        Tools, comma-separated: poppoarc, poppoarc-encrypted,
                      poppoarc-incremental, tar-zstd, tar-zstd-same, restic,
                      restic-incremental, borg, borg-incremental [default: all]. tar-zstd is the reference the ratios divide by.
  --threads=N         zstd worker threads for `zstd -T` and POPPOARC_THREADS [default: 2].
  --timeout=SECONDS   Time limit for each command [default: 1800].
  --seed=N            Seed of the installation generator [default: 1].
  --quiet-wait=SECONDS  Before each timed command, wait up to this long for the machine to
                      be idle (other work < 15 % of the cores); 0 disables [default: 15].
  --live=LIST         Scales whose restore over the live tree is measured (a copy of the
                      installation per tool and round) [default: medium].
  -h --help           Show this help.
"""

from __future__ import annotations

import compileall
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from docopt import DocoptExit, docopt

from . import report
from .graveyard import Graveyard, no_journal_ext4
from .measure import QUIET, RSS_METHOD, CommandFailed, quick
from .tools import OPERATIONS, Context, all_tools
from .trees import fingerprint, tree_stats, warm

SCALES = ("tiny", "small", "medium", "manyfiles")


class BenchError(Exception):
    """A problem that stops the whole benchmark (bad arguments, no poppoarc, no disk)."""


def parse(argv: list[str] | None) -> dict:
    try:
        args = docopt(__doc__, argv=argv)
    except DocoptExit as exc:
        raise BenchError(str(exc).strip()) from exc

    def number(name: str, kind=int, low=1):
        try:
            value = kind(args[name])
        except ValueError:
            raise BenchError(f"{name} must be a number, not {args[name]!r}") from None
        if value < low:
            raise BenchError(f"{name} must be at least {low}")
        return value

    scales = [s.strip() for s in args["--scales"].split(",") if s.strip()]
    for scale in scales:
        if scale not in SCALES:
            raise BenchError(f"unknown scale {scale!r}; expected some of {', '.join(SCALES)}")
    known = [t.key for t in all_tools()]
    wanted = known if args["--tools"] == "all" else [
        t.strip() for t in args["--tools"].split(",") if t.strip()]
    for key in wanted:
        if key not in known:
            raise BenchError(f"unknown tool {key!r}; expected some of {', '.join(known)}")
    return {"scales": scales, "rounds": number("--rounds"), "out": Path(args["--out"]),
            "workdir": args["--workdir"], "keep": bool(args["--keep"]), "tools": wanted,
            "threads": number("--threads"), "timeout": number("--timeout", float),
            "seed": number("--seed", int, 0), "quiet_wait": number("--quiet-wait", float, 0),
            "live": [s.strip() for s in args["--live"].split(",") if s.strip()]}


def base_env(workdir: Path) -> dict:
    """A small, fixed environment: no POPPO_*/CLAUDE_*/GITHUB_* of the caller leaks into
    poppoarc's environment.json, and no caller config changes a peer's behaviour."""
    home = workdir / "home"
    home.mkdir(exist_ok=True)
    return {"PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"), "HOME": str(home),
            "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TZ": "UTC", "TMPDIR": str(workdir / "tmp"),
            "POPPOARC_HOME": str(workdir / "poppoarc-keys"), "XDG_CACHE_HOME": str(home / "cache")}


def machine_facts(workdir: Path) -> dict:
    mem_kib = 0
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    fs = "?"
    try:  # the longest mount point that contains the work directory
        best = ""
        for line in Path("/proc/mounts").read_text().splitlines():
            device, point, kind = line.split()[:3]
            if str(workdir).startswith(point) and len(point) > len(best):
                best, fs = point, f"{kind} ({device} at {point})"
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": cpu, "memory_gib": mem_kib / 2**20,
            "kernel": f"{platform.system()} {platform.release()}",
            "python": platform.python_version(),
            "workdir_fs": fs, "workdir_ext4_without_journal": no_journal_ext4(workdir),
            "free_disk_gb": shutil.disk_usage(workdir).free / 1e9}


def git_revision() -> str:
    repo = Path(__file__).resolve().parent.parent
    try:
        head = quick(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"]).strip()
        dirty = quick(["git", "-C", str(repo), "--no-optional-locks", "status", "--porcelain"])
        return head + (" + uncommitted changes" if dirty.strip() else "")
    except CommandFailed:
        return "unknown"


def sealed_secrets(index: Path) -> list:
    """(size, [[member, size], ...]) of every sealed secret the archive's index lists."""
    found = []
    with index.open(encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            if isinstance(record, dict) and record.get("sealed"):
                found.append((record["size"], record["sealed"]))
    return found


def prepare_scale(scale: str, options: dict, scale_dir: Path, env: dict, poppoarc) -> dict:
    """Generate the installation and the 'same files' tree (poppoarc's archive, extracted)."""
    from poppoarc.demo.installation import make_installation

    installation = scale_dir / "installation"
    print(f"[{scale}] generating installation (seed {options['seed']}) ...", flush=True)
    started = time.perf_counter()
    summary = make_installation(installation, scale, options["seed"])
    generate_s = time.perf_counter() - started
    # One untimed pack: it creates the signing key and the installation's lock file
    # (so every timed tool sees the same tree), and gives the same-files tree.
    setup = scale_dir / "setup"
    ctx = Context(source=installation, work=setup, env=env, timeout=options["timeout"],
                  threads=options["threads"])
    setup.mkdir()
    poppoarc.pack(ctx)
    same = scale_dir / "same-files"
    same.mkdir()
    quick(["tar", "--zstd", "-xf", str(poppoarc.archive), "-C", str(same)], env=env,
          timeout=options["timeout"])
    sealed = sealed_secrets(same / ".poppoarc" / "index.jsonl")
    shutil.rmtree(same / ".poppoarc")
    shutil.rmtree(setup)
    info = {"files": summary["files"], "bytes": summary["bytes"], "generate_s": generate_s,
            "path": str(installation), "same_files": str(same)}
    info["tree"] = tree_stats(installation)
    # tar extracts a sealed secret as its ciphertext member(s); poppoarc restores the secret
    info["same_files_tree"] = tree_stats(same)
    for size, members in sealed:
        info["same_files_tree"]["files"] += 1 - len(members)
        info["same_files_tree"]["bytes"] += size - sum(member_size for _, member_size in members)
    # secrets are sealed whenever they exist (an identity is made on first use), so the
    # same-files tree above already counts them; only an archive without sealed members adds them
    secrets = [] if sealed else [
        p for p in installation.glob(".env*") if p.is_file() and not p.is_symlink()]
    info["sealed_files_tree"] = {"files": info["same_files_tree"]["files"] + len(secrets),
                                 "bytes": info["same_files_tree"]["bytes"]
                                 + sum(p.stat().st_size for p in secrets)}
    print(f"[{scale}] {summary['files']:,} files, {summary['bytes'] / 1e6:.1f} MB in "
          f"{generate_s:.1f} s; poppoarc's share: {info['same_files_tree']['files']:,} files, "
          f"{info['same_files_tree']['bytes'] / 1e6:.1f} MB", flush=True)
    return info


def live_copy(ctx: Context) -> Path:
    """The tool's source copied (untimed) with a day's changes applied: the live tree a
    restore over the installation meets (``poppoarc.demo.changes.simulate_day``)."""
    from poppoarc.demo.changes import simulate_day

    live = ctx.work / "live"
    live.mkdir()
    quick(["cp", "-a", f"{ctx.source}/.", f"{live}/"], timeout=ctx.timeout)
    simulate_day(live, seed=7)
    return live


def removed_behind(root: Path) -> float:
    """Seconds until no restore's trash remains in ``root`` (its remover finished)."""
    from poppoarc.restore.trash import sweep

    started = time.perf_counter()
    sweep(root, wait=True)
    return round(time.perf_counter() - started, 3)


def one_tool(tool, ctx: Context, rnd: int, warmup: bool, expected: dict,
             graveyard: Graveyard) -> list[dict]:
    """pack, verify and restore with one tool; a failure ends this tool's round."""
    records = []
    base = {"tool": tool.key, "round": rnd, "warmup": warmup}
    try:
        ctx.work.mkdir(parents=True)
        tool.prepare(ctx)
        for op in OPERATIONS:
            if op not in tool.operations or op == "restore-live" and not ctx.live:
                continue
            record = dict(base, op=op)
            records.append(record)
            if op == "pack":
                warm(ctx.source)    # a previous tool may have evicted it (borg does)
                m, size = tool.pack(ctx)
                record["size_bytes"] = size
            elif op == "verify":
                m = tool.verify(ctx)
            elif op == "restore-live":
                if not tool.restores_live:
                    records.pop()
                    continue
                live = live_copy(ctx)
                m = tool.restore_live(ctx, live)
                # poppoarc returns before its old tree is deleted (restore/trash.py): wait,
                # untimed, so that the deletion neither overlaps the next command nor races
                # the graveyard; recorded as the seconds it still ran
                record["removed_behind_s"] = removed_behind(live)
                graveyard.retire(live)
            else:
                target = ctx.work / "restored"
                m = tool.restore(ctx, target)
                restored = Path(m.extra.pop("restored_root", target))
                got = tree_stats(restored)
                record["restored"] = got
                if (got["files"], got["bytes"]) != (expected["files"], expected["bytes"]):
                    record["mismatch"] = (f"restored {got['files']} files / {got['bytes']} bytes, "
                                          f"expected {expected['files']} / {expected['bytes']}")
                graveyard.retire(target)
            record.update(m.to_json(), ok=True)
    except (CommandFailed, OSError, ValueError, KeyError) as exc:
        if not records:
            records.append(dict(base, op="pack"))
        records[-1].update(ok=False, error=f"{type(exc).__name__}: {exc}" if not isinstance(
            exc, CommandFailed) else str(exc))
        print(f"    {tool.key}: FAILED: {exc}", file=sys.stderr, flush=True)
    return records


def bench_scale(scale: str, options: dict, tools: list, workdir: Path, env: dict,
                graveyard: Graveyard) -> dict:
    scale_dir = workdir / scale
    scale_dir.mkdir()
    poppoarc = next(t for t in all_tools() if t.key == "poppoarc")
    info = prepare_scale(scale, options, scale_dir, env, poppoarc)
    installation, same = Path(info["path"]), Path(info["same_files"])
    before = fingerprint(installation)
    records, notes, settled = [], [], 0.0
    for rnd in range(options["rounds"] + 1):
        warmup = rnd == 0
        if rnd == 1:
            settled = graveyard.settle()
        shift = rnd % len(tools)
        order = tools[shift:] + tools[:shift]
        print(f"[{scale}] round {rnd}{' (warm-up, not counted)' if warmup else ''}: "
              f"{', '.join(t.key for t in order)}", flush=True)
        round_dir = scale_dir / f"round-{rnd}"
        for tool in order:
            source = tool.source_for(installation, same)
            expected = info["same_files_tree"] if tool.key in ("poppoarc", "poppoarc-incremental") \
                or source == same \
                else info["sealed_files_tree"] if tool.key == "poppoarc-encrypted" else info["tree"]
            ctx = Context(source=source, work=round_dir / tool.key, env=env,
                          timeout=options["timeout"], threads=options["threads"],
                          live=scale in options["live"])
            got = one_tool(tool, ctx, rnd, warmup, expected, graveyard)
            records += got
            line = "  ".join(f"{r['op']} {r['wall_s']:.2f}s" if r.get("ok") else f"{r['op']} FAILED"
                             for r in got)
            size = next((r.get("size_bytes") for r in got if r.get("size_bytes")), None)
            print(f"    {tool.key:<14} {line}" + (f"  size {size / 1e6:.1f} MB" if size else ""),
                  flush=True)
            if not (options["keep"] and rnd == options["rounds"]):
                graveyard.retire(ctx.work)
    if graveyard.defers:
        notes.append(f"Work file system: {graveyard.fs_note}. No inode was freed while this "
                     f"scale ran (outputs were emptied in place), and its timed rounds waited "
                     f"{settled:.0f} s for the previous deletion to age: there, creating files "
                     f"is slow for up to 6 minutes after a large delete (bench/graveyard.py).")
    if fingerprint(installation) != before:
        notes.append("The installation tree changed during the benchmark (size or mtime of "
                     "some file): a tool modified its source.")
    for r in records:
        if r.get("mismatch") and not r["warmup"]:
            notes.append(f"{r['tool']} round {r['round']}: restore mismatch: {r['mismatch']}")
        if not r.get("ok", True) and not r["warmup"]:
            notes.append(f"{r['tool']} round {r['round']} {r['op']} failed: "
                         f"{r['error'].splitlines()[0]}")
    restored = [r for r in records if r.get("restored") and r["tool"] == "poppoarc"]
    if restored:
        same, whole = info["same_files_tree"], info["tree"]
        notes.append(f"poppoarc archives {same['files']:,} of {whole['files']:,} files "
                     f"({same['bytes'] / 1e6:.1f} of {whole['bytes'] / 1e6:.1f} MB, databases as "
                     "snapshots); the peers back up the whole tree.")
    return {"installation": info, "records": records, "notes": notes}


def _interrupt(signum, _frame):
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    # Also when started in the background (SIGINT ignored) or stopped with SIGTERM:
    # end the running command and remove the work directory.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        options = parse(argv)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    created = options["workdir"] is None
    if created:
        workdir = Path(tempfile.mkdtemp(prefix="poppoarc-bench-", dir="/tmp"))
    else:
        workdir = Path(options["workdir"]).resolve()
        if workdir.exists() and any(workdir.iterdir()):
            print(f"bench: --workdir {workdir} is not empty", file=sys.stderr)
            return 2
        workdir.mkdir(parents=True, exist_ok=True)
    try:
        return bench(options, workdir)
    except (BenchError, CommandFailed) as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    finally:
        if options["keep"]:
            print(f"bench: kept work directory {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def snapshot_code(workdir: Path, env: dict) -> Path:
    """Copy the poppoarc package so every round runs the same code.

    Other people may edit (or merge into) the work tree while the benchmark runs;
    children get PYTHONPATH=<copy>, which wins over the editable install, and the
    generator is imported from the copy too.
    """
    source = Path(__file__).resolve().parent.parent / "poppoarc"
    target = workdir / "code"
    shutil.copytree(source, target / "poppoarc",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    # Bytecode now, as `pip install` compiles it: with PYTHONDONTWRITEBYTECODE set (or a
    # read-only copy) every command would compile ~45 modules again, 70-90 ms a process.
    if not compileall.compile_dir(str(target), quiet=1):
        raise BenchError(f"cannot compile the copy of poppoarc in {target}")
    env["PYTHONPATH"] = str(target)
    sys.path.insert(0, str(target))
    return target


def bench(options: dict, workdir: Path) -> int:
    QUIET["max_wait"] = options["quiet_wait"]
    env = base_env(workdir)
    code = snapshot_code(workdir, env)
    (workdir / "tmp").mkdir()
    facts = machine_facts(workdir)
    if facts["free_disk_gb"] < 4:
        print(f"bench: warning: only {facts['free_disk_gb']:.1f} GB free under {workdir}",
              file=sys.stderr)
    tools, skipped, versions = [], {}, {"poppoarc": None}
    for tool in all_tools():
        if tool.key not in options["tools"]:
            continue
        why = tool.missing()
        if why is None:
            try:
                versions.setdefault(tool.key.replace("-same", ""), tool.version(env))
            except CommandFailed as exc:
                why = f"version check failed: {exc}"
        if why is not None:
            if tool.key == "poppoarc":
                raise BenchError(f"poppoarc cannot run: {why}")
            skipped[tool.key] = why + " (install: apt-get install -y restic borgbackup zstd)"
            print(f"bench: skipping {tool.key}: {why}", file=sys.stderr)
            continue
        tools.append(tool)
    if versions["poppoarc"] is None:  # not benchmarked, but prepare_scale still uses it
        versions["poppoarc"] = all_tools()[0].version(env)
    versions["poppoarc"] += f" (git {git_revision()}, copied to {code} at start)"
    imported = quick([sys.executable, "-c", "import poppoarc; print(poppoarc.__file__)"], env=env,
                     cwd=workdir)  # not the repository: '' on sys.path would win
    if not imported.strip().startswith(str(code)):
        raise BenchError(f"children import poppoarc from {imported.strip()}, not from {code}")
    versions["python"] = platform.python_version()
    if "tar-zstd-same" in options["tools"] and shutil.which("tar") is None:
        raise BenchError("tar is needed to build the same-files tree")
    doc = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "machine": facts, "versions": versions, "skipped": skipped,
           "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in options.items()},
           "workdir": str(workdir), "rss_method": RSS_METHOD, "scales": {}}
    started = time.perf_counter()
    graveyard = Graveyard(workdir / "graveyard")
    if graveyard.defers:
        print(f"bench: work file system: {graveyard.fs_note}; no inode is freed until a scale "
              "ends (outputs are emptied in place meanwhile; bench/graveyard.py)",
              file=sys.stderr)
    for scale in options["scales"]:
        doc["scales"][scale] = bench_scale(scale, options, tools, workdir, env, graveyard)
        if not options["keep"]:
            graveyard.retire(workdir / scale)
        graveyard.empty()       # the next scale's timed rounds wait for this to age
    doc["total_s"] = time.perf_counter() - started
    text = report.markdown(doc, tools)
    out = options["out"]
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(text, encoding="utf-8")
    (out / "results.json").write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n",
                                      encoding="utf-8")
    print()
    print(text)
    print(f"bench: wrote {out / 'results.md'} and {out / 'results.json'} "
          f"({doc['total_s']:.0f} s)", file=sys.stderr)
    failures = [r for s in doc["scales"].values() for r in s["records"] if not r.get("ok", True)]
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
