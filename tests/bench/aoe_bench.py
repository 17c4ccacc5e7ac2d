"""AoE throughput: the built-in target against Debian's vblade, side by side.

For each MTU (1500, 9000) one pair of namespaces joined by a veth pair; for each
server kind the same image (on tmpfs, so the disk is not what is measured; filled
with random bytes first, so neither target reads holes nor allocates pages while
measured) and the same userspace client (``AoeClient``). vblade and the built-in
target advertise the same buffer count (``-b``, 64 by default) and the client
keeps that many requests in flight, as the kernel does (it caps the window at
64); a third server, ``vblade-16``, is vblade as installed (its default -b 16),
so the last column compares what a user gets out of the box. On a machine
with two or more CPUs the client is pinned to the first and the target to the
second, so each side has a core of its own and the numbers do not depend on
where the scheduler happens to put them. Phases:

- seq-read / seq-write: the whole image ``--passes`` times in 8 MiB calls, into and
  from one reused buffer (``read_into``), so the client allocates nothing per call;
- rand-read: 4 KiB reads at random 4 KiB-aligned offsets (drawn before the clock
  starts), 512 per call so the window stays full (``AoeClient.read_many_into``);
- sync-write: seq-write again against servers started with ``-s`` (vblade: O_SYNC
  on every write; built-in: one fdatasync per received batch before its replies).
  On tmpfs a sync costs little, so this measures the sync machinery, not a disk;
- durable-write: the same with ``-s`` over a smaller image on the disk under
  ``--durable-dir`` (a real filesystem: every acknowledged write is on stable
  storage, which is what ``write_mode: sync`` promises), pass after pass until a
  second has gone by.

Printed per phase: MB/s (10^6 bytes), answered frames/s, the target's CPU seconds
per GiB moved (user+system from /proc/PID/stat, threads and children included),
the share of its core each side used (client near 100 %: MB/s compares the client,
not the targets; CPU per GiB still compares the targets), and the ratio
built-in / vblade for MB/s and for CPU per GiB (lower CPU is better).

Run alone: ``python -m tests.bench.aoe_bench [--size-mib N] [--passes N]
[--bufcnt N] [--mtu 1500 ...] [--json FILE]``; needs root, ``ip`` and ``vblade``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from aoeprov.aoe.wire import SECTOR_SIZE
from aoeprov.client import AoeClient
from aoeprov.errors import AoeprovError
from tests.bench.pairs import by_round, describe, round_ratios
from tests.net import netlab

CALL_SECTORS = (8 << 20) // SECTOR_SIZE
RANDOM_SECTORS = 8             # 4 KiB
RANDOM_BATCH = 512
GIB = 1 << 30
KERNEL_MAX_WINDOW = 64         # the Linux initiator's aoe_maxout
# the servers compared; "vblade-16" is vblade as installed (no -b: it advertises 16),
# the reference for what a user gets out of the box (aoeprov's exports default to 64)
KINDS = ("vblade", "builtin", "vblade-16")
CLIENT_CPU, TARGET_CPU = 0, 1  # pinned when the machine has two CPUs or more
MIN_SECONDS = 1.0              # durable-write repeats its pass until this long


@dataclass(frozen=True)
class Measure:
    mtu: int
    kind: str
    phase: str
    seconds: float
    bytes_moved: int
    frames: int
    target_cpu: float
    client_cpu: float
    retransmits: int

    @property
    def target_share(self) -> float:
        return self.target_cpu / self.seconds

    @property
    def client_share(self) -> float:
        return self.client_cpu / self.seconds

    @property
    def mb_per_s(self) -> float:
        return self.bytes_moved / self.seconds / 1e6

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.seconds

    @property
    def iops(self) -> float:
        return self.bytes_moved / (RANDOM_SECTORS * SECTOR_SIZE) / self.seconds

    @property
    def cpu_per_gib(self) -> float:
        return self.target_cpu / (self.bytes_moved / GIB)


def tree_cpu_seconds(pid: int) -> float:
    """CPU of ``pid`` and its live descendants (the target may use worker processes)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        try:
            total += netlab.cpu_seconds(current)
        except OSError:
            continue
        todo.extend(children.get(current, ()))
    return total


