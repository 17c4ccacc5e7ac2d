"""Kernel support for AoE and the kernel modules a host loads (and keeps loading at boot).

Facts come from the running kernel: ``/sys/module``, ``/proc/modules``,
``/lib/modules/$(uname -r)/modules.{dep,builtin}`` and the kernel config
(``/boot/config-$(uname -r)`` or ``/proc/config.gz``); persistence files come
from under ``--root``. Initiators always need ``aoe`` (with ``aoe_iflist``
defaulting to the host's interfaces). A kernel without AoE is an error that
says how we know. A loaded module whose parameters differ from the spec is a
"reload required" drift, never silently ignored: apply will not unload a module
that may hold mounted filesystems. The one exception is an initiator's
``aoe_iflist``, which the discovery resource rewrites live through sysfs.

Persistence: names one per line in ``/etc/modules`` (the tutorial's way; other
lines and comments kept, no duplicate, no blank-line growth) or in
``/etc/modules-load.d/aoeprov.conf``; options always in
``/etc/modprobe.d/aoeprov.conf`` (systemd-modules-load reads names only).
aoeprov never removes lines from ``/etc/modules``: it cannot know who added them.

A module named in aoeprov's own files that left the spec is dropped from them
only with ``--prune`` (otherwise the file changes are pending ``-`` lines; a run
that also adds a module to the same file waits for ``--prune`` too), and is
never unloaded: the plan says it stays loaded.
"""

from __future__ import annotations

import gzip
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aoeprov.errors import HostError
from aoeprov.hostfile import join_lines, split_lines
from aoeprov.reconciler.actions import (
    Action,
    Drift,
    Noop,
    Op,
    RemoveFile,
    ResourcePlan,
    RunCommand,
    WriteFile,
)
from aoeprov.reconciler.resource import GatherContext, PlanContext, removal
from aoeprov.reconciler.state import State
from aoeprov.spec.model import HostSpec, KernelModule, ModulePersistence

KIND = "module"

ETC_MODULES = "/etc/modules"
MODULES_LOAD_CONF = "/etc/modules-load.d/aoeprov.conf"
MODPROBE_CONF = "/etc/modprobe.d/aoeprov.conf"
HEADER = "# Managed by aoeprov: changes here are overwritten on the next apply.\n"
_KO_SUFFIX = re.compile(r"\.ko(\.(xz|gz|zst))?$")

LOADED = "loaded"        # loadable module, in /proc/modules
BUILTIN = "builtin"      # compiled into the kernel
AVAILABLE = "available"  # a .ko in /lib/modules, not loaded
MISSING = "missing"


@dataclass(frozen=True)
class KernelModuleFacts:
    name: str
    state: str                                            # LOADED, BUILTIN, AVAILABLE, MISSING
    parameters: dict[str, str] = field(default_factory=dict)  # current values, spec'd ones only


@dataclass(frozen=True)
class ModuleFacts:
    kernel: str                                     # uname -r
    config_source: str | None = None                # kernel config that was read, if any
    aoe_config: str | None = None                   # CONFIG_ATA_OVER_ETH: "y", "m", or None
    modules_dir: bool = False                       # /lib/modules/<kernel> exists
    modules: dict[str, KernelModuleFacts] = field(default_factory=dict)
    files: dict[str, bytes | None] = field(default_factory=dict)  # persistence files under root


# ---- pure parsers -------------------------------------------------------------------------

def module_name(text: str) -> str:
    """Kernel module names treat ``-`` and ``_`` alike; ``aoe.ko.xz`` paths give ``aoe``."""
    return _KO_SUFFIX.sub("", os.path.basename(text)).replace("-", "_")


def parse_proc_modules(text: str) -> frozenset[str]:
    return frozenset(module_name(line.split()[0]) for line in text.splitlines() if line.strip())


def parse_modules_dep(text: str) -> frozenset[str]:
    """``kernel/drivers/block/aoe/aoe.ko.xz: deps...`` lines -> module names."""
    return frozenset(module_name(line.split(":", 1)[0]) for line in text.splitlines()
                     if ":" in line)


def parse_modules_builtin(text: str) -> frozenset[str]:
    return frozenset(module_name(line.strip()) for line in text.splitlines() if line.strip())


