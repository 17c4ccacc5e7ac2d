"""The initramfs archive and the guest's runtime units."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from aoeprov.lab.initramfs import (
    S_IFCHR,
    S_IFDIR,
    S_IFLNK,
    S_IFREG,
    Entry,
    init_script,
    newc_archive,
)
from aoeprov.lab.units import AGENT_UNIT, NET_UNIT, host_enabled_units, runtime_units, units_to_mask


@pytest.mark.tools
def test_newc_archive_reads_back_with_cpio(tmp_path: Path) -> None:
    archive = newc_archive([Entry("bin", S_IFDIR | 0o755),
                            Entry("bin/hello", S_IFREG | 0o755, b"#!/bin/sh\necho hi\n"),
                            Entry("link", S_IFLNK | 0o777, b"bin/hello"),
                            Entry("console", S_IFCHR | 0o600, rdev=(5, 1))])
    assert len(archive) % 4 == 0
    listing = subprocess.run(["cpio", "-itv", "--quiet"], input=archive, capture_output=True,
                             check=True).stdout.decode()
    lines = listing.splitlines()
    assert [line.split()[-1] if "->" not in line else line.split()[-3] for line in lines] \
        == ["bin", "bin/hello", "link", "console"]
    assert lines[1].startswith("-rwxr-xr-x") and lines[3].startswith("crw-------")
    assert "link -> bin/hello" in lines[2]
    subprocess.run(["cpio", "-id", "--quiet"], input=archive, cwd=tmp_path, check=True)
    assert (tmp_path / "bin/hello").read_bytes() == b"#!/bin/sh\necho hi\n"


def test_init_script_names_its_shares_and_env_file() -> None:
    script = init_script()
    assert "@" not in script.replace("$@", "")
    # the overlay's lower layer from the cached share, what must stay live from the other
    assert "cache=loose hostroot-cached /lower" in script and "$P9 hostroot /live" in script
    assert "modules /newroot/lib/modules" in script
    assert "/newroot/run/aoeprov-lab.env" in script
    assert "switch_root /newroot /lib/systemd/systemd" in script


def test_masks_host_services_but_keeps_storage_ones(tmp_path: Path) -> None:
    wants = tmp_path / "multi-user.target.wants"
    wants.mkdir()
    for unit in ("postgresql.service", "vblade.service", "remote-fs.target", "ssh.service"):
        (wants / unit).touch()
    (tmp_path / "sysinit.target.wants").mkdir()
    (tmp_path / "sysinit.target.wants" / "lvm2-monitor.service").touch()
    enabled = host_enabled_units(tmp_path)
    assert enabled == ["lvm2-monitor.service", "postgresql.service", "remote-fs.target",
                       "ssh.service", "vblade.service"]
    masked = units_to_mask(enabled)
    assert "postgresql.service" in masked and "serial-getty@ttyS0.service" in masked
    assert not {"vblade.service", "lvm2-monitor.service", "remote-fs.target"} & set(masked)


def test_runtime_units_enable_agent_and_net() -> None:
    units = runtime_units("/venv/bin/python", "/src", ["postgresql.service"])
    agent = units.files[AGENT_UNIT]
    assert "ExecStart=/venv/bin/python -m aoeprov.lab.agent aoeprov.agent" in agent
    assert 'mtu "$$MTU" up' in units.files[NET_UNIT] and "eth$$n" in units.files[NET_UNIT]
    assert units.symlinks["postgresql.service"] == "/dev/null"
    assert units.symlinks[f"sysinit.target.wants/{AGENT_UNIT}"] == f"../{AGENT_UNIT}"
    assert units.symlinks[f"network-online.target.wants/{NET_UNIT}"] == f"../{NET_UNIT}"


def test_init_script_binds_paths_the_guest_tmpfs_would_hide() -> None:
    script = init_script(keep=("/tmp/clone", "/tmp/clone/.venv"))
    assert "for keep in /tmp/clone /tmp/clone/.venv; do" in script
    # the binds come after the fresh /tmp, or the tmpfs would cover them again
    # ... and from the uncached share: the host may change them while the lab runs
    assert script.index("tmpfs /newroot/tmp") < script.index('mount --bind "/live$keep"')


def test_paths_to_keep_only_lists_covered_paths() -> None:
    from aoeprov.lab.initramfs import COVERED_IN_GUEST, paths_to_keep

    for path in paths_to_keep():
        assert any(Path(path).is_relative_to(top) for top in COVERED_IN_GUEST)
