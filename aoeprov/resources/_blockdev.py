"""Block device facts shared by the partition and filesystem resources.

Disks are named by their AoE path (``/dev/etherd/e0.1``) in plans and state. With
``--device e0.1=PATH`` commands reach a disk through PATH instead (an image file,
a loop device or another block device). This kernel may not scan partitions of
such a device, so a partition of a mapped image file or loop device is reached
through a read-write loop device at the partition's offset, recorded as a
symlink ``/run/aoeprov/dev/eX.Yp<N>`` under the root (see ``_loopmap``). The link
counts only while ``losetup --list`` confirms the loop still maps that file,
offset and size: a stale link is never written to.
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from aoeprov.errors import CommandError, PlanError
from aoeprov.host import Host
from aoeprov.reconciler.resource import GatherContext
from aoeprov.reconciler.state import BlockDeviceState, PartitionState, PartitionTableState
from aoeprov.runner import Runner
from aoeprov.spec.layout import SECTOR
from aoeprov.spec.model import DiskSpec, Spec
from aoeprov.spec.queries import mapped_path, partition_node

LOG = logging.getLogger(__name__)

LOOP_LINK_DIR = "/run/aoeprov/dev"
NO_TABLE_MESSAGE = "does not contain a recognized partition table"
BLKID_NOTHING_FOUND = 2


@dataclass(frozen=True)
class Probe:
    """Every signature found on a device; ``failed`` means "could not tell", never "empty"."""

    signatures: tuple[str, ...] = ()
    fstype: str | None = None
    label: str | None = None
    uuid: str | None = None
    failed: bool = False
    error: str = ""


@dataclass(frozen=True)
class LoopInfo:
    name: str
    back_file: str
    offset: int = 0
    sizelimit: int = 0


@dataclass(frozen=True)
class PartitionFacts:
    number: int
    path: str                      # /dev/etherd/e0.1p1: the name plans and fstab use
    local_path: str | None = None  # where commands reach it (node or loop link), if not ``path``
    present: bool = False          # reachable now (node exists, or a confirmed loop link)
    loop_link: str | None = None   # root-mapped link path when reached through a loop
    probe: Probe | None = None


@dataclass(frozen=True)
class DiskFacts:
    name: str                      # spec disk name
    path: str                      # /dev/etherd/eX.Y
    local_path: str | None = None  # --device PATH
    mapped_kind: str | None = None  # "file", "loop" or "block" when mapped
    exists: bool = False
    size: int | None = None        # bytes
    table: PartitionTableState | None = None
    table_error: str = ""          # sfdisk failed for another reason than "no table"
    probe: Probe | None = None
    partitions: tuple[PartitionFacts, ...] = ()
    loop_link_dir: str = ""        # root-mapped LOOP_LINK_DIR, for partitions reached by loop

    @property
    def command_path(self) -> str:
        return self.local_path or self.path

    def partition(self, number: int) -> PartitionFacts | None:
        return next((p for p in self.partitions if p.number == number), None)

    @property
    def needs_loop_links(self) -> bool:
        """Partitions of a mapped image file or loop device are reached through loop links."""
        return self.mapped_kind in ("file", "loop")


# ---- pure parsers ------------------------------------------------------------------------

def parse_blkid_export(text: str) -> dict[str, str]:
    """``blkid -p -o export DEV`` lines ``KEY=VALUE`` into a dict."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


def parse_wipefs_json(text: str) -> tuple[str, ...]:
    """Signature types reported by ``wipefs --no-act --json DEV``, in order, unique."""
    if not text.strip():
        return ()
    doc = json.loads(text)
    types = [str(sig["type"]) for sig in doc.get("signatures", []) if sig.get("type")]
    return tuple(dict.fromkeys(types))


