"""S3 storage against a real S3-protocol server on loopback (moto's, ``tests/helpers/s3server.py``).

poppoarc talks to it over HTTP through boto3, configured only by the
standard AWS environment (``AWS_ENDPOINT_URL`` and fake credentials); nothing
is patched.  Requests are counted at the server, from its request log.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

boto3 = pytest.importorskip("boto3")
pytest.importorskip("moto")

from poppoarc.config import resolve  # noqa: E402
from poppoarc.format.head import head_frame_size  # noqa: E402
from poppoarc.pack import pack  # noqa: E402
from poppoarc.store import open_store  # noqa: E402
from poppoarc.store.s3 import MIN_PART_SIZE  # noqa: E402

from tests.helpers import CLI  # noqa: E402
from tests.helpers.craft import craft, entry  # noqa: E402
from tests.helpers import db_rows, vandalize  # noqa: E402

HERE = Path(__file__).resolve().parents[1] / "helpers"
HEAD_READ_BOUND = 13 + (1 << 20) + 3 * 8        # spec/FORMAT.md §3.3


class Server:
    def __init__(self, tmp: Path):
        self.log = tmp / "requests.jsonl"
        self.log.touch()
        self.process = subprocess.Popen([sys.executable, str(HERE / "s3server.py"), str(self.log)],
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        port = self.process.stdout.readline().strip()
        assert port.isdigit(), "the S3 test server did not start"
        self.endpoint = f"http://127.0.0.1:{port}"

    def mark(self) -> int:
        return self.log.stat().st_size

    def requests(self, since: int = 0) -> list[dict]:
        with open(self.log) as handle:
            handle.seek(since)
            return [json.loads(line) for line in handle if line.strip()]

    def control(self, what: str) -> None:
        urllib.request.urlopen(urllib.request.Request(f"{self.endpoint}/__test__/{what}",
                                                      method="POST"), timeout=10).read()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("s3server"))
    yield server
    server.stop()


@pytest.fixture
def s3(s3_server, monkeypatch, tmp_path, request):
    """The AWS environment pointing at the loopback server, and a fresh bucket."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")     # never ask 169.254.169.254
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    bucket = "poppo-" + hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:12]
    client = boto3.client("s3")
    client.create_bucket(Bucket=bucket)
    s3_server.bucket, s3_server.client = bucket, client
    return s3_server


def objects(server, prefix: str = "") -> list[str]:
    listed = server.client.list_objects_v2(Bucket=server.bucket, Prefix=prefix)
    return [o["Key"] for o in listed.get("Contents", [])]


def uploads(server) -> list[str]:
    return [u["Key"] for u in server.client.list_multipart_uploads(Bucket=server.bucket).get("Uploads", [])]


def write_config(root: Path, storage: dict) -> None:
    path = root / "config/config.json"
    document = json.loads(path.read_text())
    document["backup"]["storage"] = storage
    path.write_text(json.dumps(document))


def random_file(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))


