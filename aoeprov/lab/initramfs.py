"""The guest's initramfs: busybox, a few kernel modules, and an /init that boots the host's root.

/init mounts the host's ``/`` read-only over 9p, puts an overlay on it whose upper
layer lives on the VM's own disk (``/dev/vda``, ext4, so guest changes survive a
guest reboot), mounts the kernel's module tree over a second 9p share, copies the
lab's runtime units to ``/run/systemd/system`` and ``switch_root``s into systemd.
The archive is written here in the cpio ``newc`` format, so building it needs no
privileges and no external tool.
"""

from __future__ import annotations

import logging
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from aoeprov.lab.kernel import Kernel, load_order, parse_modules_dep
from aoeprov.lab.units import ENV_FILE, RuntimeUnits

LOG = logging.getLogger(__name__)

BUSYBOX = Path("/bin/busybox")  # busybox-static: no shared libraries to copy
HOSTROOT_TAG = "hostroot"
# The host's / a second time, mounted with the guest's page and dentry caches on
# (cache=loose): the overlay's lower layer, which must not change under the overlay
# anyway. Every Python start in a guest reads hundreds of files from it; uncached,
# each read is a round trip to qemu (an Ansible task's imports took 1.6-2.6 s).
# What the host changes while the lab runs is bound from the uncached share (@KEEP@).
HOSTROOT_CACHED_TAG = "hostroot-cached"
MODULES_TAG = "modules"

# Enough to reach the root filesystem; everything else udev loads from the shared tree.
EARLY_MODULES = ("virtio_pci", "virtio_blk", "9pnet_virtio", "9p", "overlay",
                 "crc32c_generic", "ext4")

S_IFDIR, S_IFREG, S_IFLNK, S_IFCHR = 0o040000, 0o100000, 0o120000, 0o020000

INIT_SCRIPT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t devtmpfs dev /dev
exec >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sys /sys
fail() { echo "lab-init: FAILED: $*"; sleep 1; poweroff -f; }
for m in $(cat /modules.order); do insmod /modules/$m.ko || fail "insmod $m"; done
MTU=1500
NICS=1
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    aoeprov.mtu=*) MTU="${arg#aoeprov.mtu=}" ;;
    aoeprov.nics=*) NICS="${arg#aoeprov.nics=}" ;;
  esac
done
for i in $(seq 50); do [ -b /dev/vda ] && break; sleep 0.1; done
mkdir -p /lower /live /disk /newroot
P9=trans=virtio,version=9p2000.L,ro,msize=262144
mount -t 9p -o $P9,cache=loose @HOSTROOT_CACHED@ /lower || fail "mount host root (cached)"
mount -t 9p -o $P9 @HOSTROOT@ /live || fail "mount host root over 9p"
mount -t ext4 /dev/vda /disk || fail "mount /dev/vda (overlay upper disk)"
mkdir -p /disk/upper /disk/work
if [ ! -e /disk/upper/etc/fstab ]; then
  # first boot: the host's fstab describes the host, not this guest
  mkdir -p /disk/upper/etc
  echo "# aoeprov lab guest: / is an overlay set up by the lab's initramfs" > /disk/upper/etc/fstab
fi
mount -t overlay overlay -o lowerdir=/lower,upperdir=/disk/upper,workdir=/disk/work /newroot \
  || fail "mount overlay"
# the host may be a container: its marker files would make systemd act as one
rm -f /newroot/.dockerenv /newroot/.containerenv
KREL=$(uname -r)
mkdir -p /newroot/lib/modules/$KREL
mount -t 9p -o trans=virtio,version=9p2000.L,ro @MODULES@ /newroot/lib/modules/$KREL \
  || fail "mount kernel modules over 9p"
mount -t proc proc /newroot/proc
mount -t sysfs sys /newroot/sys
mount -t tmpfs -o mode=755,nosuid,nodev tmpfs /newroot/run
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /newroot/tmp
# this checkout and its venv must stay visible where the fresh /run and /tmp cover them,
# and the lab's shared directory live: bound from the uncached share
for keep in @KEEP@; do
  [ -d "/live$keep" ] || continue
  mkdir -p "/newroot$keep" && mount --bind "/live$keep" "/newroot$keep" || fail "bind $keep"
