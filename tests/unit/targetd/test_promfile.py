"""The target's snapshot as Prometheus metrics, read back by prometheus_client's parser."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from aoeprov.metrics import render
from aoeprov.targetd.promfile import target_metrics

SNAPSHOT = {
    "version": 1, "uptime": 12.5, "link_errors": 1, "state_errors": 0, "frames_in": 40,
    "not_ours": 0, "malformed": 2, "broadcast_ignored": 0, "vendor_ignored": 0,
    "internal_errors": 0,
    "links": [{"interface": "eth0", "state": "up", "mtu": 1500, "sectors_per_frame": 2,
               "rx_dropped": 3},
              {"interface": "eth1", "state": "down", "mtu": None, "sectors_per_frame": None,
               "rx_dropped": 0}],
    "exports": [{"name": "storage1", "aoe": "e0.1", "path": "/dev/vg0/storage1",
                 "sectors": 2048, "read_only": False, "write_mode": "sync", "buffer_count": 64,
                 "frames_in": 38, "frames_out": 38, "reads": 8, "writes": 4,
                 "bytes_read": 4096, "bytes_written": 2048, "flushes": 1, "ata_errors": 0,
                 "aoe_errors": 0, "masked": 0, "in_flight": 2, "in_flight_max": 5,
                 "queue_full": 0}],
}


def test_every_documented_counter_is_a_metric() -> None:
    families = {f.name: f for f in text_string_to_metric_families(
        render(target_metrics(SNAPSHOT)))}
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in families.values() for s in f.samples}
    e01 = (("aoe", "e0.1"), ("export", "storage1"))
    assert samples[("aoeprov_target_export_frames_in_total", e01)] == 38
    assert samples[("aoeprov_target_export_read_bytes_total", e01)] == 4096
    assert samples[("aoeprov_target_export_written_bytes_total", e01)] == 2048
    assert samples[("aoeprov_target_export_flushes_total", e01)] == 1
    assert samples[("aoeprov_target_export_ata_errors_total", e01)] == 0
    assert samples[("aoeprov_target_export_in_flight", e01)] == 2
    assert samples[("aoeprov_target_export_queue_full_total", e01)] == 0
    assert samples[("aoeprov_target_export_size_bytes", e01)] == 2048 * 512
    assert samples[("aoeprov_target_link_up", (("interface", "eth0"),))] == 1
    assert samples[("aoeprov_target_link_up", (("interface", "eth1"),))] == 0
    assert samples[("aoeprov_target_link_rx_dropped_total", (("interface", "eth0"),))] == 3
    assert samples[("aoeprov_target_malformed_frames_total", ())] == 2
    assert samples[("aoeprov_target_uptime_seconds", ())] == 12.5
    assert families["aoeprov_target_export_frames_in"].type == "counter"
    assert families["aoeprov_target_export_in_flight"].type == "gauge"


def test_a_target_without_exports_still_renders() -> None:
    text = render(target_metrics({"version": 1, "uptime": 0, "links": [], "exports": []}))
    names = {f.name for f in text_string_to_metric_families(text)}
    assert "aoeprov_target_uptime_seconds" in names
