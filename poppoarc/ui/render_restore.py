"""Text reports of restores (unpack, recover, drill, consolidate), in the operator's
language (``render.show`` dispatches to them)."""

from __future__ import annotations

from ..i18n import _
from ..text import human_size, ljust, rjust, shown_path
from .render_widths import name_width


PLAN_PATHS = 10        # paths shown per target in the text plan (--json lists them all)


ACTION_MARKS = {"add": "+", "change": "~", "remove": "-"}


def unpack(out, result) -> None:
    plan = result.plan
    if result.dry_run:
        out.text(_("Restore plan {id} (dry run: nothing changed)").format(id=plan.archive_id))
    else:
        out.text(_("Restored {id}").format(id=plan.archive_id))
    columns = (_("target"), _("add"), _("change"), _("remove"), _("unchanged"), _("bytes"))
    sizes = (max(10, name_width(t.name for t in plan.targets) + 1), 7, 8, 8, 11, 12)
    out.text("  " + ljust(columns[0], sizes[0])
             + "".join(rjust(c, s) for c, s in zip(columns[1:], sizes[1:])))
    for target in plan.targets:
        written = target.bytes("add") + target.bytes("change")
        values = (target.count("add"), target.count("change"), target.count("remove"),
                  target.count("unchanged"), human_size(written))
        out.text("  " + ljust(target.name, sizes[0])
                 + "".join(rjust(str(v), s) for v, s in zip(values, sizes[1:])))
    for name, area in plan.areas.items():
        where = _("the archive's area, used as recorded") if area["from"] == "archive" \
            else _("this installation's backup.targets")
        out.text(_("  {target}: {globs}  ({where})").format(
            target=name, globs=", ".join(area["include"]), where=where))
    if result.dry_run:
        _planned_paths(out, plan)
    if plan.databases:
        out.text(_("Databases (rows now -> in archive):"))
        for db in plan.databases:
            if db.identical:
                out.text("  " + _("{path}: identical to the archive (unchanged)").format(
                    path=db.path))
                continue
            now = db.tables_now or {}
            parts = [f"{name} {now.get(name, 0)} -> {rows}" for name, rows in db.tables_archive.items()]
            out.text(f"  {db.path}: " + ("; ".join(parts) if parts else _("no tables")))
    if plan.paths is not None:      # a partial restore: the paths themselves
        _partial_paths(out, plan)
    out.text(_("Version: installed {now}, archive {archive}").format(
        now=plan.version_now or _("unknown"), archive=plan.version_archive or _("unknown")))
    if not any(t.changes_anything for t in plan.targets):
        out.text(_("Every target already matches the archive (files by type, mode, size and "
                   "time, databases by content); all are restored anyway, as asked."))
    if result.dry_run:
        out.text(_("Would stage {size} and swap: {names}").format(
            size=human_size(plan.bytes_to_stage), names=", ".join(plan.top_level)))
    elif result.safety_archive:
        out.text(_("Safety archive: {id} (restore it to undo)").format(id=result.safety_archive))
    for warning in result.warnings:
        out.warn(warning)


PARTIAL_SHOWN = 50      # paths a partial restore's report lists before "and N more"


def _partial_paths(out, plan) -> None:
    """What a restore of --include/--exclude paths adds (+), changes (M), removes (-)."""
    out.text(_("Paths ({selection}):").format(selection=plan.paths.describe()))
    marks = {"add": "+", "change": "M", "remove": "-"}
    shown = total = 0
    for target in plan.targets:
        for change in target.changes():
            total += 1
            if shown < PARTIAL_SHOWN:
                out.text(f"  {marks[change.action]} {shown_path(change.path)}")
                shown += 1
    if total > shown:
        out.text(_("  ... and {count} more").format(count=total - shown))
    if not total:
        out.text(_("  (nothing to change)"))


