"""The lab's kernel cache: parsing apt and modules.dep, and module load order."""

from __future__ import annotations

import pytest

from aoeprov.errors import LabError
from aoeprov.lab.kernel import load_order, module_name, parse_image_dependency, parse_modules_dep

MODULES_DEP = """\
kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko
kernel/lib/crc16.ko:
kernel/fs/mbcache.ko:
kernel/fs/jbd2/jbd2.ko:
kernel/net/9p/9pnet_virtio.ko: kernel/net/9p/9pnet.ko kernel/drivers/virtio/virtio.ko
kernel/net/9p/9pnet.ko:
kernel/drivers/virtio/virtio.ko:
kernel/crypto/crc32c-generic.ko:
"""


def test_parse_image_dependency() -> None:
    out = "linux-image-amd64\n  Depends: linux-image-6.1.0-56-amd64\n"
    assert parse_image_dependency(out) == "linux-image-6.1.0-56-amd64"
    with pytest.raises(LabError, match="no linux-image dependency"):
        parse_image_dependency("linux-image-amd64\n")


def test_modules_dep_keeps_path_first() -> None:
    deps = parse_modules_dep(MODULES_DEP)
    assert deps["ext4"] == ("kernel/fs/ext4/ext4.ko", "crc16", "mbcache", "jbd2")
    assert deps["crc32c_generic"] == ("kernel/crypto/crc32c-generic.ko",)
    assert module_name("kernel/a/b-c.ko.xz") == "b_c"


def test_load_order_puts_dependencies_first_once() -> None:
    deps = parse_modules_dep(MODULES_DEP)
    order = load_order(["9pnet_virtio", "ext4", "virtio"], deps)
    assert order == ["9pnet", "virtio", "9pnet_virtio", "crc16", "mbcache", "jbd2", "ext4"]


def test_load_order_names_a_missing_module() -> None:
    with pytest.raises(LabError, match="nosuch is not in the kernel package"):
        load_order(["nosuch"], parse_modules_dep(MODULES_DEP))


def test_load_order_rejects_cycles() -> None:
    deps = {"a": ("a.ko", "b"), "b": ("b.ko", "a")}
    with pytest.raises(LabError, match="cycle"):
        load_order(["a"], deps)
