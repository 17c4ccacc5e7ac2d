"""Reconciler benchmark: a no-op apply on a converged host, and plan for 1/16/64 exports+mounts.

No-op apply: the tutorial's initiator half under ``--root`` with an image file
standing in for /dev/etherd/e0.1 (``--device``; module, discovery and boot
skipped, as in the storage tests), converged by a first apply, then timed in
process (``apply()``) and as a full ``aoeprov apply`` command (interpreter
start included). Needs root (loop devices, mount). Plan: generated specs with N
file-backed exports on a target and N whole-disk filesystems mounted on an
initiator, planned for each host (gather + plan; the target under an empty
``--root``, the initiator read-only against this machine); growth should be
linear in N. Goal: no-op apply under 0.3 s.

Run alone: ``python -m tests.bench.reconciler_bench [--repeat N]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from aoeprov.host import Host
from aoeprov.reconciler.apply import apply
from aoeprov.reconciler.engine import Reconciler, select_kinds
from aoeprov.spec import load_spec, load_spec_text

REPO = Path(__file__).resolve().parents[2]
TUTORIAL = REPO / "examples" / "tutorial.yaml"
SKIP = {"module", "discovery", "boot"}
GOAL_NOOP_APPLY = 0.3


def timed(fn: Callable[[], object], repeat: int) -> float:
    """Median wall time of ``repeat`` calls, in seconds."""
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def generated_spec(n: int) -> str:
    lines = ["version: 1", "hosts:",
             "  - {name: tgt, roles: [target], interfaces: [eth0]}",
             "  - {name: ini, roles: [initiator], interfaces: [eth0]}",
             "targets:"]
    lines += [f"  - {{name: t{i}, host: tgt, file: {{path: /srv/t{i}.img, size: 1G}}}}"
              for i in range(n)]
    lines.append("exports:")
    lines += [f"  - {{name: t{i}, target: t{i}, shelf: 1, slot: {i}, interfaces: [eth0]}}"
              for i in range(n)]
    lines.append("disks:")
    lines += [f"  - {{name: d{i}, host: ini, shelf: 1, slot: {i}}}" for i in range(n)]
    lines.append("filesystems:")
    lines += [f"  - {{name: f{i}, device: d{i}, type: ext4}}" for i in range(n)]
    lines.append("mounts:")
    lines += [f"  - {{path: /mnt/m{i}, filesystem: f{i}}}" for i in range(n)]
    return "\n".join(lines) + "\n"


def bench_plan(sizes: Sequence[int], repeat: int) -> list[tuple[int, float, float]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="aoeprov-bench-") as tmp:
        for n in sizes:
            spec = load_spec_text(generated_spec(n), f"<{n} exports>")
            times = []
            # the target under an empty --root; the initiator against this machine's real
            # root (plan only reads), because its devices are predicted by live discovery.
            # "module" is skipped: this kernel has no AoE (it would be a HostError).
            for host, root in (("tgt", Path(tmp)), ("ini", Path("/"))):
                engine = Reconciler(spec=spec, host=Host(root=root), host_name=host,
                                kinds=select_kinds(skip={"module"}))
                times.append(timed(engine.plan, repeat))
            rows.append((n, times[0], times[1]))
    return rows


def cleanup_mounts(root: Path, image: Path) -> None:
    for entry in reversed(Path("/proc/self/mountinfo").read_text().splitlines()):
        point = entry.split()[4]
        if point.startswith(str(root)):
            subprocess.run(["umount", point], check=False, timeout=60)
    loops = subprocess.run(["losetup", "-j", str(image)], capture_output=True, text=True,
                           check=False, timeout=30).stdout
    for line in loops.splitlines():
        subprocess.run(["losetup", "-d", line.split(":")[0]], check=False, timeout=30)


def bench_noop_apply(repeat: int) -> tuple[float, float, float]:
    """(first apply, no-op apply in process, no-op `aoeprov apply` command) in seconds."""
    with tempfile.TemporaryDirectory(prefix="aoeprov-bench-") as tmp:
        root, image = Path(tmp) / "root", Path(tmp) / "e0.1.img"
        root.mkdir()
        with image.open("wb") as fh:
            fh.truncate(64 << 20)
        engine = Reconciler(spec=load_spec(TUTORIAL), host=Host(root=root), host_name="server1",
                        kinds=select_kinds(skip=SKIP), device_map={"e0.1": str(image)})
        try:
            start = time.perf_counter()
            apply(engine)
            first = time.perf_counter() - start

            def noop() -> None:
                if apply(engine).changed:
                    raise AssertionError("a converged host changed on re-apply")
            in_process = timed(noop, repeat)
            argv = [sys.executable, "-m", "aoeprov", "apply", str(TUTORIAL), "--host", "server1",
                    "--root", str(root), "--device", f"e0.1={image}",
                    "--skip", ",".join(sorted(SKIP))]
            command = timed(lambda: subprocess.run(argv, check=True, capture_output=True,
                                                   timeout=60), max(3, repeat // 2))
        finally:
            cleanup_mounts(root, image)
    return first, in_process, command


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="reconciler_bench")
    parser.add_argument("--repeat", type=int, default=7, help="runs per measurement (median)")
    args = parser.parse_args(argv if argv is not None else [])
    print(f"plan (median of {args.repeat}, seconds):")
    print(f"{'exports+mounts':>15} {'target host':>12} {'initiator':>10} {'per item (ini)':>15}")
    for n, tgt, ini in bench_plan((1, 16, 64), args.repeat):
        print(f"{n:>15} {tgt:>12.4f} {ini:>10.4f} {ini / n * 1000:>13.2f}ms")
    if os.geteuid() != 0:
        print("no-op apply: skipped (needs root for loop devices and mounts)")
        return 1
    first, in_process, command = bench_noop_apply(args.repeat)
    print(f"tutorial initiator half on an image: first apply {first:.3f}s")
    print(f"no-op apply: {in_process:.3f}s in process, {command:.3f}s as `aoeprov apply` "
          f"(goal < {GOAL_NOOP_APPLY}s)")
    return 0 if command < GOAL_NOOP_APPLY or in_process < GOAL_NOOP_APPLY else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
