"""Exports a target host serves: the built-in target, or vblade, kept running.

Built-in target: the export list is rendered to ``/etc/aoeprov/target.json``
(``aoeprov.targetd.config``) and served by ``aoeprov-target.service``. A changed
list is applied with SIGHUP (``systemctl reload``): the target keeps serving the
exports that did not change. The reload is journaled as owed before the config
is written, so a run killed in between still reloads next time.

``server: vblade``: one ``aoeprov-vblade@<eX.Y>-<netif>.service`` instance per
export and interface (vblade serves one interface), configured by an
environment file in ``/etc/aoeprov/vblade/``; vblade cannot reload, so a
changed instance is restarted.

Removals (only with ``--prune``, otherwise pending ``-`` lines): an export that
left the spec is dropped from ``target.json`` and the target reloaded (the other
exports keep serving); when none is left the target is stopped and disabled and
its config and unit removed. vblade instances whose file aoeprov wrote and the
spec no longer lists are stopped and their file removed. The backing store (LV,
image file) is never touched by a removal.

Where systemd is not PID 1, the same commands run under ``_supervise`` (a
double-forked supervisor with a pid file in ``/run/aoeprov``). Under ``--root``
only files are written: nothing is started.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from aoeprov.errors import PlanError, TargetError
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
from aoeprov.reconciler.systemd import systemd_running
from aoeprov.resources import _supervise
from aoeprov.resources._vbladeproc import ForeignVblade, foreign_vblades
from aoeprov.spec.model import ExportSpec, ServerKind, Spec, WriteMode
from aoeprov.targetd.config import ExportConfig, exports_from_spec, parse_config, render_config

LOG = logging.getLogger(__name__)

KIND = "export"
CONFIG = "/etc/aoeprov/target.json"
UNIT_DIR = "/etc/systemd/system"
TARGET_UNIT = "aoeprov-target.service"
VBLADE_TEMPLATE = "aoeprov-vblade@.service"
VBLADE_ENV_DIR = "/etc/aoeprov/vblade"
VBLADE = "/usr/sbin/vblade"
RUN_DIR = "/run/aoeprov"
TARGET_RELOAD = "target-reload"
MANAGED = "# managed by aoeprov"


@dataclass(frozen=True)
class UnitStatus:
    name: str
    enabled: str = "not-found"   # `systemctl is-enabled` word
    active: str = "inactive"     # `systemctl is-active` word


@dataclass(frozen=True)
class ExportFacts:
    files: dict[str, bytes | None] = field(default_factory=dict)  # host path -> content
    vblade_env_files: tuple[str, ...] = ()    # files now in VBLADE_ENV_DIR (host paths)
    live: str = "none"          # "systemd", "supervise" or "none" (--root: files only)
    units: tuple[UnitStatus, ...] = ()
    running: dict[str, int | None] = field(default_factory=dict)  # pid file -> supervisor pid
    run_dir: str = RUN_DIR      # RUN_DIR under --root, for pid files and logs
    python: str = sys.executable
    # the stable command units run (aoeprov.install); () means `python -m aoeprov`
    command: tuple[str, ...] = ()
    missing_programs: dict[str, str] = field(default_factory=dict)   # unit path -> program gone
    foreign: tuple[ForeignVblade, ...] = ()   # vblade processes aoeprov did not start
    # the spec's backing paths with symlinks resolved, to tell a foreign vblade's store
    stores: dict[str, str] = field(default_factory=dict)

    @property
    def aoeprov(self) -> tuple[str, ...]:
        return self.command or (self.python, "-m", "aoeprov")

    def unit(self, name: str) -> UnitStatus:
        return next((u for u in self.units if u.name == name), UnitStatus(name))


# ---- rendering (pure) ------------------------------------------------------------------

def target_unit(aoeprov: tuple[str, ...], metrics_dir: str | None = None) -> str:
    """The built-in target's unit; ``metrics_dir``: the host's ``metrics_dir``."""
    metrics = f" --metrics-dir {metrics_dir}" if metrics_dir is not None else ""
    return f"""{MANAGED}
[Unit]
Description=aoeprov built-in AoE target
Documentation=man:aoeprov-target(8)
Wants=network-online.target
After=network-online.target
# a target that cannot start (a shelf.slot another target serves, a missing backing
# store) fails the unit after a few tries instead of restarting for ever
StartLimitIntervalSec=60
StartLimitBurst=5

