"""A running lab: VMs on a private bridge, recorded in a state directory.

``lab.json`` in the state directory names the network namespace and the VMs, so
``exec``, ``reboot`` and ``down`` work from any process. Each VM keeps its files
(console log, disks, control socket) in ``STATE/NAME/``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

from aoeprov.errors import AoeprovError, LabError
from aoeprov.lab import vm as vmlib
from aoeprov.lab.channel import GuestChannel
from aoeprov.lab.initramfs import build_initramfs, paths_to_keep
from aoeprov.lab.kernel import Kernel, default_cache_dir, fetch_kernel
from aoeprov.lab.netns import LabNetwork
from aoeprov.lab.units import host_enabled_units, runtime_units, units_to_mask
from aoeprov.runner import Result, Runner, ShRunner

LOG = logging.getLogger(__name__)

STATE_FILE = "lab.json"
BOOT_TIMEOUT = 240.0
# a guest whose AoE target is gone can take aoe_deadsecs (180 s) to shut down
REBOOT_TIMEOUT = BOOT_TIMEOUT + 240.0
CHECKOUT = Path(__file__).resolve().parents[2]

Progress = Callable[[str], None]


def default_state_dir() -> Path:
    return default_cache_dir() / "lab" / "run"


@dataclass(frozen=True)
class VmPlan:
    """What to boot: a name (the guest's hostname), memory, volume groups to back, NICs."""

    name: str
    memory_mb: int = 768
    vg_names: tuple[str, ...] = ()
    nics: int = 1  # eth0..eth{nics-1}, each on a network (bridge) of its own


class Lab:
    def __init__(self, state_dir: Path, runner: Runner | None = None,
                 progress: Progress | None = None) -> None:
        self.state_dir = state_dir.resolve()
        self.runner = runner or ShRunner()
        self.progress = progress or (lambda msg: LOG.info("%s", msg))
        tag = hashlib.sha256(str(self.state_dir).encode()).hexdigest()[:6]
        self.tag = tag
        self.network = LabNetwork(f"aoeprov-lab-{tag}", 1500)
        self.vms: dict[str, vmlib.VmConfig] = {}

    # -- state ---------------------------------------------------------------

    @property
    def state_file(self) -> Path:
        return self.state_dir / STATE_FILE

    def save(self) -> None:
        data = {"netns": self.network.netns, "mtu": self.network.mtu,
                "vms": [{**asdict(v), "directory": str(v.directory)} for v in self.vms.values()]}
        self.state_file.write_text(json.dumps(data, indent=2) + "\n")

    @classmethod
    def load(cls, state_dir: Path, runner: Runner | None = None,
             progress: Progress | None = None) -> Lab:
        lab = cls(state_dir, runner, progress)
        try:
            data = json.loads(lab.state_file.read_text())
        except FileNotFoundError as exc:
            raise LabError(f"no lab is running (no {lab.state_file}); start one with "
                           "`aoeprov lab up SPEC`") from exc
        lab.network = LabNetwork(data["netns"], int(data["mtu"]))
        for v in data["vms"]:
            cfg = vmlib.VmConfig(**{**v, "directory": Path(v["directory"]),
                                    "vg_names": tuple(v["vg_names"]),
                                    "extra_cmdline": tuple(v["extra_cmdline"])})
            lab.vms[cfg.name] = cfg
        return lab

    def vm(self, name: str) -> vmlib.VmConfig:
        try:
            return self.vms[name]
        except KeyError:
            raise LabError(f"no VM named {name!r} in the lab (VMs: "
                           f"{', '.join(self.vms) or 'none'})") from None

    @property
    def shared_dir(self) -> Path:
        """A host directory every guest sees live, at the same path.

        The guests' root is an overlay on the host's ``/`` over 9p, and an overlay's
        lower layer must not change under it (the kernel leaves that undefined: a
        guest may go on seeing a file's old version, or not see a new one), and the
        guests cache that layer (``initramfs.HOSTROOT_CACHED_TAG``). This directory is
        bound from an uncached 9p share of the host's root, past the overlay, so files
        the host changes while the lab runs (a config repo a test pushes to) are seen
        as they are now.
        """
        return self.state_dir / "shared"

    def channel(self, name: str) -> GuestChannel:
        return self.vm(name).channel()

    # -- lifecycle -----------------------------------------------------------

    def boot(self, plans: Sequence[VmPlan], mtu: int = 1500,
             kernel: Kernel | None = None) -> dict[str, float]:
        """Start every VM in parallel; returns seconds from qemu start to a running system."""
        if self.state_file.exists():
            raise LabError(f"a lab is already running from {self.state_dir}; "
                           "`aoeprov lab down` first")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        kernel = kernel or fetch_kernel(default_cache_dir(), self.runner)
        self.network = LabNetwork(self.network.netns, mtu)
        self.vms = {p.name: vmlib.VmConfig(name=p.name, index=i,
                                           directory=self.state_dir / p.name,
                                           tap=f"lab{self.tag}t{i}", mtu=mtu,
                                           memory_mb=p.memory_mb, vg_names=p.vg_names,
                                           nics=p.nics)
                    for i, p in enumerate(plans)}
        units = runtime_units(sys.executable, str(CHECKOUT),
                              units_to_mask(host_enabled_units(Path("/etc/systemd/system"))))
        self.shared_dir.mkdir(exist_ok=True)
        initrd = build_initramfs(kernel, units, self.state_dir / "initrd.img",
                                 keep=(*paths_to_keep(), str(self.shared_dir)))
        if self.network.exists(self.runner):
            # no state file, so no lab of ours runs there: a crashed run left it behind
            LOG.warning("removing stale network namespace %s", self.network.netns)
            self.network.remove(self.runner)
        networks = max(v.nics for v in self.vms.values())
        self.network.create(self.runner, [[v.taps[n] for v in self.vms.values() if n < v.nics]
                                          for n in range(networks)])
        self.save()
        started: dict[str, float] = {}
        for v in self.vms.values():
            argv = self.network.exec_argv(*vmlib.qemu_argv(v, kernel.vmlinuz, initrd,
                                                            kernel.modules_dir))
            self._step(v.name, "start", partial(self._start_vm, v, argv))
            started[v.name] = time.monotonic()
        self.progress(f"booting {', '.join(self.vms)} (kernel {kernel.release}, MTU {mtu})")
        return {name: self._wait_booted(self.vms[name], started[name],
                                        started[name] + BOOT_TIMEOUT) for name in self.vms}

    def _start_vm(self, v: vmlib.VmConfig, argv: tuple[str, ...]) -> None:
        vmlib.prepare_disks(v, self.runner)
        v.console_log.unlink(missing_ok=True)
        vmlib.start(v, argv, self.runner)

    def _step(self, vm_name: str, step: str, fn: Callable[[], object]) -> object:
        try:
            return fn()
        except AoeprovError as exc:
            raise LabError(f"{vm_name}: {step}: {exc} "
                           f"(console log {self.vms[vm_name].console_log})") from exc

    def _wait_booted(self, v: vmlib.VmConfig, started: float, deadline: float) -> float:
        pid = vmlib.read_pid(v)
        channel = v.channel()

        def wait() -> None:
            channel.wait_ready(max(1.0, deadline - time.monotonic()),
                               alive=lambda: vmlib.is_running(pid, v))
            state = channel.run(("systemctl", "is-system-running", "--wait"), ok_codes=(0, 1),
                                timeout=max(5.0, deadline - time.monotonic()))
            if state.stdout.strip() != "running":
                failed = channel.run(("systemctl", "--failed", "--no-legend", "--plain"))
                LOG.warning("%s: system %s; failed units: %s", v.name, state.stdout.strip(),
                            failed.stdout.strip())

        self._step(v.name, "boot", wait)
        seconds = time.monotonic() - started
        self.progress(f"{v.name}: booted in {seconds:.1f}s")
        return seconds

    def set_link(self, name: str, nic: int, up: bool) -> None:
        """Pull (or put back) the cable of ``name``'s NIC ``nic``: its tap goes down (up)."""
        v = self.vm(name)
        if not 0 <= nic < v.nics:
            raise LabError(f"{name} has no NIC {nic} (it has eth0..eth{v.nics - 1})")
        self.runner.run(("ip", "-n", self.network.netns, "link", "set", v.taps[nic],
                         "up" if up else "down"))

    def run(self, name: str, argv: Sequence[str], *, stdin: str | None = None,
            ok_codes: Sequence[int] = (0,), timeout: float | None = None) -> Result:
        return self.channel(name).run(argv, stdin=stdin, ok_codes=ok_codes, timeout=timeout)

    def boot_id(self, name: str, timeout: float = 30.0) -> str:
        return self.run(name, ("cat", "/proc/sys/kernel/random/boot_id"),
                        timeout=timeout).stdout.strip()

    def reboot(self, name: str) -> float:
        """Reboot the guest (qemu stays) and wait for it; returns the seconds it took."""
        v = self.vm(name)
        before = self.boot_id(name)
        start = time.monotonic()
        self.run(name, ("systemctl", "--no-block", "reboot"))
        deadline = start + REBOOT_TIMEOUT
        while time.monotonic() < deadline:
            if not vmlib.is_running(vmlib.read_pid(v), v):
                raise LabError(f"{name}: reboot: qemu exited (console log {v.console_log})")
            try:
                # short timeout: while the guest restarts, requests go unanswered
                if self.boot_id(name, timeout=2.0) != before:
                    break
            except AoeprovError:
                pass
            time.sleep(1.0)
        else:
            raise LabError(f"{name}: reboot: not back after {REBOOT_TIMEOUT:.0f}s "
                           f"(console log {v.console_log})")
        self._wait_booted(v, start, max(deadline, time.monotonic() + 60.0))
        return time.monotonic() - start

    def down(self) -> None:
        for v in self.vms.values():
            vmlib.stop(v)
        self.network.remove(self.runner)
        self.state_file.unlink(missing_ok=True)
        self.progress(f"lab down (console logs kept in {self.state_dir})")
