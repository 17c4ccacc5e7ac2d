"""The pull agent's metrics for node_exporter's textfile collector (``aoeprov-pull.prom``)."""

from __future__ import annotations

from aoeprov.metrics import Metric, Sample, metric
from aoeprov.pull.state import RESULTS, PullRecord

PROM_FILE = "aoeprov-pull.prom"


def record_metrics(record: PullRecord) -> list[Metric]:
    return [
        metric("aoeprov_pull_last_run_timestamp_seconds",
               "When the last aoeprov pull run ended (Unix time).", record.last_run),
        metric("aoeprov_pull_last_success_timestamp_seconds",
               "When the last pull run that was neither refused nor failed ended (Unix time).",
               record.last_success),
        metric("aoeprov_pull_last_fetch_timestamp_seconds",
               "When the config repo was last fetched successfully (Unix time).",
               record.last_fetch),
        metric("aoeprov_pull_success", "1 if the last pull run was neither refused nor failed.",
               1 if record.result not in ("refused", "failed", "") else 0),
        Metric("aoeprov_pull_result", "The result of the last pull run (1 for the one it was).",
               "gauge", tuple(Sample(1 if r == record.result else 0, (("result", r),))
                              for r in RESULTS)),
        metric("aoeprov_pull_pending_changes",
               "Changes pending after the last run: drift in plan mode, what apply left.",
               record.pending),
        metric("aoeprov_pull_commit_info",
               "The commit the host converged on (applied), the good spec and the last seen.",
               1, {"applied": record.applied_commit, "good": record.good_commit,
                   "seen": record.seen_commit, "host": record.host}),
        Metric("aoeprov_pull_runs_total", "Pull runs by result since the state was created.",
               "counter", tuple(Sample(record.runs.get(r, 0), (("result", r),))
                                for r in RESULTS)),
    ]