def probe_from_outputs(blkid_rc: int, blkid_out: str, wipefs_out: str | None,
                       error: str = "") -> Probe:
    """Combine both probes. blkid rc 2 = nothing found; any other failure = not empty."""
    if error or wipefs_out is None or blkid_rc not in (0, BLKID_NOTHING_FOUND):
        return Probe(failed=True, error=error or f"blkid exit {blkid_rc}")
    try:
        wiped = parse_wipefs_json(wipefs_out)
    except (ValueError, KeyError) as exc:
        return Probe(failed=True, error=f"wipefs output unreadable: {exc}")
    tags = parse_blkid_export(blkid_out) if blkid_rc == 0 else {}
    found = [tags[k] for k in ("TYPE", "PTTYPE") if tags.get(k)]
    return Probe(signatures=tuple(dict.fromkeys(found + list(wiped))), fstype=tags.get("TYPE"),
                 label=tags.get("LABEL"), uuid=tags.get("UUID"))


def parse_sfdisk_json(text: str) -> PartitionTableState:
    """``sfdisk --json DEV`` into a table record (types: dos lower-case hex, gpt upper GUID)."""
    doc = json.loads(text)["partitiontable"]
    parts = []
    for i, item in enumerate(doc.get("partitions", []), start=1):
        number = _partition_number(str(item.get("node", "")), i)
        ptype = str(item["type"])
        ptype = ptype.upper() if doc["label"] == "gpt" else ptype.lower().removeprefix("0x")
        parts.append(PartitionState(number=number, start=int(item["start"]),
                                    size=int(item["size"]), type=ptype, name=item.get("name")))
    return PartitionTableState(label=str(doc["label"]), partitions=tuple(parts),
                               sector_size=int(doc.get("sectorsize", SECTOR)))


def _partition_number(node: str, fallback: int) -> int:
    match = re.search(r"(\d+)$", node)
    return int(match.group(1)) if match else fallback


def parse_losetup_json(text: str) -> tuple[LoopInfo, ...]:
    """``losetup --list --json -O NAME,BACK-FILE,OFFSET,SIZELIMIT`` (empty output = none)."""
    if not text.strip():
        return ()
    loops = []
    for item in json.loads(text).get("loopdevices", []):
        back = str(item.get("back-file") or "")
        loops.append(LoopInfo(name=str(item["name"]), back_file=back.removesuffix(" (deleted)"),
                              offset=int(item.get("offset") or 0),
                              sizelimit=int(item.get("sizelimit") or 0)))
    return tuple(loops)


# ---- naming --------------------------------------------------------------------------------

def loop_link_host_path(disk: DiskSpec, number: int) -> str:
    return f"{LOOP_LINK_DIR}/{disk.aoe_name}p{number}"


# ---- gathering -----------------------------------------------------------------------------

def list_loops(runner: Runner) -> tuple[LoopInfo, ...]:
    res = runner.run(("losetup", "--list", "--json", "-O", "NAME,BACK-FILE,OFFSET,SIZELIMIT"))
    return parse_losetup_json(res.stdout)


def probe_device(runner: Runner, path: str) -> Probe:
    try:
        blkid = runner.run(("blkid", "-p", "-o", "export", path), ok_codes=range(0, 256))
        wipefs = runner.run(("wipefs", "--no-act", "--json", path), ok_codes=range(0, 256))
    except CommandError as exc:
        return Probe(failed=True, error=str(exc))
    if wipefs.rc != 0:
        return Probe(failed=True, error=f"wipefs exit {wipefs.rc}: {wipefs.stderr.strip()}")
    return probe_from_outputs(blkid.rc, blkid.stdout, wipefs.stdout)


def read_table(runner: Runner, path: str) -> tuple[PartitionTableState | None, str]:
    """The partition table, or (None, "") without one, or (None, error) when unreadable."""
    res = runner.run(("sfdisk", "--json", path), ok_codes=range(0, 256))
    if res.rc == 0:
        try:
            return parse_sfdisk_json(res.stdout), ""
        except (ValueError, KeyError) as exc:
            return None, f"sfdisk --json output unreadable: {exc}"
    if NO_TABLE_MESSAGE in res.stderr:
        return None, ""
    return None, res.stderr.strip() or f"sfdisk exit {res.rc}"