done
mkdir -p /newroot/run/systemd /newroot/run/aoeprov-lab
cp -a /units /newroot/run/systemd/system
printf 'MTU=%s\nNICS=%s\n' "$MTU" "$NICS" > /newroot@ENV_FILE@
mount --move /disk /newroot/run/aoeprov-lab
mount --move /dev /newroot/dev
echo "lab-init: switching to systemd"
exec switch_root /newroot /lib/systemd/systemd
"""


COVERED_IN_GUEST = (Path("/tmp"), Path("/run"))  # the guest mounts fresh tmpfs there


def paths_to_keep() -> tuple[str, ...]:
    """This checkout and the running venv, when the guest's fresh /tmp or /run would hide them.

    CI may clone the project under /tmp; the guest runs aoeprov from the same paths.
    """
    checkout = Path(__file__).resolve().parents[2]
    keep = []
    for path in (checkout, Path(sys.prefix).resolve()):
        if any(path.is_relative_to(top) for top in COVERED_IN_GUEST) and str(path) not in keep:
            keep.append(str(path))
    return tuple(keep)


def init_script(keep: tuple[str, ...] | None = None) -> str:
    keep = paths_to_keep() if keep is None else keep
    return (INIT_SCRIPT.replace("@HOSTROOT_CACHED@", HOSTROOT_CACHED_TAG)
            .replace("@HOSTROOT@", HOSTROOT_TAG)
            .replace("@MODULES@", MODULES_TAG).replace("@ENV_FILE@", ENV_FILE)
            .replace("@KEEP@", " ".join(shlex.quote(k) for k in keep)))


@dataclass(frozen=True)
class Entry:
    path: str        # inside the archive, no leading slash
    mode: int        # full st_mode, type bits included
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)


def newc_archive(entries: list[Entry]) -> bytes:
    """A cpio archive in the ``newc`` format the kernel unpacks as initramfs."""
    out = bytearray()

    def pad() -> None:
        out.extend(b"\0" * (-len(out) % 4))

    for ino, entry in enumerate([*entries, Entry("TRAILER!!!", 0)], start=1):
        name = entry.path.encode() + b"\0"
        fields = (ino, entry.mode, 0, 0, 2 if entry.mode & S_IFDIR else 1, 0, len(entry.data),
                  0, 0, entry.rdev[0], entry.rdev[1], len(name), 0)
        out.extend(b"070701" + "".join(f"{f:08x}" for f in fields).encode() + name)
        pad()
        out.extend(entry.data)
        pad()
    return bytes(out)


def initramfs_entries(kernel: Kernel, units: RuntimeUnits,
                      keep: tuple[str, ...] | None = None) -> list[Entry]:
    deps = parse_modules_dep((kernel.modules_dir / "modules.dep").read_text())
    modules = load_order(EARLY_MODULES, deps)
    entries = [Entry(d, S_IFDIR | 0o755)
               for d in ("bin", "dev", "proc", "sys", "modules", "units")]
    entries.append(Entry("dev/console", S_IFCHR | 0o600, rdev=(5, 1)))
    entries.append(Entry("bin/busybox", S_IFREG | 0o755, BUSYBOX.read_bytes()))
    entries.append(Entry("init", S_IFREG | 0o755, init_script(keep).encode()))
    entries.append(Entry("modules.order", S_IFREG | 0o644, "\n".join(modules).encode() + b"\n"))
    for name in modules:
        ko = kernel.modules_dir / deps[name][0]
        entries.append(Entry(f"modules/{name}.ko", S_IFREG | 0o644, ko.read_bytes()))
    unit_dirs = sorted({str(Path(p).parent) for p in [*units.files, *units.symlinks]} - {"."})
    entries.extend(Entry(f"units/{d}", S_IFDIR | 0o755) for d in unit_dirs)
    entries.extend(Entry(f"units/{p}", S_IFREG | 0o644, text.encode())
                   for p, text in sorted(units.files.items()))
    entries.extend(Entry(f"units/{p}", S_IFLNK | 0o777, target.encode())
                   for p, target in sorted(units.symlinks.items()))
    return entries


def build_initramfs(kernel: Kernel, units: RuntimeUnits, out: Path,
                    keep: tuple[str, ...] | None = None) -> Path:
    """``keep``: host directories bound straight from the 9p share (default ``paths_to_keep()``)."""
    out.write_bytes(newc_archive(initramfs_entries(kernel, units, keep)))
    LOG.debug("initramfs %s: %d bytes", out, out.stat().st_size)
    return out
