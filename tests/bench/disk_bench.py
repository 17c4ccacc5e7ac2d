"""AoE on a real disk: cold-cache reads and writes, the built-in target against vblade.

The tmpfs section (``aoe_bench``) measures the targets' CPU with every byte cached;
this one measures what users with LVs and images larger than the page cache get.
The image (``--size-gib``, default 4, random data) lives on a real filesystem
(``--dir``, default /var/tmp; tmpfs is refused), every phase reads at most a quarter
of it, and before every phase 1 GiB of the image is read through the page cache
(``prime``: every server then reads into memory freed a moment before) and the
image's page cache is dropped (``fdatasync`` then ``posix_fadvise(POSIX_FADV_DONTNEED)``,
no privilege needed) with the server started afresh for that phase (pages a process
has mapped survive DONTNEED, so a server that ran the previous phase could keep them).

Servers: ``builtin`` and ``vblade`` with the same ``-b`` as the client's window, and
``vblade-d`` (vblade -d: O_DIRECT, never cached on the target host). Phases, at
windows 16 and 64, MTU 9000: ``rand-read`` (4 KiB at random 4 KiB-aligned LBAs,
512 per call), ``seq-read`` (8 MiB calls from a random start), ``rand-write`` and
``sync-write`` (4 KiB at random LBAs, the server without and with ``-s``); at MTU
1500 ``rand-read`` again (1 KiB frames, what the kernel sends there). Each phase runs
calls until ``--seconds`` have gone by. Servers alternate within a round, each going
first in turn (``rotated``); the median of ``--rounds`` rounds is printed.

Printed per phase: IOPS (4 KiB operations) or MB/s, the target's CPU per 4 KiB moved
(user+system, threads included), its read amplification (``read_bytes`` from
``/proc/PID/io``, what it read from the disk, per byte the client asked for; writes
count the reads of partial-page read-modify-write), and the built-in target's ratio
to each vblade. Beside them the disk's own queue-depth curve: the same random 4 KiB
pattern read with ``os.preadv`` from 1, 16 and 64 threads, cache dropped first, in
the same run: the ceiling any target can reach.

``--cache-full`` runs every phase with the page cache full of other data instead
(``CacheFiller``): what a host serving a store larger than its RAM meets, where every
page a server reads needs another reclaimed first. Priming alone leaves memory free.
``--client-spin`` has the client look for answers before it sleeps, with every server:
over veth the server's CPU pays for waking a sleeping client (README, "How the client
waits").

Run alone: ``python -m tests.bench.disk_bench [--dir DIR] [--size-gib N] [--rounds N]
[--seconds S] [--window N ...] [--kind K ...] [--phase P ...] [--prime-mib N]
[--cache-full] [--client-spin USEC] [--image PATH] [--json FILE]``; needs
root, ``ip`` and ``vblade``. ``--image`` keeps the image there for the next run.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import mmap
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from aoeprov.aoe.wire import SECTOR_SIZE
from aoeprov.client import AoeClient
from aoeprov.errors import AoeprovError
from tests.bench.aoe_bench import CLIENT_CPU, TARGET_CPU, pin, tree_cpu_seconds
from tests.bench.pairs import by_round, describe, round_ratios
from tests.net import netlab

PAGE = 4096
PAGE_SECTORS = PAGE // SECTOR_SIZE
RANDOM_BATCH = 512               # random 4 KiB operations per client call
SEQ_CALL = 8 << 20               # bytes per sequential client call
KINDS = ("builtin", "vblade", "vblade-d")
WINDOWS = (16, 64)
QUEUE_DEPTHS = (1, 16, 64)
PRIME_MIB = 1024
CACHED_CHUNK = 4 << 20           # bytes per read through the page cache (``read_cached``)
TMPFS_MAGIC = 0x01021994
RAMFS_MAGIC = 0x858458F6
_LIBC = ctypes.CDLL(None, use_errno=True)


@dataclass(frozen=True)
class Measure:
    mtu: int
    window: int
    kind: str
    phase: str
    seconds: float
    bytes_moved: int
    target_cpu: float
    disk_read: int       # read_bytes of the target's /proc/PID/io over the phase

    @property
    def iops(self) -> float:
        return self.bytes_moved / PAGE / self.seconds

    @property
    def mb_per_s(self) -> float:
        return self.bytes_moved / self.seconds / 1e6

    @property
    def cpu_us_per_4k(self) -> float:
        return self.target_cpu / (self.bytes_moved / PAGE) * 1e6

    @property
    def read_amplification(self) -> float:
        return self.disk_read / self.bytes_moved

    @property
    def rate(self) -> float:
        return self.mb_per_s if self.phase == "seq-read" else self.iops


def filesystem_type(path: Path) -> int:
    """``f_type`` of the filesystem holding ``path`` (statfs; os.statvfs lacks it)."""
    buf = ctypes.create_string_buffer(256)
    if _LIBC.statfs(os.fsencode(path), buf) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(path))
    return int.from_bytes(buf.raw[:8], sys.byteorder)


def evict(path: Path) -> None:
    """Drop ``path``'s pages from the page cache (dirty ones are written first)."""
    fd = os.open(path, os.O_RDWR)
    try:
        os.fdatasync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def prime(path: Path, nbytes: int) -> None:
    """Read the first ``nbytes`` of ``path`` through the page cache (``evict`` drops them next).

    Why: this VM's balloon reports free guest memory to the host a few seconds after it
    was freed (virtio-balloon free page reporting), and a page the host took back costs
    a host fault the first time the guest touches it again: there, copying freshly read
    data cost about twice the CPU per byte. Which state a phase met depended on the
    server before it: after ``vblade -d`` (O_DIRECT, no page cache) the cache drop freed
    nothing and the next server read into long-free, reported memory; after a buffered
    server it read into memory freed a moment before. With ``rotated`` order the built-in
    target followed ``vblade -d`` in two rounds of three: 0.68x vblade sequentially
    where, both servers meeting memory freed just before, it was 1.01-1.15x. Priming
    gives every phase memory freed just before it; a page cache that stays full (a
    store larger than RAM) is ``CacheFiller``'s case.
    """
    read_cached(path, 0, nbytes)


