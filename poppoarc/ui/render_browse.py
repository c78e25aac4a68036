"""Text reports of the browsing commands (ls, find, diff, dump), in the operator's language
(``render.show`` dispatches to them)."""

from __future__ import annotations

from ..i18n import _, ngettext
from ..text import display_time, human_size, ljust, rjust, row, shown_path


def _mode_text(kind: str, mode: int) -> str:
    """``drwxr-xr-x``: the type letter and the permission bits, as ``ls -l`` shows them."""
    letter = {"dir": "d", "symlink": "l", "hardlink": "h"}.get(kind, "-")
    bits = "".join(ch if mode & (1 << (8 - n)) else "-" for n, ch in enumerate("rwxrwxrwx"))
    return letter + bits


def _time_text(mtime_ns: int) -> str:
    """A record's modification time, UTC, to the second."""
    from datetime import datetime, timezone

    seconds = mtime_ns // 10**9
    try:
        return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    except (OverflowError, OSError, ValueError):    # beyond what datetime shows
        return str(seconds)


def ls(out, result) -> None:
    """One line per record, as ``ls -l`` lays it out; a database with its tables."""
    sealed = _("sealed")
    for entry in result.records():
        size = "" if entry.type == "dir" else human_size(entry.size)
        shown = shown_path(entry.path) \
            + (f" -> {shown_path(entry.link)}" if entry.type == "symlink" else "") \
            + (f" => {shown_path(entry.link)}" if entry.type == "hardlink" else "") \
            + (f"  ({sealed})" if entry.needs_key() else "")
        out.text(f"{_mode_text(entry.type, entry.mode)} {rjust(size, 10)}  "
                 f"{_time_text(entry.mtime_ns)}  {shown}")
        database = result.databases.get(entry.path) if entry.sqlite else None
        if database is not None:
            tables = database.get("tables", {})
            out.text("    " + _("database: {tables} tables, {rows} rows, user_version "
                              "{version}").format(tables=len(tables), rows=sum(tables.values()),
                                                  version=database.get("user_version")))
            for table, rows in tables.items():
                out.text(f"      {shown_path(table)}: {rows}")
    out.text(_("{count} entries, {size} in files ({id})").format(
        count=result.count, size=human_size(result.size), id=result.archive_id))
    for warning in result.warnings:
        out.warn(warning)


def find(out, result) -> None:
    """Each path found, then one line per archive searched, newest first."""
    states = {"added": _("added"), "changed": _("changed"), "unchanged": _("unchanged"),
              "absent": _("absent")}
    for path, history in result.histories():
        out.text(shown_path(path))
        for row in history:
            when = display_time(row["timestamp"])
            if row["state"] == "absent":
                detail = ""
            else:
                detail = f"{rjust(human_size(row['size']), 10)}  {_time_text(row['mtime_ns'])}"
            out.text(f"  {when}  {ljust(row['archive_id'], 40)} {ljust(states[row['state']], 10)}"
                     f"{detail}")
    out.text(ngettext("{count} path found in {archives} archive(s)",
                      "{count} paths found in {archives} archive(s)", result.matched).format(
        count=result.matched, archives=len(result.archives)))
    for warning in result.warnings:
        out.warn(warning)


def diff(out, result) -> None:
    """Per target: counts, then each path added (+), removed (-) or changed (M)."""
    out.text(_("From {older} ({older_time}) to {newer} ({newer_time}):").format(
        older=result.older["id"], older_time=display_time(result.older["timestamp"]),
        newer=result.newer["id"], newer_time=display_time(result.newer["timestamp"])))
    marks = {"added": "+", "removed": "-", "changed": "M"}
    for target in result.targets:
        counts = target.counts
        out.text("  " + _("{target}: {added} added, {removed} removed, {changed} changed, "
                          "{unchanged} unchanged").format(target=target.name, **counts))
        for change in target.changes():
            detail = ""
            if change.action == "changed":
                detail = f"  ({change.fields.replace(',', ', ')}"
                if change.size_from != change.size_to:
                    detail += f"; {human_size(change.size_from)} -> {human_size(change.size_to)}"
                detail += ")"
            out.text(f"    {marks[change.action]} {shown_path(change.path)}{detail}")
    if result.databases:
        out.text(_("Databases (rows {older} -> {newer}):").format(
            older=result.older["id"], newer=result.newer["id"]))
        for database in result.databases:
            parts = [f"{shown_path(table)} {_rows(t['from'])} -> {_rows(t['to'])}"
                     for table, t in database["tables"].items()]
            out.text(f"  {marks[database['action']]} {shown_path(database['path'])}: "
                     + ("; ".join(parts) if parts else _("no tables")))
    if not result.changed:
        out.text(_("No differences."))
    for warning in result.warnings:
        out.warn(warning)


def _rows(count) -> str:
    return "-" if count is None else str(count)


def dump(out, result) -> None:
    """The content itself to standard output, or a line naming the file written."""
    if result.output is None:
        import sys

        stream = sys.stdout.buffer
        for chunk in result.stream():
            stream.write(chunk)
        stream.flush()
        return
    e = result.extracted
    out.text(_("Wrote {path} ({size}) from {id}: {entry}, verified by its {how}").format(
        path=result.output, size=human_size(e.size), id=e.archive_id, entry=shown_path(e.entry.path),
        how=e.verified_by))
