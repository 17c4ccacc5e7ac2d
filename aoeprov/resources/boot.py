"""Boot without rc.local: the initiator's ``aoeprov-initiator.service``.

A oneshot unit ordered after the network and before ``remote-fs-pre.target``
loads ``aoe``, then runs ``aoeprov discover`` (sets ``aoe_iflist``, waits for
the links, triggers discovery, waits for each of the spec's devices with a
deadline). The fstab lines require it (``x-systemd.requires=``), so the
``_netdev`` mounts wait for their devices instead of racing them. It is enabled
through ``systemctl enable`` (``--root`` when sandboxed, which also works where
systemd is not running). The target side's unit belongs to the exports resource.

``/etc/rc.local`` lines that duplicate what the spec manages (the tutorial's
``vbladed``, ``aoe-discover``, ``sleep``, ``mount -a``) are reported by line
number and, with ``--prune``, commented out (``_rclocal``).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from aoeprov.install import aoeprov_command, missing_program
from aoeprov.reconciler.actions import (
    Action,
    Noop,
    Op,
    RemoveFile,
    ResourcePlan,
    RunCommand,
    WriteFile,
)
from aoeprov.reconciler.resource import GatherContext, PlanContext, pending_removal, removal
from aoeprov.reconciler.state import State
from aoeprov.resources._rclocal import RC_LOCAL, comment_out, find_duplicates
from aoeprov.spec.model import Spec
from aoeprov.spec.queries import aoe_iflist, mounts_on

KIND = "boot"
UNIT = "aoeprov-initiator.service"
UNIT_PATH = f"/etc/systemd/system/{UNIT}"
WANTED_BY = "remote-fs.target"
WANTS_LINK = f"/etc/systemd/system/{WANTED_BY}.wants/{UNIT}"
DEFAULT_TIMEOUT = 60   # seconds per device when no mount says x-systemd.device-timeout


@dataclass(frozen=True)
class BootFacts:
    root: str                  # resolved --root ("/" normally)
    python: str                # interpreter of this run (sys.executable)
    # the stable command the unit runs (aoeprov.install); () means `python -m aoeprov`
    command: tuple[str, ...] = ()
    missing_program: str | None = None   # the current unit's program, when it no longer exists
    unit: bytes | None = None  # current unit file content
    enabled: bool = False      # the WantedBy symlink exists
    rc_local: bytes | None = None   # /etc/rc.local, for lines that duplicate the spec


def discover_timeout(spec: Spec, host: str) -> int:
    """The longest device timeout of the host's mounts, at least ``DEFAULT_TIMEOUT``."""
    timeouts = [m.device_timeout for m, _, _ in mounts_on(spec, host)
                if m.device_timeout is not None]
    return max([DEFAULT_TIMEOUT, *timeouts])


def render_initiator_unit(spec: Spec, host: str, aoeprov: tuple[str, ...]) -> str | None:
    """The unit for ``host``, or None when it uses no AoE disk."""
    disks = spec.disks_on(host)
    if not disks:
        return None
    me = spec.host(host)
    if not me.is_initiator:
        return None
    timeout = discover_timeout(spec, host)
    argv = [*aoeprov, "discover"]
    for iface in aoe_iflist(me):   # the list apply's discovery step sets, not a second rule
        argv += ["--iface", iface]
    for disk in disks:
        argv += ["--wait", disk.aoe_name]
    argv += ["--timeout", str(timeout)]
    return "\n".join([
        "# Managed by aoeprov: changes here are overwritten on the next apply.",
        "[Unit]",
        "Description=aoeprov: discover the AoE devices this host mounts",
        "After=network.target",
        "Wants=remote-fs-pre.target",
        "Before=remote-fs-pre.target",
        "",
        "[Service]",
        "Type=oneshot",
        "RemainAfterExit=yes",
        "ExecStartPre=/sbin/modprobe aoe",
        f"ExecStart={' '.join(argv)}",
        f"TimeoutStartSec={timeout + 30}",   # --timeout bounds the whole discover run
        "",
        "[Install]",
        f"WantedBy={WANTED_BY}",
        "",
    ])


def systemctl(root: str, *args: str) -> tuple[str, ...]:
    return ("systemctl", *(("--root", root) if root != "/" else ()), *args)


