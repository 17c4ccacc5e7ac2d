"""The real Linux AoE initiator against the built-in target (vm tier).

A stock Debian kernel boots under qemu with a busybox initramfs, its virtio NIC
on a tap inside a network namespace where ``aoeprov target`` serves an image.
The guest discovers e4.1, reads what the host wrote, writes what the host then
reads back, and keeps working across a target restart (its write goes out while
the target is down and is retransmitted until the target is back). The guest
reports on the serial console.

The image lives on a disk (/var/tmp) with its page cache dropped before the guest
starts, so the guest's reads and writes go through the target's disk I/O layer
(``target.diskio``): its ``disk_queued`` counter says so, and the guest checks the
bytes of an 8 MiB bulk read (md5 against the host's) and copies 4 MiB through the
target (read, then written back elsewhere with O_DIRECT), which the host compares.

Lives next to the other target tests; it is marked ``vm`` like everything that
boots a kernel.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import selectors
import subprocess
import sys
import time
from pathlib import Path
from stat import S_IFCHR, S_IFDIR, S_IFREG

import pytest

from aoeprov.lab.initramfs import Entry, newc_archive
from aoeprov.lab.kernel import default_cache_dir, fetch_kernel, load_order, parse_modules_dep
from tests.net import netlab

pytestmark = pytest.mark.vm

BUSYBOX = Path("/bin/busybox")
MODULES = ("virtio_pci", "virtio_net", "aoe")
IMAGE_SECTORS = 65536  # 32 MiB
HOST_TEXT = b"written by the host before boot"
GUEST_TEXT = b"written by the guest"
AFTER_RESTART = b"written after the target restart"
BOOT_TIMEOUT = 180

GUEST_SCRIPT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in $(cat /modules.order); do insmod /modules/$m.ko; done
ip link set eth0 up
echo eth0 > /dev/etherd/interfaces
echo > /dev/etherd/discover
i=0; while [ ! -b /dev/etherd/e4.1 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
d=/sys/block/etherd!e4.1
echo "RESULT size=$(cat $d/size)"
echo "RESULT payload=$(cat $d/payload)"
echo "RESULT state=$(cat $d/state)"
echo "RESULT host=$(dd if=/dev/etherd/e4.1 bs=512 skip=100 count=1 2>/dev/null | head -c 31)"
echo "@GUEST@" | dd of=/dev/etherd/e4.1 bs=512 seek=200 conv=sync,fsync 2>/dev/null
dd if=/dev/etherd/e4.1 of=/dev/null bs=1M count=8 iflag=direct 2>/dev/null && echo "RESULT bulk=ok"
e=/dev/etherd/e4.1
sum=$(dd if=$e bs=1M skip=16 count=8 iflag=direct 2>/dev/null | md5sum | cut -c1-32)
echo "RESULT bulkmd5=$sum"
dd if=$e bs=1M skip=16 count=4 iflag=direct 2>/dev/null \
  | dd of=$e bs=1M seek=24 oflag=direct conv=fsync 2>/dev/null && echo "RESULT copy=ok"
echo "PHASE restart-now"
sleep 1
echo "@AFTER@" | dd of=/dev/etherd/e4.1 bs=512 seek=300 conv=sync,fsync 2>/dev/null
after=$(dd if=/dev/etherd/e4.1 bs=512 skip=300 count=1 iflag=direct 2>/dev/null | head -c 32)
echo "RESULT after=$after"
echo "PHASE done"
echo o > /proc/sysrq-trigger
"""


def build_initrd(out: Path) -> Path:
    kernel = fetch_kernel(default_cache_dir())
    deps = parse_modules_dep((kernel.modules_dir / "modules.dep").read_text())
    modules = load_order(MODULES, deps)
    script = GUEST_SCRIPT.replace("@GUEST@", GUEST_TEXT.decode()).replace(
        "@AFTER@", AFTER_RESTART.decode())
    entries = [Entry(d, S_IFDIR | 0o755) for d in ("bin", "dev", "proc", "sys", "modules")]
    entries += [Entry("dev/console", S_IFCHR | 0o600, rdev=(5, 1)),
                Entry("bin/busybox", S_IFREG | 0o755, BUSYBOX.read_bytes()),
                Entry("init", S_IFREG | 0o755, script.encode()),
                Entry("modules.order", S_IFREG | 0o644, "\n".join(modules).encode() + b"\n")]
    entries += [Entry(f"modules/{name}.ko", S_IFREG | 0o644,
                      (kernel.modules_dir / deps[name][0]).read_bytes()) for name in modules]
    out.write_bytes(newc_archive(entries))
    return kernel.vmlinuz


