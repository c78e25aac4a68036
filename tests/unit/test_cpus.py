"""The CPUs a process may use: affinity, bounded by a cgroup v2 or v1 quota."""

import os

import pytest

from poppoarc.parallel import Parallelism, choose
from poppoarc.parallel.cpus import available_cpus, cgroup_quota


def reader(files: dict):
    def read(path):
        if path not in files:
            raise FileNotFoundError(path)
        return files[path]
    return read


V2 = {"/proc/self/cgroup": "0::/system.slice/poppoarc.service\n"}


@pytest.mark.parametrize("files, expected", [
    ({}, None),                                                       # no /proc/self/cgroup
    (V2, None),                                                       # no cpu.max anywhere
    ({**V2, "/sys/fs/cgroup/system.slice/poppoarc.service/cpu.max": "max 100000\n"}, None),
    ({**V2, "/sys/fs/cgroup/system.slice/poppoarc.service/cpu.max": "150000 100000\n"}, 1.5),
    # the smallest quota along the path counts (a slice limits its services)
    ({**V2, "/sys/fs/cgroup/system.slice/poppoarc.service/cpu.max": "400000 100000\n",
      "/sys/fs/cgroup/system.slice/cpu.max": "100000 100000\n"}, 1.0),
    ({**V2, "/sys/fs/cgroup/system.slice/poppoarc.service/cpu.max": "junk\n"}, None),
    # cgroup v1: the cpu controller's quota and period; -1 is no quota
    ({"/proc/self/cgroup": "4:cpu,cpuacct:/docker/abc\n3:memory:/docker/abc\n",
      "/sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "250000\n",
      "/sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n"}, 2.5),
    ({"/proc/self/cgroup": "4:cpu,cpuacct:/docker/abc\n",
      "/sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "-1\n",
      "/sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n"}, None),
])
def test_cgroup_quota(files, expected):
    assert cgroup_quota(reader(files)) == expected


def test_available_cpus_is_the_affinity_bounded_by_the_quota():
    quota = {**V2, "/sys/fs/cgroup/system.slice/poppoarc.service/cpu.max": "150000 100000"}
    assert available_cpus(reader({}), lambda: 8) == 8
    assert available_cpus(reader(quota), lambda: 8) == 2        # 1.5 CPUs: the second helps
    assert available_cpus(reader(quota), lambda: 1) == 1
    tiny = {**V2, "/sys/fs/cgroup/cpu.max": "1000 100000"}
    assert available_cpus(reader(tiny), lambda: 4) == 1
    assert 1 <= available_cpus() <= len(os.sched_getaffinity(0))


def test_auto_follows_the_cpus_this_process_may_use(monkeypatch):
    import poppoarc.parallel as parallel
    monkeypatch.setattr(parallel, "available_cpus", lambda: 1)
    one = choose(None, {})
    assert (one.mode, one.compression_threads) == ("serial", 1)
    monkeypatch.setattr(parallel, "available_cpus", lambda: 3)
    three = choose(None, {})
    assert (three.mode, three.compression_threads) == ("two-process", 3)
    monkeypatch.setattr(parallel, "available_cpus", lambda: 64)
    assert choose(None, {}).compression_threads == parallel.MAX_COMPRESSION_THREADS
    assert choose(None, {"POPPOARC_THREADS": "3"}).compression_threads == 3
    assert isinstance(choose("serial", {}), Parallelism)


def test_two_process_mode_hands_the_gil_over_sooner_while_a_command_runs():
    import sys
    from poppoarc.parallel import SERIAL, TWO_PROCESS, Tuning
    before = sys.getswitchinterval()
    wanted = Tuning().switch_interval
    assert 0 < wanted < before
    with Parallelism(TWO_PROCESS).switching():
        assert sys.getswitchinterval() == pytest.approx(wanted)
    assert sys.getswitchinterval() == before
    with pytest.raises(KeyError):       # restored when the command fails too
        with Parallelism(TWO_PROCESS).switching():
            raise KeyError("x")
    assert sys.getswitchinterval() == before
    for unchanged in (Parallelism(SERIAL), Parallelism(TWO_PROCESS, tuning=Tuning(switch_interval=0))):
        with unchanged.switching():
            assert sys.getswitchinterval() == before


def test_the_command_line_runs_a_command_within_its_parallelism(tmp_path, monkeypatch):
    import sys
    from poppoarc import cli, commands
    from poppoarc.parallel import SERIAL, TWO_PROCESS, Tuning
    seen = []
    real = commands.COMMANDS["list"].run

    def run(*args, **kwargs):
        seen.append(sys.getswitchinterval())
        return real(*args, **kwargs)

    monkeypatch.setattr(commands.COMMANDS["list"], "run", run)
    before = sys.getswitchinterval()
    for mode in (TWO_PROCESS, SERIAL):
        cli.main(["--root", str(tmp_path), "--store", str(tmp_path / "store"), "list", "-q"],
                 parallel=Parallelism(mode))
    assert seen == [pytest.approx(Tuning().switch_interval), before]
    assert sys.getswitchinterval() == before
