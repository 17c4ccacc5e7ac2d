"""``lab up`` planning: the derived spec, VMs per host, VG sizes, the qemu command line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from aoeprov.errors import LabError
from aoeprov.lab.up import (
    check_vg_sizes,
    derive_spec_text,
    mount_paths_on,
    nics,
    parse_override,
    vm_plans,
)
from aoeprov.lab.vm import VmConfig, qemu_argv
from aoeprov.spec import load_spec_text

TUTORIAL = Path(__file__).resolve().parents[3] / "examples" / "tutorial.yaml"


def test_parse_override() -> None:
    assert parse_override("storage1=2G") == ("storage1", "2G")
    for bad in ("storage1", "=2G", "storage1=", "storage1=2X"):
        with pytest.raises(LabError, match="--size-override"):
            parse_override(bad)


def test_derived_spec_scales_sizes_and_switches_server() -> None:
    text = derive_spec_text(TUTORIAL.read_text(), "tutorial.yaml", {"storage1": "2G"}, "vblade")
    assert text.startswith("# Derived by `aoeprov lab up` from tutorial.yaml with "
                           "storage1=2G, server=vblade.")
    doc = yaml.safe_load(text)
    assert doc["targets"][0]["lvm"]["size"] == "2G"
    assert doc["exports"][0]["server"] == "vblade"
    spec = load_spec_text(text)
    assert spec.targets[0].size == 2 << 30
    check_vg_sizes(spec, "tutorial.yaml")


def test_unknown_override_target_is_named() -> None:
    with pytest.raises(LabError, match=r"no target 'nope'.*targets: storage1"):
        derive_spec_text(TUTORIAL.read_text(), "tutorial.yaml", {"nope": "1G"})


def test_full_size_tutorial_does_not_fit_the_lab_vg() -> None:
    spec = load_spec_text(TUTORIAL.read_text())
    with pytest.raises(LabError, match="--size-override storage1=2G"):
        check_vg_sizes(spec, "tutorial.yaml")


def test_vm_plans_boot_targets_first_with_their_vgs() -> None:
    spec = load_spec_text(TUTORIAL.read_text())
    plans = vm_plans(spec)
    assert [(p.name, p.vg_names, p.nics) for p in plans] == [("server2", ("vg0",), 1),
                                                             ("server1", (), 1)]
    assert mount_paths_on(spec, "server1") == ["/storage"]
    assert mount_paths_on(spec, "server2") == []


def test_qemu_argv(tmp_path: Path) -> None:
    vm = VmConfig("server2", 0, tmp_path / "server2", "labt0", 9000, vg_names=("vg0",))
    argv = qemu_argv(vm, Path("/k/vmlinuz"), Path("/s/initrd.img"), Path("/k/modules"))
    assert argv[0] == "qemu-system-x86_64" and argv[-1] == "-daemonize"
    cmdline = argv[argv.index("-append") + 1]
    assert "systemd.hostname=server2" in cmdline and "aoeprov.mtu=9000" in cmdline
    assert "net.ifnames=0" in cmdline
    drives = [argv[i + 1] for i, a in enumerate(argv) if a == "-drive"]
    assert drives[0].startswith(f"file={tmp_path}/server2/upper.img,")
    assert drives[1].startswith(f"file={tmp_path}/server2/vg0.img,")
    assert "tap,id=net0,ifname=labt0,script=no,downscript=no" in argv
    assert "virtio-net-pci,netdev=net0,mac=52:54:00:a0:e0:01" in argv


def test_hosts_with_two_interfaces_get_two_nics() -> None:
    spec = load_spec_text((TUTORIAL.parent / "multipath.yaml").read_text())
    assert [(p.name, p.nics) for p in vm_plans(spec)] == [("server2", 2), ("server1", 2)]
    with pytest.raises(LabError, match=r"a lab guest's NICs are eth0\.\.eth3"):
        nics("h", ["eth0", "enp1s0"])


def test_qemu_argv_with_two_nics(tmp_path: Path) -> None:
    vm = VmConfig("server2", 1, tmp_path / "server2", "labt1", 1500, nics=2)
    assert vm.taps == ("labt1", "labt1n1")
    argv = qemu_argv(vm, Path("/k/vmlinuz"), Path("/s/initrd.img"), Path("/k/modules"))
    assert "tap,id=net1,ifname=labt1n1,script=no,downscript=no" in argv
    assert "virtio-net-pci,netdev=net1,mac=52:54:00:a0:e1:02" in argv
    assert "virtio-net-pci,netdev=net0,mac=52:54:00:a0:e0:02" in argv
    assert "aoeprov.nics=2" in argv[argv.index("-append") + 1]
