"""``lab up``: boot one VM per spec host, converge each with ``aoeprov apply``, show the result.

The lab never edits the spec it is given. It writes a derived copy into the state
directory, with sizes scaled down (``--size-override storage1=2G``) or the export
server switched (``--export-server vblade``), and copies it into every guest at
``GUEST_SPEC``. Hosts are converged in order, targets first, each by this
checkout's ``aoeprov apply`` running inside the guest.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from aoeprov.errors import AoeprovError, LabError
from aoeprov.lab import vm as vmlib
from aoeprov.lab.lab import Lab, VmPlan
from aoeprov.spec import Spec, load_spec
from aoeprov.spec.model import LvmBacking
from aoeprov.spec.queries import mounts_on
from aoeprov.spec.sizes import format_size, parse_size

LOG = logging.getLogger(__name__)

GUEST_SPEC = "/var/lib/aoeprov-lab/spec.yaml"
BACKING_KEYS = ("lvm", "file", "device")
VG_RESERVE = 64 << 20  # LVM metadata and rounding on the VG disk
MAX_NICS = 4


@dataclass
class UpReport:
    boot_seconds: dict[str, float] = field(default_factory=dict)
    apply_seconds: dict[str, float] = field(default_factory=dict)
    views: dict[str, str] = field(default_factory=dict)  # initiator host -> what it shows


def parse_override(text: str) -> tuple[str, str]:
    """``storage1=2G`` -> ("storage1", "2G"), the size checked as the spec would."""
    name, sep, size = text.partition("=")
    if not sep or not name or not size:
        raise LabError(f"--size-override {text!r}: expected TARGET=SIZE, e.g. storage1=2G")
    try:
        parse_size(size)
    except ValueError as exc:
        raise LabError(f"--size-override {text!r}: {exc}") from exc
    return name, size


def derive_spec_text(text: str, source: str, sizes: Mapping[str, str],
                     export_server: str | None = None) -> str:
    """The spec with target sizes and export servers replaced, as YAML."""
    doc: Any = yaml.safe_load(text)
    if not isinstance(doc, dict):
        raise LabError(f"{source}: not a spec (the document is not a mapping)")
    targets = {t.get("name"): t for t in doc.get("targets") or [] if isinstance(t, dict)}
    for name, size in sizes.items():
        if name not in targets:
            raise LabError(f"--size-override {name}: no target {name!r} in {source} "
                           f"(targets: {', '.join(map(str, targets)) or 'none'})")
        kinds = [k for k in BACKING_KEYS if isinstance(targets[name].get(k), dict)]
        if not kinds:
            raise LabError(f"--size-override {name}: target {name!r} has no lvm/file/device")
        targets[name][kinds[0]]["size"] = size
    if export_server:
        for export in doc.get("exports") or []:
            if isinstance(export, dict):
                export["server"] = export_server
    notes = [f"{n}={s}" for n, s in sizes.items()]
    if export_server:
        notes.append(f"server={export_server}")
    header = (f"# Derived by `aoeprov lab up` from {source}"
              f"{' with ' + ', '.join(notes) if notes else ''}. Do not edit.\n")
    return header + yaml.safe_dump(doc, sort_keys=False)


def vm_plans(spec: Spec) -> list[VmPlan]:
    """One VM per host, targets first; a target holding LVM backings gets a disk per VG;
    a host listing ``eth1`` gets a second NIC (on the lab's second network), and so on."""
    def vgs(host: str) -> tuple[str, ...]:
        return tuple(sorted({t.backing.vg for t in spec.targets
                             if t.host == host and isinstance(t.backing, LvmBacking)}))

    hosts = sorted(spec.hosts, key=lambda h: not h.is_target)
    return [VmPlan(h.name, vg_names=vgs(h.name), nics=nics(h.name, h.interfaces))
            for h in hosts]


def nics(host: str, interfaces: Sequence[str]) -> int:
    """How many NICs a guest needs for ``interfaces``: the lab's guests have eth0, eth1..."""
    count = 1
    for name in interfaces:
        number = name.removeprefix("eth")
        if not name.startswith("eth") or not number.isdigit() or int(number) > MAX_NICS - 1:
            raise LabError(f"host {host}: interface {name!r}: a lab guest's NICs are eth0.."
                           f"eth{MAX_NICS - 1}")
        count = max(count, int(number) + 1)
    return count


def check_vg_sizes(spec: Spec, source: str) -> None:
    need: dict[str, int] = {}
    for t in spec.targets:
        if isinstance(t.backing, LvmBacking):
            need[t.backing.vg] = need.get(t.backing.vg, 0) + t.backing.size
            if need[t.backing.vg] > vmlib.VG_DISK_SIZE - VG_RESERVE:
                raise LabError(
                    f"{source}: target {t.name} needs {format_size(t.backing.size)} in VG "
                    f"{t.backing.vg}, but the lab's VG disk is "
                    f"{format_size(vmlib.VG_DISK_SIZE)}: scale it down with "
                    f"--size-override {t.name}=2G")


def mount_paths_on(spec: Spec, host: str) -> list[str]:
    """Mount points on ``host`` (the mounts whose disk belongs to it)."""
    return [m.path for m, _, _ in mounts_on(spec, host)]


def initiator_view(lab: Lab, spec: Spec, host: str) -> str:
    """What the tutorial shows on the initiator: aoe-stat, fdisk -l, mount and df lines."""
    lines = ["$ aoe-stat", lab.run(host, ("aoe-stat",)).stdout.rstrip()]
    for disk in spec.disks_on(host):
        out = lab.run(host, ("fdisk", "-l", disk.device_path), ok_codes=(0, 1)).stdout
        lines += [f"$ fdisk -l {disk.device_path}", out.rstrip()]
    paths = mount_paths_on(spec, host)
    mounts = lab.run(host, ("mount",)).stdout.splitlines()
    lines.append("$ mount | grep " + " ".join(paths))
    lines += [m for m in mounts if any(f" on {p} " in m for p in paths)]
    for p in paths:
        lines += [f"$ df -h {p}", lab.run(host, ("df", "-h", p)).stdout.rstrip()]
    return "\n".join(lines)


def guest_aoeprov(*args: str) -> tuple[str, ...]:
    """This checkout's aoeprov, as the guest runs it (same path: the guest's / is the host's)."""
    return (sys.executable, "-m", "aoeprov", *args)


def prepare_vgs(lab: Lab, plan: VmPlan) -> None:
    for i, vg in enumerate(plan.vg_names):
        dev = f"/dev/vd{chr(ord('b') + i)}"
        if lab.run(plan.name, ("vgs", vg), ok_codes=(0, 5)).rc == 0:
            continue
        lab.run(plan.name, ("pvcreate", "-y", dev))
        lab.run(plan.name, ("vgcreate", vg, dev))


def apply_host(lab: Lab, host: str, timeout: float = 900.0) -> tuple[float, str]:
    start = time.monotonic()
    try:
        done = lab.run(host, guest_aoeprov("apply", GUEST_SPEC, "--host", host), timeout=timeout)
    except AoeprovError as exc:
        raise LabError(f"{host}: apply: {exc} (console log {lab.vm(host).console_log})") from exc
    return time.monotonic() - start, done.stdout


def up(lab: Lab, spec_path: Path, *, mtu: int = 1500, sizes: Mapping[str, str] | None = None,
       export_server: str | None = None, apply: bool = True) -> UpReport:
    report = UpReport()
    derived = derive_spec_text(spec_path.read_text(), str(spec_path), sizes or {}, export_server)
    lab.state_dir.mkdir(parents=True, exist_ok=True)
    derived_path = lab.state_dir / "spec.yaml"
    derived_path.write_text(derived)
    spec = load_spec(derived_path)
    check_vg_sizes(spec, str(spec_path))
    plans = vm_plans(spec)
    report.boot_seconds = lab.boot(plans, mtu=mtu)
    for plan in plans:
        step = "create volume groups"
        try:
            prepare_vgs(lab, plan)
            step = f"copy the spec to {GUEST_SPEC}"
            lab.run(plan.name, ("mkdir", "-p", str(Path(GUEST_SPEC).parent)))
            lab.run(plan.name, ("tee", GUEST_SPEC), stdin=derived)
        except AoeprovError as exc:
            raise LabError(f"{plan.name}: {step}: {exc}") from exc
    if not apply:
        return report
    for plan in plans:
        lab.progress(f"{plan.name}: aoeprov apply {GUEST_SPEC} --host {plan.name}")
        seconds, output = apply_host(lab, plan.name)
        report.apply_seconds[plan.name] = seconds
        lab.progress("\n".join(f"  {line}" for line in output.rstrip().splitlines()))
        lab.progress(f"{plan.name}: converged in {seconds:.1f}s")
    for h in spec.hosts:
        if h.is_initiator:
            report.views[h.name] = initiator_view(lab, spec, h.name)
    return report


def run_plan(lab: Lab, host: str, extra: Sequence[str] = ()) -> tuple[int, str]:
    """``aoeprov plan --detailed-exitcode`` in a guest: (0 converged or 2 pending, its output)."""
    done = lab.run(host, guest_aoeprov("plan", GUEST_SPEC, "--host", host,
                                       "--detailed-exitcode", *extra), ok_codes=(0, 2))
    return done.rc, done.stdout
