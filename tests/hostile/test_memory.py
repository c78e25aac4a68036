"""Memory bounded by the spec's limits whatever the paths (spec §14): verify of archives
shaped to exhaust a reader (paths of 4,000 bytes and 250 levels, each under a directory of
its own; symlinks that long; records in no order; many hard links) stays under 100 MiB of
peak RSS in every process.  The reader these replaced used 286 MiB on the first of them at
this scale and 1 GiB at four times it (tests/hostile/rss.py prints the table)."""

import shutil

import pytest

from . import rss


@pytest.mark.skipif(not shutil.which("/usr/bin/time"), reason="GNU time measures the peak")
def test_verify_of_archives_made_to_exhaust_memory_stays_under_the_bound(tmp_path):
    keys, archives = rss.build(tmp_path, scale=1)
    root = tmp_path / "root"
    root.mkdir()
    for name, archive in archives.items():
        code, peak = rss.peak_rss(archive, keys, root)
        assert code == 0, name
        assert 0 < peak <= rss.BOUND_MIB * 1024, (name, peak)