def parse_kernel_config(text: str) -> dict[str, str]:
    """``CONFIG_X=y`` lines -> {"CONFIG_X": "y"}; ``# CONFIG_X is not set`` lines are left out."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.startswith("CONFIG_"):
            out[key] = value.strip().strip('"')
    return out


def module_state(name: str, *, in_sys: bool, loaded: frozenset[str],
                 builtin: frozenset[str], available: frozenset[str]) -> str:
    if name in loaded:
        return LOADED
    if name in builtin or in_sys:   # /sys/module/X without /proc/modules: built in
        return BUILTIN
    if name in available:
        return AVAILABLE
    return MISSING


# ---- desired state -------------------------------------------------------------------------

def desired_modules(me: HostSpec) -> tuple[KernelModule, ...]:
    """The spec's modules; initiators get ``aoe`` with ``aoe_iflist`` = their interfaces."""
    mods = list(me.modules)
    if me.is_initiator:
        iflist = " ".join(me.interfaces)
        for i, mod in enumerate(mods):
            if module_name(mod.name) == "aoe":
                if iflist and "aoe_iflist" not in dict(mod.options):
                    mods[i] = KernelModule(mod.name, (*mod.options, ("aoe_iflist", iflist)))
                break
        else:
            mods.insert(0, KernelModule("aoe", (("aoe_iflist", iflist),) if iflist else ()))
    return tuple(mods)


def option_arg(key: str, value: str) -> str:
    """``key=value`` for modprobe and modprobe.d; values with blanks are double-quoted."""
    return f'{key}="{value}"' if re.search(r"\s", value) else f"{key}={value}"


def same_parameter(key: str, current: str, wanted: str) -> bool:
    if key == "aoe_iflist":   # a list of interfaces: order and separators do not matter
        return set(re.split(r"[\s,]+", current.strip())) - {""} == \
            set(re.split(r"[\s,]+", wanted.strip())) - {""}
    return current.strip() == wanted.strip()


def edit_etc_modules(content: bytes | None, names: Sequence[str]) -> bytes:
    """``content`` with the missing ``names`` appended after its last non-blank line.

    Bytes split on ``\\n`` only: every other line stays byte for byte.
    """
    lines = split_lines(content or b"")
    present = {module_name(line.split()[0].decode("utf-8", "surrogateescape")) for line in lines
               if line.strip() and not line.lstrip().startswith(b"#")}
    missing = [n for n in names if module_name(n) not in present]
    if not missing:
        return content or b""
    end = len(lines)
    while end > 0 and not lines[end - 1].strip():
        end -= 1
    lines[end:end] = [n.encode() for n in missing]
    return join_lines(lines)


def named_in_own_files(files: dict[str, bytes | None]) -> list[str]:
    """Modules aoeprov's own files name (modules-load.d list, modprobe.d options)."""
    load = (files.get(MODULES_LOAD_CONF) or b"").decode("utf-8", "replace").split("\n")
    opts = (files.get(MODPROBE_CONF) or b"").decode("utf-8", "replace").split("\n")
    names = [line.split()[0] for line in load
             if line.strip() and not line.lstrip().startswith("#")]
    names += [line.split()[1] for line in opts
              if line.startswith("options ") and len(line.split()) > 1]
    return list(dict.fromkeys(module_name(n) for n in names))


def render_modules_load(names: Sequence[str]) -> bytes:
    return (HEADER + "".join(f"{n}\n" for n in names)).encode()


def render_modprobe_conf(mods: Sequence[KernelModule]) -> bytes | None:
    lines = [f"options {m.name} {' '.join(option_arg(k, v) for k, v in m.options)}\n"
             for m in mods if m.options]
    return (HEADER + "".join(lines)).encode() if lines else None


# ---- gather -------------------------------------------------------------------------------

def _read(path: Path) -> str | None:
    try:
        if path.suffix == ".gz":
            return gzip.decompress(path.read_bytes()).decode(errors="replace")
        return path.read_text(errors="replace")
    except OSError:
        return None