def _kind_of(path: str) -> str | None:
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return None
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISBLK(mode):
        return "loop" if os.path.basename(os.path.realpath(path)).startswith("loop") else "block"
    raise PlanError(f"{path} is neither a regular file nor a block device")


def _size_of(runner: Runner, path: str, kind: str) -> int:
    if kind == "file":
        return os.stat(path).st_size
    return int(runner.run(("blockdev", "--getsize64", path)).stdout.strip())


def gather_disk(host: Host, disk: DiskSpec, device_map: Mapping[str, str],
                loops: tuple[LoopInfo, ...] | None = None, *,
                whole_disk_filesystem: bool = True) -> DiskFacts:
    """Everything planning needs about one spec disk and the partitions on it.

    The whole disk's signatures are probed unless a partition table was read and no
    filesystem uses the whole disk: planning then decides by the table alone (and the
    disk counts as holding that table, never as blank, see ``disk_state``).
    """
    runner = host.runner
    local = mapped_path(device_map, disk)
    where = local or disk.device_path
    kind = _kind_of(where)
    if kind is None:
        if local:
            raise PlanError(f"--device {disk.name}={local}: {local} does not exist")
        return DiskFacts(name=disk.name, path=disk.device_path)
    mapped_kind = kind if local else None
    table, table_error = read_table(runner, where)
    link_dir = str(host.path(LOOP_LINK_DIR)) if mapped_kind in ("file", "loop") else ""
    probe = probe_device(runner, where) if table is None or whole_disk_filesystem else None
    facts = DiskFacts(name=disk.name, path=disk.device_path, local_path=local,
                      mapped_kind=mapped_kind, exists=True, size=_size_of(runner, where, kind),
                      table=table, table_error=table_error, probe=probe,
                      loop_link_dir=link_dir)
    if table is None:
        return facts
    if facts.needs_loop_links and loops is None:
        loops = list_loops(runner)
    parts = tuple(_gather_partition(host, disk, facts, p, loops or ()) for p in table.partitions)
    return DiskFacts(**{**facts.__dict__, "partitions": parts})


def _gather_partition(host: Host, disk: DiskSpec, facts: DiskFacts, part: PartitionState,
                      loops: tuple[LoopInfo, ...]) -> PartitionFacts:
    real = partition_node(disk.device_path, part.number)
    node = partition_node(facts.command_path, part.number)
    if facts.local_path is None or (os.path.exists(node) and facts.mapped_kind != "file"):
        present = os.path.exists(node)
        local = None if facts.local_path is None else node
        return PartitionFacts(number=part.number, path=real, local_path=local, present=present,
                              probe=probe_device(host.runner, node) if present else None)
    link = str(host.path(loop_link_host_path(disk, part.number)))
    ss = facts.table.sector_size if facts.table else SECTOR
    present = loop_link_valid(link, facts.command_path, part.start * ss, part.size * ss, loops)
    # a confirmed link is used by its loop device's name: that is what mountinfo shows
    local = os.readlink(link) if present else link
    return PartitionFacts(number=part.number, path=real, local_path=local, present=present,
                          loop_link=link,
                          probe=probe_device(host.runner, local) if present else None)


def disks_to_gather(spec: Spec, host: str) -> tuple[DiskSpec, ...]:
    """The host's disks that planning reads: those with a table or a whole-disk filesystem."""
    whole = {fs.device for fs in spec.filesystems}
    return tuple(d for d in spec.disks_on(host) if d.table is not None or d.name in whole)


def gather_disks(ctx: GatherContext) -> dict[str, DiskFacts]:
    """Facts of every disk in ``disks_to_gather``, by disk name, each read once.

    The reconciler calls this once per gathering round for the resource modules that
    set ``USES_DISKS`` (partition, filesystem) and hands the result over in
    ``GatherContext.disks``; loop devices are listed once for all mapped disks.
    """
    disks = disks_to_gather(ctx.spec, ctx.me.name)
    if not ctx.host.sandboxed:   # a grown export is seen before planning, not after
        revalidate([d.aoe_name for d in disks if not mapped_path(ctx.device_map, d)])
    loops = list_loops(ctx.host.runner) if any(mapped_path(ctx.device_map, d)
                                               for d in disks) else ()
    whole = {fs.device for fs in ctx.spec.filesystems}
    return {d.name: gather_disk(ctx.host, d, ctx.device_map, loops,
                                whole_disk_filesystem=d.name in whole) for d in disks}