def measure(mtu: int, kind: str, phase: str, pid: int, client: AoeClient,
            work: Callable[[], int]) -> Measure:
    cpu0, own0 = tree_cpu_seconds(pid), time.process_time()
    frames0, retrans0 = client.frames_received, client.retransmits
    start = time.perf_counter()
    moved = work()
    seconds = time.perf_counter() - start
    return Measure(mtu, kind, phase, seconds, moved, client.frames_received - frames0,
                   tree_cpu_seconds(pid) - cpu0, time.process_time() - own0,
                   client.retransmits - retrans0)


@dataclass(frozen=True)
class Plan:
    """What every server is put through (the same for all)."""

    image: Path
    sectors: int
    passes: int
    random_reads: int
    bufcnt: int
    durable_image: Path
    durable_sectors: int


MODES = ("plain", "sync", "durable")


def run_kind(lab: netlab.Lab, kind: str, plan: Plan, log: Path) -> list[Measure]:
    return [m for mode in MODES for m in run_server(lab, kind, plan, log, mode=mode)]


def pin(pid: int, cpu: int) -> None:
    """Every thread of ``pid`` onto ``cpu`` (no-op on a one-CPU machine)."""
    if (os.cpu_count() or 1) < 2:
        return
    for task in Path(f"/proc/{pid}/task").iterdir():
        os.sched_setaffinity(int(task.name), {cpu})


