"""Text reports of the store and key commands (copy, prune, protect, metrics, schedule,
config, keygen, doctor), in the operator's language (``render.show`` dispatches to them)."""

from __future__ import annotations

import json
import signal

from ..i18n import _, ngettext, translate_text
from ..text import human_size, ljust, width
from .render_widths import RULE


def keygen(out, result) -> None:
    if result.kind == "export":
        out.text(_("Copied the encryption identity {key} to {path}").format(
            key=result.key_id, path=result.path))
        out.text(_("  keep it off this machine (it opens every archive sealed to {recipient}); "
                   "on another machine use it with POPPO_BACKUP_IDENTITY=FILE or "
                   "backup.storage.identityFile").format(recipient=result.public_key))
        return
    old = result.retired
    if result.kind == "encryption":
        out.text(_("Created encryption identity {path}").format(path=result.path))
        out.text(_("  recipient: {recipient}").format(recipient=result.public_key))
        out.text(_("  add it to backup.storage.recipients where archives are written; "
                   "keep the identity file offline"))
        if old is not None:
            out.text(_("  the previous identity {key} is kept in {path}: it still opens the "
                       "archives sealed to it; replace its recipient in "
                       "backup.storage.recipients elsewhere").format(key=old.key_id,
                                                                    path=old.private))
        return
    out.text(_("Created signing key {key} in {dir}").format(key=result.key_id,
                                                           dir=result.key_dir))
    out.text(_("  public key: {public}").format(public=result.public_key))
    out.text(_("  pin it on other machines under backup.signing.trustedKeys"))
    if old is not None:
        out.text(_("  the previous key {key} is kept in {path} and stays trusted here for "
                   "the archives it signed; new archives are signed by {new}").format(
            key=old.key_id, path=old.public or old.private, new=result.key_id))


def status_label(status: str) -> str:
    return {"ok": _("ok"), "info": _("info"), "n/a": _("n/a"), "warn": _("WARN"),
            "fail": _("FAIL")}[status]


def doctor(out, report) -> None:
    out.text(_("Checking {root} (store {store})").format(root=report.root, store=report.store))
    labels = [status_label(f.status) for f in report.findings]
    label_cells = max(width(status_label(s)) for s in ("ok", "info", "n/a", "warn", "fail")) + 2
    title_cells = max(width(_(f.title)) for f in report.findings) + 2
    indent = " " * (2 + label_cells + title_cells)
    for finding, label in zip(report.findings, labels):
        out.text("  " + ljust(label, label_cells) + ljust(_(finding.title), title_cells)
                 + finding.render(_))
        for detail in finding.details[:10]:
            translated = getattr(detail, "translated", None)     # (an errors.Message)
            out.text(indent + "- " + (translated(_) if translated else translate_text(detail)))
        if len(finding.details) > 10:
            out.text(indent + _("- ... and {count} more").format(count=len(finding.details) - 10))
        if finding.fix and finding.status in ("warn", "fail"):
            out.text(indent + _("fix: {fix}").format(fix=finding.render_fix(_)))
    fails = sum(1 for f in report.findings if f.status == "fail")
    warns = sum(1 for f in report.findings if f.status == "warn")
    if not fails and not warns:
        out.text(_("All clear."))
    else:
        out.text(_("{fails} problem(s), {warns} warning(s).").format(fails=fails, warns=warns))


def copy(out, result) -> None:
    if result.outcome == "copied":
        out.text(_("Copied {id} ({size})").format(id=result.id, size=human_size(result.size)))
    else:
        out.text(_("Already present: {id} ({size})").format(id=result.id,
                                                            size=human_size(result.size)))
    out.text(_("  from    {path}").format(path=result.source))
    out.text(_("  to      {path}").format(path=result.destination))
    for ancestor in result.ancestors:
        template = (_("  ancestor {id} ({size}): copied") if ancestor.outcome == "copied"
                    else _("  ancestor {id} ({size}): already there"))
        out.text(template.format(id=ancestor.id, size=human_size(ancestor.size)))
    v = result.verified
    archives = len(v.chain) + 1
    out.text(ngettext("  verified at the destination as a restore reads it: the signature and "
                      "every byte of {count} archive",
                      "  verified at the destination as a restore reads it: the signatures and "
                      "every byte of {count} archives (the chain)", archives).format(
                          count=archives))
    out.text(_("    signed by key {key}; {entries} entries, {size} of content checked, "
               "{databases} database(s) pass integrity_check").format(
                   key=v.signer, entries=v.entries, size=human_size(v.bytes),
                   databases=v.databases))
    for item in v.not_checked:
        out.text(_("  not checked: {what}").format(what=item))
    if result.protected:
        out.text(_("  protected there too"))