REVALIDATE = "/dev/etherd/revalidate"
REVALIDATE_WAIT = 0.5   # seconds for the target's identify answer to resize the device


def _aoe_sectors(name: str, system_root: Path) -> str:
    try:
        return (system_root / "sys/block" / f"etherd!{name}" / "size").read_text().strip()
    except OSError:
        return ""


def revalidate(names: list[str], system_root: Path = Path("/"),
               wait: float = REVALIDATE_WAIT) -> None:
    """Ask the aoe driver to identify each present device again (``/dev/etherd/revalidate``):
    the kernel learns a grown export's new size only this way. The answer resizes the device
    asynchronously: wait up to ``wait`` seconds for a size to change."""
    ctl = system_root / REVALIDATE.lstrip("/")
    present = [n for n in names if _aoe_sectors(n, system_root)]
    if not present or not ctl.exists():
        return
    before = {n: _aoe_sectors(n, system_root) for n in present}
    for name in present:
        try:
            with open(ctl, "w") as fh:
                fh.write(name)
        except OSError as exc:   # a device going away meanwhile: discovery reports it
            LOG.info("revalidating %s: %s", name, exc)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if any(_aoe_sectors(n, system_root) != before[n] for n in present):
            return
        time.sleep(0.05)


def loop_link_valid(link: str, back_file: str, offset: int, size: int,
                    loops: tuple[LoopInfo, ...]) -> bool:
    """True when ``link`` points at a loop that maps exactly this file, offset and size."""
    try:
        target = os.readlink(link)
    except OSError:
        return False
    back = os.path.realpath(back_file)
    return any(lo.name == target and os.path.realpath(lo.back_file) == back
               and lo.offset == offset and lo.sizelimit == size for lo in loops)


# ---- state -------------------------------------------------------------------------------

def disk_state(facts: DiskFacts) -> BlockDeviceState:
    probe = facts.probe or Probe()
    if facts.probe is None and facts.table is not None:   # not probed: the table was read
        probe = Probe(signatures=(facts.table.label,))
    return BlockDeviceState(
        path=facts.path, exists=facts.exists, size=facts.size, signatures=probe.signatures,
        probe_failed=probe.failed or bool(facts.table_error), fstype=probe.fstype,
        label=probe.label, uuid=probe.uuid, table=facts.table, local_path=facts.local_path)


def partition_state(part: PartitionFacts, size: int | None) -> BlockDeviceState:
    probe = part.probe or Probe()
    return BlockDeviceState(
        path=part.path, exists=part.present, size=size, signatures=probe.signatures,
        probe_failed=probe.failed, fstype=probe.fstype, label=probe.label, uuid=probe.uuid,
        local_path=part.local_path)


def human_size(nbytes: int) -> str:
    value = float(nbytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{nbytes} B"


def an(word: str) -> str:
    """``an ext4``, ``an xfs``, ``a dos``: the article as the word is said (x is "ex")."""
    return f"{'an' if word[:1].lower() in 'aeiox' else 'a'} {word}"


def describe_signatures(dev: BlockDeviceState) -> str:
    if dev.probe_failed:
        return "contents that could not be probed (counted as data)"
    what = []
    if dev.fstype:
        what.append(f"{an(dev.fstype)} filesystem"
                    + (f" labelled {dev.label!r}" if dev.label else "")
                    + (f" (UUID {dev.uuid})" if dev.uuid else ""))
    others = [s for s in dev.signatures if s != dev.fstype]
    if others:
        what.append("signatures " + ", ".join(others))
    return "; ".join(what) or "nothing known"
