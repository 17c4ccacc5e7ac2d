"""The built-in target's counters as Prometheus metrics (``aoeprov-target.prom``).

Made from ``TargetServer.snapshot`` (its documented, stable shape), so the file
says what SIGUSR1 and ``--stats-file`` say. Per-export series carry the export's
name and AoE address as labels.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aoeprov.metrics import Metric, Sample, metric

PROM_FILE = "aoeprov-target.prom"

# snapshot key -> (metric name, help); counters end in _total
EXPORT_COUNTERS = {
    "frames_in": ("aoeprov_target_export_frames_in_total", "AoE frames received for the export."),
    "frames_out": ("aoeprov_target_export_frames_out_total", "AoE frames sent for the export."),
    "reads": ("aoeprov_target_export_reads_total", "ATA read commands served."),
    "writes": ("aoeprov_target_export_writes_total", "ATA write commands served."),
    "bytes_read": ("aoeprov_target_export_read_bytes_total", "Bytes read by initiators."),
    "bytes_written": ("aoeprov_target_export_written_bytes_total",
                      "Bytes written by initiators."),
    "flushes": ("aoeprov_target_export_flushes_total", "Cache flushes (FLUSH CACHE, sync)."),
    "ata_errors": ("aoeprov_target_export_ata_errors_total", "ATA commands answered with error."),
    "aoe_errors": ("aoeprov_target_export_aoe_errors_total", "AoE requests answered with error."),
    "queue_full": ("aoeprov_target_export_queue_full_total",
                   "Requests that found every buffer of the export busy."),
}
EXPORT_GAUGES = {
    "in_flight": ("aoeprov_target_export_in_flight", "Requests being served right now."),
    "in_flight_max": ("aoeprov_target_export_in_flight_max",
                      "Most requests in flight at once since the target started."),
}
TARGET_COUNTERS = {
    "frames_in": ("aoeprov_target_frames_in_total", "AoE frames received, all exports."),
    "malformed": ("aoeprov_target_malformed_frames_total", "Malformed frames dropped."),
    "link_errors": ("aoeprov_target_link_errors_total", "Failed receives and sends."),
    "internal_errors": ("aoeprov_target_internal_errors_total", "Requests that hit a bug."),
}


def _export_labels(exp: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    return (("export", str(exp.get("name", ""))), ("aoe", str(exp.get("aoe", ""))))


def target_metrics(snapshot: Mapping[str, Any]) -> list[Metric]:
    exports = [e for e in snapshot.get("exports", []) if isinstance(e, Mapping)]
    out = [metric("aoeprov_target_uptime_seconds", "Seconds since the target started.",
                  float(snapshot.get("uptime", 0)))]
    for key, (name, text) in TARGET_COUNTERS.items():
        if key in snapshot:
            out.append(metric(name, text, float(snapshot[key]), type_="counter"))
    links = [link for link in snapshot.get("links", []) if isinstance(link, Mapping)]
    out.append(Metric("aoeprov_target_link_up", "1 if the link is up and served.", "gauge",
                      tuple(Sample(1 if link.get("state") == "up" else 0,
                                   (("interface", str(link.get("interface"))),))
                            for link in links)))
    out.append(Metric("aoeprov_target_link_rx_dropped_total",
                      "Frames the kernel dropped: the socket's queue was full.", "counter",
                      tuple(Sample(float(link.get("rx_dropped", 0)),
                                   (("interface", str(link.get("interface"))),))
                            for link in links)))
    out.append(Metric("aoeprov_target_export_size_bytes", "Size initiators see.", "gauge",
                      tuple(Sample(float(e.get("sectors", 0)) * 512, _export_labels(e))
                            for e in exports)))
    for table, type_ in ((EXPORT_COUNTERS, "counter"), (EXPORT_GAUGES, "gauge")):
        for key, (name, text) in table.items():
            out.append(Metric(name, text, type_,
                              tuple(Sample(float(e[key]), _export_labels(e))
                                    for e in exports if key in e)))
    return out
