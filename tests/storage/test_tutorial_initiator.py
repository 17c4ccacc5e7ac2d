"""The initiator half of the tutorial on an image file standing in for /dev/etherd/e0.1.

``aoeprov apply examples/tutorial.yaml --host server1 --root ROOT --device e0.1=IMAGE
--skip module,discovery,boot``: one dos partition of type 83, ext3 on it, the fstab
line and a real mount; the second plan is empty. Then the same apply is killed
(SIGKILL to its whole process group) at every step it logs (after each action, and
while each command runs), and re-run: it
converges every time, and /etc/fstab is never truncated nor duplicated.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.storage.storagelab import Sandbox, aoeprov, cleanup, make_image, mounts_under

pytestmark = pytest.mark.storage

REPO = Path(__file__).resolve().parents[2]
TUTORIAL = REPO / "examples/tutorial.yaml"
ACTION_LOG = re.compile(r"aoeprov\.reconciler\.apply .*(apply action|: done in)")
COMMAND_LOG = re.compile(r"sh\.command .*<Command '(?P<argv>[^']*)'.*process started")
READ_ONLY = re.compile(
    r"/(blkid|wipefs|blockdev --getsize64|losetup --list|sfdisk --json|mountpoint)\b")


def is_step(line: str) -> bool:
    """An action finished, or a command that changes something started (killed while it runs)."""
    if ACTION_LOG.search(line):
        return True
    cmd = COMMAND_LOG.search(line)
    return cmd is not None and not READ_ONLY.search(cmd.group("argv"))


def apply_args(box: Sandbox) -> list[str | Path]:
    return ["apply", TUTORIAL, "--host", "server1", "--root", box.root,
            "--device", f"e0.1={box.image}", "--skip", "module,discovery,boot"]


def plan_args(box: Sandbox, *extra: str) -> list[str | Path]:
    return ["plan", TUTORIAL, "--host", "server1", "--root", box.root, "--device",
            f"e0.1={box.image}", "--skip", "module,discovery,boot", "--detailed-exitcode", *extra]


def table(image: Path) -> dict[str, object]:
    out = subprocess.run(["sfdisk", "--json", str(image)], capture_output=True, text=True,
                         check=True).stdout
    doc: dict[str, object] = json.loads(out)["partitiontable"]
    return doc


def fstab_lines(box: Sandbox) -> list[str]:
    fstab = box.root / "etc/fstab"
    return [line for line in fstab.read_text().splitlines() if "/storage" in line] \
        if fstab.exists() else []


def assert_converged(box: Sandbox) -> None:
    done = aoeprov(*plan_args(box))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No changes" in done.stdout
    as_json = aoeprov(*plan_args(box, "--json"))
    assert as_json.returncode == 0, as_json.stdout + as_json.stderr
    assert json.loads(as_json.stdout)["actions"] == []
    t = table(box.image)
    parts = t["partitions"]
    assert t["label"] == "dos" and isinstance(parts, list) and len(parts) == 1
    assert parts[0]["type"] == "83" and parts[0]["start"] == 2048
    (line,) = fstab_lines(box)
    assert line.split()[:3] == ["/dev/etherd/e0.1p1", "/storage", "ext3"]
    assert "_netdev" in line.split()[3]
    points = mounts_under(box.root)
    assert points == [str(box.root / "storage")], points   # mounted once, never stacked
    entry = next(e.split() for e in Path("/proc/self/mountinfo").read_text().splitlines()
                 if e.split()[4] == points[0])
    assert entry[entry.index("-") + 1] == "ext3"


def test_tutorial_initiator_half(sandbox: Sandbox) -> None:
    done = aoeprov(*apply_args(sandbox))
    assert done.returncode == 0, done.stdout + done.stderr
    assert_converged(sandbox)
    again = aoeprov(*apply_args(sandbox))
    assert again.returncode == 0 and "No changes" in again.stdout, again.stdout


def test_tutorial_on_a_loop_device(sandbox: Sandbox) -> None:
    """--device e0.1=/dev/loopN: this kernel shows no /dev/loopNp1, so a loop link is used."""
    loop = subprocess.run(["losetup", "--find", "--show", str(sandbox.image)],
                          capture_output=True, text=True, check=True).stdout.strip()
    args = [str(a) for a in apply_args(sandbox)]
    args[args.index(f"e0.1={sandbox.image}")] = f"e0.1={loop}"
    done = aoeprov(*args)
    assert done.returncode == 0, done.stdout + done.stderr
    assert table(sandbox.image)["label"] == "dos"
    assert mounts_under(sandbox.root) == [str(sandbox.root / "storage")]
    plan = aoeprov(*["plan" if a == "apply" else a for a in args], "--detailed-exitcode")
    assert plan.returncode == 0, plan.stdout + plan.stderr


def run_and_kill(box: Sandbox, nth: int) -> int:
    """Run apply at debug level; SIGKILL its process group at the nth step line. Steps seen."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "aoeprov", "--log-level", "debug",
         *map(str, apply_args(box))],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    assert proc.stderr is not None
    seen = 0
    try:
        for line in proc.stderr:
            if is_step(line):
                seen += 1
                if seen == nth:
                    os.killpg(proc.pid, signal.SIGKILL)
                    break
    finally:
        proc.stderr.close()
        proc.wait(timeout=120)
    return seen


def test_kill_at_every_step_then_converge(tmp_path: Path, sandbox: Sandbox) -> None:
    steps = run_and_kill(sandbox, nth=10_000)   # a full run, to count its steps
    assert steps >= 5
    assert_converged(sandbox)
    for nth in range(1, steps + 1):
        case = tmp_path / f"kill{nth}"
        case.mkdir()
        box = Sandbox(root=case / "root", image=make_image(case / "e0.1.img"), dir=case)
        box.root.mkdir()
        try:
            assert run_and_kill(box, nth) == nth, f"apply ended before step {nth}"
            lines = fstab_lines(box)
            assert len(lines) <= 1, lines        # never duplicated...
            fstab = box.root / "etc/fstab"
            assert not fstab.exists() or fstab.read_text().endswith("\n")   # ...nor truncated
            done = aoeprov(*apply_args(box))
            assert done.returncode == 0, f"re-run after kill at step {nth}:\n" \
                                         f"{done.stdout}{done.stderr}"
            assert_converged(box)
        finally:
            cleanup(case, box.root)
