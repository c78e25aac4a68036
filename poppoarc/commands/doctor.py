"""``doctor``: PoppoBuilder's troubleshooting list as checks (``poppoarc.doctor``).

Doctor only looks: it takes no lock and recovers no interrupted restore (it reports one).
"""

from __future__ import annotations

from .. import doctor
from ..config import Settings
from ..i18n import N_
from ..options import DoctorOptions

SUMMARY = N_("Check the installation, the store and the backups, and name a fix for each problem.")
USAGE = ("doctor [--json]",)
OPTIONS = ""
STRICT_CONFIG = False
NEW_ROOT = True          # a root that does not exist yet is reported, not an error
PROGRESS = False
ONLY_LOOKS = True       # no config warnings, no recovery: it reports both itself


def matches(args: dict) -> bool:
    return bool(args["doctor"])


def options(args: dict) -> DoctorOptions:
    return DoctorOptions()


def run(settings: Settings, options: DoctorOptions, progress=None) -> doctor.Report:
    return doctor.run(settings)
