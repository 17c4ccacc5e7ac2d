"""Host files as bytes: lines split on \\n only, writes through symlinks inside the root,
mode kept, errors that name the file. (Owner/group, ENOSPC and EROFS: tests/storage.)"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from aoeprov.errors import HostFileError, PlanError
from aoeprov.host import Host
from aoeprov.hostfile import join_lines, resolve_under, split_lines
from aoeprov.reconciler.actions import WriteFile
from aoeprov.reconciler.apply import execute
from aoeprov.reconciler.resource import GatherContext, PlanContext
from aoeprov.reconciler.state import State
from aoeprov.reconciler.waiting import DeviceWaiter
from aoeprov.resources import fstab
from aoeprov.resources import module as module_kind
from tests.unit.reconciler.fakes import FakeRunner, tutorial

# what str.splitlines() and universal newlines treat as line ends; none of them is one here
NOT_NEWLINES = [b"\r", b"\r\n"[:1], b"\x0b", b"\x0c", b"\x1c", b"\x1d", b"\x1e", b"\x85",
                "\u2028".encode(), "\u2029".encode()]


@pytest.mark.parametrize("sep", NOT_NEWLINES)
def test_split_lines_on_newline_only(sep: bytes) -> None:
    data = b"# disabled:" + sep + b"/dev/sdc1 /backup ext4 defaults 0 0\n"
    assert split_lines(data) == [data[:-1]]
    assert join_lines(split_lines(data)) == data


def test_split_lines_keeps_crlf_and_a_last_line_without_newline() -> None:
    assert split_lines(b"a\r\nb") == [b"a\r", b"b"]
    assert join_lines([b"a\r", b"b"]) == b"a\r\nb\n"
    assert split_lines(b"") == [] and split_lines(b"\n\n") == [b"", b""]


def test_resolve_follows_links_as_in_a_chroot(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "data").mkdir()
    (tmp_path / "etc/fstab").symlink_to("/data/fstab")        # absolute: starts at the root
    (tmp_path / "etc/modules").symlink_to("../data/modules")  # relative: from etc/
    assert resolve_under(tmp_path, "/etc/fstab") == tmp_path / "data/fstab"
    assert resolve_under(tmp_path, "/etc/modules") == tmp_path / "data/modules"
    assert resolve_under(tmp_path, "/etc/./x/../fstab") == tmp_path / "data/fstab"


def test_resolve_refuses_a_link_out_of_the_root(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/fstab").symlink_to("../../../../../../../tmp/elsewhere")
    with pytest.raises(HostFileError) as err:
        resolve_under(tmp_path, "/etc/fstab")
    assert str(err.value) == (f"/etc/fstab: leads out of the root {tmp_path} (through `..`); "
                              "aoeprov does not follow it")


def test_resolve_refuses_a_link_loop(tmp_path: Path) -> None:
    (tmp_path / "a").symlink_to("b")
    (tmp_path / "b").symlink_to("a")
    with pytest.raises(HostFileError, match=r"^/a: more than 40 symbolic links to follow$"):
        resolve_under(tmp_path, "/a")


def test_write_goes_through_the_link_and_keeps_mode(tmp_path: Path) -> None:
    host = Host(root=tmp_path, runner=FakeRunner(), hostname="server1")
    (tmp_path / "etc").mkdir()
    (tmp_path / "data").mkdir()
    real = tmp_path / "data/fstab"
    real.write_bytes(b"old\n")
    real.chmod(0o600)
    (tmp_path / "etc/fstab").symlink_to("/data/fstab")
    host.write_bytes("/etc/fstab", b"new\n", backup=True)
    assert (tmp_path / "etc/fstab").is_symlink()
    assert os.readlink(tmp_path / "etc/fstab") == "/data/fstab"
    assert real.read_bytes() == b"new\n"
    assert stat.S_IMODE(real.stat().st_mode) == 0o600
    bak = tmp_path / "data/fstab.aoeprov.bak"
    assert bak.read_bytes() == b"old\n" and stat.S_IMODE(bak.stat().st_mode) == 0o600
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["fstab", "fstab.aoeprov.bak"]
    assert sorted(p.name for p in (tmp_path / "etc").iterdir()) == ["fstab"]


def test_new_file_gets_the_given_mode(tmp_path: Path) -> None:
    host = Host(root=tmp_path, runner=FakeRunner(), hostname="server1")
    host.write_bytes("/etc/modprobe.d/aoeprov.conf", b"x\n")
    assert stat.S_IMODE((tmp_path / "etc/modprobe.d/aoeprov.conf").stat().st_mode) == 0o644


def test_an_absolute_link_under_root_never_reaches_the_real_file(tmp_path: Path) -> None:
    host = Host(root=tmp_path, runner=FakeRunner(), hostname="server1")
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/fstab").symlink_to("/etc/hostname")   # the real /etc/hostname: never
    before = Path("/etc/hostname").read_bytes() if Path("/etc/hostname").exists() else None
    host.write_bytes("/etc/fstab", b"x\n")
    assert (tmp_path / "etc/hostname").read_bytes() == b"x\n"
    assert (Path("/etc/hostname").read_bytes() if before is not None else None) == before


def test_writing_over_a_directory_is_an_error_naming_it(tmp_path: Path) -> None:
    host = Host(root=tmp_path, runner=FakeRunner(), hostname="server1")
    (tmp_path / "etc/fstab").mkdir(parents=True)
    with pytest.raises(HostFileError) as err:
        host.write_bytes("/etc/fstab", b"x\n")
    assert str(err.value) == (f"cannot write /etc/fstab ({tmp_path}/etc/fstab): it is not a "
                              "regular file; it was left alone")


def test_a_missing_directory_component_that_is_a_file_is_an_error(tmp_path: Path) -> None:
    host = Host(root=tmp_path, runner=FakeRunner(), hostname="server1")
    (tmp_path / "etc").write_bytes(b"not a directory")
    with pytest.raises(HostFileError) as err:
        host.write_bytes("/etc/fstab", b"x\n")
    assert str(err.value) == (f"cannot follow /etc/fstab under {tmp_path}: {tmp_path}/etc/fstab: "
                              "Not a directory")


# ---- the property: for any fstab content, apply changes only aoeprov's own lines --------------

def ours(line: bytes) -> bool:
    entry = fstab.parse_line(line)
    return entry is not None and entry.managed


SPECIAL_LINES = [
    b"# disabled:\r/dev/sdc1 /backup ext4 defaults 0 0",
    b"# disabled:\x0c/dev/sdc1 /backup ext4 defaults 0 0",
    b"# disabled:\x1c/dev/sdc1 /backup ext4 defaults 0 0",
    "# disabled:\u2028/dev/sdc1 /backup ext4 defaults 0 0".encode(),
    b"UUID=1 / ext4 defaults 0 1\r",
    b"/dev/sdb1 /caf\xe9 ext4 defaults 0 2",
    b"/dev/etherd/e0.9 /old xfs defaults,x-aoeprov 0 0",
    b"/dev/etherd/e0.1p1 /storage ext3 defaults,x-aoeprov 0 0",
    b"/dev/etherd/e0.1p1\t/storage\text3\tdefaults,_netdev,"
    b"x-systemd.requires=aoeprov-initiator.service,x-aoeprov\t0\t0",
    b"", b"   ", b"\t# tab comment",
]
fstab_lines = st.lists(st.one_of(st.binary(max_size=60), st.sampled_from(SPECIAL_LINES)),
                       max_size=12)


@settings(max_examples=100, deadline=None)
@given(fstab_lines, st.booleans())
def test_apply_changes_only_aoeprovs_lines(lines: list[bytes], final_newline: bool) -> None:
    before = b"\n".join(lines) + (b"\n" if final_newline and lines else b"")
    spec = tutorial()
    me = spec.host("server1")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "etc").mkdir()
        (root / "etc/fstab").write_bytes(before)
        host = Host(root=root, runner=FakeRunner(), hostname="server1")
        facts = fstab.gather(GatherContext(host=host, spec=spec, me=me))
        try:
            result = fstab.plan(PlanContext(spec=spec, me=me, sandboxed=True, prune=True), facts,
                                State(hostname="server1"))
        except PlanError as exc:   # a random line of someone else's mounting /storage
            assume(False)
            raise AssertionError("unreachable") from exc
        for action in result.actions:
            assert isinstance(action, WriteFile)
            execute(action, host, DeviceWaiter(system_root=root))
        after = (root / "etc/fstab").read_bytes()
    kept_before = [ln for ln in split_lines(before) if not ours(ln)]
    kept_after = [ln for ln in split_lines(after) if not ours(ln)]
    assert kept_after == kept_before
    wanted = fstab.desired_entry(spec.mounts[0], "/dev/etherd/e0.1p1", "ext3")
    own = [fstab.parse_line(ln) for ln in split_lines(after) if ours(ln)]
    assert len(own) == 1 and own[0] is not None and own[0].same_as(wanted)
    if not result.actions:
        assert after == before


@given(st.lists(st.one_of(st.binary(max_size=40), st.sampled_from(SPECIAL_LINES)), max_size=10))
def test_etc_modules_keeps_every_line(lines: list[bytes]) -> None:
    before = b"\n".join(lines) + b"\n"
    after = module_kind.edit_etc_modules(before, ["aoe"])
    old, new = split_lines(before), split_lines(after)
    assert [ln for ln in new if ln != b"aoe"] == [ln for ln in old if ln != b"aoe"]
    assert new.count(b"aoe") == old.count(b"aoe") + (after != before)
