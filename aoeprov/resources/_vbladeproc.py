"""vblade processes aoeprov did not start (the tutorial's ``vbladed`` from rc.local).

Found in ``/proc``: a process named ``vblade`` that neither aoeprov's supervisor
nor one of its ``aoeprov-vblade@`` units runs. Its command line is parsed like
vblade's own (options, then shelf, slot, interface, file) by a pure function.
The exports resource switches such an export over to what the spec says (stop
the old process, then serve it) when it serves the same backing store, and
refuses otherwise.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from aoeprov.resources._rclocal import vblade_shelf_slot


@dataclass(frozen=True)
class ForeignVblade:
    pid: int
    shelf: int
    slot: int
    path: str               # the file or device it exports, as given
    resolved: str = ""      # ``path`` with symlinks resolved (/dev/vg0/x -> /dev/dm-0)
    argv: tuple[str, ...] = ()

    @property
    def aoe_name(self) -> str:
        return f"e{self.shelf}.{self.slot}"


def parse_vblade_cmdline(cmdline: bytes, pid: int = 0) -> ForeignVblade | None:
    """``/proc/PID/cmdline`` of a vblade -> what it exports; None for anything else."""
    argv = [a.decode("utf-8", "replace") for a in cmdline.split(b"\0") if a]
    if not argv or os.path.basename(argv[0]) != "vblade":
        return None
    found = vblade_shelf_slot(argv)
    if found is None or not argv[-1].startswith("/"):
        return None
    return ForeignVblade(pid, found[0], found[1], argv[-1], argv=tuple(argv))


def _ours(pid: int, proc: Path) -> bool:
    """Run by aoeprov: an aoeprov-vblade@ unit's cgroup, or aoeprov's supervisor as parent."""
    try:
        if b"aoeprov-vblade@" in (proc / str(pid) / "cgroup").read_bytes():
            return True
        stat = (proc / str(pid) / "stat").read_bytes()
        ppid = int(stat.rsplit(b")", 1)[1].split()[1])
        return b"aoeprov.resources._supervise" in (proc / str(ppid) / "cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        return False


def foreign_vblades(proc: Path = Path("/proc")) -> tuple[ForeignVblade, ...]:
    out = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            found = parse_vblade_cmdline((entry / "cmdline").read_bytes(), int(entry.name))
        except OSError:
            continue   # gone meanwhile
        if found is not None and not _ours(found.pid, proc):
            out.append(ForeignVblade(found.pid, found.shelf, found.slot, found.path,
                                     os.path.realpath(found.path), found.argv))
    return tuple(sorted(out, key=lambda v: v.pid))
