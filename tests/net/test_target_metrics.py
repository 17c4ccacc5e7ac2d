"""The built-in target writes its counters for node_exporter: periodically and at SIGTERM.

A real target process serving an image on a veth link in namespaces this test makes,
a real client writing and reading through it, and prometheus_client's parser reading
the file the target wrote.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from aoeprov.client import AoeClient
from aoeprov.targetd.config import ExportConfig, render_config
from aoeprov.targetd.promfile import PROM_FILE
from tests.net import netlab

pytestmark = pytest.mark.net


def values(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(path.read_text()) for s in f.samples}


def test_target_metrics_file(lab: netlab.Lab, image: Path, tmp_path: Path) -> None:
    config = tmp_path / "exports.json"
    config.write_text(render_config([ExportConfig(shelf=4, slot=7, path=str(image),
                                                  interfaces=(lab.server_if,))]))
    metrics = tmp_path / "metrics"
    proc = lab.popen(lab.server_ns, [sys.executable, "-m", "aoeprov", "target", "--config",
                                     str(config), "--state-dir", str(tmp_path / "state"),
                                     "--metrics-dir", str(metrics), "--metrics-interval", "0.2"],
                     tmp_path / "target.log")
    prom = metrics / PROM_FILE
    label = (("aoe", "e4.7"), ("export", "e4.7"))
    transport = netlab.open_transport(lab)
    try:
        client = AoeClient(transport, 4, 7, target_mac=lab.server_mac(), timeout=0.5, retries=3)
        netlab.wait_until(prom.exists, 15, "the first metrics file")
        client.discover()
        client.write(0, b"\x33" * 4096)
        client.read(0, 8)
        # the ticker rewrites the file while the target serves
        netlab.wait_until(lambda: values(prom).get(
            ("aoeprov_target_export_written_bytes_total", label)) == 4096, 15,
            "the written bytes in the metrics file")
    finally:
        transport.close()
    assert netlab.stop_process(proc) == 0
    final = values(prom)
    assert final[("aoeprov_target_export_read_bytes_total", label)] == 4096
    assert final[("aoeprov_target_export_writes_total", label)] >= 1
    assert ("aoeprov_target_export_in_flight", label) in final
    assert final[("aoeprov_target_export_in_flight_max", label)] >= 1
    assert final[("aoeprov_target_export_size_bytes", label)] == image.stat().st_size
    assert final[("aoeprov_target_link_up", (("interface", lab.server_if),))] == 1
    assert sorted(p.name for p in metrics.iterdir()) == [PROM_FILE]   # no temp file left
    # ticks write the file only: SIGUSR1's JSON line on stderr never appeared
    assert "counters {" not in (tmp_path / "target.log").read_text()
