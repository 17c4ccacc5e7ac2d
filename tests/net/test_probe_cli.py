"""``aoeprov probe`` run inside the client namespace, against both targets."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.net import netlab

pytestmark = pytest.mark.net


def probe(lab: netlab.Lab, *args: str) -> subprocess.CompletedProcess[str]:
    argv = ("ip", "netns", "exec", lab.client_ns, sys.executable, "-m", "aoeprov", "probe",
            "-i", lab.client_if, "--timeout", "0.5", *args)
    return subprocess.run(argv, capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": str(netlab.REPO), "PATH": "/usr/sbin:/usr/bin:/bin"})


def test_probe_lists_each_target_with_size_and_payload(make_lab, serve, image, kind, mtu):
    lab = make_lab(mtu)
    serve(lab, kind, netlab.Export(4, 2, image))
    done = probe(lab, "--json")
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["conflicts"] == []
    (only,) = found["responders"]
    assert only["device"] == "e4.2"
    assert only["mac"] == lab.server_mac()
    assert only["interface"] == lab.client_if
    assert only["size_bytes"] == image.stat().st_size
    assert only["payload"] == {1500: 1024, 9000: 8704}[mtu]
    assert only["buffer_count"] >= 16
    assert only["problem"] is None


def test_probe_table_shows_config_string(lab, serve, connect, image, kind):
    serve(lab, kind, netlab.Export(0, 1, image))
    connect(lab, 0, 1).config(3, b"owner=host1")  # SET
    done = probe(lab)
    assert done.returncode == 0, done.stderr
    header, row = done.stdout.splitlines()
    assert header.split() == ["DEVICE", "MAC", "IFACE", "SIZE", "PAYLOAD", "BUFCNT",
                              "FIRMWARE", "CONFIG"]
    assert row.split() == ["e0.1", lab.server_mac(), lab.client_if, "8.0MiB", "1024",
                           row.split()[5], row.split()[6], "owner=host1"]


def test_probe_flags_two_macs_claiming_one_shelf_slot(make_lab, serve, tmp_path):
    lab = make_lab(1500, ports=2, bridge=True)
    first = netlab.make_image(tmp_path / "a.img", 1 << 20)
    second = netlab.make_image(tmp_path / "b.img", 2 << 20)
    serve(lab, "builtin", netlab.Export(0, 1, first), port=0)
    serve(lab, "vblade", netlab.Export(0, 1, second), port=1)
    serve(lab, "vblade", netlab.Export(0, 2, second), port=1)  # a bystander, no conflict
    done = probe(lab, "--json")
    assert done.returncode == 1
    assert "CONFLICT e0.1" in done.stderr
    found = json.loads(done.stdout)
    macs = sorted([lab.server_mac(0), lab.server_mac(1)])
    assert found["conflicts"] == [{"device": "e0.1", "shelf": 0, "slot": 1, "macs": macs,
                                   "reason": "different identities"}]
    assert found["multipath"] == []
    devices = sorted((r["device"], r["mac"], r["size_bytes"]) for r in found["responders"])
    assert devices == sorted([("e0.1", lab.server_mac(0), 1 << 20),
                              ("e0.1", lab.server_mac(1), 2 << 20),
                              ("e0.2", lab.server_mac(1), 2 << 20)])


def test_probe_with_nobody_answering(lab):
    done = probe(lab)
    assert done.returncode == 0
    assert "no AoE target answered" in done.stdout
