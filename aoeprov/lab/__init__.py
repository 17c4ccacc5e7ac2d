"""The lab: a spec's hosts as qemu VMs running a stock Debian kernel, systemd and udev.

Each VM boots Debian's generic kernel package (``kernel``: fetched once into
``.cache/lab/kernel``) with a small busybox initramfs (``initramfs``) that mounts the
host's own root read-only over 9p under an overlay whose upper layer is the VM's
own disk, so the guest runs this checkout's aoeprov and survives reboots with its
changes. The VMs share a bridge inside a network namespace (``netns``); a guest
agent on a virtio-serial port runs commands for the host (``agent``/``channel``).
``Lab`` keeps a running lab's state on disk; ``up`` converges a spec in it.

Sizes: the lab's volume group disk is 8 GiB (sparse), so ``lab up`` takes
``--size-override TARGET=SIZE`` (e.g. ``storage1=2G`` for the tutorial's 20G LV) and
applies a derived copy of the spec; the spec file itself is never changed.
"""
