"""Notifications against a real HTTP server on 127.0.0.1 and a real command; pre-backup checks."""

from __future__ import annotations

import json
import sqlite3
import time

import pytest

from poppoarc.config import resolve
from poppoarc.service import notify
from poppoarc.service.checks import pre_backup_checks
from poppoarc.service.notify import Notifications

from tests.helpers import http_server


def success(**kw):
    return notify.payload("success", archive_id="backup-x", size=10, duration_ms=5,
                          warnings_count=1, schedule=["daily"], **kw)


def test_url_receives_the_json_payload_and_heartbeat_is_pinged():
    with http_server() as (httpd, base):
        config = Notifications(url=f"{base}/hook?token=s3cret", heartbeat_url=f"{base}/ping",
                               events=("success", "failure"))
        assert notify.send(config, success()) == []
        (method, path, headers, body), (m2, p2, _, _) = httpd.seen
    assert (method, path, m2, p2) == ("POST", "/hook?token=s3cret", "GET", "/ping")
    assert headers["Content-Type"] == "application/json"
    document = json.loads(body)
    assert set(document) == {"event", "kind", "archive_id", "size", "duration_ms",
                             "warnings_count", "error", "host", "time", "schedule", "tool"}
    assert document["event"] == "success" and document["archive_id"] == "backup-x"


def test_events_filter_and_heartbeat_only_on_success():
    with http_server() as (httpd, base):
        config = Notifications(url=f"{base}/hook", heartbeat_url=f"{base}/ping")   # on: failure
        notify.send(config, success())
        assert [s[1] for s in httpd.seen] == ["/ping"]
        notify.send(config, notify.payload("failure", error="StoreError: disk full"))
        assert [s[1] for s in httpd.seen] == ["/ping", "/hook"]
        assert json.loads(httpd.seen[1][3])["error"] == "StoreError: disk full"
        # a drill's success is no backup: the dead-man's switch is not pinged for it
        notify.send(config, success(kind="drill"))
        assert [s[1] for s in httpd.seen] == ["/ping", "/hook"]


def test_failures_are_reported_never_raised_and_urls_are_redacted(caplog):
    with http_server() as (httpd, base):
        config = Notifications(url=f"{base}/fail/secret-token", events=("success",), timeout=1)
        problems = notify.send(config, success())
        assert problems == [f"POST {base} answered HTTP 500"]
        slow = Notifications(url=f"{base}/slow/secret-token", events=("success",), timeout=1)
        started = time.monotonic()
        problems = notify.send(slow, success())
        assert time.monotonic() - started < 1.9 and "timed out" in problems[0]
    unreachable = Notifications(url="http://127.0.0.1:9/x", events=("success",), timeout=1)
    assert "failed" in notify.send(unreachable, success())[0]
    assert "secret-token" not in caplog.text and "notification failed" in caplog.text


def test_command_gets_the_payload_on_stdin_and_env(tmp_path):
    out = tmp_path / "out.json"
    config = Notifications(command=f"cat > {out}; echo \"$POPPOARC_EVENT\" >> {tmp_path}/event",
                           events=("success",))
    assert notify.send(config, success()) == []
    assert json.loads(out.read_text())["archive_id"] == "backup-x"
    assert (tmp_path / "event").read_text() == "success\n"
    failing = Notifications(command=["sh", "-c", "echo boom >&2; exit 3"], events=("success",))
    assert notify.send(failing, success()) == ["notification sh exited with status 3: boom"]
    slow = Notifications(command="sleep 5", events=("success",), timeout=1)
    assert "did not finish within 1 s" in notify.send(slow, success())[0]
    missing = Notifications(command=["/nonexistent/notify"], events=("success",))
    assert "could not start" in notify.send(missing, success())[0]


def test_payload_carries_no_paths_or_secrets():
    document = notify.payload("failure", error="x" * 1000)
    assert len(document["error"]) == notify.MAX_ERROR_CHARS
    assert document["time"].endswith("Z")


@pytest.fixture
def settings_for(installation):
    return lambda: resolve(str(installation))


def test_pre_backup_checks_find_bad_json_and_a_corrupt_database(installation, settings_for):
    assert pre_backup_checks(settings_for()) == []
    (installation / "config/agents").mkdir(exist_ok=True)
    (installation / "config/agents/broken.json").write_text('{"a": 1,,}')
    db = installation / "data/broken.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE t(x)")
    conn.executemany("INSERT INTO t VALUES (?)", [(str(i) * 50,) for i in range(2000)])
    conn.commit()
    conn.close()
    data = bytearray(db.read_bytes())
    data[4096 * 2 + 100: 4096 * 2 + 400] = b"\xff" * 300      # garbage in a b-tree page
    db.write_bytes(bytes(data))
    problems = pre_backup_checks(settings_for())
    assert any(p.startswith("config/agents/broken.json:1:9: invalid JSON") for p in problems), problems
    assert any(p.startswith("data/broken.db: quick_check failed") for p in problems), problems
    assert all("\n" not in p for p in problems)
