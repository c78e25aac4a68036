"""``config --upgrade``: the ``backup`` section in the documented shape.

PoppoBuilder Suite ships its ``backup`` section in the shape its own backup manager reads
(``config_legacy``); poppoarc reads it, and says so once per run.  This command prints
the same settings in the documented shape, with what each legacy key became, and with
``--write`` puts them into the file: only that section changes (an earlier, ignored
``backup`` section goes), every other byte stays, the file is replaced atomically with
its mode and owner, and only if it did not change meanwhile.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..config import Settings, load_json_file, read_config
from ..config_legacy import backup_members, upgraded_text
from ..errors import EXIT_OK, EXIT_WARNING, ConfigError
from ..fs import fsync_dir, owner_tag
from ..i18n import N_
from ..options import ConfigOptions

SUMMARY = N_("Print (and with --write, write) the backup section in the documented shape.")
USAGE = ("config --upgrade [--write] [--json]",)
OPTIONS = """\
  --upgrade        With config: print the backup section in the documented shape.
  --write          With config --upgrade: write it into the configuration file.
"""
STRICT_CONFIG = True
PROGRESS = False
CONFIG_NOTICES = False


@dataclass
class ConfigResult:
    path: Path
    section: dict                       # the backup section in the documented shape
    mappings: list = field(default_factory=list)
    changed: bool = False               # the file's text would change
    written: bool = False
    removed_sections: int = 0           # earlier `backup` members dropped

    @property
    def problems(self) -> list:
        return [m for m in self.mappings if m.problem]

    @property
    def exit_code(self) -> int:
        return EXIT_WARNING if self.problems else EXIT_OK

    def to_json(self) -> dict:
        return {"path": str(self.path), "changed": self.changed, "written": self.written,
                "removed_sections": self.removed_sections, "section": self.section,
                "mappings": [m.to_json() for m in self.mappings]}


def matches(args: dict) -> bool:
    return bool(args["config"])


def options(args: dict) -> ConfigOptions:
    return ConfigOptions(upgrade=bool(args["--upgrade"]), write=bool(args["--write"]))


def run(settings: Settings, options: ConfigOptions, progress=None) -> ConfigResult:
    path = Path(os.path.realpath(settings.config_path))
    if not path.exists():
        raise ConfigError("no configuration file: nothing to upgrade", path=settings.config_path)
    load_json_file(path)                        # one line naming the place of a JSON error
    original = path.read_bytes()
    text = original.decode("utf-8")
    new, section, mappings = upgraded_text(text, path)
    if json.loads(new).get("backup") != read_config(path)[0]:
        raise AssertionError("the upgraded section does not read as the section it replaces")
    result = ConfigResult(path, section, mappings, changed=new != text,
                          removed_sections=len(backup_members(text)) - len(backup_members(new)))
    if options.write and result.changed:
        _replace(path, original, new.encode("utf-8"))
        result.written = True
    return result


def _replace(path: Path, original: bytes, data: bytes) -> None:
    """Atomically, keeping mode and owner; refused when the file changed since it was read."""
    st = path.stat()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{path.name}.{owner_tag()}-",
                               suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), st.st_mode & 0o7777)
            if (st.st_uid, st.st_gid) != (os.geteuid(), os.getegid()):
                try:
                    os.fchown(handle.fileno(), st.st_uid, st.st_gid)
                except PermissionError:
                    raise ConfigError("cannot keep the file's owner "
                                      f"({st.st_uid}:{st.st_gid}); run as its owner or root",
                                      path=path) from None
            os.fsync(handle.fileno())
        if path.read_bytes() != original:
            raise ConfigError("the file changed while it was upgraded; nothing written",
                              path=path)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