def test_round_trip_through_s3(s3, installation_template, tmp_path, capsys):
    """pack -> list -> verify -> inspect -> unpack -> delete, all against the bucket."""
    import shutil

    root = tmp_path / "inst"
    shutil.copytree(installation_template("small"), root, symlinks=True)
    cli = CLI(root, f"s3://{s3.bucket}/prod", capsys)
    mark = s3.mark()
    packed = cli.pack("--name", "s3 round trip")
    assert packed["path"] == f"s3://{s3.bucket}/prod/{packed['id']}.poppo.tar.zst"
    assert objects(s3) == [f"prod/{packed['id']}.poppo.tar.zst"]
    head = s3.client.head_object(Bucket=s3.bucket, Key=f"prod/{packed['id']}.poppo.tar.zst")
    assert head["ContentLength"] == packed["size"]
    assert head["Metadata"]["poppoarc-writer"].endswith(f":{os.getpid()}")

    # every byte went up with its SHA-256, which the server checked
    writes = [r for r in s3.requests(mark) if r["op"] in ("PutObject", "UploadPart")]
    assert writes and all(r["checksum_ok"] for r in writes), writes
    assert sum(r["sent"] for r in writes) == packed["size"]

    code, listing = cli.json("list")
    assert code == 0 and listing["store"] == f"s3://{s3.bucket}/prod"
    assert [(a["id"], a["status"]) for a in listing["archives"]] == [(packed["id"], "ok")]
    code, verified = cli.json("verify", packed["id"][:24])
    assert code == 0 and verified["ok"] and verified["databases_checked"] >= 4
    code, inspected = cli.json("inspect", f"s3://{s3.bucket}/prod/{packed['id']}.poppo.tar.zst")
    assert code == 0 and inspected["manifest"]["name"] == "s3 round trip"

    archived_rows = db_rows(root / "data/poppo-history.db")
    vandalize(root)
    code, result = cli.json("unpack", packed["id"])
    assert code in (0, 1) and result["outcome"] == "committed", result
    assert db_rows(root / "data/poppo-history.db") == archived_rows
    assert not (root / "config/extra.json").exists() and (root / "state/locks").is_dir()
    assert not (root / "backups").exists(), "nothing may be written to a local store"
    safety = result["safety_archive"]
    assert f"prod/{safety}.poppo.tar.zst" in objects(s3)

    store = open_store(f"s3://{s3.bucket}/prod")
    store.delete(store.find(packed["id"]))
    code, listing = cli.json("list")
    assert [a["id"] for a in listing["archives"]] == [safety]
    # only ranged GETs, ever
    gets = [r for r in s3.requests(mark) if r["op"] == "GetObject"]
    assert gets and all(r["range"] and r["status"] == 206 for r in gets)


def test_multipart_upload_sends_the_head_part_last(s3, installation, tmp_path, capsys):
    random_file(installation / "state/blob.bin", 14 << 20)
    write_config(installation, {"type": "s3", "bucket": s3.bucket, "prefix": "/mp/",
                                "partSizeMiB": 5})
    mark = s3.mark()
    code, out, err = _run(installation, capsys, "pack", "--json")
    packed = json.loads(out)
    log = s3.requests(mark)
    ops = [r["op"] for r in log]
    parts = [r for r in log if r["op"] == "UploadPart"]
    numbers = [int(r["query"].split("partNumber=")[1].split("&")[0]) for r in parts]
    assert ops.index("CreateMultipartUpload") < ops.index("UploadPart")
    assert sorted(numbers) == list(range(1, len(numbers) + 1)) and len(numbers) >= 3
    assert numbers[-1] == 1, "part 1 holds the head and must be sent last"
    assert ops.index("CompleteMultipartUpload") > max(i for i, op in enumerate(ops) if op == "UploadPart")
    first = parts[-1]
    assert first["sent"] == MIN_PART_SIZE
    assert all(r["sent"] >= MIN_PART_SIZE for r, n in zip(parts, numbers) if n != max(numbers))
    assert all(r["checksum_ok"] for r in parts)
    assert sum(r["sent"] for r in parts) == packed["size"]
    assert uploads(s3) == []
    # streaming verify: a few large ranged GETs, not one per 1 MiB chunk
    mark = s3.mark()
    code, out, _ = _run(installation, capsys, "verify", packed["id"], "--json")
    assert code == 0, out
    gets = [r for r in s3.requests(mark) if r["op"] == "GetObject"]
    assert all(r["range"] for r in gets)
    assert len(gets) <= 2 + packed["size"] // (4 << 20) + 4, len(gets)
    assert sum(r["received"] for r in gets) <= packed["size"] + (2 << 20)


