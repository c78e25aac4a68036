"""``copy --to`` never writes into the installation or the key directory: a copy inside
the installation was archived by the next pack (an archive inside the archive: the tiny
pack grew from 370 kB to 712 kB), one in the key directory mixed archives with the keys.
The configured store is the one place inside the installation a copy may go (packs
leave it out).  The same ``fs.within`` judges unpack's and drill's ``--to`` and the
replicas."""

from __future__ import annotations

import os
from pathlib import Path

from tests.helpers import CLI

SUFFIX = ".poppo.tar.zst"


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_a_copy_into_the_installation_or_the_key_directory_is_refused(cli, tmp_path):
    archive = cli.pack()
    before = _files(cli.root)
    alias = tmp_path / "alias"
    alias.symlink_to(cli.root / "state")
    key_dir = Path(os.environ["POPPOARC_HOME"])
    keys_before = _files(key_dir)
    for place in (cli.root / "state" / "copies", alias / "copies", cli.root):
        code, out, err = cli("copy", archive["id"], "--to", str(place))
        assert code == 2, (place, out, err)
        assert err.strip().endswith(f"--to {place}: inside the installation ({cli.root}); "
                                    "the next pack would archive the copy (copy to a store "
                                    "outside it)"), err
    code, _, err = cli("copy", archive["id"], "--to", str(key_dir / "archives"))
    assert code == 2 and "inside the key directory" in err, err
    assert _files(cli.root) == before and _files(key_dir) == keys_before
    # the next pack holds no archive
    code, listing = cli.json("ls", cli.pack()["id"])
    assert code == 0 and not [e for e in listing["entries"] if e["path"].endswith(SUFFIX)]


def test_the_configured_store_inside_the_installation_takes_a_copy(installation, tmp_path,
                                                                    capsys):
    """The default store is ROOT/backups: a copy into it (from another store) is allowed,
    and the next pack leaves it out as it leaves the store out."""
    elsewhere = CLI(installation, tmp_path / "elsewhere", capsys)
    archive = elsewhere.pack()
    inside = CLI(installation, installation / "backups", capsys)
    code, _, err = elsewhere("copy", archive["id"], "--to", str(inside.store))
    assert code == 0, err
    assert (inside.store / f"{archive['id']}{SUFFIX}").is_file()
    code, listing = inside.json("ls", inside.pack()["id"])
    assert code == 0 and not [e for e in listing["entries"] if e["path"].startswith("backups")]
