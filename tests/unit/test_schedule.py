"""Schedules: parsing, fire times across DST, due runs after downtime, config errors."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from poppoarc.policy.schedule import (Run, Schedule, ScheduleEntry, due_runs, fires_after,
                                      latest_fire, next_fires, parse_schedule, with_baseline)
from poppoarc.service.state import load_state, save_state, state_path

BERLIN, TOKYO = ZoneInfo("Europe/Berlin"), ZoneInfo("Asia/Tokyo")
UTC = timezone.utc


def one(cron: str, tz=UTC, kind="full", name="x") -> Schedule:
    return Schedule((ScheduleEntry(name, cron, kind),), tz, str(tz))


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


# -- parsing -----------------------------------------------------------------------

def test_a_string_is_one_full_schedule_and_a_map_names_several():
    plain = parse_schedule({"schedule": "0 2 * * *", "timezone": "Asia/Tokyo"})
    assert plain.entries == (ScheduleEntry("default", "0 2 * * *", "full"),)
    # with incrementals on (the seed's config and the one PoppoBuilder ships), it makes them
    chained = parse_schedule({"schedule": "0 2 * * *", "incremental": {"enabled": True}})
    assert chained.entries == (ScheduleEntry("default", "0 2 * * *", "incremental"),)
    assert plain.timezone == TOKYO and plain.enabled
    seed = parse_schedule({"enabled": False, "schedule": {
        "daily": {"cron": "0 2 * * *", "type": "incremental"},
        "weekly": {"cron": "0 3 * * 0", "type": "full"}}})
    assert [(e.name, e.type) for e in seed.entries] == [("daily", "incremental"), ("weekly", "full")]
    assert not seed.enabled
    assert parse_schedule({}) is None


def test_macros_are_accepted():
    s = one("@daily", BERLIN)
    assert [f.hour for f in list(_take(fires_after(s.entries[0], BERLIN, utc(2025, 1, 1)), 2))] == [0, 0]


@pytest.mark.parametrize("backup,fragment", [
    ({"schedule": "0 2 * *"}, "'backup.schedule': '0 2 * *': a cron expression has five fields"),
    ({"schedule": "0 25 * * *"}, "'backup.schedule': '0 25 * * *': bad hour"),
    ({"schedule": {"daily": {"cron": "61 * * * *"}}}, "'backup.schedule.daily.cron'"),
    ({"schedule": {"daily": {"cron": "0 2 * * *", "type": "differential"}}},
     "'backup.schedule.daily.type' must be \"full\", \"incremental\", \"verify\" or \"drill\""),
    ({"schedule": {"daily": {"cron": "0 2 * * *", "when": 1}}}, "unknown key 'backup.schedule.daily.when'"),
    ({"schedule": {"daily": "0 2 * * *"}}, "'backup.schedule.daily' must be an object"),
    ({"schedule": {}}, "must name at least one schedule"),
    ({"timezone": "Mars/Olympus"}, "'backup.timezone': unknown time zone 'Mars/Olympus'"),
    ({"retention": 0}, "'backup.retention' must be an integer from 1 up"),
    ({"maxBackups": True}, "'backup.maxBackups' must be an integer"),
    ({"keep": {"daily": -1}}, "'backup.keep.daily' must be an integer from 0 up"),
    ({"keep": {"hourly": 3}}, "unknown key 'backup.keep.hourly'"),
    ({"keep": {"preRestore": {"last": 2, "weeks": 1}}}, "unknown key 'backup.keep.preRestore.weeks'"),
    ({"keep": {"damaged": "no"}}, "'backup.keep.damaged' must be true/false"),
    ({"notifications": {"url": "ftp://example.invalid/x"}}, "'backup.notifications.url' must be an http"),
    ({"notifications": {"on": ["sucess"]}}, "'backup.notifications.on' must be a list of"),
    ({"notifications": {"timeoutSeconds": 0}}, "'backup.notifications.timeoutSeconds' must be an integer from 1 to 300"),
    ({"notifications": {"command": []}}, "'backup.notifications.command' must be"),
    ({"notifications": {"email": "a@b"}}, "unknown key 'backup.notifications.email'"),
])
def test_config_errors_name_the_key(cli, installation, backup, fragment):
    (installation / "config/config.json").write_text(json.dumps({"backup": backup}))
    code, _, err = cli("pack")
    assert code == 3 and fragment in err, err
    assert err.count("\n") == 1


def test_a_full_valid_config_is_accepted(cli, installation):
    (installation / "config/config.json").write_text(json.dumps({"backup": {
        "enabled": True, "timezone": "Europe/Berlin", "retention": 30, "maxBackups": 10,
        "schedule": {"daily": {"cron": "0 2 * * *", "type": "incremental"},
                     "weekly": {"cron": "0 3 * * 0", "type": "full"}},
        "keep": {"daily": 7, "weekly": 4, "monthly": 6, "damaged": True,
                 "preRestore": {"last": 3, "days": 7}},
        "notifications": {"command": ["true"], "url": "https://example.invalid/hook",
                          "heartbeatUrl": "https://example.invalid/ping",
                          "on": ["success", "failure"], "timeoutSeconds": 5}}}))
    code, out, err = cli("pack")
    assert code in (0, 1), err


# -- fire times and DST ----------------------------------------------------------------

def _take(iterator, n):
    return [next(iterator) for _ in range(n)]


def test_berlin_spring_forward_runs_the_skipped_time_once_at_the_next_minute():
    entry = ScheduleEntry("x", "30 2 * * *")
    fires = _take(fires_after(entry, BERLIN, utc(2025, 3, 28)), 3)
    assert [f.astimezone(BERLIN).strftime("%m-%d %H:%M") for f in fires] == \
        ["03-28 02:30", "03-29 02:30", "03-30 03:00"]
    assert fires[2].astimezone(UTC) == utc(2025, 3, 30, 1, 0)


def test_berlin_fall_back_runs_a_fixed_time_once_and_an_hourly_job_every_real_hour():
    daily = _take(fires_after(ScheduleEntry("x", "30 2 * * *"), BERLIN, utc(2025, 10, 25)), 3)
    # 02:30 happens twice on 10-26: the job runs at the first (CEST) one only
    assert [f.astimezone(UTC) for f in daily] == [utc(2025, 10, 25, 0, 30), utc(2025, 10, 26, 0, 30),
                                                  utc(2025, 10, 27, 1, 30)]
    hourly = _take(fires_after(ScheduleEntry("x", "0 * * * *"), BERLIN, utc(2025, 10, 25, 23, 30)), 4)
    gaps = {b.astimezone(UTC) - a.astimezone(UTC) for a, b in zip(hourly, hourly[1:])}
    assert [h.astimezone(UTC).hour for h in hourly] == [0, 1, 2, 3]      # 02:00 twice, local
    assert gaps == {timedelta(hours=1)}


def test_tokyo_has_no_dst_now_and_follows_the_1949_rules_then():
    now_fires = _take(fires_after(ScheduleEntry("x", "0 2 * * *"), TOKYO, utc(2025, 3, 1)), 300)
    assert {f.astimezone(UTC).strftime("%H:%M") for f in now_fires} == {"17:00"}
    # Japan observed DST 1948-1951: 1949-04-03 00:00 became 01:00 (tzdata), and
    # 1949-09-11 01:00 became 00:00 again
    spring = _take(fires_after(ScheduleEntry("x", "30 0 * * *"), TOKYO, utc(1949, 4, 1)), 3)
    assert spring[0].astimezone(TOKYO).strftime("%d %H:%M %z") == "02 00:30 +0900"
    assert spring[1].astimezone(TOKYO).strftime("%d %H:%M %z") == "03 01:00 +1000"
    fall = _take(fires_after(ScheduleEntry("x", "30 0 * * *"), TOKYO, utc(1949, 9, 9)), 4)
    assert len({f.astimezone(TOKYO).date() for f in fall}) == 4      # once a day, no repeat


def test_latest_fire_is_the_last_forward_fire_up_to_now():
    entry = ScheduleEntry("x", "30 2 * * *")
    # on spring-forward day the 02:30 job fired at 03:00 CEST; at 03:10 that is the latest
    now = datetime(2025, 3, 30, 3, 10, tzinfo=BERLIN)
    assert latest_fire(entry, BERLIN, now).astimezone(UTC) == utc(2025, 3, 30, 1, 0)


@settings(max_examples=60, deadline=None)
@given(tz=st.sampled_from([BERLIN, TOKYO, ZoneInfo("America/New_York")]),
       cron=st.sampled_from(["30 2 * * *", "0 2 * * *", "*/30 * * * *", "15 1,2,3 * * *", "0 3 * * 0"]),
       day=st.sampled_from([utc(2025, 3, 30), utc(2025, 10, 26), utc(2025, 3, 9), utc(2025, 11, 2),
                            utc(1949, 4, 3), utc(1949, 9, 11)]),
       offset=st.integers(-12 * 60, 36 * 60), gap=st.integers(1, 2000))
def test_latest_fire_agrees_with_plain_forward_iteration(tz, cron, day, offset, gap):
    entry = ScheduleEntry("x", cron)
    now = day + timedelta(minutes=offset, seconds=17)
    since = now - timedelta(minutes=gap)
    expected = None
    for fire in fires_after(entry, tz, since):
        if fire.astimezone(UTC) > now:
            break
        expected = fire
    assert latest_fire(entry, tz, now, since) == expected


# -- due runs ----------------------------------------------------------------------------

def test_nothing_is_due_before_a_baseline_exists():
    schedule = one("* * * * *")
    assert due_runs(schedule, {}, utc(2025, 1, 1)) == []
    assert with_baseline(schedule, {"gone": utc(2000, 1, 1)}, utc(2025, 1, 1)) == {"x": utc(2025, 1, 1)}


def test_due_exactly_at_the_fire_time_and_not_again():
    schedule = one("0 2 * * *", TOKYO)
    last = {"x": datetime(2025, 6, 18, 2, 0, tzinfo=TOKYO)}
    fire = datetime(2025, 6, 20, 2, 0, tzinfo=TOKYO)
    assert due_runs(schedule, last, fire - timedelta(seconds=1)) == \
        [Run("x", "full", datetime(2025, 6, 19, 2, 0, tzinfo=TOKYO), 0)]
    assert due_runs(schedule, {"x": fire}, fire) == []
    assert due_runs(schedule, {"x": fire}, fire + timedelta(hours=23)) == []


def test_downtime_spanning_many_fire_times_yields_one_run():
    schedule = Schedule((ScheduleEntry("daily", "0 2 * * *", "incremental"),
                         ScheduleEntry("weekly", "0 3 * * 0", "full")), BERLIN, "Europe/Berlin")
    last = {"daily": utc(2025, 6, 1, 0, 0), "weekly": utc(2025, 6, 1, 0, 0)}
    now = utc(2025, 6, 30, 12, 0)               # a Monday, after a month of downtime
    runs = due_runs(schedule, last, now)
    assert [(r.name, r.type) for r in runs] == [("weekly", "full"), ("daily", "incremental")]
    daily = runs[1]
    assert daily.fire_time == datetime(2025, 6, 30, 2, 0, tzinfo=BERLIN)
    assert daily.missed == 28       # June 2..29 (June 1 02:00 CEST is the last run itself)
    assert runs[0].fire_time == datetime(2025, 6, 29, 3, 0, tzinfo=BERLIN)
    assert runs[0].missed == 4      # Sundays June 1, 8, 15, 22
    assert due_runs(schedule, {r.name: r.fire_time for r in runs}, now) == []


def test_downtime_across_the_fall_back_hour_does_not_run_twice():
    schedule = one("30 2 * * *", BERLIN)
    first = datetime(2025, 10, 26, 2, 30, tzinfo=BERLIN)        # 00:30Z, the only run that day
    assert first.astimezone(UTC) == utc(2025, 10, 26, 0, 30)
    # at 02:45 in the second (CET) pass of that hour nothing new is due
    second_pass = utc(2025, 10, 26, 1, 45)
    assert due_runs(schedule, {"x": first}, second_pass) == []


def test_next_fires_merges_entries():
    schedule = Schedule((ScheduleEntry("a", "0 * * * *"), ScheduleEntry("b", "30 * * * *")), UTC, "UTC")
    fires = next_fires(schedule, utc(2025, 1, 1, 0, 10), 3)
    assert [(e.name, f.strftime("%H:%M")) for e, f in fires] == [("b", "00:30"), ("a", "01:00"),
                                                                 ("b", "01:30")]


# -- state file ----------------------------------------------------------------------

def test_state_round_trips_and_a_damaged_file_is_reported(tmp_path):
    state = {"format": "poppoarc-schedule/1", "entries": {"x": {"last_fire": "2025-01-01T00:00:00+00:00"}}}
    save_state(tmp_path, state)
    assert load_state(tmp_path) == (state, None)
    assert not list(tmp_path.glob("*.tmp-*"))
    state_path(tmp_path).write_text("{not json")
    loaded, problem = load_state(tmp_path)
    assert loaded["entries"] == {} and "unreadable schedule state" in problem