def _planned_paths(out, plan) -> None:
    """The first paths each target would add (+), change (~) or remove (-), then how many
    more (``--json`` lists them all)."""
    for target in plan.targets:
        total = sum(target.count(action) for action in ACTION_MARKS)
        if not total:
            continue
        out.text(_("{target}:").format(target=target.name))
        for shown, change in enumerate(target.changes()):
            if shown == PLAN_PATHS:
                break
            out.text(f"  {ACTION_MARKS[change.action]} {shown_path(change.path)}")
        if total > PLAN_PATHS:
            out.text("  " + _("…and {count} more").format(count=total - PLAN_PATHS))


def recovered(out, result) -> None:
    """``unpack --recover``: the recovery's note (also with --json), then its report."""
    if result.recovery is not None:
        out.note(recovery_note(result.recovery))
    if out.as_json:
        out.json(result.to_json(), "recover")
    elif result.recovery is None:
        out.text(_("No interrupted restore to recover."))


def recovery_note(recovery) -> str:
    """The stderr line every command prints after recovering an interrupted restore."""
    template = (_("recovered interrupted restore {restore} of {archive}: {action}; the "
                  "installation holds the archive's tree") if recovery.restored else
                _("recovered interrupted restore {restore} of {archive}: {action}; the "
                  "installation holds the previous tree"))
    return template.format(restore=recovery.restore_id, archive=recovery.archive_id,
                           action=recovery.action.replace("_", " "))


def drill(out, result) -> None:
    """A drill's report: what came back, how it compares with the manifest, what a real
    restore needs."""
    head = _("Drill of {id} passed") if result.ok else _("Drill of {id} FAILED")
    out.text(head.format(id=result.archive_id))
    if result.chain:
        out.text(_("  through its chain: {chain}").format(chain=", ".join(result.chain)))
    out.text(_("  files     {restored} restored, {manifest} in the manifest").format(
        restored=result.files[1], manifest=result.files[0]))
    out.text(_("  bytes     {restored} restored, {manifest} in the manifest").format(
        restored=human_size(result.bytes[1]), manifest=human_size(result.bytes[0])))
    for check in result.databases:
        state = _("integrity ok") if not check.integrity else "; ".join(check.integrity[:2])
        rows = sum(r or 0 for _m, r in check.tables.values())
        out.text(_("  database  {path}: {state}, {tables} tables, {rows} rows{same}").format(
            path=check.path, state=state, tables=len(check.tables), rows=rows,
            same=_(" as in the manifest") if check.ok else _(" (differs from the manifest)")))
    if result.health is not None:
        out.text(_("  health check: exit {code}").format(code=result.health["exit_code"]))
    out.text(_("  a real restore needs about {space} and {seconds:.1f} s; {free} free on the "
               "installation's filesystem").format(
        space=human_size(result.space_bytes), seconds=result.restore_seconds,
        free=human_size(result.free_bytes)))
    if result.removed:
        out.text(_("  scratch root removed"))
    for _cls, problem in result.problems:
        out.error(problem)
    for warning in result.warnings:
        out.warn(warning)


def consolidate(out, result) -> None:
    """What a consolidation verified and wrote (or, dry run / a full archive, would)."""
    plan = result.plan
    if not plan.incremental:
        out.text(_("{id} is a full archive: it restores on its own; nothing written").format(
            id=plan.archive_id))
        return
    out.text(_("Chain of {id} verified: {count} ancestor(s) {chain}, {size} in the store, "
               "{files} files").format(id=plan.archive_id, count=len(plan.chain),
                                       chain=", ".join(plan.chain),
                                       size=human_size(plan.chain_size), files=plan.files))
    if result.dry_run:
        out.text(_("dry run: would write a full archive named {name}; nothing "
                   "written").format(name=plan.name))
    else:
        out.text(_("Created {id} (full, named {name}), verified").format(
            id=result.id, name=plan.name))
    if plan.encrypt:
        out.text(_("  sealed whole, to the recipients configured now"))
    if result.dry_run:
        return
    out.text(_("  path    {path}").format(path=result.path))
    out.text(_("  size    {size} (the chain: {chain}); {cpu:.1f} CPU s").format(
        size=human_size(result.size), chain=human_size(plan.chain_size),
        cpu=result.cpu_seconds))
    if result.protected:
        out.text(_("  protected: no retention deletes it"))
    for warning in result.warnings:
        out.warn(warning)
