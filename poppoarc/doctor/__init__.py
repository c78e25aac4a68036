"""``doctor``: the troubleshooting list of PoppoBuilder's backup documentation, as checks.

Each check returns one ``Finding``: a status (``ok``, ``info``, ``n/a``,
``warn``, ``fail``), a one-line message and, for warnings and failures, a
one-line fix.  Messages are English ``str.format`` templates with named
fields, so the command line can show them translated (``poppoarc.ui``).
Doctor only looks: it takes no lock, creates nothing, recovers nothing.

The worst finding decides the exit code: 0 all clear (ok, info, n/a),
1 warnings, 7 (``EXIT_PROBLEMS``) at least one failure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

from ..config import Settings
from ..errors import EXIT_OK, EXIT_PROBLEMS, EXIT_WARNING, PoppoarcError
from ..i18n import N_

STATUSES = ("ok", "info", "n/a", "warn", "fail")
_SEVERITY = {"ok": 0, "info": 0, "n/a": 0, "warn": 1, "fail": 2}


@dataclass
class Finding:
    id: str
    title: str
    status: str
    message: str                         # template; fields from params
    fix: str | None = None               # template; fields from params
    params: dict = field(default_factory=dict)
    details: list[str] = field(default_factory=list)

    def render(self, translate=str) -> str:
        return translate(self.message).format(**self._params(translate))

    def render_fix(self, translate=str) -> str | None:
        return translate(self.fix).format(**self._params(translate)) if self.fix else None

    def _params(self, translate) -> dict:
        # words passed as parameters (marked N_) are translated too; other
        # strings (paths, ids) have no catalog entry and come back unchanged
        return {k: translate(v) if isinstance(v, str) and v else v
                for k, v in self.params.items()}

    def to_json(self) -> dict:
        return {"id": self.id, "title": self.title, "status": self.status,
                "message": self.render(), "fix": self.render_fix(), "details": self.details}


@dataclass
class Report:
    root: str
    store: str
    findings: list[Finding]

    @property
    def status(self) -> str:
        worst = max((_SEVERITY[f.status] for f in self.findings), default=0)
        return ("ok", "warn", "fail")[worst]

    @property
    def exit_code(self) -> int:
        return {"ok": EXIT_OK, "warn": EXIT_WARNING, "fail": EXIT_PROBLEMS}[self.status]

    def to_json(self) -> dict:
        return {"root": self.root, "store": self.store, "status": self.status,
                "exit_code": self.exit_code, "checks": [f.to_json() for f in self.findings]}


def run(settings: Settings, *, now: datetime | None = None, environ=None,
        free_bytes=None) -> Report:
    """Run every check; ``free_bytes(path)`` overrides the free-space probe (tests)."""
    from .archives import all_checks
    from .checks import Context

    context = Context(settings, now or datetime.now(timezone.utc), environ, free_bytes)
    findings = []
    for check in all_checks():
        try:
            findings.append(check(context))
        except (PoppoarcError, OSError) as exc:     # one broken check must not hide the rest
            name = check.__name__.removeprefix("check_").replace("_", "-")
            findings.append(Finding(name, N_("Check"), "fail",
                                    N_("{check}: the check itself failed: {error}"),
                                    N_("fix the problem named, then run poppoarc doctor again"),
                                    {"check": name, "error": str(exc)}))
    return Report(str(settings.root), str(settings.store), findings)
