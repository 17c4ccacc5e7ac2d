"""Network namespaces, veth links and AoE servers for the net tier and the benchmark.

Everything here creates its own uniquely named namespaces and removes them again, so
AoE frames only ever travel on links that exist for one test. Imported as ``netlab``
by pytest (``tests/net`` is on its path) and as ``tests.net.netlab`` by the benchmark.

The client side runs in the test process itself: ``in_netns`` moves the calling thread
into a namespace just long enough to open a raw socket there (a socket stays in the
namespace it was created in), so tests drive ``AoeClient`` directly.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aoeprov.aoe.transport import EthernetTransport
from aoeprov.client import AoeClient
from aoeprov.errors import AoeprovError

CLONE_NEWNET = 0x40000000
_LIBC = ctypes.CDLL(None, use_errno=True)
REPO = Path(__file__).resolve().parents[2]


def _ip(*args: str) -> None:
    subprocess.run(("ip", *args), check=True, capture_output=True, text=True, timeout=30)


def _setns(fd: int) -> None:
    if _LIBC.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextlib.contextmanager
def in_netns(name: str) -> Iterator[None]:
    """Run the body with this thread inside network namespace ``name``."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    other = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        _setns(other)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(own)
        os.close(other)


@dataclass
class Lab:
    """A client namespace joined to a server namespace by one veth pair per port.

    With ``bridge`` the client's ends are enslaved to a bridge and the client uses the
    bridge: several server interfaces (distinct MACs) then share one broadcast domain.
    """

    tag: str
    mtu: int
    client_ns: str
    server_ns: str
    client_if: str
    server_ifs: list[str]
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def state_dir(self) -> Path:
        """Where this lab's built-in targets keep their state (removed with the lab)."""
        return Path(tempfile.gettempdir()) / f"aoetest-state-{self.tag}"

    def mac(self, ns: str, ifname: str) -> str:
        out = subprocess.run(("ip", "-n", ns, "-o", "link", "show", ifname), check=True,
                             capture_output=True, text=True).stdout
        return out.split("link/ether ")[1].split()[0]

    @property
    def server_if(self) -> str:
        return self.server_ifs[0]

    def server_mac(self, port: int = 0) -> str:
        return self.mac(self.server_ns, self.server_ifs[port])

    @property
    def client_mac(self) -> str:
        return self.mac(self.client_ns, self.client_if)

    def popen(self, ns: str, argv: Sequence[str],
              log: Path | None = None) -> subprocess.Popen[bytes]:
        """Start ``argv`` inside ``ns``; ``ip netns exec`` execs, so the pid is the program's."""
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        with open(log or os.devnull, "ab") as out:  # the child keeps its own copy
            proc = subprocess.Popen(("ip", "netns", "exec", ns, *argv), stdout=out, stderr=out,
                                    stdin=subprocess.DEVNULL, env=env)
        self.procs.append(proc)
        return proc


def make_lab(mtu: int = 1500, ports: int = 1, bridge: bool = False) -> Lab:
    tag = secrets.token_hex(3)
    client_ns, server_ns = f"aoetest-c-{tag}", f"aoetest-s-{tag}"
    lab = Lab(tag, mtu, client_ns, server_ns, f"vc{tag}0", [f"vs{tag}{i}" for i in range(ports)])
    try:
        _ip("netns", "add", client_ns)
        _ip("netns", "add", server_ns)
        for ns in (client_ns, server_ns):
            _ip("-n", ns, "link", "set", "lo", "up")
        if bridge:
            lab.client_if = f"br{tag}"
            _ip("-n", client_ns, "link", "add", lab.client_if, "mtu", str(mtu), "type", "bridge")
        for i, server_if in enumerate(lab.server_ifs):
            client_end = f"vc{tag}{i}"
            _ip("-n", client_ns, "link", "add", client_end, "mtu", str(mtu), "type", "veth",
                "peer", "name", server_if, "mtu", str(mtu), "netns", server_ns)
            if bridge:
                _ip("-n", client_ns, "link", "set", client_end, "master", lab.client_if)
            _ip("-n", client_ns, "link", "set", client_end, "up")
            _ip("-n", server_ns, "link", "set", server_if, "up")
        if bridge:
            _ip("-n", client_ns, "link", "set", lab.client_if, "up")
    except BaseException:
        remove_lab(lab)
        raise
    return lab


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> int:
    """SIGTERM, then SIGKILL after ``timeout``; returns the exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
    return proc.returncode


def remove_lab(lab: Lab) -> None:
    for proc in lab.procs:
        stop_process(proc)
    for ns in (lab.client_ns, lab.server_ns):
        subprocess.run(("ip", "netns", "del", ns), capture_output=True, timeout=30)
    shutil.rmtree(lab.state_dir, ignore_errors=True)


def open_transport(lab: Lab, ifname: str | None = None) -> EthernetTransport:
    """A client-side raw socket on the client's interface, opened inside its namespace."""
    with in_netns(lab.client_ns):
        return EthernetTransport(ifname or lab.client_if, responses=True)


