"""``/etc/fstab`` lines for the spec's mounts on this host.

aoeprov owns exactly the lines whose options hold ``x-aoeprov`` (mount(8) and
systemd ignore ``x-*`` options), edits them in place, appends new ones, and
removes its own lines that left the spec; every other line and comment stays
byte for byte. Options are compared as sets. Everything here lives on AoE, so
every line gets ``_netdev`` and ``x-systemd.requires=aoeprov-initiator.service``
(the boot unit that discovers the devices), ``ro`` when the export is read-only, plus ``nofail`` and
``x-systemd.device-timeout=`` when the spec asks. The source is the
``/dev/etherd/eX.Y[pN]`` name: AoE names are stable (shelf.slot), and the
filesystem UUID is not known before mkfs. The write is atomic with a backup;
the engine adds the one ``systemctl daemon-reload`` the change needs.

The file is bytes split on ``\\n`` only (``aoeprov.hostfile``): a comment holding a
``\\r``, ``\\f`` or U+2028 stays one comment, CRLF lines and Latin-1 bytes stay as
they are. Fields are separated by blanks and tabs only, as libmount reads them;
only aoeprov's own lines are ever rewritten.
"""

from __future__ import annotations

from dataclasses import dataclass

from aoeprov.errors import PlanError
from aoeprov.hostfile import join_lines, split_lines
from aoeprov.reconciler.actions import Noop, Op, ResourcePlan, WriteFile
from aoeprov.reconciler.resource import GatherContext, PlanContext, pending_removal
from aoeprov.reconciler.state import State
from aoeprov.spec.hostpaths import normalize_path
from aoeprov.spec.model import MountSpec
from aoeprov.spec.queries import mount_read_only, mounts_on

KIND = "fstab"
FSTAB = "/etc/fstab"
MARKER = "x-aoeprov"
INITIATOR_UNIT = "aoeprov-initiator.service"
# options that only matter to fstab / systemd, never passed to mount(2)
FSTAB_ONLY = frozenset({"auto", "noauto", "_netdev", "nofail", "defaults", MARKER})
# journal key owed when aoeprov's fstab line for a mount point is removed: the mount resource
# unmounts it (or finds it unmounted) and settles it
UNMOUNT_OWED = "unmount:"
_ESCAPES = {" ": "\\040", "\t": "\\011", "\n": "\\012", "\\": "\\134"}


@dataclass(frozen=True)
class FstabFacts:
    content: bytes | None = None     # /etc/fstab under root; None when absent


@dataclass(frozen=True)
class FstabEntry:
    source: str
    mountpoint: str
    fstype: str
    options: tuple[str, ...]
    dump: int = 0
    passno: int = 0

    @property
    def managed(self) -> bool:
        return MARKER in self.options

    def same_as(self, other: FstabEntry) -> bool:
        return (self.source, self.mountpoint, self.fstype, set(self.options), self.dump,
                self.passno) == (other.source, other.mountpoint, other.fstype,
                                 set(other.options), other.dump, other.passno)

    def render(self) -> str:
        return "\t".join((escape(self.source), escape(self.mountpoint), escape(self.fstype),
                          ",".join(self.options), str(self.dump), str(self.passno)))


def escape(field: str) -> str:
    return "".join(_ESCAPES.get(c, c) for c in field)