def _run(root: Path, capsys, *args: str):
    from poppoarc.cli import main

    capsys.readouterr()
    code = main(["--root", str(root), *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_list_of_50_archives_issues_only_bounded_ranged_reads(s3, key_home, tmp_path, capsys):
    local = tmp_path / "made"
    for number in range(50):
        # a body far larger than any head, so a full download would show
        path = craft(local, key_home, [entry("state", "dir"),
                                       entry(f"state/blob{number}.bin", data=os.urandom(1 << 20))])
        s3.client.put_object(Bucket=s3.bucket, Key=f"many/{path.name}", Body=path.read_bytes())
    sizes = {p.name: p.stat().st_size for p in local.iterdir()}
    root = tmp_path / "root"
    root.mkdir()
    mark = s3.mark()
    code, out, err = _run(root, capsys, "--store", f"s3://{s3.bucket}/many", "list", "--json")
    listing = json.loads(out)
    assert code == 0 and len(listing["archives"]) == 50
    assert all(a["status"] == "ok" for a in listing["archives"]), listing["archives"][0]
    log = s3.requests(mark)
    gets = [r for r in log if r["op"] == "GetObject"]
    assert {r["op"] for r in log} == {"ListObjects", "GetObject"}, "no HEAD per archive either"
    assert len(gets) == 50 and all(r["range"] and r["status"] == 206 for r in gets)
    per_key: dict[str, int] = {}
    for r in gets:
        start, end = map(int, r["range"][len("bytes="):].split("-"))
        assert start == 0 and end - start + 1 == r["received"]
        per_key[r["path"]] = per_key.get(r["path"], 0) + r["received"]
    for path, read in per_key.items():
        size = sizes[path.rsplit("/", 1)[1]]
        assert read <= max(64 * 1024, head_frame_size(8192)) < size // 8, (path, read, size)
        assert read <= HEAD_READ_BOUND


def test_killed_pack_leaves_no_object_and_the_next_pack_aborts_its_upload(s3, installation, key_home):
    random_file(installation / "state/blob.bin", 16 << 20)
    write_config(installation, {"type": "s3", "bucket": s3.bucket, "prefix": "kill",
                                "partSizeMiB": 5, "staleUploadHours": 0})
    s3.control("hold")
    try:
        writer = subprocess.Popen([sys.executable, "-m", "poppoarc", "--root", str(installation),
                                   "pack", "-q"], env=dict(os.environ),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while not any(r["op"] == "UploadPart" for r in s3.requests()[-50:]):
            assert time.monotonic() < deadline and writer.poll() is None, "pack never uploaded a part"
            time.sleep(0.05)
        writer.send_signal(signal.SIGKILL)
        writer.wait(10)
    finally:
        s3.control("release")
    assert objects(s3, "kill/") == [], "a killed pack left an object under a final key"
    stale = uploads(s3)
    assert len(stale) == 1 and stale[0].startswith("kill/backup-")
    result = subprocess.run([sys.executable, "-m", "poppoarc", "--root", str(installation),
                             "pack", "--json"], capture_output=True, text=True, env=dict(os.environ))
    packed = json.loads(result.stdout)
    upload = f"s3://{s3.bucket}/{stale[0]}"
    assert upload in packed["cleaned"]
    # a SIGKILL that lands after the writer made its local snapshot folder leaves that too,
    # and the next pack sweeps it: the only other thing it may have cleaned
    others = [Path(path).name for path in packed["cleaned"] if path != upload]
    assert all(name.startswith(f".poppoarc-snap-{writer.pid}-") for name in others), others
    assert uploads(s3) == []
    assert objects(s3, "kill/") == [f"kill/{packed['id']}.poppo.tar.zst"]


def test_failed_pack_aborts_its_multipart_upload(s3, installation):
    for number in range(4):
        random_file(installation / f"state/blob{number}.bin", 6 << 20)
    settings = resolve(str(installation), None, f"s3://{s3.bucket}/fail")
    mark = s3.mark()

    def interrupt(done, total, name):      # Ctrl-C once a part is up
        if name == "state/blob3.bin":
            deadline = time.monotonic() + 10
            while not any(r["op"] == "UploadPart" for r in s3.requests(mark)):
                assert time.monotonic() < deadline, "no part was uploaded"
                time.sleep(0.02)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pack(settings, progress=interrupt)
    ops = [r["op"] for r in s3.requests(mark)]
    assert "UploadPart" in ops and "AbortMultipartUpload" in ops
    assert uploads(s3) == [] and objects(s3) == []


def test_copy_local_to_s3_and_back_is_verified_at_each_destination(s3, cli, tmp_path, key_home):
    packed = cli.pack()
    original = Path(packed["path"]).read_bytes()
    url = f"s3://{s3.bucket}/migrate"
    mark = s3.mark()
    code, copied = cli.json("copy", packed["id"], "--to", url)
    assert code == 0 and copied["outcome"] == "copied", copied
    assert copied["destination"] == f"{url}/{packed['id']}.poppo.tar.zst"
    assert copied["verified"]["ok"] and copied["verified"]["databases_checked"] >= 4
    gets = [r for r in s3.requests(mark) if r["op"] == "GetObject"]
    assert sum(r["received"] for r in gets) >= len(original), "verify read the copy back"
    body = s3.client.get_object(Bucket=s3.bucket, Key=f"migrate/{packed['id']}.poppo.tar.zst")["Body"]
    assert body.read() == original

    code, again = cli.json("copy", packed["id"], "--to", url)
    assert code == 0 and again["outcome"] == "present"

    # the new machine: copy down from the bucket by URL, then verify and unpack locally
    new_store = tmp_path / "new-machine-store"
    code, down = cli.json("copy", copied["destination"], "--to", str(new_store))
    assert code == 0 and down["outcome"] == "copied"
    assert (new_store / f"{packed['id']}.poppo.tar.zst").read_bytes() == original


def test_copy_refuses_a_damaged_source_and_leaves_nothing(s3, cli):
    packed = cli.pack()
    path = Path(packed["path"])
    data = bytearray(path.read_bytes())
    data[-2000] ^= 0x40                # inside the index frame: only the checksum sees it early
    path.write_bytes(bytes(data))
    code, out, err = cli("copy", packed["id"], "--to", f"s3://{s3.bucket}/bad")
    assert code == 13 and err.count("\n") == 1 and "nothing was copied" in err
    assert objects(s3) == [] and uploads(s3) == []


def test_s3_problems_are_one_line_errors(s3, cli, monkeypatch, installation):
    code, out, err = _run(installation, cli.capsys, "--store", "s3://no-such-bucket-here/x", "list")
    assert code == 24 and err.count("\n") == 1 and "does not exist" in err
    code, out, err = _run(installation, cli.capsys, "--store", "s3://no-such-bucket-here/x", "pack")
    assert code == 24 and err.count("\n") == 1 and "does not exist" in err
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    code, out, err = _run(installation, cli.capsys, "--store", f"s3://{s3.bucket}/x", "list")
    assert code == 24 and "no AWS credentials" in err and err.count("\n") == 1
    monkeypatch.setitem(sys.modules, "boto3", None)        # as if not installed
    code, out, err = _run(installation, cli.capsys, "--store", f"s3://{s3.bucket}/x", "pack")
    assert code == 8 and "pip install 'poppoarc[s3]'" in err and err.count("\n") == 1


def test_config_file_storage_and_credentials_warning(s3, installation, capsys, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    write_config(installation, {"type": "s3", "bucket": s3.bucket, "prefix": "cfg",
                                "region": "us-east-1", "accessKeyId": "testing",
                                "secretAccessKey": "testing"})
    code, out, err = _run(installation, capsys, "pack")
    assert code == 0 and "backup.storage.accessKeyId holds a credential" in err  # a notice
    assert len(objects(s3, "cfg/")) == 1
    write_config(installation, {"type": "s3", "prefix": "cfg"})
    code, out, err = _run(installation, capsys, "pack")
    assert code == 3 and "backup.storage.bucket' is required" in err
    write_config(installation, {"type": "s3", "bucket": s3.bucket, "endpoint": "x"})
    code, out, err = _run(installation, capsys, "pack")
    assert code == 3 and "unknown key 'backup.storage.endpoint'" in err


def test_pack_of_the_medium_installation_to_s3_stays_under_200_mb(s3, installation_template, tmp_path):
    root = installation_template("medium")
    # VmHWM is the peak RSS of this process's own address space.  (ru_maxrss is not:
    # Linux carries it over exec from the forking parent, here the whole test run.)
    probe = ("import re, sys; from poppoarc.cli import main; code = main(sys.argv[1:]); "
             "status = open('/proc/self/status').read(); "
             "print(re.search(r'VmHWM:\\s+(\\d+) kB', status).group(1), file=sys.stderr); "
             "sys.exit(code)")
    mark = s3.mark()
    result = subprocess.run([sys.executable, "-c", probe, "--root", str(root), "--store",
                             f"s3://{s3.bucket}/medium", "pack", "--json"],
                            capture_output=True, text=True, env=dict(os.environ), timeout=300)
    assert result.returncode in (0, 1), result.stderr
    packed = json.loads(result.stdout)
    peak_mb = int(result.stderr.strip().splitlines()[-1]) / 1024
    parts = [r for r in s3.requests(mark) if r["op"] == "UploadPart"]
    assert packed["size"] > 100e6 and len(parts) > 10
    print(f"\npeak RSS of pack to S3 (medium, {packed['size'] / 1e6:.0f} MB archive): {peak_mb:.0f} MB")
    assert peak_mb < 200, peak_mb
    assert not (root / "backups").exists()


def test_prune_applies_the_same_rules_to_a_bucket(s3, installation, capsys):
    """Prune on S3: the retention decision, then DeleteObject for the doomed ones only."""
    write_config(installation, {"type": "s3", "bucket": s3.bucket, "prefix": "prune"})
    config = json.loads((installation / "config/config.json").read_text())
    config["backup"]["maxBackups"] = 2
    (installation / "config/config.json").write_text(json.dumps(config))
    for _ in range(3):
        code, _out, err = _run(installation, capsys, "pack", "--no-prune", "-q")
        assert code in (0, 1), err
    code, out, err = _run(installation, capsys, "prune", "--dry-run", "--json")
    plan = json.loads(out)
    assert code in (0, 1) and len(plan["would_delete"]) == 1 and plan["deleted"] == []
    code, out, err = _run(installation, capsys, "prune", "--json")
    assert code in (0, 1) and json.loads(out)["deleted"] == plan["would_delete"]
    code, out, _ = _run(installation, capsys, "list", "--json")
    remaining = [a["id"] for a in json.loads(out)["archives"]]
    assert len(remaining) == 2 and plan["would_delete"][0] not in remaining


def test_an_incremental_chain_in_a_bucket(s3, installation, tmp_path, capsys):
    """pack --incremental finds its parent in the bucket; unpack reads the chain from it."""
    from poppoarc.demo.changes import simulate_day

    cli = CLI(installation, f"s3://{s3.bucket}/prod", capsys)
    full = cli.pack("--full")
    simulate_day(installation, seed=1)
    incremental = cli.pack("--incremental")
    assert incremental["incremental"] and incremental["parent"] == full["id"]
    assert incremental["size"] < full["size"] / 2
    code, verified = cli.json("verify", incremental["id"])
    assert code == 0 and verified["chain"] == [full["id"]]
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    code, result = CLI(fresh, cli.store, capsys).json("unpack", incremental["id"], "--skip-backup")
    assert code in (0, 1) and result["outcome"] == "committed", result
    assert db_rows(fresh / "data/poppo-history.db") == db_rows(installation / "data/poppo-history.db")
    s3.client.delete_object(Bucket=s3.bucket, Key=f"prod/{full['id']}.poppo.tar.zst")
    code, _, err = cli("verify", incremental["id"])
    assert code == 17 and full["id"] in err and f"s3://{s3.bucket}/prod" in err


def test_a_pack_with_a_helper_process_goes_to_a_bucket(s3, installation, capsys, monkeypatch):
    """The helper's part is copied into the multipart upload like any body bytes (its
    temporary files go to $TMPDIR: a bucket has no directory beside the archive)."""
    from poppoarc.pack.share import Share
    from poppoarc.parallel import TWO_PROCESS, Parallelism, Tuning
    parts = []
    real = Share.result

    def result(self):
        parts.append(real(self))
        return parts[-1]

    monkeypatch.setattr(Share, "result", result)
    cli = CLI(installation, f"s3://{s3.bucket}/prod", capsys,
              Parallelism(TWO_PROCESS, 2, Tuning(plan=("agents", 20))))
    mark = s3.mark()
    packed = cli.pack()
    assert len(parts) == 1 and parts[0] is not None and parts[0].files > 0
    writes = [r for r in s3.requests(mark) if r["op"] in ("PutObject", "UploadPart")]
    assert writes and all(r["checksum_ok"] for r in writes)
    assert sum(r["sent"] for r in writes) == packed["size"]
    code, verified = cli.json("verify", packed["id"])
    assert code == 0 and verified["ok"]


def test_protection_marks_in_a_bucket(s3, installation, capsys, tmp_path):
    """protect/unprotect on S3: an object beside the archive; prune keeps it, list marks it,
    copy carries it both ways."""
    cli = CLI(installation, f"s3://{s3.bucket}/marks", capsys)
    config = json.loads((installation / "config/config.json").read_text())
    config["backup"]["maxBackups"] = 1
    (installation / "config/config.json").write_text(json.dumps(config))
    first = cli.pack("--protect", "--no-prune")["id"]
    assert f"marks/{first}.poppo.protected" in objects(s3, "marks/")
    second = cli.pack("--no-prune")["id"]
    third = cli.pack("--no-prune")["id"]
    code, done = cli.json("prune")
    assert code == 0 and done["deleted"] == [second]
    code, listed = cli.json("list")
    assert {a["id"]: a["protected"] for a in listed["archives"]} == {first: True, third: False}
    local = tmp_path / "down"
    code, copied = cli.json("copy", first, "--to", str(local))
    assert code == 0 and copied["protected"] and (local / f"{first}.poppo.protected").is_file()
    code, lifted = cli.json("unprotect", first)
    assert code == 0 and lifted["changed"]
    assert f"marks/{first}.poppo.protected" not in objects(s3, "marks/")
    code, up = CLI(installation, local, capsys).json("copy", first, "--to",
                                                     f"s3://{s3.bucket}/again")
    assert code == 0 and up["outcome"] == "copied" and up["protected"]
    assert f"again/{first}.poppo.protected" in objects(s3, "again/")


def test_copy_takes_a_chain_to_the_bucket_and_back(s3, cli, tmp_path):
    full = cli.pack("--full")
    (cli.root / "state/changed.txt").write_text("a change")
    newest = cli.pack("--incremental")
    assert newest["parent"] == full["id"]
    url = f"s3://{s3.bucket}/chain"
    code, up = cli.json("copy", newest["id"], "--to", url)
    assert code == 0, up
    assert [(a["id"], a["outcome"]) for a in up["ancestors"]] == [(full["id"], "copied")]
    assert up["verified"]["chain"] == [full["id"]]
    assert objects(s3) == sorted(f"chain/{a['id']}.poppo.tar.zst" for a in (full, newest))
    new_store = tmp_path / "new-machine-store"
    code, down = cli.json("copy", up["destination"], "--to", str(new_store))
    assert code == 0 and [a["outcome"] for a in down["ancestors"]] == ["copied"]
    assert sorted(p.name for p in new_store.iterdir() if p.name != ".poppoarc-store.lock") == sorted(
        f"{a['id']}.poppo.tar.zst" for a in (full, newest))


def test_verify_all_on_a_bucket_records_each_archive_for_doctor(s3, installation, capsys,
                                                                 key_home):
    """verify of an S3 store used to be never recorded: doctor said 'never verified'
    forever.  verify --all records each archive's complete check on this machine."""
    write_config(installation, {"type": "s3", "bucket": s3.bucket, "prefix": "all"})
    ids = []
    for flag in ("--full", "--incremental", "--full"):
        (installation / "state/changed.txt").write_text(flag)
        code, out, err = _run(installation, capsys, "pack", flag, "--json")
        assert code in (0, 1), err
        ids.append(json.loads(out)["id"])

    def doctor_verified():
        code, out, err = _run(installation, capsys, "doctor", "--json")
        return next(c for c in json.loads(out)["checks"] if c["id"] == "verified")
    assert doctor_verified()["status"] == "warn"
    code, out, err = _run(installation, capsys, "verify", "--all", "--json")
    document = json.loads(out)
    assert code == 0 and document["ok"] == 3 and document["recorded"] == 3, document
    assert document["bodies_read"] == 3
    assert document["record"].startswith(str(key_home / "verified"))
    assert doctor_verified()["status"] == "ok"

    # one archive damaged in the bucket: named, exit 10, the others recorded again
    key = f"all/{ids[2]}.poppo.tar.zst"
    data = bytearray(s3.client.get_object(Bucket=s3.bucket, Key=key)["Body"].read())
    data[-2000] ^= 0x40
    s3.client.put_object(Bucket=s3.bucket, Key=key, Body=bytes(data))
    code, out, err = _run(installation, capsys, "verify", "--all")
    assert code == 10, err
    assert f"  FAILED   {ids[2]}  " in out and f"{ids[2]} fails verification" in err
    assert out.splitlines()[-1].startswith("2 verified, 1 failed, 0 skipped; 2 recorded")
    found = doctor_verified()
    assert found["status"] == "fail" and len(found["details"]) == 1, found
    assert found["details"][0].startswith(f"{ids[2]}: ")
    # verify of one archive of the bucket is recorded too
    code, out, err = _run(installation, capsys, "verify", ids[1], "--json")
    assert code == 0 and json.loads(out)["recorded"] is True


def _fetched(s3, mark: int) -> tuple[int, set[str]]:
    """Bytes the server sent for GetObject since ``mark``, and the operations seen."""
    log = s3.requests(mark)
    return sum(r["received"] for r in log if r["op"] == "GetObject"), {r["op"] for r in log}


def test_browsing_a_bucket_reads_heads_indexes_and_one_files_frames(s3, installation, tmp_path,
                                                                    capsys):
    """ls, find, diff, dump and a partial restore against a bucket (issue 28).  ls, find
    and diff read heads and indexes only; dump of a file with its own digest reads its
    target's frames up to it (here: 1 MiB behind 24 MiB of logs), not the archive, and the
    same from the ancestor holding it when an incremental refers to it."""
    random_file(installation / "logs/bulk.log.gz", 24 << 20)
    random_file(installation / "config/big-settings.json", 1 << 20)
    wanted = (installation / "config/big-settings.json").read_bytes()
    import sqlite3
    history = installation / "data/poppo-history.db"
    with sqlite3.connect(history) as connection:    # large enough for a page delta
        connection.executemany(
            "INSERT INTO process_history (task_id, task_type, started_at, status, error) "
            "VALUES (?, 'issue', '2025-06-19', 'done', ?)",
            ((f"t-{n}", os.urandom(200).hex()) for n in range(4000)))
    cli = CLI(installation, f"s3://{s3.bucket}/prod", capsys)
    full = cli.pack("--full")
    (installation / "state/added-later.json").write_text('{"later": true}\n')
    with sqlite3.connect(history) as connection:
        connection.execute("INSERT INTO process_history (task_id, task_type, started_at, "
                           "status) VALUES ('t-later', 'issue', '2025-06-20', 'done')")
    rows = db_rows(history)
    incremental = cli.pack("--incremental")
    entries = cli.json("inspect", incremental["id"], "--entries")[1]["entries"]
    assert [e for e in entries if e["path"] == "data/poppo-history.db"][0].get("delta")
    assert incremental["parent"] == full["id"] and full["size"] > 24 << 20

    mark = s3.mark()
    code, verified = cli.json("verify", full["id"])     # the baseline: the whole archive
    baseline, _ = _fetched(s3, mark)
    assert code == 0 and baseline >= full["size"]

    for args in (("ls", incremental["id"]), ("find", "config/**"),
                 ("diff", full["id"], incremental["id"])):
        mark = s3.mark()
        code, document = cli.json(*args)
        read, operations = _fetched(s3, mark)
        assert code == 0, document
        assert read < 2 << 20, (args, read)             # heads and indexes, never a body
        assert operations <= {"GetObject", "ListObjects", "HeadObject"}
    code, difference = cli.json("diff", full["id"], incremental["id"])
    added = [c["path"] for t in difference["targets"] for c in t["changes"]
             if c["action"] == "added"]
    assert added == ["state/added-later.json"]

    for archive in (full, incremental):                 # its own body; then its parent's
        out = tmp_path / f"dump-{archive['id']}.json"
        mark = s3.mark()
        code, dumped = cli.json("dump", archive["id"], "config/big-settings.json", "-o", str(out))
        read, _ = _fetched(s3, mark)
        assert code == 0, dumped
        assert out.read_bytes() == wanted and dumped["held_by"] == full["id"]
        assert dumped["verified_by"] == "sha256"
        assert read < 4 << 20 < baseline // 6, (read, baseline)
        assert dumped["bytes_read"] == read

    # a database stored as page deltas: the two links' database frames, not their bodies
    out = tmp_path / "history.db"
    mark = s3.mark()
    code, dumped = cli.json("dump", incremental["id"], "data/poppo-history.db", "-o", str(out))
    read, _ = _fetched(s3, mark)
    assert code == 0 and dumped["verified_by"] == "sha256", dumped
    assert read < 4 << 20, read
    assert db_rows(out) == rows

    # a partial restore from the bucket changes that one file
    (installation / "config/big-settings.json").write_bytes(b"broken")
    code, result = cli.json("unpack", incremental["id"], "--include",
                            "config/big-settings.json", "--skip-backup")
    assert code in (0, 1) and result["outcome"] == "committed", result
    assert (installation / "config/big-settings.json").read_bytes() == wanted


def test_consolidate_into_a_bucket_publishes_a_verified_archive(s3, installation, capsys):
    """consolidate packs into a staging store on this machine, verifies it there, and only
    then copies it into the bucket (where copy verifies it once more)."""
    from poppoarc.demo.changes import simulate_day

    cli = CLI(installation, f"s3://{s3.bucket}/prod", capsys)
    full = cli.pack("--full")
    simulate_day(installation, seed=1)
    incremental = cli.pack("--incremental")
    code, made = cli.json("consolidate", incremental["id"], "--protect")
    assert code == 0, made
    assert made["protected"] and made["path"].startswith(f"s3://{s3.bucket}/prod/")
    code, listed = cli.json("list")
    assert {row["id"] for row in listed["archives"]} == {full["id"], incremental["id"], made["id"]}
    assert next(r for r in listed["archives"] if r["id"] == made["id"])["protected"]
    code, verified = cli.json("verify", made["id"])
    assert code == 0 and verified["chain"] == []