def read_cached(path: Path, start: int, nbytes: int) -> None:
    """Read ``nbytes`` of ``path`` from ``start`` through the page cache (less at its end)."""
    buf = bytearray(CACHED_CHUNK)
    fd = os.open(path, os.O_RDONLY)
    try:
        at, end = start, start + nbytes
        while at < end and os.preadv(fd, [buf], at) == CACHED_CHUNK:
            at += CACHED_CHUNK
    finally:
        os.close(fd)


class CacheFiller:
    """Fills the page cache with other data before a phase (``--cache-full``).

    A store larger than the target host's RAM keeps the page cache full: every page a
    server reads needs another one reclaimed first. On this VM (a 32 GiB image read
    through a 23 GiB machine) that reclaim ran in the reading task, kswapd taking next
    to no CPU, so it is counted in the server's CPU. Priming (``prime``) only gives a
    phase memory freed a moment before; this gives it no free memory at all.

    The filler is a sparse file twice the machine's RAM beside the image: reading a
    hole puts a page of zeros in the page cache without touching the disk. Each
    ``fill`` reads the half not read the time before, so the cache ends up full of
    pages read once (the inactive list, what the kernel reclaims first, as it would
    a stream's old pages) rather than of pages read twice, which the kernel would
    keep over the phase's own.
    """

    def __init__(self, directory: Path) -> None:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        self.half = -(-ram // CACHED_CHUNK) * CACHED_CHUNK
        self.path = directory / "cache-filler"
        with open(self.path, "wb") as f:
            f.truncate(2 * self.half)
        self._next = 0

    def fill(self) -> None:
        read_cached(self.path, self._next * self.half, self.half)
        self._next ^= 1


def read_through(path: Path) -> float:
    """Read all of ``path`` once with O_DIRECT (the page cache stays empty); seconds taken.

    On a VM the host may cache the virtual disk: data some server read once comes back
    faster for the next (see ``rotated``). Reading the whole image first makes that
    cache less a matter of which runs came before; the disk's queue-depth curve is
    measured on the same disk. (It does not make every region equal: the host keeps
    what it keeps.)
    """
    chunk = 4 << 20
    buf = mmap.mmap(-1, chunk)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    started = time.perf_counter()
    try:
        while os.readv(fd, [buf]) == chunk:
            pass
    finally:
        os.close(fd)
        buf.close()
    return time.perf_counter() - started


def read_bytes(pid: int) -> int:
    """Bytes ``pid`` (all its threads) made the kernel read from storage."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("read_bytes:"):
            return int(line.split()[1])
    raise OSError(f"no read_bytes in /proc/{pid}/io")


def fill_image(path: Path, size: int) -> None:
    """``size`` bytes of random data, written through to the disk."""
    chunk = 8 << 20
    with open(path, "wb") as f:
        for at in range(0, size, chunk):
            f.write(os.urandom(min(chunk, size - at)))
        f.flush()
        os.fsync(f.fileno())


@dataclass(frozen=True)
class Plan:
    image: Path
    sectors: int
    seconds: float
    seed: int
    prime: int = 0     # bytes read through the page cache before it is dropped (``prime``)
    filler: CacheFiller | None = None  # the page cache kept full instead (``--cache-full``)
    client_spin: float = 0.0  # seconds the client looks for answers before it sleeps

    def random_extents(self, salt: str) -> list[list[tuple[int, int]]]:
        """Calls of 4 KiB extents at random 4 KiB-aligned LBAs, a quarter of the image at most."""
        rng = random.Random(f"{self.seed}-{salt}")
        pages = self.sectors // PAGE_SECTORS
        calls = max(1, pages // 4 // RANDOM_BATCH)
        return [[(rng.randrange(pages) * PAGE_SECTORS, PAGE_SECTORS)
                 for _ in range(RANDOM_BATCH)] for _ in range(calls)]


def timed_calls(calls: Sequence[Callable[[], int]], seconds: float) -> int:
    """Run ``calls`` in turn until ``seconds`` have gone by (at least one); bytes moved."""
    moved, started = 0, time.perf_counter()
    for call in calls:
        moved += call()
        if time.perf_counter() - started >= seconds:
            break
    return moved


def phase_work(client: AoeClient, plan: Plan, phase: str, salt: str) -> Callable[[], int]:
    """The client's side of ``phase``: returns a function that runs it, giving bytes moved."""
    if phase == "seq-read":
        rng = random.Random(f"{plan.seed}-{salt}")
        span = plan.sectors // 4
        start = rng.randrange((plan.sectors - span) // (SEQ_CALL // SECTOR_SIZE))
        start *= SEQ_CALL // SECTOR_SIZE
        into = bytearray(SEQ_CALL)

        def seq(lba: int) -> int:
            client.read_into(lba, into)
            return SEQ_CALL

        return lambda: timed_calls(
            [lambda lba=lba: seq(lba)  # type: ignore[misc]
             for lba in range(start, start + span, SEQ_CALL // SECTOR_SIZE)], plan.seconds)
    extents = plan.random_extents(salt)
    buffer = bytearray(os.urandom(RANDOM_BATCH * PAGE))
    write = phase in ("rand-write", "sync-write")

    def one(batch: list[tuple[int, int]]) -> int:
        if write:
            client.write_many(batch, buffer)
        else:
            client.read_many_into(batch, buffer)
        return len(batch) * PAGE

    return lambda: timed_calls([lambda b=b: one(b) for b in extents],  # type: ignore[misc]
                               plan.seconds)


def rotated(kinds: Sequence[str], round_: int) -> list[str]:
    """``kinds`` in the order of round ``round_``: each goes first in turn.

    Every server of a phase reads the same regions (the same salt: how fast a region
    reads varies by 3x here, 277-893 MB/s sequential), so with the order fixed the
    first server would always meet the coldest storage below the guest: on a VM the
    host caches the virtual disk, and data one server read is faster for the next
    (measured here: the same sequential phase at 277 and then 731 MB/s).
    """
    shift = round_ % len(kinds)
    return [*kinds[shift:], *kinds[:shift]]


def run_phase(lab: netlab.Lab, kind: str, window: int, phase: str, plan: Plan, log: Path,
              salt: str) -> Measure:
    """One server process for one phase: started, the cache dropped, measured, stopped."""
    export = netlab.Export(0, 1, plan.image, sync=phase == "sync-write", bufcnt=window,
                           direct=kind == "vblade-d")
    proc = netlab.start_server(lab, "builtin" if kind == "builtin" else "vblade", export,
                               log=log)
    transport = netlab.open_transport(lab)
    try:
        client = AoeClient(transport, 0, 1, timeout=0.5, window=window, spin=plan.client_spin)
        netlab.wait_until(lambda: netlab.answers(client), 15, f"{kind} to answer")
        pin(proc.pid, TARGET_CPU)
        work = phase_work(client, plan, phase, salt)
        if plan.filler is not None:
            plan.filler.fill()
        else:
            prime(plan.image, plan.prime)
        evict(plan.image)
        cpu0, read0 = tree_cpu_seconds(proc.pid), read_bytes(proc.pid)
        started = time.perf_counter()
        moved = work()
        seconds = time.perf_counter() - started
        return Measure(lab.mtu, window, kind, phase, seconds, moved,
                       tree_cpu_seconds(proc.pid) - cpu0, read_bytes(proc.pid) - read0)
    finally:
        transport.close()
        netlab.stop_process(proc)


def disk_curve(plan: Plan, depth: int, salt: str) -> float:
    """IOPS of the disk alone: the random 4 KiB pattern by ``depth`` threads doing preadv."""
    extents = [e for call in plan.random_extents(salt) for e in call]
    evict(plan.image)
    fd = os.open(plan.image, os.O_RDONLY)
    done = [0] * depth
    stop = threading.Event()

    def reader(k: int) -> None:
        buf = bytearray(PAGE)
        for lba, _count in extents[k::depth]:
            if stop.is_set():
                return
            os.preadv(fd, [buf], lba * SECTOR_SIZE)
            done[k] += 1

    threads = [threading.Thread(target=reader, args=(k,)) for k in range(depth)]
    started = time.perf_counter()
    try:
        for t in threads:
            t.start()
        time.sleep(plan.seconds)
        stop.set()
        for t in threads:
            t.join()
    finally:
        os.close(fd)
    return sum(done) / (time.perf_counter() - started)


PHASES_9000 = ("rand-read", "seq-read", "rand-write", "sync-write")
PHASES_1500 = ("rand-read",)


def medians(results: Sequence[Measure]) -> list[Measure]:
    groups: dict[tuple[int, int, str, str], list[Measure]] = {}
    for m in results:
        groups.setdefault((m.mtu, m.window, m.phase, m.kind), []).append(m)
    return [sorted(g, key=lambda m: m.rate)[len(g) // 2] for g in groups.values()]


def format_results(results: Sequence[Measure]) -> str:
    by = {(m.mtu, m.window, m.phase, m.kind): m for m in results}
    lines = [f"{'mtu':>5} {'win':>3} {'phase':<10} {'target':<8} {'IOPS':>7} {'MB/s':>7} "
             f"{'CPU us/4K':>9} {'rd amp':>7} {'x vblade':>8} {'x vb -d':>7}"]
    order = {k: i for i, k in enumerate(KINDS)}
    phases = {p: i for i, p in enumerate(PHASES_9000)}
    for m in sorted(results, key=lambda m: (-m.mtu, m.window, phases[m.phase], order[m.kind])):
        ratios = []
        for ref_kind in ("vblade", "vblade-d"):
            ref = by.get((m.mtu, m.window, m.phase, ref_kind))
            ratios.append(f"{m.rate / ref.rate:.2f}" if m.kind == "builtin" and ref else "-")
        iops = f"{m.iops:.0f}" if m.phase != "seq-read" else "-"
        lines.append(f"{m.mtu:>5} {m.window:>3} {m.phase:<10} {m.kind:<8} {iops:>7} "
                     f"{m.mb_per_s:>7.1f} {m.cpu_us_per_4k:>9.1f} {m.read_amplification:>7.2f} "
                     f"{ratios[0]:>8} {ratios[1]:>7}")
    return "\n".join(lines)


def format_rounds(results: Sequence[Measure]) -> str:
    """The built-in target against each vblade, round by round (``tests.bench.pairs``)."""
    rounds = by_round(((m.mtu, m.window, m.phase), m.kind, m.rate) for m in results)
    lines = ["built-in / vblade (and / vblade -d), each round's own ratio:"]
    for (mtu, window, phase), servers in rounds.items():
        if "builtin" not in servers:
            continue
        for ref_kind in ("vblade", "vblade-d"):
            if ref_kind in servers:
                ratios = round_ratios(servers["builtin"], servers[ref_kind])
                lines.append(f"{mtu:>5} {window:>3} {phase:<10} x {ref_kind:<8} "
                             f"{describe(ratios)}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="disk_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path("/var/tmp"),
                        help="where the image lives (a real filesystem on a disk, not tmpfs)")
    parser.add_argument("--image", type=Path,
                        help="use (and keep) this image, created when missing or too small")
    parser.add_argument("--size-gib", type=int, default=4, help="image size (default 4)")
    parser.add_argument("--seconds", type=float, default=1.0,
                        help="minimum length of a phase (default 1)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    parser.add_argument("--window", type=int, action="append",
                        help="client windows = servers' -b (default 16 64)")
    parser.add_argument("--kind", action="append", choices=KINDS, help="servers (default all)")
    parser.add_argument("--phase", action="append", choices=PHASES_9000,
                        help="phases (default all)")
    parser.add_argument("--no-mtu-1500", dest="mtu_1500", action="store_false",
                        help="skip the MTU 1500 random reads")
    parser.add_argument("--prime-mib", type=int, default=PRIME_MIB,
                        help=f"MiB read through the page cache before each phase drops it "
                        f"(default {PRIME_MIB}; see prime)")
    parser.add_argument("--cache-full", action="store_true",
                        help="keep the page cache full of other data before every phase "
                        "(a store larger than RAM; see CacheFiller)")
    parser.add_argument("--client-spin", type=float, default=0.0, metavar="USEC",
                        help="the client looks for answers this long without sleeping before "
                        "it waits, with every server: on one machine the server's CPU pays "
                        "for waking a sleeping client, which two hosts never do (default 0)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if os.geteuid() != 0 or shutil.which("vblade") is None:
        print("disk_bench needs root and vblade (make setup)", file=sys.stderr)
        return 1
    windows = args.window or list(WINDOWS)
    kinds = args.kind or list(KINDS)
    phases = {9000: [p for p in PHASES_9000 if not args.phase or p in args.phase],
              1500: [p for p in PHASES_1500 if not args.phase or p in args.phase]}
    size = args.size_gib << 30
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="aoe-disk-bench-",
                                                                   dir=args.dir)))
        image = args.image or tmp / "disk.img"
        if filesystem_type(image.parent) in (TMPFS_MAGIC, RAMFS_MAGIC):
            print(f"{image.parent} is in memory (tmpfs): give --dir on a disk", file=sys.stderr)
            return 1
        if not image.exists() or image.stat().st_size < size:
            fill_image(image, size)
        warm = read_through(image)
        plan = Plan(image, image.stat().st_size // SECTOR_SIZE, args.seconds, 42,
                    args.prime_mib << 20, CacheFiller(tmp) if args.cache_full else None,
                    args.client_spin / 1e6)
        if (os.cpu_count() or 1) >= 2:
            os.sched_setaffinity(0, {CLIENT_CPU})
        labs = {9000: stack.enter_context(netlab.lab_context(9000))}
        if args.mtu_1500 and phases[1500]:
            labs[1500] = stack.enter_context(netlab.lab_context(1500))
        results: list[Measure] = []
        curve: dict[int, list[float]] = {d: [] for d in QUEUE_DEPTHS}
        for round_ in range(args.rounds):
            for depth in QUEUE_DEPTHS:
                curve[depth].append(disk_curve(plan, depth, f"{round_}-disk"))
            for mtu, lab in labs.items():
                for window in windows:
                    for phase in phases[mtu]:
                        for kind in rotated(kinds, round_):
                            log = tmp / f"{kind}.log"
                            log.unlink(missing_ok=True)
                            try:
                                results.append(run_phase(
                                    lab, kind, window, phase, plan, log,
                                    f"{round_}-{mtu}-{window}-{phase}"))
                            except (AoeprovError, TimeoutError, OSError,
                                    subprocess.SubprocessError) as exc:
                                text = log.read_text(errors="replace") if log.exists() else ""
                                print(f"{kind} {phase} at MTU {mtu} window {window} failed: "
                                      f"{exc}\n{text}", file=sys.stderr)
                                return 1
            print(f"  real disk: round {round_ + 1} of {args.rounds} done", flush=True)
    pinned = "client on CPU 0, target on CPU 1" if (os.cpu_count() or 1) >= 2 else "unpinned"
    cache = ("page cache filled with other data (a sparse file, "
             f"{plan.filler.half >> 30} GiB read through it) and the image's dropped"
             if plan.filler is not None else "page cache dropped")
    print(f"image {size >> 30} GiB of random data under {args.dir}, {cache} before "
          f"every phase, phases of >= {args.seconds}s, median of {args.rounds} alternating "
          f"rounds, {pinned}; load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    if plan.client_spin:
        print(f"the client spins up to {args.client_spin:.0f} us for answers before it sleeps")
    print(f"the image read through once first (O_DIRECT, {size / warm / 1e6:.0f} MB/s): on a VM "
          "the host's cache of the virtual disk is then the same for every server")
    print("the disk alone (same random 4 KiB pattern, os.preadv from threads): " + ", ".join(
        f"QD {d}: {statistics.median(v):.0f} IOPS" for d, v in curve.items()))
    print(format_results(medians(results)))
    print(format_rounds(results))
    if args.json:
        args.json.write_text(json.dumps({
            "cache_full": plan.filler is not None,
            "client_spin_us": args.client_spin,
            "disk_iops": {d: v for d, v in curve.items()},
            "results": [{**asdict(m), "rate": m.rate} for m in results]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