[Service]
Type=simple
ExecStart={' '.join(aoeprov)} target --config {CONFIG}{metrics}
ExecReload=/bin/kill -HUP $MAINPID
Restart=always
RestartSec=2

[Install]
WantedBy=multi-user.target
"""


def vblade_template() -> str:
    return f"""{MANAGED}
[Unit]
Description=aoeprov vblade export %i
Documentation=man:vblade(8)
Wants=network-online.target
After=network-online.target

[Service]
Type=simple
EnvironmentFile={VBLADE_ENV_DIR}/%i.conf
ExecStart={VBLADE} $options $shelf $slot $netif $filename
Restart=always
RestartSec=2

[Install]
WantedBy=multi-user.target
"""


def vblade_instance(exp: ExportSpec, iface: str) -> str:
    return f"{exp.aoe_name}-{iface}"


def vblade_options(exp: ExportSpec) -> list[str]:
    opts = ["-b", str(exp.buffer_count)]
    if exp.read_only:
        opts.append("-r")
    if exp.write_mode == WriteMode.SYNC:
        opts.append("-s")
    if exp.direct:
        opts.append("-d")
    if exp.allowed_macs:
        opts += ["-m", ",".join(exp.allowed_macs)]
    return opts


def vblade_env(exp: ExportSpec, iface: str, path: str) -> str:
    return (f"{MANAGED}: export {exp.name}\nshelf={exp.shelf}\nslot={exp.slot}\n"
            f"netif={iface}\nfilename={path}\noptions={' '.join(vblade_options(exp))}\n")


def vblade_argv(exp: ExportSpec, iface: str, path: str) -> tuple[str, ...]:
    return (VBLADE, *vblade_options(exp), str(exp.shelf), str(exp.slot), iface, path)


@dataclass(frozen=True)
class _Vblade:
    instance: str
    unit: str
    env_path: str
    env: str
    argv: tuple[str, ...]


def _vblades(spec: Spec, host: str) -> list[_Vblade]:
    out = []
    for exp in spec.exports_on(host):
        if exp.server != ServerKind.VBLADE:
            continue
        path = spec.target(exp.target).backing.device_path
        for iface in exp.interfaces:
            inst = vblade_instance(exp, iface)
            out.append(_Vblade(inst, f"aoeprov-vblade@{inst}.service",
                               f"{VBLADE_ENV_DIR}/{inst}.conf", vblade_env(exp, iface, path),
                               vblade_argv(exp, iface, path)))
    return out


def wanted_files(spec: Spec, host: str, aoeprov: tuple[str, ...],
                 kept: tuple[ExportConfig, ...] = ()) -> dict[str, str]:
    """Host path -> content of every file the exports of ``host`` need (``kept``: built-in
    exports that left the spec but stay served until a run with --prune)."""
    files: dict[str, str] = {}
    builtin = exports_from_spec(spec, host) + list(kept)
    if builtin:
        files[CONFIG] = render_config(builtin)
        # a host deleted from the spec (apply --host NAME --prune) has no metrics_dir
        metrics_dir = next((h.metrics_dir for h in spec.hosts if h.name == host), None)
        files[f"{UNIT_DIR}/{TARGET_UNIT}"] = target_unit(aoeprov, metrics_dir)
    vblades = _vblades(spec, host)
    if vblades:
        files[f"{UNIT_DIR}/{VBLADE_TEMPLATE}"] = vblade_template()
    for vb in vblades:
        files[vb.env_path] = vb.env
    return files


# ---- gathering ---------------------------------------------------------------------------

def parse_systemctl_word(stdout: str) -> str:
    """First word of ``systemctl is-enabled/is-active`` output ("enabled", "inactive"...)."""
    words = stdout.split()
    return words[0] if words else "unknown"


def gather(ctx: GatherContext) -> ExportFacts:
    host, me = ctx.host, ctx.me.name
    python = sys.executable
    command = aoeprov_command()
    wanted = wanted_files(ctx.spec, me, command)
    env_dir = host.path(VBLADE_ENV_DIR)
    env_files = tuple(sorted(f"{VBLADE_ENV_DIR}/{n}" for n in os.listdir(env_dir)
                             if n.endswith(".conf"))) if env_dir.is_dir() else ()
    paths = set(wanted) | set(env_files) | {f"{UNIT_DIR}/{TARGET_UNIT}", CONFIG}
    files = {p: host.read_bytes(p) for p in sorted(paths)}
    if not ctx.spec.exports_on(me) and all(v is None for v in files.values()):
        return ExportFacts()   # never exported anything here
    run_dir = str(host.path(RUN_DIR))
    missing = {p: prog for p in (f"{UNIT_DIR}/{TARGET_UNIT}", f"{UNIT_DIR}/{VBLADE_TEMPLATE}")
               if (prog := missing_program(files.get(p))) is not None}
    if host.sandboxed:
        return ExportFacts(files, env_files, "none", run_dir=run_dir, python=python,
                           command=command, missing_programs=missing)
    foreign = foreign_vblades()
    stores = {p: os.path.realpath(p) for p in (
        ctx.spec.target(e.target).backing.device_path for e in ctx.spec.exports_on(me))}
    if systemd_running():
        names = [TARGET_UNIT] + [f"aoeprov-vblade@{os.path.basename(p)[:-5]}.service"
                                 for p in env_files]
        names += [vb.unit for vb in _vblades(ctx.spec, me)]
        units = []
        for name in dict.fromkeys(names):
            enabled = host.runner.run(("systemctl", "is-enabled", name), ok_codes=range(0, 256))
            active = host.runner.run(("systemctl", "is-active", name), ok_codes=range(0, 256))
            units.append(UnitStatus(name, parse_systemctl_word(enabled.stdout),
                                    parse_systemctl_word(active.stdout)))
        return ExportFacts(files, env_files, "systemd", tuple(units), run_dir=run_dir,
                           python=python, command=command, missing_programs=missing,
                           foreign=foreign, stores=stores)
    pid_files = [f"{run_dir}/target.pid"] + [
        f"{run_dir}/vblade-{os.path.basename(p)[:-5]}.pid" for p in env_files] + [
        f"{run_dir}/vblade-{vb.instance}.pid" for vb in _vblades(ctx.spec, me)]
    running = {p: _supervise.running_pid(Path(p)) for p in dict.fromkeys(pid_files)}
    return ExportFacts(files, env_files, "supervise", running=running, run_dir=run_dir,
                       python=python, command=command, missing_programs=missing,
                       foreign=foreign, stores=stores)


# ---- planning ----------------------------------------------------------------------------

def plan(ctx: PlanContext, facts: ExportFacts, state: State) -> ResourcePlan:
    me = ctx.me.name
    if not ctx.spec.exports_on(me) and all(v is None for v in facts.files.values()):
        return ResourcePlan()
    p = _Planner(ctx, facts, state)
    p.files()
    p.switch_over()
    if facts.live == "systemd":
        p.systemd()
    elif facts.live == "supervise":
        p.supervise()
    elif p.builtin or p.vblades:
        p.noops.append(Noop(KIND, me, "files only: --root given, nothing is started"))
    p.remove_stale()
    return ResourcePlan(tuple(p.actions), tuple(p.noops))


def configured_exports(content: bytes | None) -> list[ExportConfig]:
    """The exports in aoeprov's current target.json (none when absent or unreadable)."""
    if not content:
        return []
    try:
        return parse_config(content.decode("utf-8", "replace"))
    except TargetError as exc:
        LOG.warning("%s is not a valid export list (%s): rewritten from the spec", CONFIG, exc)
        return []