class SpoofedTransport:
    """A transport that claims another source MAC: a second initiator on the same link.

    Answers to the spoofed MAC still reach our socket, because a veth peer delivers
    every frame to packet sockets whatever its destination MAC.
    """

    def __init__(self, inner: EthernetTransport, mac: bytes) -> None:
        self._inner = inner
        self.mac = mac
        self.mtu = inner.mtu
        self.ifname = inner.ifname

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)


@contextlib.contextmanager
def lab_context(mtu: int = 1500, ports: int = 1, bridge: bool = False) -> Iterator[Lab]:
    lab = make_lab(mtu, ports, bridge)
    try:
        yield lab
    finally:
        remove_lab(lab)


# ---- AoE servers ---------------------------------------------------------------

@dataclass(frozen=True)
class Export:
    """One export as both servers understand it (vblade's arguments)."""

    shelf: int
    slot: int
    path: Path
    read_only: bool = False
    offset: int = 0        # sectors
    length: int = 0        # sectors, 0 = to the end
    macs: tuple[str, ...] = ()
    sync: bool = False
    bufcnt: int = 0        # advertised buffer count, 0 = the server's default
    direct: bool = False   # O_DIRECT (vblade -d)

    def options(self) -> list[str]:
        opts = []
        if self.bufcnt:
            opts += ["-b", str(self.bufcnt)]
        if self.read_only:
            opts.append("-r")
        if self.sync:
            opts.append("-s")
        if self.direct:
            opts.append("-d")
        if self.offset:
            opts += ["-o", str(self.offset)]
        if self.length:
            opts += ["-l", str(self.length)]
        if self.macs:
            opts += ["-m", ",".join(self.macs)]
        return opts


TARGET_KINDS = ("builtin", "vblade")


def server_argv(kind: str, export: Export, ifname: str,
                state_dir: Path | None = None) -> list[str]:
    args = [str(export.shelf), str(export.slot), ifname, str(export.path)]
    if kind == "builtin":
        state = ["--state-dir", str(state_dir)] if state_dir is not None else []
        return [sys.executable, "-m", "aoeprov", "target", *state, *export.options(), *args]
    if kind == "vblade":
        return ["vblade", *export.options(), *args]
    raise ValueError(f"unknown target kind {kind!r}")


def start_server(lab: Lab, kind: str, export: Export, port: int = 0,
                 log: Path | None = None,
                 extra: Sequence[Export] = ()) -> subprocess.Popen[bytes]:
    """Start ``kind`` serving ``export`` (and, built-in only, ``extra`` exports too)."""
    ifname = lab.server_ifs[port]
    if not extra:
        return lab.popen(lab.server_ns, server_argv(kind, export, ifname, lab.state_dir), log)
    if kind != "builtin":
        raise ValueError(f"{kind} serves one export per process")
    from aoeprov.targetd.config import ExportConfig, render_config

    configs = [ExportConfig(shelf=e.shelf, slot=e.slot, path=str(e.path), interfaces=(ifname,),
                            read_only=e.read_only, offset=e.offset, length=e.length or None,
                            allowed_macs=e.macs, write_mode="sync" if e.sync else "writeback")
               for e in (export, *extra)]
    config = export.path.with_name(f"exports-{lab.tag}-{port}.json")
    config.write_text(render_config(configs))
    return lab.popen(lab.server_ns, [sys.executable, "-m", "aoeprov", "target", "--state-dir",
                                     str(lab.state_dir), "--config", str(config)], log)


def answers(client: AoeClient) -> bool:
    """Whether the target ``client`` talks to answers a query config (it may be starting)."""
    try:
        client.discover()
    except AoeprovError:
        return False
    return True


def wait_until(predicate: object, timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process, from /proc/PID/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    # fields[0] is state (field 3); utime and stime are fields 14 and 15.
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def make_image(path: Path, size: int, pattern: bool = True) -> Path:
    """A file of ``size`` bytes; with ``pattern`` each sector starts with its LBA."""
    with open(path, "wb") as f:
        if pattern:
            chunk = 1 << 20
            for base in range(0, size, chunk):
                n = min(chunk, size - base)
                f.write(sector_pattern(base // 512, n // 512))
        else:
            f.truncate(size)
    return path


def sector_pattern(lba: int, count: int) -> bytes:
    """Deterministic, LBA-dependent content: sector ``lba`` = 8-byte LBA repeated."""
    return b"".join(lba_sector(lba + i) for i in range(count))


def lba_sector(lba: int) -> bytes:
    return (lba.to_bytes(8, "little")) * 64