def test_linux_initiator_uses_the_builtin_target(tmp_path: Path) -> None:
    for tool in ("qemu-system-x86_64", "ip"):
        if not any((Path(p) / tool).exists() for p in os.environ["PATH"].split(":")):
            pytest.fail(f"missing {tool}: run `make setup`", pytrace=False)
    if not BUSYBOX.exists():
        pytest.fail("missing /bin/busybox (busybox-static): run `make setup`", pytrace=False)
    initrd = tmp_path / "initrd.cpio"
    vmlinuz = build_initrd(initrd)
    # on a disk, page cache dropped: the target's disk I/O layer serves the guest
    disk_dir = Path("/var/tmp") / f"aoeprov-vm-{secrets.token_hex(4)}"
    disk_dir.mkdir()
    image = disk_dir / "disk.img"
    bulk = os.urandom(8 << 20)
    image.write_bytes(bytes(IMAGE_SECTORS * 512))
    with image.open("r+b") as fh:
        fh.seek(100 * 512)
        fh.write(HOST_TEXT)
        fh.seek(16 << 20)
        fh.write(bulk)
        fh.flush()
        os.fdatasync(fh.fileno())
        os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    ns, tap = f"aoevm-{os.getpid()}", "tapaoe0"
    log = tmp_path / "target.log"
    stats = [tmp_path / "stats-0.json", tmp_path / "stats-1.json"]
    target_argv = [sys.executable, "-m", "aoeprov", "target", "-s", "4", "1", tap, str(image)]
    env = {**os.environ, "PYTHONPATH": str(netlab.REPO)}
    subprocess.run(("ip", "netns", "add", ns), check=True)
    procs: list[subprocess.Popen[bytes]] = []

    def start_target() -> subprocess.Popen[bytes]:
        argv = [*target_argv, "--stats-file", str(stats[len(procs) > 1])]
        with log.open("ab") as out:
            procs.append(subprocess.Popen(("ip", "netns", "exec", ns, *argv), stdout=out,
                                          stderr=out, env=env))
        return procs[-1]

    try:
        subprocess.run(("ip", "-n", ns, "tuntap", "add", "dev", tap, "mode", "tap"), check=True)
        subprocess.run(("ip", "-n", ns, "link", "set", tap, "up"), check=True)
        target = start_target()
        qemu = subprocess.Popen(
            ("ip", "netns", "exec", ns, "qemu-system-x86_64", "-m", "512", "-nographic",
             "-no-reboot", "-nodefaults", "-serial", "stdio", "-kernel", str(vmlinuz),
             "-initrd", str(initrd), "-append", "console=ttyS0 quiet panic=-1",
             "-netdev", f"tap,id=n0,ifname={tap},script=no,downscript=no",
             "-device", "virtio-net-pci,netdev=n0"),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        procs.append(qemu)
        results: dict[str, str] = {}
        console: list[str] = []
        assert qemu.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(qemu.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + BOOT_TIMEOUT
        buffered = b""
        while "done" not in results.get("phase", "") and time.monotonic() < deadline:
            if not selector.select(1.0):
                continue
            chunk = os.read(qemu.stdout.fileno(), 4096)
            if not chunk:
                break
            buffered += chunk
            *lines, buffered = buffered.split(b"\n")
            for raw in lines:
                line = raw.decode(errors="replace").strip()
                console.append(line)
                # the first line after boot carries the console's escape sequences
                if "RESULT " in line:
                    key, _, value = line.split("RESULT ", 1)[1].partition("=")
                    results[key] = value
                elif "PHASE " in line:
                    results["phase"] = line.split("PHASE ", 1)[1]
                    if results["phase"] == "restart-now":
                        # down for 2 s: the guest's next write is sent into the outage
                        netlab.stop_process(target)
                        time.sleep(2)
                        target = start_target()
        transcript = "\n".join(console[-40:]) + "\n--- target log ---\n" + log.read_text()
        assert results.get("phase") == "done", transcript
        assert results.get("size") == str(IMAGE_SECTORS), transcript
        assert results.get("payload") == "1024" and results.get("state") == "up", transcript
        assert results.get("host") == HOST_TEXT.decode(), transcript
        assert results.get("bulk") == "ok", transcript
        assert results.get("bulkmd5") == hashlib.md5(bulk).hexdigest(), transcript
        assert results.get("copy") == "ok", transcript
        assert results.get("after") == AFTER_RESTART.decode(), transcript
        data = image.read_bytes()
        assert data[200 * 512:200 * 512 + len(GUEST_TEXT)] == GUEST_TEXT
        assert data[300 * 512:300 * 512 + len(AFTER_RESTART)] == AFTER_RESTART
        assert data[24 << 20:28 << 20] == bulk[:4 << 20]
        netlab.stop_process(target)
        (first,) = json.loads(stats[0].read_text())["exports"]
        assert first["disk_queued"] > 0 and first["ata_errors"] == 0, first
    finally:
        for proc in reversed(procs):
            netlab.stop_process(proc)
        subprocess.run(("ip", "netns", "del", ns), capture_output=True)
        subprocess.run(("rm", "-rf", str(disk_dir)), check=False)
