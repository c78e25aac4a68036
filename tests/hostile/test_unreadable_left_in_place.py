"""F14: a restore by a user who cannot read a live path of a restored target that the
archive does not hold.  The swap leaves such a path in place (it cannot be saved, and a
directory this user cannot list keeps its place), but the plan said nothing of the file and
called the directory "remove": the operator was told the target became the archive's.  Now
the plan counts the directory as staying, and one warning, in the dry run and the real run
alike, names every such path (exit 1: done, with something to look at)."""

from __future__ import annotations

import json
import os


def test_unreadable_paths_the_archive_lacks_are_named_and_left(nobody, installation_template):
    root, store, archive = nobody.packed(installation_template("tiny"))
    private = root / "state/private"            # root's, made after the pack
    private.mkdir()
    (private / "notes.json").write_text("{}")
    os.chmod(private, 0o700)
    alone = root / "state/root-only.json"
    alone.write_text("{}")
    os.chmod(alone, 0o600)
    base = ("--root", str(root), "--store", str(store), "unpack", archive)
    for selection in ((), ("--targets", "state,database")):
        done = nobody.run(*base, *selection, "--dry-run", "--json")
        assert done.returncode == 1, done.stderr
        dry = json.loads(done.stdout)
        state = next(t for t in dry["plan"]["targets"] if t["target"] == "state")
        assert state["remove"]["paths"] == 0, state       # the directory is not removed
        named = [w for w in dry["plan"]["warnings"] if "are not in the archive" in w]
        assert len(named) == 1 and "state/private" in named[0], dry["plan"]["warnings"]
        assert "state/root-only.json" in named[0]
        done = nobody.run(*base, *selection)
        assert done.returncode == 1, done.stderr
        assert "state/private" in done.stderr and "the restore leaves them as they are" in done.stderr
        assert alone.read_text() == "{}" and (private / "notes.json").exists()