def gather(ctx: GatherContext, system_root: Path = Path("/")) -> ModuleFacts:
    kernel = os.uname().release
    moddir = system_root / "lib/modules" / kernel
    loaded = parse_proc_modules(_read(system_root / "proc/modules") or "")
    builtin = parse_modules_builtin(_read(moddir / "modules.builtin") or "")
    available = parse_modules_dep(_read(moddir / "modules.dep") or "")
    config_source, aoe_config = None, None
    for candidate in (system_root / "boot" / f"config-{kernel}", system_root / "proc/config.gz"):
        text = _read(candidate)
        if text is not None:
            config_source = "/" + str(candidate.relative_to(system_root))
            aoe_config = parse_kernel_config(text).get("CONFIG_ATA_OVER_ETH")
            break
    modules = {}
    for mod in desired_modules(ctx.me):
        name = module_name(mod.name)
        sys_dir = system_root / "sys/module" / name
        params = {}
        for key, _ in mod.options:
            value = _read(sys_dir / "parameters" / key)
            if value is not None:
                params[key] = value.rstrip("\n")
        modules[name] = KernelModuleFacts(
            name=name, parameters=params,
            state=module_state(name, in_sys=sys_dir.is_dir(), loaded=loaded, builtin=builtin,
                               available=available))
    files = {p: ctx.host.read_bytes(p) for p in (ETC_MODULES, MODULES_LOAD_CONF, MODPROBE_CONF)}
    for name in named_in_own_files(files):   # left the spec: is it still loaded?
        if name not in modules:
            modules[name] = KernelModuleFacts(name=name, state=module_state(
                name, in_sys=(system_root / "sys/module" / name).is_dir(), loaded=loaded,
                builtin=builtin, available=available))
    return ModuleFacts(kernel=kernel, config_source=config_source, aoe_config=aoe_config,
                       modules_dir=moddir.is_dir(), modules=modules, files=files)


# ---- plan ---------------------------------------------------------------------------------

def no_aoe_reason(facts: ModuleFacts) -> str:
    if facts.config_source is None:
        config = "no kernel config found (/boot/config-*, /proc/config.gz)"
    elif facts.aoe_config is None:
        config = f"CONFIG_ATA_OVER_ETH is not set in {facts.config_source}"
    else:
        config = f"{facts.config_source} says CONFIG_ATA_OVER_ETH={facts.aoe_config}"
    where = (f"no aoe module in /lib/modules/{facts.kernel}" if facts.modules_dir
             else f"/lib/modules/{facts.kernel} does not exist")
    return (f"kernel {facts.kernel} has no ATA over Ethernet support: {config}; {where}; "
            "/sys/module/aoe does not exist. Install a kernel with CONFIG_ATA_OVER_ETH "
            "(Debian's stock kernels have it as a module)")


def _file_action(path: str, before: bytes | None, after: bytes | None,
                 what: str, *, backup: bool = False) -> Action | Noop:
    if before == after:
        return Noop(KIND, path, f"{what}: up to date" if after is not None else f"{what}: absent")
    if after is None:
        return RemoveFile(kind=KIND, target=path, op=Op.DESTROY,
                          summary=f"remove {what} (no longer needed)", before=before)
    return WriteFile(kind=KIND, target=path, op=Op.CHANGE if before is not None else Op.CREATE,
                     summary=f"{'update' if before is not None else 'write'} {what}",
                     content=after, before=before, backup=backup)


def _persist(ctx: PlanContext, facts: ModuleFacts,
             mods: Sequence[KernelModule]) -> list[Action | Noop]:
    names = [m.name for m in mods]
    files = facts.files
    out: list[Action | Noop] = []
    if ctx.me.module_persistence is ModulePersistence.ETC_MODULES:
        before = files.get(ETC_MODULES)
        after = edit_etc_modules(before, names) if names else before
        if before is None and not names:
            after = None
        out.append(_file_action(ETC_MODULES, before, after, "modules loaded at boot",
                                backup=True))
        out.append(_file_action(MODULES_LOAD_CONF, files.get(MODULES_LOAD_CONF), None,
                                "modules-load.d list"))
    else:
        out.append(_file_action(MODULES_LOAD_CONF, files.get(MODULES_LOAD_CONF),
                                render_modules_load(names) if names else None,
                                "modules loaded at boot"))
    out.append(_file_action(MODPROBE_CONF, files.get(MODPROBE_CONF), render_modprobe_conf(mods),
                            "module options"))
    return out


