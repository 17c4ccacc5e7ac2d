"""Plan output: human (like ``terraform plan``) and JSON (schema in docs/plan-json.md)."""

from __future__ import annotations

import difflib
from typing import Any

from aoeprov.hostfile import split_lines
from aoeprov.reconciler.actions import Action, Drift, RemoveFile, RunCommand, WriteFile
from aoeprov.reconciler.engine import Plan

PLAN_SCHEMA = "aoeprov.plan/1"
APPLY_SCHEMA = "aoeprov.apply/1"


def shown_lines(data: bytes | None) -> list[str]:
    """File lines (split on ``\\n`` only) as printable text: control characters other than
    tab and bytes that are not UTF-8 are shown escaped, so a diff never hides a ``\\r``."""
    out = []
    for line in split_lines(data or b""):
        text = line.decode("utf-8", "backslashreplace")
        out.append("".join(c if c == "\t" or c.isprintable() else repr(c)[1:-1] for c in text))
    return out


def file_diff(path: str, before: bytes | None, after: bytes | None) -> list[str]:
    """Unified diff lines (no trailing newlines) from ``before`` to ``after``."""
    lines = difflib.unified_diff(shown_lines(before), shown_lines(after),
                                 fromfile=path if before is not None else "/dev/null",
                                 tofile=path if after is not None else "/dev/null", n=2,
                                 lineterm="")
    return list(lines)


def plural(n: int, word: str) -> str:
    """``1 action``, ``2 actions``."""
    return f"{n} {word}" + ("" if n == 1 else "s")


def action_symbol(action: Action) -> str:
    if isinstance(action, Drift) and not action.prune:
        return "!"
    return action.op.symbol


def render_action(action: Action, *, verbose: bool = False) -> list[str]:
    """One action as a heading line plus indented detail."""
    head = f"{action_symbol(action)} {action.kind} {action.target}: {action.summary}"
    tags = []
    if action.blocked_by:
        tags.append(f"BLOCKED: {action.blocked_by}")
    elif action.requires_allow:
        tags.append("BLOCKED: needs `wipe: true` and --allow-destroy")
    elif action.destructive:
        tags.append("DESTROYS DATA")
    if action.provisional:
        tags.append("decided after the device appears")
    if isinstance(action, Drift):
        tags.append("pending: only with --prune" if action.prune else "drift: apply leaves it")
    if tags:
        head += f"  [{'; '.join(tags)}]"
    lines = [head]
    if action.data_loss:
        lines.append(f"    would lose: {action.data_loss}")
    if isinstance(action, Drift) and action.remedy:
        lines.append(f"    to fix: {action.remedy}")
    if isinstance(action, RunCommand) and (verbose or action.stdin):
        lines.append(f"    $ {' '.join(action.argv)}")
        if action.stdin:
            lines.extend(f"    | {line}" for line in action.stdin.splitlines())
    if isinstance(action, WriteFile):
        lines.extend(f"    {line}" for line in file_diff(action.target, action.before,
                                                          action.content))
    if isinstance(action, RemoveFile):
        lines.extend(f"    {line}" for line in file_diff(action.target, action.before, None))
    return lines


def summary_line(plan: Plan) -> str:
    c = plan.counts()
    text = (f"Plan: {c['create']} to create, {c['change']} to change, {c['destroy']} to destroy, "
            f"{plural(c['run'] + c['wait'], 'step')}")
    if c["drift"] - c["prune"]:
        text += f", {c['drift'] - c['prune']} drift"
    if c["prune"]:
        text += f", {c['prune']} to remove with --prune"
    if c["blocked"]:
        text += f"; {c['blocked']} BLOCKED"
    if plan.provisional:
        text += f"; {len(plan.provisional)} decided after devices appear"
    return text + "."


def render_plan(plan: Plan, *, verbose: bool = False) -> str:
    lines = [f"aoeprov plan for host {plan.host}"
             + (f" ({plan.source})" if plan.source else ""), ""]
    if not plan.actions:
        checks = plural(len(plan.noops), "check")
        lines.append(f"No changes: the host is as the spec says ({checks}).")
    for action in plan.actions:
        lines.extend(render_action(action, verbose=verbose))
    if verbose and plan.noops:
        lines.append("")
        lines.extend(f"= {n.kind} {n.target}: {n.reason}" for n in plan.noops)
    if plan.actions:
        lines.extend(["", summary_line(plan)])
    return "\n".join(lines) + "\n"


def plan_to_json(plan: Plan) -> dict[str, Any]:
    return {
        "schema": PLAN_SCHEMA,
        "host": plan.host,
        "spec": plan.source,
        "kinds": list(plan.kinds),
        "changes": plan.changes,
        "runnable": len(plan.runnable),
        "counts": plan.counts(),
        "actions": [a.to_json() for a in plan.actions],
        "noops": [n.to_json() for n in plan.noops],
        "pending": sorted(plan.pending),
    }