def unescape(field: str) -> str:
    out, i = [], 0
    while i < len(field):
        code = field[i + 1:i + 4]
        if field[i] == "\\" and len(code) == 3 and all(c in "01234567" for c in code):
            out.append(chr(int(code, 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def _fields(line: bytes) -> list[bytes]:
    """Fields of an fstab line: separated by blanks and tabs only (libmount's separators)."""
    return line.replace(b"\t", b" ").split(b" ")


def parse_line(line: bytes) -> FstabEntry | None:
    """One fstab line -> entry; None for comments, blank and malformed lines (kept verbatim).

    Fields are decoded leniently (undecodable bytes as surrogates): the entry is only
    compared and, for aoeprov's own lines, replaced; the line itself is never re-encoded.
    """
    fields = [f.decode("utf-8", "surrogateescape") for f in _fields(line) if f]
    if not fields or fields[0].startswith("#") or len(fields) < 3:
        return None
    try:
        dump = int(fields[4]) if len(fields) > 4 else 0
        passno = int(fields[5]) if len(fields) > 5 else 0
    except ValueError:
        return None
    options = tuple(fields[3].split(",")) if len(fields) > 3 else ("defaults",)
    return FstabEntry(unescape(fields[0]), unescape(fields[1]), unescape(fields[2]), options,
                      dump, passno)


def parse_fstab(content: bytes) -> list[tuple[bytes, FstabEntry | None]]:
    """Every line (split on ``\\n`` only) with its entry (None: never interpreted)."""
    return [(line, parse_line(line)) for line in split_lines(content)]


def with_read_only(options: tuple[str, ...], read_only: bool) -> tuple[str, ...]:
    """``options`` with ``ro`` implied for a read-only export (a ``rw`` there is dropped)."""
    if not read_only:
        return options
    return tuple(o for o in options if o != "rw") + (() if "ro" in options else ("ro",))


def desired_entry(mount: MountSpec, source: str, fstype: str,
                  read_only: bool = False) -> FstabEntry:
    opts = [o for o in with_read_only(mount.options, read_only)
            if o not in {"auto", "noauto", MARKER}]
    if not mount.auto:
        opts.append("noauto")
    opts += ["_netdev", f"x-systemd.requires={INITIATOR_UNIT}"]
    if mount.nofail:
        opts.append("nofail")
    if mount.device_timeout is not None:
        opts = [o for o in opts if not o.startswith("x-systemd.device-timeout=")]
        opts.append(f"x-systemd.device-timeout={mount.device_timeout}s")
    opts.append(MARKER)
    unique = tuple(dict.fromkeys(opts))
    return FstabEntry(source, mount.path, fstype, unique, 0, 0)


def removed_points(content: bytes | None, wanted: list[FstabEntry]) -> list[str]:
    """Mount points of aoeprov's lines that left the spec, in file order."""
    points = {w.mountpoint for w in wanted}
    ours = (normalize_path(e.mountpoint) for _, e in parse_fstab(content or b"")
            if e is not None and e.managed)
    return list(dict.fromkeys(p for p in ours if p not in points))


def render_fstab(content: bytes | None, wanted: list[FstabEntry],
                 keep: frozenset[str] = frozenset(), adopt: frozenset[str] = frozenset()
                 ) -> bytes:
    """``content`` with aoeprov's lines made equal to ``wanted``; other lines byte for byte.
    Lines of ours for mount points that left the spec are dropped, except those in ``keep``
    (a run without --prune keeps them as they are). Hand-written lines for the mount points
    in ``adopt`` are taken over: rewritten in place as aoeprov's.

    When aoeprov's lines are already as wanted, ``content`` comes back unchanged (even
    without a final newline); otherwise every line ends with one.
    """
    by_point = {e.mountpoint: e for e in wanted}
    done: set[str] = set()
    lines = split_lines(content or b"")
    out: list[bytes] = []
    for line, entry in zip(lines, map(parse_line, lines), strict=True):
        if entry is None or not (entry.managed or normalize_path(entry.mountpoint) in adopt):
            out.append(line)
            continue
        point = normalize_path(entry.mountpoint)   # a line of ours for /data/ is /data's
        want = by_point.get(point)
        if want is None and point in keep and point not in done:
            done.add(point)
            out.append(line)
            continue
        if want is None or point in done:
            continue   # ours, no longer in the spec (or a duplicate): dropped
        done.add(point)
        out.append(line if entry.same_as(want) else want.render().encode())
    out += [e.render().encode() for e in wanted if e.mountpoint not in done]
    if out == lines and content is not None:
        return content
    return join_lines(out)


def same_filesystem(entry: FstabEntry, want: FstabEntry, state: State) -> bool:
    """A hand-written line names the spec's filesystem: same type, and the source is its
    device path, or ``UUID=``/``LABEL=`` of the filesystem found on that device."""
    if entry.fstype != want.fstype:
        return False
    if entry.source == want.source:
        return True
    dev = state.devices.get(want.source)
    key, sep, value = entry.source.partition("=")
    if dev is None or not sep or not value:
        return False
    return (key.upper(), value) in {("UUID", dev.uuid), ("LABEL", dev.label)}


def adopt_lines(content: bytes | None, wanted: list[FstabEntry], state: State
                ) -> tuple[list[FstabEntry], list[str]]:
    """Hand-written lines for the spec's mount points: one naming the same filesystem is
    taken over (``wanted`` gets its options too, merged as a set); any other is refused,
    showing both lines."""
    by_point = {w.mountpoint: i for i, w in enumerate(wanted)}
    out, adopted = list(wanted), []
    for line, entry in parse_fstab(content or b""):
        if entry is None or entry.managed:
            continue
        i = by_point.get(normalize_path(entry.mountpoint))
        if i is None:
            continue
        want = out[i]
        if not same_filesystem(entry, want, state):
            shown = line.strip().decode("utf-8", "backslashreplace")
            raise PlanError(
                f"{FSTAB} mounts something else at {entry.mountpoint} in a line aoeprov does "
                f"not manage:\n  {shown}\nthe spec wants:\n  {want.render()}\n(change or "
                f"remove the hand-written line; one naming the same device, UUID= or LABEL= "
                f"and type is taken over)")
        # the spec decides auto/noauto; anything else the hand-written line had is kept
        extra = tuple(o for o in entry.options if o not in want.options
                      and o not in {"defaults", "auto", "noauto"})
        out[i] = FstabEntry(want.source, want.mountpoint, want.fstype,
                            tuple(o for o in want.options if o != MARKER) + extra + (MARKER,),
                            want.dump, want.passno)
        adopted.append(want.mountpoint)
    return out, adopted


def gather(ctx: GatherContext) -> FstabFacts:
    return FstabFacts(content=ctx.host.read_bytes(FSTAB))


def plan(ctx: PlanContext, facts: FstabFacts, state: State) -> ResourcePlan:
    wanted = [desired_entry(m, src, fstype, mount_read_only(ctx.spec, m))
              for m, src, fstype in mounts_on(ctx.spec, ctx.me.name)]
    before = facts.content
    wanted, adopted = adopt_lines(before, wanted, state)
    removed = removed_points(before, wanted)
    keep = frozenset() if ctx.prune else frozenset(removed)
    after = render_fstab(before, wanted, keep, frozenset(adopted)) \
        if (wanted or before is not None) else None
    if after == b"" and before is None:
        after = None
    state.files[FSTAB] = after
    noops = tuple(Noop(KIND, w.mountpoint, "fstab line present with the same source, type and "
                       "options") for w in wanted if before is not None
                  and any(e is not None and e.managed and e.same_as(w)
                          for _, e in parse_fstab(before)))
    pending = tuple(pending_removal(KIND, point, f"remove the line for {point} (the mount "
                                                 f"left the spec)") for point in keep)
    if after == before:
        if not wanted and not pending:
            return ResourcePlan(noops=(Noop(KIND, FSTAB, "no AoE mounts on this host"),))
        return ResourcePlan(actions=pending, noops=noops)
    changed = [w.mountpoint for w in wanted if not any(
        e is not None and e.managed and e.same_as(w) for _, e in parse_fstab(before or b""))]
    dropped = [p for p in removed if p not in keep]
    changed = [p for p in changed if p not in adopted]
    parts = [f"set AoE mount lines for {', '.join(changed)}"] if changed else []
    if adopted:
        lines = "line" if len(adopted) == 1 else "lines"
        parts.append(f"take over the hand-written {lines} for {', '.join(adopted)} (the same "
                     f"filesystem: marked {MARKER}, options merged)")
    if dropped:
        parts.append(f"remove the lines for {', '.join(dropped)} (the mounts left the spec)")
    summary = "; ".join(parts) or "remove duplicate AoE mount lines"
    action = WriteFile(kind=KIND, target=FSTAB, op=Op.CHANGE if before is not None else Op.CREATE,
                       summary=summary, content=after or b"", before=before, backup=True,
                       # journaled: a run killed after the write still unmounts them next time
                       owes=tuple(UNMOUNT_OWED + p for p in dropped))
    return ResourcePlan(actions=(action, *pending), noops=noops)