def gather(ctx: GatherContext) -> BootFacts:
    link = ctx.host.path(WANTS_LINK)
    unit = ctx.host.read_bytes(UNIT_PATH)
    return BootFacts(root=str(ctx.host.root.resolve()), python=sys.executable,
                     command=aoeprov_command(), missing_program=missing_program(unit),
                     unit=unit, enabled=link.is_symlink() or link.exists(),
                     rc_local=ctx.host.read_bytes(RC_LOCAL))


def plan(ctx: PlanContext, facts: BootFacts, state: State) -> ResourcePlan:
    unit = _plan_unit(ctx, facts, state)
    retire = _plan_rc_local(ctx, facts, state)
    return ResourcePlan(actions=unit.actions + retire, noops=unit.noops)


def _plan_rc_local(ctx: PlanContext, facts: BootFacts, state: State) -> tuple[Action, ...]:
    """rc.local lines that do what the spec now manages: reported with their line numbers,
    commented out with --prune (never deleted; the rest of the file byte for byte)."""
    if not facts.rc_local:
        return ()
    me = ctx.me.name
    found = find_duplicates(
        facts.rc_local, [(e.shelf, e.slot) for e in ctx.spec.exports_on(me)],
        discovers=ctx.me.is_initiator and bool(ctx.spec.disks_on(me)),
        mounts=bool(mounts_on(ctx.spec, me)))
    if not found:
        return ()
    if not ctx.prune:
        return tuple(pending_removal(KIND, f"{RC_LOCAL}:{d.number}",
                                     f"line {d.number} `{d.text}` duplicates {d.what}: "
                                     f"commented out with --prune") for d in found)
    after = comment_out(facts.rc_local, [d.number for d in found])
    state.files[RC_LOCAL] = after
    numbers = ", ".join(str(d.number) for d in found)
    lines = "line" if len(found) == 1 else "lines"
    return (WriteFile(kind=KIND, target=RC_LOCAL, op=Op.CHANGE,
                      summary=f"comment out {lines} {numbers} (they duplicate what the spec "
                              f"manages: {'; '.join(dict.fromkeys(d.what for d in found))})",
                      content=after, before=facts.rc_local, backup=True),)


def _plan_unit(ctx: PlanContext, facts: BootFacts, state: State) -> ResourcePlan:
    text = render_initiator_unit(ctx.spec, ctx.me.name,
                                 facts.command or (facts.python, "-m", "aoeprov"))
    want = None if text is None else text.encode()
    actions: list[Action] = []
    noops: list[Noop] = []
    if want is None:
        # removals: carried out with --prune, else pending "-" lines
        if facts.enabled:
            actions.append(removal(ctx, RunCommand(
                kind=KIND, target=UNIT, op=Op.DESTROY,
                summary="disable the initiator unit (no AoE disks here)",
                argv=systemctl(facts.root, "disable", UNIT))))
        if facts.unit is not None:
            actions.append(removal(ctx, RemoveFile(
                kind=KIND, target=UNIT_PATH, op=Op.DESTROY,
                summary="remove the initiator unit (no AoE disks here)", before=facts.unit)))
        if not actions:
            noops.append(Noop(KIND, UNIT, "no AoE disks on this host: no initiator unit"))
        state.files[UNIT_PATH] = None if ctx.prune else facts.unit
        return ResourcePlan(actions=tuple(actions), noops=tuple(noops))
    state.files[UNIT_PATH] = want
    if facts.unit == want:
        noops.append(Noop(KIND, UNIT_PATH, "unit file up to date"))
    else:
        gone = (f" (its program {facts.missing_program} no longer exists: the unit cannot "
                f"start)") if facts.missing_program else ""
        actions.append(WriteFile(
            kind=KIND, target=UNIT_PATH, op=Op.CHANGE if facts.unit is not None else Op.CREATE,
            summary="initiator boot unit: load aoe, discover and wait for the devices "
                    "before remote mounts" + gone, content=want, before=facts.unit))
    if facts.enabled:
        noops.append(Noop(KIND, UNIT, f"enabled ({WANTED_BY})"))
    else:
        actions.append(RunCommand(kind=KIND, target=UNIT, op=Op.CREATE,
                                  summary=f"enable the initiator unit ({WANTED_BY})",
                                  argv=systemctl(facts.root, "enable", UNIT)))
    return ResourcePlan(actions=tuple(actions), noops=tuple(noops))
