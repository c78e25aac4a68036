"""``metrics``: the Prometheus text format of the last runs and the stores
(``service.metrics``), as pack, verify, drill and prune write it to ``backup.metrics.file``."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import Settings
from ..errors import EXIT_OK
from ..i18n import N_
from ..options import MetricsOptions
from ..service import metrics
from ..store import runs

SUMMARY = N_("Print the Prometheus metrics of the last runs and of the store.")
USAGE = ("metrics [--json]",)
OPTIONS = ""
STRICT_CONFIG = False
PROGRESS = False


@dataclass
class MetricsResult:
    families: list[metrics.Family]
    text: str
    file: str | None
    exit_code: int = EXIT_OK

    def to_json(self) -> dict:
        return {"file": self.file, "text": self.text,
                "metrics": [{"name": metrics.PREFIX + f.name, "help": f.help, "type": "gauge",
                             "samples": [{"labels": labels, "value": value}
                                         for labels, value in f.samples]}
                            for f in self.families]}


def matches(args: dict) -> bool:
    return bool(args["metrics"])


def options(args: dict) -> MetricsOptions:
    return MetricsOptions()


def run(settings: Settings, options: MetricsOptions, progress=None) -> MetricsResult:
    kinds = runs.load(settings.records_dir)
    stores = metrics.all_store_facts(settings)
    path = metrics.metrics_file(settings)
    return MetricsResult(metrics.families(kinds, stores), metrics.exposition(kinds, stores),
                         str(path) if path else None)
