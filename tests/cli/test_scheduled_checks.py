"""Schedule entries of type verify and drill (issue 31): the same cron, time-zone,
missed-run and notification rules as backups, at an accelerated (fake) clock as the
scheduler's own tests run."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

from poppoarc.archives.listing import list_archives
from poppoarc.config import resolve
from poppoarc.service.scheduler import Clock, Scheduler
from poppoarc.service.state import load_state
from poppoarc.store import runs, verified

T0 = datetime(2025, 6, 1, 0, 0, tzinfo=timezone.utc)        # a Sunday


class InstantClock(Clock):
    """Time moves only when the test moves it; sleeps pass at once."""

    def __init__(self, start: datetime):
        self.t = start

    def now(self) -> datetime:
        return self.t

    def sleep(self, seconds, stopping) -> None:
        self.t += timedelta(seconds=seconds)


SCHEDULE = {"daily": {"cron": "0 2 * * *", "type": "incremental"},
            "weekly": {"cron": "0 3 * * 0", "type": "full"},
            "nightly-verify": {"cron": "30 4 * * *", "type": "verify"},
            "weekly-drill": {"cron": "0 5 * * 0", "type": "drill"}}


def configure(root: Path, log: Path) -> None:
    (root / "config/config.json").write_text(json.dumps({"backup": {
        "schedule": SCHEDULE, "timezone": "Asia/Tokyo",
        "incremental": {"enabled": True, "maxIncrementals": 10},
        "drill": {"maxAgeDays": 7},
        "notifications": {"command": f"cat >> {log}; echo >> {log}",
                          "on": ["success", "failure"]}}}))


def test_daily_incremental_weekly_full_nightly_verify_weekly_drill(installation, tmp_path):
    store, log = tmp_path / "store", tmp_path / "events.jsonl"
    configure(installation, log)
    settings = resolve(str(installation), store=str(store))
    clock = InstantClock(T0)                    # 09:00 JST, Sunday June 1
    assert Scheduler(settings, clock=clock).run_once() == []        # the baseline

    nights = {}
    for day in [*range(1, 9), 12, 13, 14, 15]:  # 09:00 JST each day; down June 9 to 11
        clock.t = T0 + timedelta(days=day)
        records = Scheduler(settings, clock=clock).run_once()
        assert all(r.ok for r in records), [r.error for r in records]
        nights[day] = records

    for day, records in nights.items():
        sunday = (T0 + timedelta(days=day)).weekday() == 6
        # the backup first (the weekly full stands for the daily on Sundays), then the
        # verify of what is new (exactly the new archive), then on Sundays the drill
        assert [r.type for r in records] == \
            ["full" if sunday else "incremental", "verify"] + (["drill"] if sunday else [])
        assert sorted(records[0].names) == (["daily", "weekly"] if sunday else ["daily"])
        backup, verify = records[0], records[1]
        assert verify.checked == [backup.archive_id]
        if sunday:
            assert records[2].archive_id == backup.archive_id       # the newest, drilled
            assert records[2].names == ["weekly-drill"]
    after_downtime = nights[12]
    # the nights of June 9, 10 and 11 were missed: one run stands for them and the 12th
    assert [(r.names, r.missed) for r in after_downtime] == [(["daily"], 3),
                                                             (["nightly-verify"], 3)]
    rows = list_archives(settings)
    # full: the store's first archive (June 2) and the Sundays' (June 8 and 15)
    assert len(rows) == 12 and [r.incremental for r in rows].count(False) == 3
    assert {r.id for r in rows} <= set(verified.load(store))      # every archive, once
    state = load_state(store)[0]["entries"]
    assert state["weekly-drill"]["result"] == "success"
    assert state["weekly-drill"]["last_fire"] == "2025-06-14T20:00:00+00:00"  # 05:00 JST 15th
    assert state["nightly-verify"]["result"] == "success"
    assert {k: v["last_ok"] for k, v in runs.load(store).items()} == \
        {"pack": True, "prune": True, "verify": True, "drill": True}
    events = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    assert [e["kind"] for e in events].count("drill") == 2
    assert {e["kind"] for e in events} == {"pack", "verify", "drill"}
    assert all(e["event"] == "success" for e in events)
    assert [e["schedule"] for e in events if e["kind"] == "drill"] == [["weekly-drill"]] * 2


def test_a_scheduled_verify_reports_a_damaged_archive(installation, tmp_path):
    store, log = tmp_path / "store", tmp_path / "events.jsonl"
    configure(installation, log)
    settings = resolve(str(installation), store=str(store))
    clock = InstantClock(T0)
    Scheduler(settings, clock=clock).run_once()
    clock.t = T0 + timedelta(days=1)
    backup, checked = Scheduler(settings, clock=clock).run_once()
    assert backup.ok and checked.ok and checked.checked == [backup.archive_id]
    path = next(store.glob(backup.archive_id + "*"))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x55
    path.write_bytes(bytes(data))
    (store / verified.RECORD_NAME).unlink()             # as if never verified
    clock.t = T0 + timedelta(days=2)
    backup2, checked = Scheduler(settings, clock=clock).run_once()
    assert not checked.ok and checked.error.exit_code in (13, 14)
    assert backup.archive_id in str(checked.error)
    events = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    failure = [e for e in events if e["event"] == "failure"]
    assert failure and failure[-1]["kind"] == "verify"
    assert load_state(store)[0]["entries"]["nightly-verify"]["result"] == "failure"