def metrics(out, result) -> None:
    """The Prometheus text format itself (what node_exporter's textfile collector reads)."""
    for line in result.text.rstrip("\n").splitlines():     # (one text() call per line:
        out.text(line)                                    # a line never holds a newline)


def protect(out, result) -> None:
    if result.protected:
        message = _("Protected {id} in {store}: no retention deletes it or its ancestors.") \
            if result.changed else _("{id} in {store} was already protected.")
    else:
        message = _("Unprotected {id} in {store}: retention applies to it again.") \
            if result.changed else _("{id} in {store} was not protected.")
    out.text(message.format(id=result.id, store=result.store))


def prune(out, result) -> None:
    doomed = result.to_delete
    title = _("Prune plan (dry run: nothing deleted)") if result.dry_run else _("Prune")
    out.text(_("{title}; policy: {policy}").format(title=title,
                                                   policy=_reasons(result.policy.describe())))
    out.text(RULE)
    actions = {"keep": _("keep"), "delete": _("delete")}
    for decision in result.decisions:
        a = decision.archive
        when = a.timestamp.strftime("%Y/%m/%d %H:%M:%S") if a.timestamp else "?"
        kind = (a.type or "?") + ("+inc" if a.incremental else "")
        out.text(ljust(actions.get(decision.action, decision.action), 7) + ljust(a.id, 40)
                 + ljust(when, 21) + ljust(kind, 12) + _reasons(decision.reason))
    out.text(RULE)
    freed = sum(d.archive.size for d in doomed)
    kept = len(result.decisions) - len(doomed)
    template = ngettext("Would delete {count} archive ({size}); {kept} kept.",
                        "Would delete {count} archives ({size}); {kept} kept.", len(doomed)) \
        if result.dry_run else \
        ngettext("Deleted {count} archive ({size}); {kept} kept.",
                 "Deleted {count} archives ({size}); {kept} kept.", len(doomed))
    out.text(template.format(count=len(doomed), size=human_size(freed), kept=kept))
    for warning in result.warnings:
        out.warn(warning)


def _reasons(text: str) -> str:
    """A retention rule's reasons ("; "-joined English, policy/retention.py) translated."""
    return "; ".join(translate_text(part) for part in text.split("; "))


def schedule(out, result) -> None:
    """``schedule --next``; the service itself reports through its log, but
    ``--once`` stopped by a signal before a due run was done says so last (exit 130/143)."""
    if not hasattr(result, "fires"):
        if out.as_json:
            out.json(result.to_json(), "schedule")
        if result.once and result.abandoned and result.stop_signal:      # also with --json
            out.note(_("interrupted ({signal}): a due scheduled run was not done; the next "
                       "schedule --once runs it").format(
                signal=signal.Signals(result.stop_signal).name))
        return
    if out.as_json:
        out.json(result.to_json(), "schedule")
        return
    schedule = result.schedule
    out.text(_("Next scheduled backups (time zone {zone}):").format(
        zone=schedule.timezone_name))
    for entry, when in result.fires:
        out.text(f"  {when.strftime('%Y-%m-%d %H:%M %z')}  {entry.name:<10} {entry.type}")
    for name, when in sorted(result.last.items()):
        out.text(_("  last handled: {name} at {when}").format(
            name=name, when=when.astimezone(schedule.timezone).strftime('%Y-%m-%d %H:%M %z')))
    if not schedule.enabled:
        out.warn(_("backup.enabled is false: the scheduler does not run these"))


def config(out, result) -> None:
    """``config --upgrade``: the section to paste (or written), and where each key went."""
    if not result.changed:
        out.text(_("The backup section of {path} is in the documented shape: nothing to "
                   "change.").format(path=result.path))
        return
    if result.written:
        out.text(_("Wrote the backup section of {path} in the documented shape (the rest of "
                   "the file is unchanged):").format(path=result.path))
    else:
        out.text(_("The backup section of {path} in the documented shape (poppoarc config "
                   "--upgrade --write puts it into the file):").format(path=result.path))
    for line in ('"backup": ' + json.dumps(result.section, ensure_ascii=False,
                                           indent=2)).splitlines():
        out.text(line)
    if result.mappings:
        out.text(_("What each legacy key became:"))
        for mapping in result.mappings:
            if not mapping.problem:         # (those are warnings, below)
                out.text("  " + mapping.describe().translated(_))
    if result.removed_sections:
        out.text(_("An earlier 'backup' section, which JSON readers ignore, is removed."))
    for mapping in result.problems:
        out.warn(_("backup.{key}: {note}").format(key=mapping.legacy,
                                                  note=mapping.note.translated(_)))
