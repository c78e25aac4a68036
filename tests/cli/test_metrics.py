"""Metrics: the Prometheus text format after every pack, verify and prune, and
``poppoarc metrics`` (issue 31).  Parsed by prometheus_client's own text parser."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from poppoarc.service import metrics
from poppoarc.store import runs

parser = pytest.importorskip("prometheus_client.parser")


def configure(root: Path, **backup) -> None:
    path = root / "config/config.json"
    document = json.loads(path.read_text())
    document.setdefault("backup", {}).update(backup)
    path.write_text(json.dumps(document))


def parse(text: str) -> dict[tuple, float]:
    """(name, frozenset(labels)) -> value, through the reference parser."""
    samples = {}
    for family in parser.text_string_to_metric_families(text):
        assert family.type == "gauge" and family.documentation
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples, name, **labels):
    return samples[("poppoarc_" + name, frozenset(labels.items()))]


def test_every_run_updates_the_textfile_and_metrics_prints_it(cli, installation, tmp_path):
    prom = tmp_path / "textfile" / "poppoarc.prom"
    prom.parent.mkdir()
    configure(installation, metrics={"file": str(prom)}, maxBackups=1)
    first = cli.pack("--protect")
    samples = parse(prom.read_text())
    assert value(samples, "last_success_timestamp_seconds", kind="pack") > 0
    assert value(samples, "last_failure_timestamp_seconds", kind="pack") == 0
    assert value(samples, "last_run_success", kind="pack") == 1
    assert value(samples, "last_archive_size_bytes") == first["size"]
    store = {"store": str(cli.store), "role": "primary"}
    assert value(samples, "archives", **store) == 1
    assert value(samples, "protected_archives", **store) == 1
    assert value(samples, "store_up", **store) == 1
    assert stat.S_IMODE(prom.stat().st_mode) == 0o644       # the collector's user reads it
    assert os.listdir(prom.parent) == ["poppoarc.prom"]      # written by rename, no temp left

    code, out, _ = cli("verify", first["id"])
    code, out, err = cli("verify", "backup-nothing-like-this")
    assert code not in (0, 1)
    second = cli.pack()
    code, pruned = cli.json("prune")
    assert code == 0
    samples = parse(prom.read_text())
    assert value(samples, "last_success_timestamp_seconds", kind="verify") > 0
    assert value(samples, "last_failure_timestamp_seconds", kind="verify") >= \
        value(samples, "last_success_timestamp_seconds", kind="verify")
    assert value(samples, "last_run_success", kind="verify") == 0
    assert value(samples, "last_success_timestamp_seconds", kind="prune") > 0
    assert value(samples, "last_archive_size_bytes") == second["size"]
    assert value(samples, "archives", **store) == 2        # the protected one stays
    assert value(samples, "last_success_timestamp_seconds", kind="drill") == 0

    code, out, _ = cli("metrics")
    assert code == 0 and out == prom.read_text()
    code, document = cli.json("metrics")
    assert code == 0 and document["file"] == str(prom) and document["text"] == out
    names = {m["name"] for m in document["metrics"]}
    assert {"poppoarc_last_success_timestamp_seconds", "poppoarc_archives"} <= names
    record = runs.load(cli.store)
    assert record["verify"]["problem"] and "backup-nothing-like-this" in record["verify"]["problem"]


def test_a_metrics_file_that_cannot_be_written_is_a_warning_not_a_failure(cli, installation,
                                                                           tmp_path):
    prom = tmp_path / "missing-dir" / "poppoarc.prom"
    configure(installation, metrics={"file": str(prom)})
    code, out, err = cli("pack")
    assert code == 1 and f"{prom}: cannot write metrics" in err
    assert len(list(cli.store.glob("*.poppo.tar.zst"))) == 1


def test_label_values_are_escaped_as_the_format_requires():
    odd = 'C:\\store "x"\nnext'
    text = metrics.exposition({}, [metrics.StoreFacts(odd, "replica", 3, 1, 10),
                                   metrics.StoreFacts("s3://down", "replica", None, None, None)])
    samples = parse(text)
    assert value(samples, "archives", store=odd, role="replica") == 3
    assert value(samples, "store_up", store="s3://down", role="replica") == 0
    assert ("poppoarc_archives", frozenset({"store": "s3://down", "role": "replica"}.items())) \
        not in samples


def test_a_damaged_runs_record_is_a_record_lost(cli, installation):
    (cli.store).mkdir(parents=True, exist_ok=True)
    (cli.store / runs.RUNS_NAME).write_text('{"format": "poppoarc-runs/1", "kinds": '
                                            '{"pack": {"last_success": "yesterday"}, '
                                            '"bogus": 5, "verify": [1]}}')
    code, out, _ = cli("metrics")
    assert code == 0
    assert value(parse(out), "last_success_timestamp_seconds", kind="pack") == 0
    cli.pack()
    assert runs.load(cli.store)["pack"]["last_success"] > 0


@pytest.mark.parametrize("junk", ["directory", "fifo", "symlink-out"])
def test_junk_in_place_of_the_runs_record_stops_nothing(cli, installation, tmp_path, junk):
    """Whatever lies in the store under the record's name: pack and verify do their work
    (a record that cannot be written is a warning), metrics and doctor still answer, and
    nothing outside the store is written through it."""
    cli.store.mkdir(parents=True)
    path = cli.store / runs.RUNS_NAME
    outside = tmp_path / "elsewhere.json"
    outside.write_text("precious")
    if junk == "directory":
        path.mkdir()
    elif junk == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to(outside)
    code, out, err = cli("pack")
    assert code in (0, 1) and len(list(cli.store.glob("*.poppo.tar.zst"))) == 1, err
    if junk == "directory":
        assert "cannot record this pack" in err
    code, out, err = cli("metrics")
    assert code == 0 and "poppoarc_archives" in out
    code, _, err = cli("doctor")
    assert code in (0, 1, 7) and "Traceback" not in err
    assert outside.read_text() == "precious"
