"""``unpack ID --to DIR`` where DIR is the installation itself, or a symbolic link to it:
it restored over the live installation as a restore "into DIR", so without the
beforeRestore hook (which stops the application), the afterRestore hook and the health
check — the application kept writing while its tree was swapped.  It is now the
installation's own restore, hooks and all."""

from __future__ import annotations

import json

import pytest


def _hooks(root, marks):
    path = root / "config/config.json"
    document = json.loads(path.read_text())
    document.setdefault("backup", {})["hooks"] = {
        "beforeRestore": f"touch {marks / 'before'}", "afterRestore": f"touch {marks / 'after'}"}
    path.write_text(json.dumps(document))


@pytest.mark.parametrize("how", ["itself", "a link to it"])
def test_a_restore_to_the_installation_runs_its_hooks(cli, installation, tmp_path, how):
    archive = cli.pack()
    marks = tmp_path / "marks"
    marks.mkdir()
    to = installation
    if how == "a link to it":
        to = tmp_path / "alias"
        to.symlink_to(installation)
    _hooks(installation, marks)
    code, _, err = cli("unpack", archive["id"], "--to", str(to), "--targets", "state")
    assert code in (0, 1), err
    assert (marks / "before").exists() and (marks / "after").exists()
