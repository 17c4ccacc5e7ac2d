"""What planning knows about the host: observed facts, then predicted effects.

The reconciler starts each plan with an empty ``State``. Resource planners run in a
fixed order; each puts the devices and files it observes into it (a prediction
already there wins) and records the effect of the actions it plans (a partition
that will exist, a filesystem that will be made, a file that will be written),
so later planners plan against the future state: the action that creates
partition 1 lets the same plan format and mount it.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class PartitionState:
    number: int
    start: int               # sectors
    size: int                # sectors
    type: str                # dos: "83" (lower-case hex, no 0x); gpt: type GUID, upper-case
    name: str | None = None  # GPT partition name (label)


@dataclass(frozen=True)
class PartitionTableState:
    label: str                               # "dos" or "gpt"
    partitions: tuple[PartitionState, ...] = ()
    sector_size: int = 512


@dataclass
class BlockDeviceState:
    """One block device (or image file standing in for one)."""

    path: str
    exists: bool
    size: int | None = None                   # bytes
    signatures: tuple[str, ...] = ()          # every probe hit: "ext3", "dos", "LVM2_member"...
    probe_failed: bool = False                # a failed probe counts as "not empty"
    fstype: str | None = None
    label: str | None = None
    uuid: str | None = None
    table: PartitionTableState | None = None
    predicted: bool = False                   # exists only because a planned action creates it
    contents_known: bool = True               # False for a device not visible yet (not discovered)
    # where commands and mounts reach this device when it differs from ``path``: an image file
    # or loop device given with --device, or a loop link for one of its partitions
    local_path: str | None = None
    fs_size: int | None = None                # bytes the filesystem on it spans (when known)
    # a blocked action leaves this device as it is, so nothing is planned on it (no follow-on
    # steps that can never run): why, for the no-op the later planners record
    held: str = ""

    @property
    def blank(self) -> bool:
        return self.contents_known and not self.probe_failed and not self.signatures

    @property
    def command_path(self) -> str:
        """The path to give mkfs, sfdisk, mount...: ``local_path`` if mapped, else ``path``."""
        return self.local_path or self.path


@dataclass
class State:
    """Facts for one planning run. Planners read it and record predicted effects in it."""

    hostname: str
    devices: dict[str, BlockDeviceState] = field(default_factory=dict)
    files: dict[str, bytes | None] = field(default_factory=dict)  # host path -> content or None
    pending: set[str] = field(default_factory=set)               # side effects owed (journal)
    # owed side effects a planner found needless now (an unmount owed for what is not mounted):
    # apply drops them from the journal
    settled: set[str] = field(default_factory=set)

    def device(self, path: str) -> BlockDeviceState:
        return self.devices.get(path) or BlockDeviceState(path=path, exists=False)
