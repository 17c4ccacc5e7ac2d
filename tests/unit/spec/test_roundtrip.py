"""Property: any valid spec survives dump -> load -> dump unchanged."""

from __future__ import annotations

import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aoeprov.spec import dump_spec, load_spec_text
from aoeprov.spec.model import (
    Allocation,
    Backing,
    DeviceBacking,
    DiskSpec,
    ExportSpec,
    FileBacking,
    FilesystemSpec,
    FsType,
    HostSpec,
    KernelModule,
    LvmBacking,
    ModulePersistence,
    MountSpec,
    PartitionSpec,
    Role,
    ServerKind,
    Spec,
    TableType,
    TargetSpec,
    WriteMode,
)
from aoeprov.spec.parttypes import GPT_ALIASES
from aoeprov.spec.sizes import MIB

# Names that YAML would read as something else unless quoted ("yes", "083", "1e3", "null").
NAME = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,11}", fullmatch=True)
TRICKY = st.sampled_from(["yes", "no", "on", "null", "083", "0x1f", "1e3", "12:30", "~", "1_0"])
VALUE = st.one_of(TRICKY, NAME, st.text(string.printable.strip() + " é", max_size=12))
LABEL = st.from_regex(r"[a-z0-9]{1,12}", fullmatch=True)
IFACES = st.lists(st.sampled_from(["eth0", "eth1", "ens3", "bond0"]), min_size=1, max_size=3,
                  unique=True)
MAC = st.lists(st.integers(0, 255), min_size=6, max_size=6).map(
    lambda b: ":".join(f"{x:02x}" for x in b))
DISK_SIZE = st.one_of(st.integers(64, 2**20).map(lambda m: m * MIB),
                      st.integers(64 * MIB, 2**40))
PART_SIZE = st.one_of(st.none(), st.integers(1, 16).map(lambda m: m * MIB),
                      st.integers(1, 16 * MIB))


@st.composite
def modules(draw: st.DrawFn) -> tuple[KernelModule, ...]:
    names = draw(st.lists(st.sampled_from(["aoe", "loop", "dm_mod", "virtio_net"]),
                          unique=True, max_size=3))
    return tuple(KernelModule(n, tuple(draw(st.dictionaries(
        st.from_regex(r"[a-z_]{1,12}", fullmatch=True), VALUE, max_size=2)).items()))
        for n in names if n != "aoe")


@st.composite
def backing(draw: st.DrawFn, index: int) -> Backing:
    kind = draw(st.sampled_from(["lvm", "file", "device"]))
    size = draw(DISK_SIZE)
    if kind == "lvm":
        return LvmBacking(draw(NAME), f"lv{index}-{draw(NAME)}", size)
    if kind == "file":
        return FileBacking(f"/srv/{index}/{draw(NAME)}.img", size,
                           draw(st.sampled_from(list(Allocation))), draw(st.booleans()))
    return DeviceBacking(f"/dev/disk{index}", draw(st.none() | st.just(size)))


@st.composite
def partitions(draw: st.DrawFn, disk: DiskSpec) -> list[PartitionSpec]:
    count = draw(st.integers(1, 3))
    parts = []
    for number in range(1, count + 1):
        if disk.table == TableType.DOS:
            kind, label = f"{draw(st.integers(1, 255)):x}", None
        else:
            kind = draw(st.sampled_from(sorted(GPT_ALIASES.values())) |
                        st.uuids().map(lambda u: str(u).upper()))
            # a double quote would break sfdisk's name="..." and is refused (spec checks)
            label = f"{draw(VALUE).replace(chr(34), '').strip() or 'x'}-{number}"[:36]
        size = draw(PART_SIZE) if number == count else draw(PART_SIZE.filter(bool))
        parts.append(PartitionSpec(f"{disk.name}p{number}", disk.name, number, kind, size, label))
    return parts


@st.composite
def specs(draw: st.DrawFn) -> Spec:
    n_targets = draw(st.integers(1, 2))
    n_initiators = draw(st.integers(1, 2))
    hosts = []
    for i in range(n_targets + n_initiators):
        role = Role.TARGET if i < n_targets else Role.INITIATOR
        roles = frozenset({role}) | draw(st.sets(st.sampled_from(list(Role)), max_size=1))
        hosts.append(HostSpec(f"h{i}-{draw(NAME)}", roles, tuple(draw(IFACES)), draw(modules()),
                              draw(st.sampled_from(list(ModulePersistence))),
                              draw(st.sampled_from([None, "/var/lib/prometheus/node-exporter"]))))
    chains = max(n_targets, n_initiators) + draw(st.integers(0, 2))
    addresses = draw(st.lists(st.tuples(st.integers(0, 65534), st.integers(0, 254)),
                              min_size=chains, max_size=chains, unique=True))
    targets, exports, disks, parts, filesystems, mounts = [], [], [], [], [], []
    for k, (shelf, slot) in enumerate(addresses):
        server = hosts[k if k < n_targets else draw(st.integers(0, n_targets - 1))]
        target = TargetSpec(f"t{k}", server.name, draw(backing(k)))
        targets.append(target)
        read_only = draw(st.booleans())   # nothing on a read-only export may ask for a write
        exports.append(ExportSpec(
            f"x{k}", shelf, slot, target.name,
            tuple(draw(st.lists(st.sampled_from(server.interfaces), min_size=1, unique=True))),
            draw(st.sampled_from(list(ServerKind))), read_only,
            tuple(draw(st.lists(MAC, unique=True, max_size=2))),
            draw(st.sampled_from(list(WriteMode))), draw(st.integers(2, 1024))))
        if k >= n_initiators and draw(st.booleans()):
            continue
        client = hosts[n_targets + (k if k < n_initiators else
                                    draw(st.integers(0, n_initiators - 1)))]
        disk = DiskSpec(f"d{k}", client.name, shelf, slot,
                        draw(st.none() | st.just(server.name)), draw(st.none() | MAC),
                        draw(st.none() | st.sampled_from(list(TableType))),
                        draw(st.booleans()) and not read_only)
        disks.append(disk)
        on_disk = draw(partitions(disk)) if disk.table else []
        parts.extend(on_disk)
        devices = [p.name for p in on_disk] or [disk.name]
        for device in devices:
            if not draw(st.booleans()):
                continue
            fstype = draw(st.sampled_from(list(FsType)))
            fs = FilesystemSpec(f"fs-{device}", device, fstype,
                                draw(st.none() | LABEL),
                                tuple(draw(st.lists(VALUE, max_size=3))),
                                draw(st.booleans()) and not read_only)
            filesystems.append(fs)
            if draw(st.booleans()):
                mounts.append(MountSpec(
                    f"/mnt/{device}", fs.name,
                    tuple(draw(st.lists(st.from_regex(r"[^,\s]{1,10}", fullmatch=True)
                                        .filter(lambda o: o.isprintable())
                                        .filter(lambda o: o not in ("auto", "noauto"))
                                        .filter(lambda o, ro=read_only: not (ro and o == "rw")),
                                        min_size=1, max_size=3))),
                    draw(st.booleans()), draw(st.booleans()),
                    draw(st.none() | st.integers(1, 3600))))
    return Spec(1, tuple(hosts), tuple(targets), tuple(exports), tuple(disks), tuple(parts),
                tuple(filesystems), tuple(mounts))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs())
def test_load_dump_load_is_unchanged(spec: Spec) -> None:
    text = dump_spec(spec)
    loaded = load_spec_text(text, "generated.yaml")
    assert loaded == spec
    assert dump_spec(loaded) == text
