"""Partition tables on the initiator's AoE disks, written with sfdisk scripts.

Three-way semantics per disk: no table → create it; the spec's partitions are
there → nothing; a different table or partition → replace it only when the disk
says ``wipe: true`` and the run says ``--allow-destroy``, otherwise the plan shows
the replacement blocked, with exactly what would be lost. ``dos`` partitions are
matched by number, ``gpt`` ones by name (label). A ``rest`` size also grows: when
the disk grew, the last partition taking the rest grows in place (same start,
``sfdisk -N``; the kernel is told with ``partx``, online). Nothing shrinks.

A partition this plan creates is recorded in the state with unknown contents (a
new partition can expose an old filesystem at the same offset), so the
filesystem planner decides about it only after the node appears and was probed.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from aoeprov.errors import PlanError
from aoeprov.reconciler.actions import (
    Action,
    Drift,
    Noop,
    Op,
    ResourcePlan,
    RunCommand,
    WaitForDevice,
)
from aoeprov.reconciler.resource import GatherContext, PlanContext
from aoeprov.reconciler.state import (
    BlockDeviceState,
    PartitionState,
    PartitionTableState,
    State,
)
from aoeprov.resources._blockdev import (
    LOOP_LINK_DIR,
    DiskFacts,
    describe_signatures,
    disk_state,
    human_size,
    loop_link_host_path,
    partition_state,
)
from aoeprov.resources.mount import parse_mountinfo
from aoeprov.spec.layout import SECTOR, DoesNotFit, Geometry
from aoeprov.spec.model import DiskSpec, PartitionSpec
from aoeprov.spec.parttypes import normalize_type, type_name
from aoeprov.spec.queries import partition_node, read_only_server

LOG = logging.getLogger(__name__)

KIND = "partition"
USES_DISKS = True   # the reconciler hands over the disks' facts in GatherContext.disks
PARTITION_WAIT_TIMEOUT = 30.0


@dataclass(frozen=True)
class PartitionFacts:
    disks: tuple[DiskFacts, ...] = ()
    # partition path (loop link or node, as in DiskFacts) -> where it is mounted now
    mounted: dict[str, str] = field(default_factory=dict)

    def disk(self, name: str) -> DiskFacts | None:
        return next((d for d in self.disks if d.name == name), None)


def gather(ctx: GatherContext, system_root: Path = Path("/")) -> PartitionFacts:
    disks = tuple(ctx.disks[d.name] for d in ctx.spec.disks_on(ctx.me.name)
                  if d.table is not None)
    try:
        sources = {os.path.realpath(e.source): e.mountpoint for e in parse_mountinfo(
            (system_root / "proc/self/mountinfo").read_text()) if e.source.startswith("/")}
    except OSError:
        sources = {}
    mounted = {p.local_path or p.path: sources[real] for d in disks for p in d.partitions
               if p.present and (real := os.path.realpath(p.local_path or p.path)) in sources}
    return PartitionFacts(disks, mounted)


def plan(ctx: PlanContext, facts: PartitionFacts, state: State) -> ResourcePlan:
    actions: list[Action] = []
    noops: list[Noop] = []
    for disk in ctx.spec.disks_on(ctx.me.name):
        wanted = sorted((p for p in ctx.spec.partitions if p.disk == disk.name),
                        key=lambda p: p.number)
        if disk.table is None:
            if wanted:
                raise PlanError(f"disk {disk.name} has partitions but no table type")
            continue
        df = facts.disk(disk.name) or DiskFacts(name=disk.name, path=disk.device_path)
        dev = _seed_state(state, df)
        planner = _DiskPlanner(ctx, disk, tuple(wanted), df, dev, state, facts.mounted)
        planner.plan()
        actions.extend(planner.actions)
        noops.extend(planner.noops)
    return ResourcePlan(tuple(actions), tuple(noops))


def _seed_state(state: State, df: DiskFacts) -> BlockDeviceState:
    """Put the observed disk and its partitions in the state (a prediction wins)."""
    known = state.devices.get(df.path)
    if known is not None and known.predicted:
        return known
    dev = disk_state(df)
    if known is not None and known.local_path and not dev.local_path:
        dev.local_path = known.local_path
    state.devices[df.path] = dev
    if df.table is None:
        return dev
    sizes = {p.number: p.size * df.table.sector_size for p in df.table.partitions}
    for part in df.partitions:
        state.devices[part.path] = partition_state(part, sizes.get(part.number))
    return dev


class _DiskPlanner:
    """Plans one disk; collects actions and no-ops and records predictions in the state."""

    def __init__(self, ctx: PlanContext, disk: DiskSpec, wanted: tuple[PartitionSpec, ...],
                 facts: DiskFacts, dev: BlockDeviceState, state: State,
                 mounted: Mapping[str, str] | None = None) -> None:
        assert disk.table is not None
        self.ctx, self.disk, self.wanted, self.facts, self.dev, self.state = (
            ctx, disk, wanted, facts, dev, state)
        self.mounted = dict(mounted or {})
        self.label = disk.table.value
        self.read_only_by = read_only_server(ctx.spec, disk)  # never written when set
        self.ss = dev.table.sector_size if dev.table else SECTOR
        self.geometry = Geometry((dev.size or 0) // self.ss, self.label, self.ss)
        self.align = self.geometry.align
        self.actions: list[Action] = []
        self.noops: list[Noop] = []

    @property
    def path(self) -> str:
        return self.disk.device_path

    def wanted_type(self, part: PartitionSpec) -> str:
        try:
            return normalize_type(part.type, self.label)
        except ValueError as exc:
            raise PlanError(f"partition {part.name}: {exc}") from exc

    def plan(self) -> None:
        if not self.dev.exists:
            raise PlanError(
                f"disk {self.disk.name}: {self.path} is not there and no discovery in this plan "
                f"brings it (map it with --device {self.disk.aoe_name}=PATH to rehearse)")
        if self.read_only_by:
            self.check_read_only(self.read_only_by)
            return
        if not self.dev.contents_known:
            self.write_table(provisional=True)
            return
        table = self.dev.table
        if table is None:
            if self.dev.blank:
                self.write_table()
            else:
                self.write_table(destroys=(
                    f"{self.path} holds {describe_signatures(self.dev)}; a new {self.label} "
                    f"partition table over it destroys that"))
            return
        if table.label != self.label:
            self.write_table(destroys=self.describe_table(table, f"spec wants {self.label}"))
            return
        missing, different = self.compare(table)
        if different:
            self.noops.clear()  # the matching ones are rewritten with the rest
            self.write_table(destroys=self.describe_table(table, "; ".join(different)))
            return
        if missing:
            self.append(table, missing)
        else:
            self.grow_last(table)
        self.reach_existing(table)

    def grow_last(self, table: PartitionTableState) -> None:
        """The disk grew (an LV, an image): the last partition, if the spec lets it take the
        rest, grows in place: same number, same start (``sfdisk -N``), the kernel told with
        ``partx -u`` (online, even when mounted). Never shrinks."""
        if not self.wanted or self.wanted[-1].size is not None or not self.geometry.total:
            return
        want = self.wanted[-1]
        have = self.find(table, want)
        if have is None or have.start + have.size != max(p.start + p.size
                                                         for p in table.partitions):
            return
        new_size = self.geometry.rest_end - have.start
        if new_size - have.size < self.align:
            return
        node = partition_node(self.path, have.number)
        grown = f"{human_size(have.size * self.ss)} -> {human_size(new_size * self.ss)}"
        summary = f"grow partition {have.number} in place ({grown}, from sector {have.start})"
        part = self.facts.partition(have.number)
        reached = (part.local_path or part.path) if part is not None else node
        if self.facts.needs_loop_links and reached in self.mounted:
            self.actions.append(Drift(
                kind=KIND, target=node, op=Op.CHANGE, summary=f"{summary}: needs unmount (its "
                f"filesystem is mounted through a loop device of the old size)",
                remedy="umount it, then apply again (the partition, its loop device and the "
                       "filesystem are grown)"))
            return
        self.noops[:] = [n for n in self.noops if n.target != node]
        self.actions.append(RunCommand(
            kind=KIND, target=node, op=Op.CHANGE, summary=summary,
            # --no-reread: the disk is in use (mounted); partx tells the kernel instead
            argv=("sfdisk", "--no-reread", "-N", str(have.number), self.dev.command_path),
            stdin=", +\n"))
        grown_part = replace(have, size=new_size)
        self.dev.table = replace(table, partitions=tuple(
            grown_part if p.number == have.number else p for p in table.partitions))
        if self.facts.needs_loop_links:   # a new loop device of the new size, then re-probed
            self.reach(grown_part, provisional=False, new=False)
            return
        self.actions.append(RunCommand(
            kind=KIND, target=node, op=Op.RUN, summary=f"tell the kernel partition "
            f"{have.number} grew (online)",
            argv=("partx", "--update", "--nr", str(have.number), self.dev.command_path)))
        current = self.state.devices.get(node)
        if current is not None:
            current.size = new_size * self.ss

    def check_read_only(self, server: str) -> None:
        """An initiator cannot write a read-only export: the spec's table must be there already."""
        if not self.dev.contents_known:
            self.actions.append(RunCommand(
                kind=KIND, target=self.path, op=Op.RUN, provisional=True,
                summary=f"check the {self.label} partition table once the device appears "
                        f"(exported read-only by {server}: never written)",
                argv=("sfdisk", "--json", self.dev.command_path)))
            for want in self.wanted:
                node = partition_node(self.path, want.number)
                self.state.devices[node] = BlockDeviceState(
                    path=node, exists=True, predicted=True, contents_known=False)
            return
        table = self.dev.table
        found = ""
        if table is None:
            found = "no partition table" + (
                "" if self.dev.blank else f" ({describe_signatures(self.dev)})")
        elif table.label != self.label:
            found = self.describe_found(table)
        else:
            missing, different = self.compare(table)
            if missing or different:
                gone = [f"no partition {p.number}" for p in missing]
                found = f"a {table.label} table with " + "; ".join(gone + different)
        if found or table is None:
            self.noops.clear()
            raise PlanError(f"{self.disk.aoe_name} is exported read-only by {server}: its "
                            f"partition table must already exist; found {found} (the spec wants "
                            f"{self.label}: {self.describe_wanted()})")
        self.reach_existing(table)

    def describe_found(self, table: PartitionTableState) -> str:
        parts = ", ".join(f"{p.number} (type {type_name(p.type)}, "
                          f"{human_size(p.size * table.sector_size)})"
                          for p in table.partitions) or "no partitions"
        return f"a {table.label} table: {parts}"

    def describe_wanted(self) -> str:
        return ", ".join(f"{p.number} (type {type_name(self.wanted_type(p))}, "
                         f"{'rest' if p.size is None else human_size(p.size)})"
                         for p in self.wanted) or "no partitions"

    # ---- comparing ---------------------------------------------------------------------------

    def find(self, table: PartitionTableState, want: PartitionSpec) -> PartitionState | None:
        if self.label == "gpt" and want.label:
            return next((p for p in table.partitions if p.name == want.label), None)
        return next((p for p in table.partitions if p.number == want.number), None)

    def compare(self, table: PartitionTableState) -> tuple[list[PartitionSpec], list[str]]:
        missing: list[PartitionSpec] = []
        different: list[str] = []
        for want in self.wanted:
            have = self.find(table, want)
            if have is None:
                missing.append(want)
                continue
            diffs = self.differences(have, want)
            node = partition_node(self.path, want.number)
            if diffs:
                different.append(f"partition {have.number}: " + ", ".join(diffs))
            else:
                size = "fills the rest of the disk" \
                    if want.size is None else f"size {human_size(have.size * self.ss)}"
                self.noops.append(Noop(KIND, node, f"partition {have.number} exists: type "
                                       f"{type_name(have.type)}, {size}, from sector "
                                       f"{have.start}"))
        return missing, different

    def differences(self, have: PartitionState, want: PartitionSpec) -> list[str]:
        diffs = []
        if have.type != self.wanted_type(want):
            diffs.append(f"type {type_name(have.type)}, spec "
                         f"{type_name(self.wanted_type(want))}")
        if have.number != want.number:
            diffs.append(f"is number {have.number}, spec {want.number}")
        if self.label == "gpt" and want.label and have.name != want.label:
            diffs.append(f"name {have.name!r}, spec {want.label!r}")
        if want.size is not None:
            sectors = self.geometry.sectors(want.size)
            if abs(have.size - sectors) >= self.align:
                diffs.append(f"size {human_size(have.size * self.ss)}, "
                             f"spec {human_size(sectors * self.ss)}")
        return diffs

    # ---- writing -------------------------------------------------------------------------------

    def layout(self, first: int, parts: tuple[PartitionSpec, ...]) -> list[PartitionState]:
        try:
            placed = self.geometry.place(first, [want.size for want in parts])
        except DoesNotFit as exc:
            raise PlanError(f"disk {self.disk.name}: partition {parts[exc.index].number} does "
                            f"not fit ({human_size(self.dev.size or 0)} disk)") from None
        except ValueError as exc:
            raise PlanError(f"disk {self.disk.name}: {exc}") from None
        gpt = self.label == "gpt"
        return [PartitionState(want.number, at.start, at.size, self.wanted_type(want),
                               want.label if gpt else None)
                for want, at in zip(parts, placed, strict=True)]

    def script_line(self, part: PartitionState, want: PartitionSpec, *, start: bool) -> str:
        fields = [f"start={part.start}"] if start else []
        if want.size is not None:
            fields.append(f"size={part.size}")
        fields.append(f"type={part.type}")
        if part.name:
            if '"' in part.name:
                raise PlanError(f"partition {want.name}: a gpt name cannot contain '\"'")
            fields.append(f'name="{part.name}"')
        return ", ".join(fields)

    def write_table(self, *, destroys: str = "", provisional: bool = False) -> None:
        numbers = [p.number for p in self.wanted]
        if numbers != list(range(1, len(numbers) + 1)):
            raise PlanError(f"disk {self.disk.name}: partitions must be numbered 1..n, "
                            f"got {numbers}")
        if self.label == "dos" and len(numbers) > 4:
            raise PlanError(f"disk {self.disk.name}: dos tables hold 4 primary partitions here")
        layout = self.layout(self.align, self.wanted)
        script = "\n".join([f"label: {self.label}"] + [
            self.script_line(p, w, start=True) for p, w in zip(layout, self.wanted, strict=True)])
        blocked = bool(destroys) and not (self.disk.wipe and self.ctx.allow_destroy)
        # a table under a mounted partition is never replaced, whatever the run allows
        busy = "; ".join(f"{self.path} has a partition mounted at {point}: umount {point} "
                         f"first" for part in self.facts.partitions
                         if (point := self.mounted.get(part.local_path or part.path)))
        blocked = blocked or bool(busy and destroys)
        argv: tuple[str, ...] = ("sfdisk",)
        if destroys:  # a replaced table must not leave old signatures under the new partitions
            argv += ("--wipe", "always", "--wipe-partitions", "always")
        summary = f"write a {self.label} partition table: " + ", ".join(
            f"{p.number} ({type_name(p.type)}{' ' + repr(p.name) if p.name else ''}, "
            f"{'rest' if w.size is None else human_size(p.size * self.ss)})"
            for p, w in zip(layout, self.wanted, strict=True))
        self.actions.append(RunCommand(
            kind=KIND, target=self.path, op=Op.DESTROY if destroys else Op.CREATE,
            summary=summary, destructive=bool(destroys), data_loss=destroys,
            requires_allow=blocked, provisional=provisional,
            blocked_by=busy if destroys else "",
            argv=(*argv, self.dev.command_path), stdin=script + "\n"))
        if blocked:  # the disk stays as it is: later planners plan nothing on its partitions
            for part in layout:
                self.predict(part, self.local_path_for(part.number))
                node = partition_node(self.path, part.number)
                self.state.devices[node].held = (f"the {self.label} partition table on "
                                                 f"{self.path} is not written (blocked)")
            return
        table = PartitionTableState(self.label, tuple(layout), self.ss)
        self.dev.table = table
        self.dev.signatures = (self.label,)
        self.dev.probe_failed = False
        self.dev.fstype = self.dev.label = self.dev.uuid = None
        self.after_write(layout, provisional)

    def append(self, table: PartitionTableState, missing: list[PartitionSpec]) -> None:
        top = max((p.number for p in table.partitions), default=0)
        numbers = [p.number for p in missing]
        if numbers != list(range(top + 1, top + 1 + len(missing))) or (
                self.label == "dos" and numbers[-1] > 4):
            raise PlanError(f"disk {self.disk.name}: cannot add partitions {numbers} after "
                            f"partition {top} (only the next free numbers can be appended)")
        used_end = max((p.start + p.size for p in table.partitions), default=self.align)
        first = self.geometry.align_up(used_end)
        layout = self.layout(first, tuple(missing))
        script = "\n".join(self.script_line(p, w, start=True)
                           for p, w in zip(layout, missing, strict=True))
        self.actions.append(RunCommand(
            kind=KIND, target=self.path, op=Op.CREATE,
            summary="add partitions " + ", ".join(str(n) for n in numbers),
            argv=("sfdisk", "--append", self.dev.command_path), stdin=script + "\n"))
        self.dev.table = replace(table, partitions=table.partitions + tuple(layout))
        self.after_write(layout, provisional=False)

    def after_write(self, layout: list[PartitionState], provisional: bool) -> None:
        """Make the new partitions reachable, wait for them, record them as predicted."""
        if not self.facts.needs_loop_links:
            self.actions.append(RunCommand(
                kind=KIND, target=self.path, op=Op.RUN, provisional=provisional,
                summary="re-read the partition table (failure tolerated: sfdisk re-reads too)",
                argv=("blockdev", "--rereadpt", self.dev.command_path), ok_codes=(0, 1)))
        for part in layout:
            self.reach(part, provisional=provisional, new=True)

    def reach_existing(self, table: PartitionTableState) -> None:
        """Existing spec partitions that are not reachable yet (loop link gone, node missing)."""
        unreachable = []
        for want in self.wanted:
            have = self.find(table, want)
            node = partition_node(self.path, want.number)
            current = self.state.devices.get(node)
            if have is None or (current is not None and (current.exists or current.predicted)):
                continue
            unreachable.append(have)
        if unreachable and not self.facts.needs_loop_links:
            self.actions.append(RunCommand(
                kind=KIND, target=self.path, op=Op.RUN,
                summary="re-read the partition table (partition nodes are missing)",
                argv=("blockdev", "--rereadpt", self.dev.command_path), ok_codes=(0, 1)))
        for have in unreachable:
            self.reach(have, provisional=False, new=False)

    def local_path_for(self, number: int) -> str:
        if self.facts.needs_loop_links and not self.kernel_node_exists(number):
            return self.loop_link(number)
        return partition_node(self.dev.command_path, number)

    def predict(self, part: PartitionState, local: str) -> None:
        """Record a partition a planned action makes; its contents are probed once it is there."""
        node = partition_node(self.path, part.number)
        self.state.devices[node] = BlockDeviceState(
            path=node, exists=True, size=part.size * self.ss, predicted=True,
            contents_known=False, local_path=None if local == node else local)

    def reach(self, part: PartitionState, *, provisional: bool, new: bool) -> None:
        node = partition_node(self.path, part.number)
        local = self.local_path_for(part.number)
        if local != partition_node(self.dev.command_path, part.number):
            self.actions.append(RunCommand(
                kind=KIND, target=node, op=Op.CREATE, provisional=provisional,
                summary=f"attach a loop device over partition {part.number} of "
                        f"{self.dev.command_path} (--device rehearsal)",
                argv=(sys.executable, "-m", "aoeprov.resources._loopmap", "attach",
                      "--link", local, "--offset", str(part.start * self.ss),
                      "--size", str(part.size * self.ss), self.dev.command_path)))
        self.actions.append(WaitForDevice(
            kind=KIND, target=local, op=Op.WAIT, provisional=provisional,
            summary=f"wait for {node}" + (f" ({local})" if local != node else ""),
            timeout=PARTITION_WAIT_TIMEOUT))
        self.predict(part, local)
        LOG.debug("predicted %s (new=%s) at %s", node, new, local)

    def kernel_node_exists(self, number: int) -> bool:
        part = self.facts.partition(number)
        return bool(part and part.present and part.loop_link is None)

    def loop_link(self, number: int) -> str:
        name = loop_link_host_path(self.disk, number).rsplit("/", 1)[1]
        return f"{self.facts.loop_link_dir or LOOP_LINK_DIR}/{name}"

    def describe_table(self, table: PartitionTableState, why: str) -> str:
        parts = []
        for p in table.partitions:
            pdev = self.state.devices.get(partition_node(self.path, p.number))
            contents = describe_signatures(pdev) if pdev is not None and pdev.exists \
                else "contents not probed (counted as data)"
            name = f" {p.name!r}" if p.name else ""
            parts.append(f"partition {p.number} (type {type_name(p.type)}{name}, "
                         f"{human_size(p.size * table.sector_size)}): {contents}")
        listing = "; ".join(parts) or "no partitions"
        return (f"{why}: replacing the {table.label} partition table on {self.path} destroys "
                f"{listing}")