# parameters another resource changes on a live module: (module, parameter) -> who does it
LIVE_SETTABLE = {("aoe", "aoe_iflist"): "the discovery step writes it through sysfs"}


def _load(mod: KernelModule, mf: KernelModuleFacts, facts: ModuleFacts,
          initiator: bool) -> Action | Noop:
    opts = " ".join(option_arg(k, v) for k, v in mod.options)
    if mf.state == MISSING:
        if mf.name == "aoe":
            raise HostError(no_aoe_reason(facts))
        raise HostError(f"kernel {facts.kernel} has no module {mod.name!r} (not loaded, not "
                        f"built in, not in /lib/modules/{facts.kernel})")
    if mf.state == AVAILABLE:
        return RunCommand(kind=KIND, target=mod.name, op=Op.CREATE,
                          summary=f"load {mod.name}" + (f" ({opts})" if opts else ""),
                          argv=("modprobe", mod.name, *(option_arg(k, v) for k, v in mod.options)))
    drift = []
    unknown = []
    live = []
    for key, wanted in mod.options:
        current = mf.parameters.get(key)
        if current is None:
            unknown.append(key)
        elif same_parameter(key, current, wanted):
            continue
        elif initiator and (mf.name, key) in LIVE_SETTABLE:
            live.append(f"{key} is {current.strip()!r} now: {LIVE_SETTABLE[(mf.name, key)]}")
        else:
            drift.append(f"{key}={current.strip()!r} (spec: {wanted!r})")
    if drift:
        cmdline = " ".join(f"{mod.name}.{option_arg(k, v)}" for k, v in mod.options)
        remedy = (f"reboot with {cmdline} on the kernel command line" if mf.state == BUILTIN else
                  f"unmount filesystems on it, then `modprobe -r {mod.name}` and apply again")
        return Drift(kind=KIND, target=mod.name, op=Op.CHANGE,
                     summary=f"{mod.name} is {mf.state} with {', '.join(drift)}: reload required",
                     remedy=remedy)
    reason = f"{mf.state}"
    if mod.options:
        reason += (" with the spec's parameters" if not unknown else
                   f"; parameters {', '.join(unknown)} not readable in /sys/module, not checked")
    if live:
        reason += "; " + "; ".join(live)
    return Noop(KIND, mod.name, reason)


def plan(ctx: PlanContext, facts: ModuleFacts, state: State) -> ResourcePlan:
    mods = desired_modules(ctx.me)
    steps: list[Action | Noop] = _persist(ctx, facts, mods)
    for mod in mods:
        mf = facts.modules.get(module_name(mod.name))
        if ctx.sandboxed:
            steps.append(Noop(KIND, mod.name, "--root: live kernel modules are left alone"))
        elif mf is None:
            raise HostError(f"no facts gathered for module {mod.name}")
        else:
            steps.append(_load(mod, mf, facts, ctx.me.is_initiator))
    wanted = {module_name(m.name) for m in mods}
    unwanted = [n for n in named_in_own_files(facts.files) if n not in wanted]
    if unwanted:
        steps = [removal(ctx, s) if isinstance(s, Action) and s.target in (
            MODULES_LOAD_CONF, MODPROBE_CONF) else s for s in steps]
    for name in unwanted:
        mf = facts.modules.get(name)
        if not ctx.sandboxed and mf is not None and mf.state in (LOADED, BUILTIN):
            steps.append(Drift(kind=KIND, target=name, op=Op.CHANGE,
                               summary=f"{name} left the spec and stays {mf.state}: aoeprov "
                                       f"never unloads a module something may still use",
                               remedy=f"`modprobe -r {name}` once nothing uses it"
                               if mf.state == LOADED else "nothing (built into the kernel)"))
    for path in (ETC_MODULES, MODULES_LOAD_CONF, MODPROBE_CONF):
        state.files[path] = facts.files.get(path)
    for step in steps:
        if isinstance(step, WriteFile):
            state.files[step.target] = step.content
        elif isinstance(step, RemoveFile):
            state.files[step.target] = None
    return ResourcePlan(actions=tuple(s for s in steps if isinstance(s, Action)),
                        noops=tuple(s for s in steps if isinstance(s, Noop)))
