"""What browsing reads and holds: bytes fetched from an S3 store by ``dump`` of one file,
and the peak RSS of ``ls``, ``find``, ``diff`` beside ``verify`` (issue 28).

    python -m bench.browse s3 [--bulk-mib 500] [--workdir DIR]
    python -m bench.browse rss [--scale manyfiles] [--workdir DIR]

``s3``: an installation with BULK MiB of incompressible logs (``logs/`` target) and three
1 MiB files: ``config/settings-1mb.json`` (its own target, before the logs),
``logs/zz-after-the-bulk.log.gz`` (the same target, after the bulk) and a small
``config/small.json`` (no digest of its own, spec §5.4).  It is packed into a bucket of the
loopback S3 server of the tests (``tests/helpers/s3server.py``, which logs the bytes of each
response), then ``verify`` (the baseline: every byte), ``ls``, and ``dump -o`` of each file
run against it; the table shows the GetObject bytes each one was sent.

``rss``: a generated installation (default 100,000 files), a full archive and an
incremental one day later; each command's peak RSS under GNU time (``%M``), with
``--version`` as the interpreter's own floor.  Needs ``/usr/bin/time``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MiB = 1 << 20


def poppoarc(*args, env=None, capture=True) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "poppoarc", *args], env=env, text=True,
                          capture_output=capture, check=False)


def _server(workdir: Path):
    log = workdir / "requests.jsonl"
    log.touch()
    process = subprocess.Popen([sys.executable, str(REPO / "tests/helpers/s3server.py"),
                                str(log)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               text=True)
    port = process.stdout.readline().strip()
    return process, f"http://127.0.0.1:{port}", log


def _sent(log: Path, since: int) -> tuple[int, int]:
    with open(log) as handle:
        handle.seek(since)
        gets = [json.loads(line) for line in handle if line.strip()]
    gets = [g for g in gets if g["op"] == "GetObject"]
    return sum(g["received"] for g in gets), len(gets)


def measure_s3(workdir: Path, bulk_mib: int) -> None:
    import boto3

    root = workdir / "inst"
    env = {**os.environ, "POPPOARC_HOME": str(workdir / "home"), "AWS_ACCESS_KEY_ID": "x",
           "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_EC2_METADATA_DISABLED": "true"}
    subprocess.run([sys.executable, "-m", "poppoarc.demo.installation", str(root)], check=True,
                   capture_output=True, env=env)
    for number in range(max(1, bulk_mib // 50)):
        (root / f"logs/bulk-{number:03d}.log.gz").write_bytes(os.urandom(min(50, bulk_mib) * MiB))
    files = {"config/settings-1mb.json": os.urandom(MiB),
             "logs/zz-after-the-bulk.log.gz": os.urandom(MiB),
             "config/small.json": b'{"small": true}\n'}
    for path, data in files.items():
        (root / path).write_bytes(data)
    process, endpoint, log = _server(workdir)
    try:
        env["AWS_ENDPOINT_URL"] = endpoint
        os.environ.update({k: v for k, v in env.items() if k.startswith("AWS_")})
        boto3.client("s3").create_bucket(Bucket="bench")
        store = ["--root", str(root), "--store", "s3://bench/prod"]
        packed = json.loads(poppoarc(*store, "pack", "--json", env=env).stdout)
        print(f"archive {packed['id']}: {packed['size'] / MiB:.1f} MiB")
        print(f"| command | bytes sent by the server | GetObject requests |")
        print("| --- | ---: | ---: |")
        runs = [("verify (baseline: the whole archive)", ("verify", packed["id"])),
                ("ls", ("ls", packed["id"], "--json"))]
        runs += [(f"dump {path} ({len(data)} B)",
                  ("dump", packed["id"], path, "-o", str(workdir / "out"), "--json"))
                 for path, data in files.items()]
        for label, args in runs:
            mark = log.stat().st_size
            done = poppoarc(*store, *args, env=env)
            assert done.returncode == 0, done.stderr
            sent, requests = _sent(log, mark)
            print(f"| {label} | {sent:,} ({sent / MiB:.2f} MiB) | {requests} |")
    finally:
        process.terminate()
        process.wait(10)


def measure_rss(workdir: Path, scale: str) -> None:
    from poppoarc.demo.changes import simulate_day

    root, store = workdir / "inst", workdir / "store"
    env = {**os.environ, "POPPOARC_HOME": str(workdir / "home")}
    subprocess.run([sys.executable, "-m", "poppoarc.demo.installation", str(root),
                    f"--scale={scale}"], check=True, capture_output=True, env=env)
    base = ["--root", str(root), "--store", str(store)]
    full = json.loads(poppoarc(*base, "pack", "--full", "--json", env=env).stdout)
    simulate_day(root, fraction=0.05, seed=1)
    later = json.loads(poppoarc(*base, "pack", "--incremental", "--json", env=env).stdout)
    print(f"{full['files']} files; full {full['size'] / MiB:.1f} MiB, "
          f"incremental {later['size'] / MiB:.1f} MiB")
    print("| command | peak RSS | seconds |")
    print("| --- | ---: | ---: |")
    for args in (("--version",), ("ls", later["id"], "--json"), ("ls", later["id"]),
                 ("find", "**", "--json"), ("diff", full["id"], later["id"], "--json"),
                 ("verify", full["id"]), ("verify", later["id"])):
        timing = workdir / "time.txt"
        with open(os.devnull, "w") as sink:
            subprocess.run(["/usr/bin/time", "-f", "%M %e", "-o", str(timing), sys.executable,
                            "-m", "poppoarc", *base, *args], stdout=sink,
                           stderr=subprocess.DEVNULL, env=env, check=False)
        rss, seconds = timing.read_text().split()[-2:]
        print(f"| {' '.join(args)} | {int(rss) / 1024:.0f} MiB | {float(seconds):.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("s3", "rss"))
    parser.add_argument("--bulk-mib", type=int, default=500)
    parser.add_argument("--scale", default="manyfiles")
    parser.add_argument("--workdir")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="poppoarc-browse-", dir=options.workdir) as work:
        if options.what == "s3":
            measure_s3(Path(work), options.bulk_mib)
        else:
            measure_rss(Path(work), options.scale)


if __name__ == "__main__":
    main()