def run_server(lab: netlab.Lab, kind: str, plan: Plan, log: Path, *,
               mode: str) -> list[Measure]:
    """The phases of ``mode`` against one server process (``-s`` unless ``plain``)."""
    durable = mode == "durable"
    image, sectors = ((plan.durable_image, plan.durable_sectors) if durable
                      else (plan.image, plan.sectors))
    passes = 1 if durable else plan.passes
    server, bufcnt = ("vblade", 0) if kind == "vblade-16" else (kind, plan.bufcnt)
    export = netlab.Export(0, 1, image, sync=mode != "plain", bufcnt=bufcnt)
    proc = netlab.start_server(lab, server, export, log=log)
    transport = netlab.open_transport(lab)
    try:
        client = AoeClient(transport, 0, 1, timeout=0.2, window=KERNEL_MAX_WINDOW)
        netlab.wait_until(lambda: netlab.answers(client), 15, f"{kind} to answer")
        pin(proc.pid, TARGET_CPU)  # after start-up: its threads exist by now
        block = memoryview(os.urandom(CALL_SECTORS * SECTOR_SIZE))
        into = bytearray(CALL_SECTORS * SECTOR_SIZE)
        rng = random.Random(42)
        slots = sectors // RANDOM_SECTORS
        calls = [[(rng.randrange(slots) * RANDOM_SECTORS, RANDOM_SECTORS)
                  for _ in range(RANDOM_BATCH)]
                 for _ in range(plan.random_reads // RANDOM_BATCH)]
        scattered = bytearray(RANDOM_BATCH * RANDOM_SECTORS * SECTOR_SIZE)

        def seq_read() -> int:
            for _ in range(passes):
                for lba in range(0, sectors, CALL_SECTORS):
                    n = min(CALL_SECTORS, sectors - lba)
                    client.read_into(lba, memoryview(into)[:n * SECTOR_SIZE])
            return passes * sectors * SECTOR_SIZE

        def seq_write() -> int:
            done, started = 0, time.perf_counter()
            # durable: passes until a second has gone by, so a fast target is timed (and its
            # CPU counted, in 10 ms ticks) over more than a few milliseconds
            while done < passes or (durable and time.perf_counter() - started < MIN_SECONDS):
                for lba in range(0, sectors, CALL_SECTORS):
                    n = min(CALL_SECTORS, sectors - lba)
                    client.write(lba, block[:n * SECTOR_SIZE])
                done += 1
            return done * sectors * SECTOR_SIZE

        def rand_read() -> int:
            for extents in calls:
                client.read_many_into(extents, scattered)
            return len(calls) * RANDOM_BATCH * RANDOM_SECTORS * SECTOR_SIZE

        phases = {"plain": (("seq-read", seq_read), ("seq-write", seq_write),
                            ("rand-read", rand_read)),
                  "sync": (("sync-write", seq_write),),
                  "durable": (("durable-write", seq_write),)}[mode]
        results = [measure(lab.mtu, kind, name, proc.pid, client, work)
                   for name, work in phases]
        # the written block must be what the target now serves
        if client.read(sectors - 8, 8) != block[(CALL_SECTORS - 8) * SECTOR_SIZE:
                                                CALL_SECTORS * SECTOR_SIZE].tobytes():
            raise AoeprovError(f"{kind}: data read back differs from what was written")
        return results
    finally:
        transport.close()
        netlab.stop_process(proc)


def fill_image(path: Path, size: int) -> Path:
    """``size`` bytes of random data: every page allocated and real before measuring."""
    chunk = os.urandom(8 << 20)
    with open(path, "wb") as f:
        for at in range(0, size, len(chunk)):
            f.write(chunk[:min(len(chunk), size - at)])
        f.flush()
        os.fsync(f.fileno())  # allocated and on disk: the durable phase overwrites in place
    return path


def medians(results: Sequence[Measure]) -> list[Measure]:
    """Per (MTU, server, phase), the round with the median throughput."""
    groups: dict[tuple[int, str, str], list[Measure]] = {}
    for m in results:
        groups.setdefault((m.mtu, m.kind, m.phase), []).append(m)
    picked = []
    for group in groups.values():
        ranked = sorted(group, key=lambda m: m.mb_per_s)
        picked.append(ranked[len(ranked) // 2])
    return picked


def format_results(results: Sequence[Measure]) -> str:
    """The table; built-in rows carry ratios to vblade (same -b) and to vblade-16."""
    by_kind = {(m.mtu, m.phase, m.kind): m for m in results}
    lines = [f"{'mtu':>5} {'phase':<13} {'target':<9} {'MB/s':>8} {'IOPS':>8} {'frames/s':>9} "
             f"{'tgtCPU s/GiB':>12} {'tgt %':>5} {'cli %':>5} {'rexmit':>6} {'x vblade':>8} "
             f"{'CPU x vb':>8} {'x vb-16':>7}"]
    for m in results:
        ratio = cpu_ratio = ratio_16 = "-"
        ref = by_kind.get((m.mtu, m.phase, "vblade"))
        out_of_box = by_kind.get((m.mtu, m.phase, "vblade-16"))
        if m.kind == "builtin" and ref is not None:
            ratio = f"{m.mb_per_s / ref.mb_per_s:.2f}"
            cpu_ratio = f"{m.cpu_per_gib / ref.cpu_per_gib:.2f}" if ref.cpu_per_gib else "-"
        if m.kind == "builtin" and out_of_box is not None:
            ratio_16 = f"{m.mb_per_s / out_of_box.mb_per_s:.2f}"
        iops = f"{m.iops:.0f}" if m.phase == "rand-read" else "-"
        lines.append(f"{m.mtu:>5} {m.phase:<13} {m.kind:<9} {m.mb_per_s:>8.1f} {iops:>8} "
                     f"{m.frames_per_s:>9.0f} {m.cpu_per_gib:>12.2f} {m.target_share:>5.0%} "
                     f"{m.client_share:>5.0%} "
                     f"{m.retransmits:>6} {ratio:>8} {cpu_ratio:>8} {ratio_16:>7}")
    return "\n".join(lines)


def format_rounds(results: Sequence[Measure]) -> str:
    """The built-in target against vblade (same -b), round by round (``tests.bench.pairs``)."""
    rounds = by_round(((m.mtu, m.phase), m.kind, m.mb_per_s) for m in results)
    lines = ["built-in / vblade, each round's own ratio:"]
    for (mtu, phase), servers in rounds.items():
        if "builtin" in servers and "vblade" in servers:
            ratios = round_ratios(servers["builtin"], servers["vblade"])
            lines.append(f"{mtu:>5} {phase:<13} {describe(ratios)}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="aoe_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256, help="image size (default 256)")
    parser.add_argument("--passes", type=int, default=4,
                        help="sequential passes over the image per phase (default 4)")
    parser.add_argument("--random-reads", type=int, default=131072,
                        help="4 KiB random reads per case (default 131072)")
    parser.add_argument("--durable-mib", type=int, default=8,
                        help="image size for durable-write (default 8: vblade syncs every "
                             "frame, about a millisecond each on a virtual disk)")
    parser.add_argument("--durable-dir", type=Path, default=Path("/var/tmp"),
                        help="where the durable-write image lives (default /var/tmp: must be a "
                             "real filesystem on a disk, not tmpfs)")
    parser.add_argument("--bufcnt", type=int, default=KERNEL_MAX_WINDOW,
                        help="buffer count both servers advertise, the client's window "
                             "(default 64)")
    parser.add_argument("--mtu", type=int, action="append", help="MTUs (default 1500 9000)")
    parser.add_argument("--kind", action="append", choices=KINDS,
                        help="servers (default all three: vblade and builtin with --bufcnt, "
                             "vblade-16 as installed)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if os.geteuid() != 0 or shutil.which("vblade") is None:
        print("aoe_bench needs root and vblade (make setup)", file=sys.stderr)
        return 1
    mtus = args.mtu or [1500, 9000]
    kinds = args.kind or list(KINDS)
    sectors = args.size_mib * (1 << 20) // SECTOR_SIZE
    results: list[Measure] = []
    shm = Path("/dev/shm")
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(
            prefix="aoe-bench-", dir=shm if shm.is_dir() else None))
        image = fill_image(Path(tmp) / "bench.img", sectors * SECTOR_SIZE)
        durable_sectors = args.durable_mib * (1 << 20) // SECTOR_SIZE
        durable = fill_image(Path(stack.enter_context(tempfile.TemporaryDirectory(
            prefix="aoe-bench-", dir=args.durable_dir))) / "durable.img",
            durable_sectors * SECTOR_SIZE)
        plan = Plan(image, sectors, args.passes, args.random_reads, args.bufcnt, durable,
                    durable_sectors)
        if (os.cpu_count() or 1) >= 2:
            os.sched_setaffinity(0, {CLIENT_CPU})
        for mtu in mtus:
            with netlab.lab_context(mtu) as lab:
                # alternate the servers round by round, so load from elsewhere on the
                # machine hits both alike; the median round is reported
                for round_ in range(args.rounds):
                    for kind in kinds:
                        log = Path(tmp) / f"{kind}-{mtu}.log"
                        try:
                            results += run_kind(lab, kind, plan, log)
                        except (AoeprovError, TimeoutError, subprocess.SubprocessError) as exc:
                            print(f"{kind} at MTU {mtu} failed: {exc}\n"
                                  f"{log.read_text(errors='replace') if log.exists() else ''}",
                                  file=sys.stderr)
                            return 1
                    print(f"  MTU {mtu}: round {round_ + 1} of {args.rounds} done", flush=True)
    pinned = "client on CPU 0, target on CPU 1" if (os.cpu_count() or 1) >= 2 else "unpinned"
    print(f"image {args.size_mib} MiB on tmpfs read/written {args.passes}x per phase, vblade "
          f"and builtin -b {args.bufcnt} (client window {min(args.bufcnt, KERNEL_MAX_WINDOW)}), "
          f"vblade-16 without -b (window 16), "
          f"{args.random_reads} random 4 KiB reads per case, durable-write {args.durable_mib} "
          f"MiB under {args.durable_dir}, median of {args.rounds} "
          f"alternating rounds, {pinned}; load average now {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} CPUs")
    print(format_results(medians(results)))
    print(format_rounds(results))
    if args.json:
        args.json.write_text(json.dumps([{**asdict(m), "mb_per_s": m.mb_per_s,
                                          "frames_per_s": m.frames_per_s,
                                          "cpu_per_gib": m.cpu_per_gib} for m in results],
                                        indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
