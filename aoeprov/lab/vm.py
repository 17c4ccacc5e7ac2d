"""One lab VM: its files, the qemu command line, start and stop.

Each VM gets a small ext4 disk for its overlay's upper layer (``/dev/vda``), extra
disks when it holds volume groups (``/dev/vdb``...), one virtio NIC per network
(``eth0`` on the lab's first bridge, ``eth1`` on the second...), each on a tap of its
own, and a virtio-serial port for the control channel. qemu daemonizes, so a lab outlives the
``lab up`` process; its pid file is how ``lab down`` finds it again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from aoeprov.errors import LabError
from aoeprov.lab.channel import GuestChannel
from aoeprov.lab.initramfs import HOSTROOT_CACHED_TAG, HOSTROOT_TAG, MODULES_TAG
from aoeprov.lab.units import AGENT_PORT
from aoeprov.runner import Runner

LOG = logging.getLogger(__name__)

QEMU = "qemu-system-x86_64"
UPPER_DISK_SIZE = 2 << 30   # sparse: holds only what the guest changes
VG_DISK_SIZE = 8 << 30      # sparse: the target's volume group


@dataclass(frozen=True)
class VmConfig:
    name: str
    index: int
    directory: Path           # this VM's files
    tap: str
    mtu: int
    memory_mb: int = 768
    vg_names: tuple[str, ...] = ()   # one extra disk per volume group, in order (vdb, vdc...)
    extra_cmdline: tuple[str, ...] = field(default=())
    nics: int = 1                    # eth0..eth{nics-1}, NIC n on the lab's bridge n

    @property
    def mac(self) -> str:
        return self.nic_mac(0)

    def nic_mac(self, nic: int) -> str:
        return f"52:54:00:a0:{0xe0 + nic:02x}:{self.index + 1:02x}"

    @property
    def taps(self) -> tuple[str, ...]:
        """The host end of each NIC: ``tap`` for eth0, ``tap`` + ``n1`` for eth1..."""
        return (self.tap, *(f"{self.tap}n{nic}" for nic in range(1, self.nics)))

    @property
    def upper_disk(self) -> Path:
        return self.directory / "upper.img"

    def vg_disk(self, vg: str) -> Path:
        return self.directory / f"{vg}.img"

    @property
    def console_log(self) -> Path:
        return self.directory / "console.log"

    @property
    def agent_socket(self) -> Path:
        return self.directory / "agent.sock"

    @property
    def pid_file(self) -> Path:
        return self.directory / "qemu.pid"

    @property
    def machine_id(self) -> str:
        return hashlib.sha256(f"aoeprov-lab/{self.name}".encode()).hexdigest()[:32]

    def channel(self) -> GuestChannel:
        return GuestChannel(self.name, self.agent_socket, self.directory / "agent.lock")

    def kernel_cmdline(self) -> str:
        return " ".join(("console=ttyS0", "net.ifnames=0", "quiet", "loglevel=4",
                         f"systemd.hostname={self.name}", f"systemd.machine_id={self.machine_id}",
                         "systemd.show_status=0", f"aoeprov.mtu={self.mtu}",
                         f"aoeprov.nics={self.nics}", *self.extra_cmdline))


def qemu_argv(vm: VmConfig, vmlinuz: Path, initrd: Path, modules_dir: Path) -> tuple[str, ...]:
    argv = [QEMU, "-name", vm.name, "-machine", "pc", "-accel", "tcg",
            "-smp", "1", "-m", str(vm.memory_mb), "-nodefaults", "-no-user-config",
            "-display", "none", "-vga", "none",
            "-kernel", str(vmlinuz), "-initrd", str(initrd), "-append", vm.kernel_cmdline(),
            "-chardev", f"file,id=console,path={vm.console_log},append=on",
            "-serial", "chardev:console",
            # the host's / twice: the guest mounts one cached, one live (initramfs)
            *_share("hostroot", Path("/"), HOSTROOT_TAG, multidevs=True),
            *_share("hostrootcached", Path("/"), HOSTROOT_CACHED_TAG, multidevs=True),
            *_share("modules", modules_dir, MODULES_TAG),
            "-drive", f"file={vm.upper_disk},if=virtio,format=raw,cache=unsafe"]
    # cache=unsafe on the upper disk only: it is scratch; the VG disks keep write barriers
    for vg in vm.vg_names:
        argv += ["-drive", f"file={vm.vg_disk(vg)},if=virtio,format=raw,cache=writeback"]
    for nic, tap in enumerate(vm.taps):
        argv += ["-netdev", f"tap,id=net{nic},ifname={tap},script=no,downscript=no",
                 "-device", f"virtio-net-pci,netdev=net{nic},mac={vm.nic_mac(nic)}"]
    argv += ["-device", "virtio-serial-pci",
             "-chardev", f"socket,id=agent,path={vm.agent_socket},server=on,wait=off",
             "-device", f"virtserialport,chardev=agent,name={AGENT_PORT}",
             "-pidfile", str(vm.pid_file), "-daemonize"]
    return tuple(argv)


def _share(fsdev: str, path: Path, tag: str, multidevs: bool = False) -> tuple[str, ...]:
    """A read-only 9p share of ``path`` the guest mounts by ``tag`` (``multidevs``: the
    share spans several host filesystems, their inode numbers remapped to stay unique)."""
    remap = ",multidevs=remap" if multidevs else ""
    return ("-fsdev", f"local,id={fsdev},path={path},readonly=on,security_model=passthrough"
                      f"{remap}",
            "-device", f"virtio-9p-pci,fsdev={fsdev},mount_tag={tag}")


def prepare_disks(vm: VmConfig, runner: Runner) -> None:
    """Fresh sparse disk images: an empty ext4 upper layer, and raw VG disks."""
    vm.directory.mkdir(parents=True, exist_ok=True)
    for disk, size in [(vm.upper_disk, UPPER_DISK_SIZE),
                       *((vm.vg_disk(vg), VG_DISK_SIZE) for vg in vm.vg_names)]:
        disk.unlink(missing_ok=True)
        with disk.open("wb") as fh:
            fh.truncate(size)
    runner.run(("mkfs.ext4", "-q", "-F", "-L", "lab-upper", str(vm.upper_disk)))


def read_pid(vm: VmConfig) -> int | None:
    try:
        return int(vm.pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def is_running(pid: int | None, vm: VmConfig) -> bool:
    """True if ``pid`` is this VM's qemu (a recycled pid belongs to someone else)."""
    if pid is None:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return QEMU.encode() in cmdline and str(vm.agent_socket).encode() in cmdline


def start(vm: VmConfig, argv: tuple[str, ...], runner: Runner) -> int:
    vm.pid_file.unlink(missing_ok=True)
    runner.run(argv, timeout=60)
    pid = read_pid(vm)
    if pid is None or not is_running(pid, vm):
        raise LabError(f"{vm.name}: boot: qemu did not start (console log {vm.console_log})")
    return pid


def stop(vm: VmConfig, timeout: float = 10.0) -> None:
    """Kill the VM's qemu: SIGTERM, then SIGKILL; the guest is disposable."""
    pid = read_pid(vm)
    if not is_running(pid, vm):
        return
    assert pid is not None
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_running(pid, vm):
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
