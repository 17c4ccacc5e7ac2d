"""Two exports, two initiators: does a durable writer on one stall reads on the other?

One target host serves two exports: e0.1 ``sync`` on a file under ``--dir`` (a real
filesystem: every acknowledged write is on stable storage) and e0.2 on tmpfs. A reader
(its own process, window 1: a database's point reads) times random 4 KiB reads of
e0.2, first alone, then while a writer streams 8 MiB writes at window 64 into e0.1.

Servers: ``builtin`` (one process serving both exports; its loop never waits for
``fdatasync``: syncs run as io_uring jobs) and ``vblade`` (one process per export,
``-s`` for e0.1: its writes and syncs never share a loop with the reader). Both
pinned to one CPU, the clients to the other, as in the other sections.

Printed per server and case: reads/s, the reader's median, 99th percentile and worst
latency, and the writer's MB/s, medians over ``--rounds`` rounds in which each server
goes first in turn. A target that made its syncs in the frame loop (this project's
before the disk layer, e6270c4) gave, measured alongside on this machine, a median
read of 1.2 ms beside the writer where the built-in target now gives 0.3 ms.

Run alone: ``python -m tests.bench.mixed_bench [--dir DIR] [--seconds S] [--rounds N]``;
needs root, ``ip`` and ``vblade``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from aoeprov.client import AoeClient
from tests.bench.aoe_bench import CLIENT_CPU, TARGET_CPU, fill_image, pin
from tests.bench.disk_bench import RAMFS_MAGIC, TMPFS_MAGIC, filesystem_type, rotated
from tests.net import netlab

KINDS = ("builtin", "vblade")
WRITE_CALL = 8 << 20          # bytes per writer call (the durable phase's)
DURABLE_SIZE = 8 << 20
READ_SIZE = 256 << 20
PAGE = 4096


@dataclass(frozen=True)
class Measure:
    kind: str
    writer: bool
    reads_per_s: float
    p50_us: float
    p99_us: float
    worst_us: float
    writer_mb_s: float


def reader_main(argv: Sequence[str]) -> int:
    """The reader process: ``reader IFNAME SECONDS`` in the client namespace; prints
    "count p50 p99 worst" (microseconds)."""
    from aoeprov.aoe.transport import EthernetTransport

    ifname, seconds = argv[0], float(argv[1])
    client = AoeClient(EthernetTransport(ifname, responses=True), 0, 2, timeout=2.0, window=1)
    client.discover()
    rng = random.Random(1)
    buf = bytearray(PAGE)
    latencies: list[float] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        lba = rng.randrange(READ_SIZE // PAGE) * (PAGE // 512)
        started = time.perf_counter()
        client.read_many_into([(lba, PAGE // 512)], buf)
        latencies.append(time.perf_counter() - started)
    latencies.sort()
    print(len(latencies), latencies[len(latencies) // 2] * 1e6,
          latencies[int(len(latencies) * 0.99)] * 1e6, latencies[-1] * 1e6)
    return 0


def start_servers(lab: netlab.Lab, kind: str, durable: Path, image: Path,
                  log: Path) -> list[int]:
    """The target(s) for both exports; their pids."""
    writes = netlab.Export(0, 1, durable, sync=True, bufcnt=64)
    reads = netlab.Export(0, 2, image, bufcnt=64)
    if kind == "builtin":
        return [netlab.start_server(lab, "builtin", writes, log=log, extra=(reads,)).pid]
    return [netlab.start_server(lab, "vblade", e, log=log).pid for e in (writes, reads)]


def run_case(lab: netlab.Lab, kind: str, writer: bool, durable: Path, image: Path,
             seconds: float, tmp: Path) -> Measure:
    log = tmp / f"{kind}.log"
    pids = start_servers(lab, kind, durable, image, log)
    transport = netlab.open_transport(lab)
    stop, moved = threading.Event(), [0]
    try:
        client = AoeClient(transport, 0, 1, timeout=0.5, window=64)
        netlab.wait_until(lambda: netlab.answers(client), 15, f"{kind} to answer")
        for pid in pids:
            pin(pid, TARGET_CPU)
        block = memoryview(os.urandom(WRITE_CALL))

        def write() -> None:
            while not stop.is_set():
                client.write(0, block)
                moved[0] += WRITE_CALL

        out = tmp / "reader.out"
        out.unlink(missing_ok=True)
        reader = lab.popen(lab.client_ns, [sys.executable, "-m", "tests.bench.mixed_bench",
                                           "reader", lab.client_if, str(seconds)], out)
        thread = threading.Thread(target=write) if writer else None
        started = time.perf_counter()
        if thread is not None:
            thread.start()
        try:
            reader.wait(seconds + 60)
        finally:
            stop.set()
            if thread is not None:
                thread.join()
        elapsed = time.perf_counter() - started
        fields = out.read_text().split()
        if reader.returncode != 0 or len(fields) != 4:
            raise RuntimeError(f"the reader failed: {out.read_text()}")
        count, p50, p99, worst = map(float, fields)
        return Measure(kind, writer, count / seconds, p50, p99, worst, moved[0] / elapsed / 1e6)
    finally:
        transport.close()
        for proc in list(lab.procs):
            netlab.stop_process(proc)
        lab.procs.clear()


def format_results(results: Sequence[Measure]) -> str:
    groups: dict[tuple[str, bool], list[Measure]] = {}
    for m in results:
        groups.setdefault((m.kind, m.writer), []).append(m)
    lines = [f"{'target':<8} {'writer':<6} {'reads/s':>8} {'p50 us':>8} {'p99 us':>8} "
             f"{'worst us':>9} {'writer MB/s':>11}"]
    for (kind, writer), rows in sorted(groups.items(), key=lambda g: (KINDS.index(g[0][0]),
                                                                      g[0][1])):
        med = [statistics.median(getattr(m, f) for m in rows)
               for f in ("reads_per_s", "p50_us", "p99_us", "worst_us", "writer_mb_s")]
        lines.append(f"{kind:<8} {'yes' if writer else 'no':<6} {med[0]:>8.0f} {med[1]:>8.0f} "
                     f"{med[2]:>8.0f} {med[3]:>9.0f} {med[4]:>11.1f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["reader"]:
        return reader_main(argv[1:])
    parser = argparse.ArgumentParser(prog="mixed_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path("/var/tmp"),
                        help="where the durable export lives (a real filesystem, not tmpfs)")
    parser.add_argument("--seconds", type=float, default=4.0, help="reader time per case")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0 or shutil.which("vblade") is None:
        print("mixed_bench needs root and vblade (make setup)", file=sys.stderr)
        return 1
    if filesystem_type(args.dir) in (TMPFS_MAGIC, RAMFS_MAGIC):
        print(f"{args.dir} is in memory (tmpfs): give --dir on a disk", file=sys.stderr)
        return 1
    results: list[Measure] = []
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="aoe-mixed-",
                                                                   dir=args.dir)))
        shm = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="aoe-mixed-",
                                                                   dir="/dev/shm")))
        durable = fill_image(tmp / "durable.img", DURABLE_SIZE)
        image = fill_image(shm / "reads.img", READ_SIZE)
        if (os.cpu_count() or 1) >= 2:
            os.sched_setaffinity(0, {CLIENT_CPU})
        lab = stack.enter_context(netlab.lab_context(9000))
        for round_ in range(args.rounds):
            for kind in rotated(KINDS, round_):
                for writer in (False, True):
                    results.append(run_case(lab, kind, writer, durable, image, args.seconds,
                                            tmp))
            print(f"  mixed: round {round_ + 1} of {args.rounds} done", flush=True)
    print(f"MTU 9000; e0.1 sync on {args.dir} (8 MiB, written at window 64 in 8 MiB calls), "
          f"e0.2 on tmpfs (256 MiB, random 4 KiB reads at window 1 from another process), "
          f"{args.seconds:g}s per case, median of {args.rounds} rounds")
    print(format_results(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
