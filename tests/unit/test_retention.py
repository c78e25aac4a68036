"""Retention: the pure decision function, by example and by property."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from poppoarc.policy import retention as r
from poppoarc.policy.retention import ArchiveInfo, RetentionPolicy, decide

NOW = datetime(2025, 6, 19, 12, 0, tzinfo=timezone.utc)


def archive(n: int, days_ago: float, kind="scheduled", **kw) -> ArchiveInfo:
    return ArchiveInfo(f"a{n:03d}", NOW - timedelta(days=days_ago), kind, **kw)


def kept(decisions) -> set[str]:
    return {d.id for d in decisions if not d.delete}


def by_id(decisions) -> dict:
    return {d.id: d for d in decisions}


# -- examples ------------------------------------------------------------------

def test_no_policy_deletes_nothing():
    archives = [archive(i, i) for i in range(20)]
    decisions = decide(archives, RetentionPolicy(), NOW)
    assert kept(decisions) == {a.id for a in archives}
    assert all(r.KEEP_NO_POLICY in d.rules for d in decisions)


def test_seed_policy_max_backups_and_retention_are_both_bounds():
    archives = [archive(i, i * 4) for i in range(15)]      # 0, 4, 8, ... 56 days old
    decisions = by_id(decide(archives, RetentionPolicy(max_backups=10, retention_days=30), NOW))
    # younger than 30 days: a000..a007 (0..28 days); within 10: a000..a009
    assert {i for i, d in decisions.items() if not d.delete} == {f"a{i:03d}" for i in range(8)}
    assert decisions["a008"].rules == (r.DELETE_EXPIRED,)
    assert set(decisions["a012"].rules) == {r.DELETE_EXPIRED, r.DELETE_OVER_MAX}
    assert "older than 30 days" in decisions["a012"].reason


def test_max_backups_alone_keeps_the_newest_n():
    archives = [archive(i, i) for i in range(6)]
    decisions = by_id(decide(archives, RetentionPolicy(max_backups=2), NOW))
    assert kept(decisions.values()) == {"a000", "a001"}
    assert "number 3 by age, maxBackups 2" in decisions["a002"].reason


def test_buckets_keep_the_newest_of_each_day_week_and_month_in_the_zone():
    tokyo = ZoneInfo("Asia/Tokyo")
    # 2025-06-18 16:00Z is already 06-19 01:00 in Tokyo: the zone decides the day
    stamps = {"late-utc": datetime(2025, 6, 18, 16, 0, tzinfo=timezone.utc),
              "early": datetime(2025, 6, 18, 14, 0, tzinfo=timezone.utc),
              "earlier": datetime(2025, 6, 18, 1, 0, tzinfo=timezone.utc),
              "may": datetime(2025, 5, 20, 1, 0, tzinfo=timezone.utc)}
    archives = [ArchiveInfo(k, v) for k, v in stamps.items()]
    policy = RetentionPolicy(daily=2, timezone=tokyo)
    assert kept(decide(archives, policy, NOW)) == {"late-utc", "early"}
    policy_utc = RetentionPolicy(daily=2)
    assert kept(decide(archives, policy_utc, NOW)) == {"late-utc", "may"}
    monthly = RetentionPolicy(monthly=5, timezone=tokyo)
    decisions = by_id(decide(archives, monthly, NOW))
    assert kept(decisions.values()) == {"late-utc", "may"}
    assert decisions["late-utc"].reason == "newest good full archive; newest of month 2025-06" \
        or "newest of month 2025-06" in decisions["late-utc"].reason


def test_buckets_only_count_buckets_that_have_archives():
    # restic semantics: a gap of empty days does not use up keep.daily
    archives = [archive(0, 0), archive(1, 10), archive(2, 20), archive(3, 20.1)]
    assert kept(decide(archives, RetentionPolicy(daily=3), NOW)) == {"a000", "a001", "a002"}


def test_keep_rules_extend_the_base_rule():
    archives = [archive(i, i) for i in range(40)]
    policy = RetentionPolicy(max_backups=3, weekly=4)
    decisions = by_id(decide(archives, policy, NOW))
    weekly = {i for i, d in decisions.items() if r.KEEP_WEEKLY in d.rules}
    assert len(weekly) == 4
    assert kept(decisions.values()) == {"a000", "a001", "a002"} | weekly


def test_newest_good_full_survives_everything():
    archives = [archive(0, 100, incremental=True, parent="a001"),
                archive(1, 200), archive(2, 300)]
    decisions = by_id(decide(archives, RetentionPolicy(max_backups=1, retention_days=7), NOW))
    # every archive is past retention; a001 is the newest full, a000 is incremental
    assert decisions["a001"].rules == (r.KEEP_NEWEST_FULL,)
    assert decisions["a000"].delete and decisions["a002"].delete


def test_newest_full_skips_damaged_and_failed_verification():
    archives = [archive(0, 50, status="damaged"), archive(1, 60, verified=False),
                archive(2, 70), archive(3, 80)]
    decisions = by_id(decide(archives, RetentionPolicy(retention_days=30), NOW))
    assert r.KEEP_NEWEST_FULL in decisions["a002"].rules
    assert decisions["a003"].delete
    assert decisions["a000"].rules == (r.KEEP_DAMAGED,)
    assert decisions["a001"].rules == (r.KEEP_DAMAGED,) and "verification" in decisions["a001"].reason


def test_damaged_deleted_only_when_the_policy_says_so_and_untrusted_never():
    archives = [archive(0, 1), ArchiveInfo("broken", None, None, status="damaged"),
                archive(2, 2, status="untrusted")]
    plain = by_id(decide(archives, RetentionPolicy(max_backups=1), NOW))
    assert not plain["broken"].delete and not plain["a002"].delete
    strict = by_id(decide(archives, RetentionPolicy(max_backups=1, delete_damaged=True), NOW))
    assert strict["broken"].delete and strict["broken"].rules == (r.DELETE_DAMAGED,)
    assert not strict["a002"].delete and strict["a002"].rules == (r.KEEP_UNTRUSTED,)


def test_pre_restore_archives_have_their_own_rule():
    pre = [archive(i, d, "pre-restore") for i, d in enumerate([1, 2, 3, 4, 10, 20, 30])]
    normal = [archive(100 + i, i) for i in range(3)]
    decisions = by_id(decide(pre + normal, RetentionPolicy(max_backups=1), NOW))
    # newest 3, plus those younger than 7 days (1, 2, 3, 4 days)
    assert {i for i in kept(decisions.values()) if i < "a100"} == {"a000", "a001", "a002", "a003"}
    assert decisions["a004"].rules == (r.DELETE_PRE_EXPIRED,)
    # pre-restore archives do not use up maxBackups
    assert kept(decisions.values()) >= {"a100"}
    assert decisions["a101"].delete


def test_pre_restore_full_is_the_fallback_newest_full():
    archives = [archive(0, 40, "pre-restore"), archive(1, 50, status="damaged")]
    policy = RetentionPolicy(pre_restore_last=0, pre_restore_days=0)
    assert r.KEEP_NEWEST_FULL in by_id(decide(archives, policy, NOW))["a000"].rules


def test_a_chain_of_incrementals_keeps_every_ancestor():
    chain = [archive(0, 40)] + [archive(i, 40 - i, incremental=True, parent=f"a{i - 1:03d}")
                                for i in range(1, 6)]
    newer_full = archive(9, 0)
    policy = RetentionPolicy(max_backups=2)     # keeps a009 and a005 (the newest incremental)
    decisions = by_id(decide(chain + [newer_full], policy, NOW))
    assert kept(decisions.values()) == {"a009", "a005", "a004", "a003", "a002", "a001", "a000"}
    assert "parent of a005" in decisions["a004"].reason


def test_a_protected_archive_and_its_chain_outlive_every_rule():
    full = archive(0, 90)
    inc = archive(1, 80, incremental=True, parent=full.id, protected=True)
    damaged = archive(2, 70, status="damaged", protected=True)
    newer = [archive(i, i) for i in range(3, 6)]
    policy = RetentionPolicy(max_backups=1, retention_days=10, delete_damaged=True)
    decisions = by_id(decide([full, inc, damaged, *newer], policy, NOW))
    assert decisions[inc.id].rules == (r.KEEP_PROTECTED,) and not decisions[inc.id].delete
    assert decisions[full.id].rules == (r.KEEP_PARENT,)
    assert r.KEEP_PROTECTED in decisions[damaged.id].rules and not decisions[damaged.id].delete
    assert decisions[inc.id].to_json()["protected"] is True
    assert kept(decisions.values()) == {full.id, inc.id, damaged.id, "a003"}


def test_an_unreadable_archive_is_never_deleted_whatever_keep_damaged_says():
    """F6: what this user or machine cannot read (EACCES, EMFILE, EIO) is not damaged."""
    archives = [archive(0, 1), archive(1, 2, status="unreadable"), archive(2, 3, status="damaged"),
                archive(3, 90, status="unreadable")]
    decisions = by_id(decide(archives, RetentionPolicy(max_backups=1, delete_damaged=True), NOW))
    assert kept(decisions.values()) == {"a000", "a001", "a003"}
    assert r.KEEP_UNREADABLE in decisions["a001"].rules
    assert "never pruned" in decisions["a003"].reason
    assert decisions["a002"].delete


def test_parent_cycles_terminate():
    archives = [archive(0, 1, incremental=True, parent="a001"),
                archive(1, 2, incremental=True, parent="a000")]
    assert kept(decide(archives, RetentionPolicy(max_backups=1), NOW)) == {"a000", "a001"}


# -- properties ----------------------------------------------------------------

@st.composite
def archive_sets(draw):
    count = draw(st.integers(0, 40))
    archives: list[ArchiveInfo] = []
    for n in range(count):
        minutes = draw(st.integers(-60, 400 * 24 * 60))
        kind = draw(st.sampled_from(["scheduled", "scheduled", "manual", "pre-restore"]))
        status = draw(st.sampled_from(["ok"] * 6 + ["damaged", "untrusted"]))
        verified = draw(st.sampled_from([None, None, None, True, False]))
        earlier = [a.id for a in archives]
        incremental = bool(earlier) and draw(st.booleans())
        parent = draw(st.sampled_from(earlier)) if incremental else None
        if parent is None and draw(st.integers(0, 20)) == 0:
            parent = "missing-archive"          # parent no longer in the store
            incremental = True
        stamp = None if status == "damaged" and draw(st.booleans()) \
            else NOW - timedelta(minutes=minutes)
        archives.append(ArchiveInfo(f"b{n:03d}", stamp, kind if stamp else None, incremental,
                                    parent, status, verified, draw(st.integers(0, 10**9)),
                                    protected=draw(st.integers(0, 7)) == 0))
    return archives


policies = st.builds(
    RetentionPolicy,
    max_backups=st.one_of(st.none(), st.integers(1, 15)),
    retention_days=st.one_of(st.none(), st.integers(1, 120)),
    daily=st.integers(0, 10), weekly=st.integers(0, 6), monthly=st.integers(0, 12),
    pre_restore_last=st.integers(0, 5), pre_restore_days=st.integers(0, 30),
    delete_damaged=st.booleans(),
    timezone=st.sampled_from([timezone.utc, ZoneInfo("Asia/Tokyo"), ZoneInfo("Europe/Berlin")]))

PROPERTY = settings(max_examples=150, deadline=None)


def check_every_archive_gets_exactly_one_decision_with_a_reason(archives, policy, decisions):
    assert sorted(d.id for d in decisions) == sorted(a.id for a in archives)
    assert all(d.rules and d.reason for d in decisions)


def check_no_kept_archive_ever_loses_a_parent(archives, policy, decisions):
    decisions = by_id(decisions)
    for d in decisions.values():
        if not d.delete and d.archive.parent in decisions:
            assert not decisions[d.archive.parent].delete, (d.id, d.archive.parent)


def check_the_newest_good_full_is_never_deleted(archives, policy, decisions):
    decisions = by_id(decisions)
    good = [a for a in archives if a.good and not a.incremental]
    normal = [a for a in good if a.type in r.NORMAL_TYPES]
    group = normal or [a for a in good if a.type == r.PRE_RESTORE]
    if group:
        newest = max(group, key=lambda a: (a.timestamp, a.id))
        assert not decisions[newest.id].delete


def check_counts_and_ages_are_respected(archives, policy, decisions):
    base = [d for d in decisions if r.KEEP_BASE in d.rules]
    if policy.max_backups is not None:
        assert len(base) <= policy.max_backups
    for d in base:
        if policy.retention_days is not None:
            assert NOW - d.archive.timestamp < timedelta(days=policy.retention_days)
    for rule, count in ((r.KEEP_DAILY, policy.daily), (r.KEEP_WEEKLY, policy.weekly),
                        (r.KEEP_MONTHLY, policy.monthly)):
        assert len([d for d in decisions if rule in d.rules]) <= count
    # whatever else is kept is kept by a named exception
    extra = {r.KEEP_DAILY, r.KEEP_WEEKLY, r.KEEP_MONTHLY, r.KEEP_NEWEST_FULL, r.KEEP_PARENT,
             r.KEEP_PROTECTED}
    if policy.limits_normal:
        for d in decisions:
            if not d.delete and d.archive.good and d.archive.type in r.NORMAL_TYPES:
                assert set(d.rules) & ({r.KEEP_BASE} | extra), d


def check_the_daily_bucket_keeps_the_newest_archive_of_each_day(archives, policy, decisions):
    days = [d for d in decisions if r.KEEP_DAILY in d.rules]
    keys = [d.archive.timestamp.astimezone(policy.timezone).date() for d in days]
    assert len(keys) == len(set(keys))
    for d, day in zip(days, keys):
        rivals = [a for a in archives if a.good and a.type in r.NORMAL_TYPES
                  and a.timestamp.astimezone(policy.timezone).date() == day]
        assert d.archive == max(rivals, key=lambda a: (a.timestamp, a.id))


def check_damaged_and_untrusted_archives_go_only_when_asked(archives, policy, decisions):
    for d in decisions:
        if d.delete and not d.archive.good:
            assert policy.delete_damaged and d.archive.status != "untrusted"
            assert d.rules == (r.DELETE_DAMAGED,)


def check_protected_archives_and_their_ancestors_stay(archives, policy, decisions):
    decisions = by_id(decisions)
    for a in archives:
        current, seen = a if a.protected else None, set()
        while current is not None and current.id not in seen:
            seen.add(current.id)
            assert not decisions[current.id].delete, (a.id, current.id)
            current = decisions[current.parent].archive if current.parent in decisions else None


def check_pre_restore_rule(archives, policy, decisions):
    decisions = by_id(decisions)
    pre = sorted((a for a in archives if a.good and a.type == r.PRE_RESTORE),
                 key=lambda a: (a.timestamp, a.id), reverse=True)
    for rank, a in enumerate(pre):
        young = NOW - a.timestamp < timedelta(days=policy.pre_restore_days)
        if rank < policy.pre_restore_last or young:
            assert not decisions[a.id].delete
        elif decisions[a.id].delete:
            assert decisions[a.id].rules == (r.DELETE_PRE_EXPIRED,)


@PROPERTY
@given(archive_sets(), policies, st.randoms())
def test_input_order_does_not_matter(archives, policy, rnd):
    shuffled = list(archives)
    rnd.shuffle(shuffled)
    first = [(d.id, d.delete, d.rules) for d in decide(archives, policy, NOW)]
    assert first == [(d.id, d.delete, d.rules) for d in decide(shuffled, policy, NOW)]


@PROPERTY
@given(archive_sets(), policies, st.integers(1, 5))
def test_a_looser_policy_never_deletes_more(archives, policy, more):
    looser = replace(policy,
                     max_backups=None if policy.max_backups is None else policy.max_backups + more,
                     retention_days=None if policy.retention_days is None
                     else policy.retention_days + more,
                     daily=policy.daily + more if policy.daily else 0)
    strict = {d.id for d in decide(archives, policy, NOW) if d.delete}
    loose = {d.id for d in decide(archives, looser, NOW) if d.delete}
    assert loose <= strict


INVARIANTS = (check_every_archive_gets_exactly_one_decision_with_a_reason,
          check_no_kept_archive_ever_loses_a_parent,
          check_the_newest_good_full_is_never_deleted,
          check_counts_and_ages_are_respected,
          check_the_daily_bucket_keeps_the_newest_archive_of_each_day,
          check_damaged_and_untrusted_archives_go_only_when_asked,
          check_pre_restore_rule, check_protected_archives_and_their_ancestors_stay)


@settings(max_examples=400, deadline=None)
@given(archive_sets(), policies)
def test_invariants_hold_for_any_store_and_policy(archives, policy):
    decisions = decide(archives, policy, NOW)
    for check in INVARIANTS:
        check(archives, policy, list(decisions))


def test_the_archive_a_pack_just_made_is_never_deleted_nor_its_chain():
    """pack prunes after itself with protect={its id}: even when every rule would drop
    it (an archive whose clock is behind, a retention shorter than its age), it stays,
    and its parents with it."""
    full = archive(1, 40)
    child = archive(2, 35, incremental=True, parent=full.id)
    newer = [archive(3 + i, i) for i in range(3)]
    policy = RetentionPolicy(max_backups=2, retention_days=30)
    assert {full.id, child.id} <= {d.id for d in decide([full, child, *newer], policy, NOW)
                                   if d.delete}
    decisions = by_id(decide([full, child, *newer], policy, NOW, frozenset({child.id})))
    assert decisions[child.id].rules == (r.KEEP_NEW,) and not decisions[child.id].delete
    assert r.KEEP_PARENT in decisions[full.id].rules and not decisions[full.id].delete


def test_pack_prunes_only_when_a_retention_rule_is_configured():
    assert not r.configured({}) and not r.configured({"incremental": {"enabled": True}})
    for key, value in (("retention", 30), ("maxBackups", 3), ("keep", {"daily": 7})):
        assert r.configured({key: value})