class _Planner:
    def __init__(self, ctx: PlanContext, facts: ExportFacts, state: State) -> None:
        self.ctx, self.facts, self.state = ctx, facts, state
        self.me = ctx.me.name
        spec_builtin = exports_from_spec(ctx.spec, self.me)
        names = {e.aoe_name for e in spec_builtin}
        # built-in exports that left the spec: dropped with --prune, else served as they are
        self.removed = [e for e in configured_exports(facts.files.get(CONFIG))
                        if e.aoe_name not in names]
        self.kept = () if ctx.prune else tuple(self.removed)
        self.wanted = wanted_files(ctx.spec, self.me, facts.aoeprov, self.kept)
        self.vblades = _vblades(ctx.spec, self.me)
        self.builtin = bool(spec_builtin or self.kept)
        self.changed: set[str] = set()
        self.actions: list[Action] = []
        self.noops: list[Noop] = []

    def files(self) -> None:
        target_running = self.target_running()
        for path, text in self.wanted.items():
            content = text.encode()
            before = self.facts.files.get(path)
            self.state.files[path] = content
            if before == content:
                self.noops.append(Noop(KIND, path, "up to date"))
                continue
            self.changed.add(path)
            owes: tuple[str, ...] = ()
            if path == CONFIG and target_running:
                owes = (TARGET_RELOAD,)  # journaled: a kill after the write still reloads
            summary = f"{'write' if before is None else 'update'} {os.path.basename(path)}"
            if path in self.facts.missing_programs:
                summary += (f" (its program {self.facts.missing_programs[path]} no longer "
                            f"exists: the unit cannot start)")
            if path == CONFIG and self.removed and not self.kept:
                summary += (f": stop exporting {', '.join(e.aoe_name for e in self.removed)} "
                            f"(left the spec; the backing store is kept)")
            self.actions.append(WriteFile(
                kind=KIND, target=path, op=Op.CREATE if before is None else Op.CHANGE,
                summary=summary, content=content, before=before, owes=owes))
        for exp in self.kept:
            self.actions.append(pending_removal(
                KIND, exp.aoe_name, f"stop exporting {exp.aoe_name} ({exp.path}; left the "
                                    f"spec): one target reload, the other exports keep serving; "
                                    f"the backing store is kept"))

    def switch_over(self) -> None:
        """A vblade aoeprov did not start (rc.local's vbladed) exporting a spec shelf.slot:
        stopped so the spec's server takes the export over, when it serves the same store;
        refused when it serves another one."""
        for exp in self.ctx.spec.exports_on(self.me):
            store = self.ctx.spec.target(exp.target).backing.device_path
            for old in self.facts.foreign:
                if (old.shelf, old.slot) != (exp.shelf, exp.slot):
                    continue
                if old.resolved != self.facts.stores.get(store, store):
                    raise PlanError(
                        f"export {exp.aoe_name}: a vblade aoeprov did not start (pid {old.pid}: "
                        f"{' '.join(old.argv)}) already exports it from {old.path}; the spec "
                        f"exports {store} there. Stop it or change the spec")
                server = ("the built-in target" if exp.server == ServerKind.BUILTIN
                          else "an aoeprov-vblade@ unit")
                self.actions.append(RunCommand(
                    kind=KIND, target=exp.aoe_name, op=Op.CHANGE,
                    summary=f"switch {exp.aoe_name} over to {server}: stop the vblade started "
                            f"by hand (pid {old.pid}: {' '.join(old.argv)}), same store",
                    argv=("kill", "-TERM", str(old.pid)), ok_codes=(0, 1)))

    def target_running(self) -> bool:
        if self.facts.live == "systemd":
            return self.facts.unit(TARGET_UNIT).active == "active"
        if self.facts.live == "supervise":
            return self.facts.running.get(self.pid_file("target")) is not None
        return False

    def pid_file(self, name: str) -> str:
        return f"{self.facts.run_dir}/{name}.pid"

    def reload_owed(self) -> bool:
        return CONFIG in self.changed or TARGET_RELOAD in self.state.pending

    def systemctl(self, op: Op, unit: str, summary: str, *args: str,
                  settles: str = "") -> None:
        self.actions.append(RunCommand(kind=KIND, target=unit, op=op, summary=summary,
                                       argv=("systemctl", *args, unit), settles=settles))

    def systemd(self) -> None:
        units = [(TARGET_UNIT, f"{UNIT_DIR}/{TARGET_UNIT}")] if self.builtin else []
        units += [(vb.unit, vb.env_path) for vb in self.vblades]
        for unit, source in units:
            status = self.facts.unit(unit)
            if status.enabled != "enabled":
                self.systemctl(Op.CHANGE, unit, "enable at boot", "enable")
            if status.active != "active":
                self.systemctl(Op.RUN, unit, "start", "start",
                               settles=TARGET_RELOAD if unit == TARGET_UNIT else "")
            elif source in self.changed or (unit != TARGET_UNIT and
                                            f"{UNIT_DIR}/{VBLADE_TEMPLATE}" in self.changed):
                self.systemctl(Op.RUN, unit, "restart (its unit or configuration changed)",
                               "restart", settles=TARGET_RELOAD if unit == TARGET_UNIT else "")
            elif unit == TARGET_UNIT and self.reload_owed():
                self.systemctl(Op.RUN, unit, "reload the export list (SIGHUP: unchanged "
                               "exports keep serving)", "reload", settles=TARGET_RELOAD)
            else:
                self.noops.append(Noop(KIND, unit, "enabled and active"))

    def stale_instances(self) -> list[str]:
        wanted = {vb.instance for vb in self.vblades}
        out = []
        for path in self.facts.vblade_env_files:
            inst = os.path.basename(path)[:-len(".conf")]
            content = self.facts.files.get(path) or b""
            if inst not in wanted and content.startswith(MANAGED.encode()):
                out.append(inst)
        return out

    def supervise_argv(self, verb: str, name: str, *rest: str) -> tuple[str, ...]:
        argv: tuple[str, ...] = (self.facts.python, "-m", _supervise.MODULE, verb,
                                 "--pid-file", self.pid_file(name))
        if verb == "start":
            argv += ("--log", f"{self.facts.run_dir}/{name}.log", "--")
        return argv + rest

    def supervise(self) -> None:
        servers: list[tuple[str, str, tuple[str, ...]]] = []
        if self.builtin:
            servers.append(("target", CONFIG, (*self.facts.aoeprov, "target", "--config",
                                               CONFIG)))
        servers += [(f"vblade-{vb.instance}", vb.env_path, vb.argv) for vb in self.vblades]
        for name, source, command in servers:
            running = self.facts.running.get(self.pid_file(name)) is not None
            settles = TARGET_RELOAD if name == "target" else ""
            if not running:
                self.actions.append(RunCommand(
                    kind=KIND, target=name, op=Op.RUN, settles=settles,
                    summary=f"start {name} as a supervised background process",
                    argv=self.supervise_argv("start", name, *command)))
            elif name == "target" and self.reload_owed():
                self.actions.append(RunCommand(
                    kind=KIND, target=name, op=Op.RUN, settles=settles,
                    summary="reload the export list (SIGHUP: unchanged exports keep serving)",
                    argv=self.supervise_argv("signal", name, "HUP")))
            elif source in self.changed:
                self.actions.append(RunCommand(
                    kind=KIND, target=name, op=Op.RUN, summary="stop (configuration changed)",
                    argv=self.supervise_argv("stop", name)))
                self.actions.append(RunCommand(
                    kind=KIND, target=name, op=Op.RUN, summary="start again",
                    argv=self.supervise_argv("start", name, *command)))
            else:
                self.noops.append(Noop(KIND, name, "supervised process running"))

    def remove(self, action: Action) -> None:
        self.actions.append(removal(self.ctx, action))

    def remove_stale(self) -> None:
        """What aoeprov set up for exports that left the spec: stopped, then forgotten; the
        backing store is kept."""
        for inst in self.stale_instances():
            if self.facts.live == "systemd":
                self.remove(RunCommand(
                    kind=KIND, target=f"aoeprov-vblade@{inst}.service", op=Op.DESTROY,
                    summary="stop and disable (export no longer in the spec; the backing store "
                            "is kept)", argv=("systemctl", "disable", "--now",
                                              f"aoeprov-vblade@{inst}.service")))
            elif self.facts.live == "supervise":
                self.remove(RunCommand(
                    kind=KIND, target=f"vblade-{inst}", op=Op.DESTROY,
                    summary="stop (export no longer in the spec; the backing store is kept)",
                    argv=self.supervise_argv("stop", f"vblade-{inst}")))
            path = f"{VBLADE_ENV_DIR}/{inst}.conf"
            self.remove(RemoveFile(kind=KIND, target=path, op=Op.DESTROY,
                                   summary="remove the file of an export the spec no longer "
                                           "lists", before=self.facts.files.get(path)))
        if not self.builtin:
            self.retire_target()

    def retire_target(self) -> None:
        """No built-in export left: stop and disable the target, remove its config and unit."""
        unit_path = f"{UNIT_DIR}/{TARGET_UNIT}"
        if self.facts.live == "systemd":
            status = self.facts.unit(TARGET_UNIT)
            if status.active == "active" or status.enabled == "enabled":
                self.remove(RunCommand(
                    kind=KIND, target=TARGET_UNIT, op=Op.DESTROY,
                    summary="stop and disable the built-in target (no export left in the spec; "
                            "the backing stores are kept)",
                    argv=("systemctl", "disable", "--now", TARGET_UNIT)))
        elif self.facts.live == "supervise" and self.target_running():
            self.remove(RunCommand(
                kind=KIND, target="target", op=Op.DESTROY,
                summary="stop the built-in target (no export left in the spec; the backing "
                        "stores are kept)", argv=self.supervise_argv("stop", "target")))
        for path in (CONFIG, unit_path):
            before = self.facts.files.get(path)
            if before is not None and (path == CONFIG or before.startswith(MANAGED.encode())):
                self.remove(RemoveFile(kind=KIND, target=path, op=Op.DESTROY,
                                       summary=f"remove {os.path.basename(path)} (no built-in "
                                               f"export left in the spec)", before=before))
