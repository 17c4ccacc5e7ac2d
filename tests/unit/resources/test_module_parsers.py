"""Module facts: parsers of captured files of Debian's 6.1 kernel, gather on a fake system tree."""

from __future__ import annotations

import gzip
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from aoeprov.host import Host
from aoeprov.reconciler.resource import GatherContext
from aoeprov.resources import module as module_kind
from tests.unit.reconciler.fakes import FakeRunner, tutorial

DATA = Path(__file__).parent / "data"
KERNEL = "6.1.0-56-amd64"
PROC_MODULES = """aoe 61440 0 - Live 0x0000000000000000
virtio_net 61440 0 - Live 0x0000000000000000
net_failover 20480 1 virtio_net, Live 0x0000000000000000
dm_mod 184320 0 - Live 0x0000000000000000
"""


def test_module_state() -> None:
    common = dict(loaded=frozenset({"aoe"}), builtin=frozenset({"loop"}),
                  available=frozenset({"aoe", "dm_mod"}))
    assert module_kind.module_state("aoe", in_sys=True, **common) == module_kind.LOADED
    assert module_kind.module_state("loop", in_sys=False, **common) == module_kind.BUILTIN
    assert module_kind.module_state("zram", in_sys=True, **common) == module_kind.BUILTIN
    assert module_kind.module_state("dm_mod", in_sys=False, **common) == module_kind.AVAILABLE
    assert module_kind.module_state("nbd", in_sys=False, **common) == module_kind.MISSING


def test_parameters() -> None:
    assert module_kind.option_arg("aoe_iflist", "eth0 eth1") == 'aoe_iflist="eth0 eth1"'
    assert module_kind.same_parameter("aoe_iflist", "eth1 eth0\n", "eth0,eth1")
    assert not module_kind.same_parameter("aoe_iflist", "eth0", "eth0 eth1")
    assert module_kind.same_parameter("max_loop", "8\n", "8")


def fake_system(root: Path, *, aoe_loaded: bool) -> None:
    moddir = root / "lib/modules" / KERNEL
    moddir.mkdir(parents=True)
    (moddir / "modules.dep").write_text((DATA / f"modules.dep-{KERNEL}").read_text())
    (moddir / "modules.builtin").write_text("")
    (root / "proc").mkdir()
    (root / "proc/modules").write_text(PROC_MODULES if aoe_loaded else "")
    (root / "proc/config.gz").write_bytes(gzip.compress(b"CONFIG_ATA_OVER_ETH=m\n"))
    if aoe_loaded:
        params = root / "sys/module/aoe/parameters"
        params.mkdir(parents=True)
        (params / "aoe_iflist").write_text("eth1\n")


def test_gather_reads_the_running_kernel(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    system, etc = tmp_path / "system", tmp_path / "root"
    fake_system(system, aoe_loaded=True)
    (etc / "etc").mkdir(parents=True)
    (etc / "etc/modules").write_text("loop\n")
    monkeypatch.setattr(module_kind.os, "uname", lambda: type("U", (), {"release": KERNEL})())
    spec = tutorial()
    ctx = GatherContext(host=Host(root=etc, runner=FakeRunner(), hostname="server1"), spec=spec,
                        me=spec.host("server1"))
    facts = module_kind.gather(ctx, system_root=system)
    assert facts.kernel == KERNEL and facts.aoe_config == "m"
    assert facts.config_source == "/proc/config.gz"
    assert facts.modules["aoe"].state == module_kind.LOADED
    assert facts.modules["aoe"].parameters == {"aoe_iflist": "eth1"}
    assert facts.modules["loop"].state == module_kind.AVAILABLE
    assert facts.files["/etc/modules"] == b"loop\n"
    assert facts.files["/etc/modprobe.d/aoeprov.conf"] is None


names = st.lists(st.sampled_from(["aoe", "loop", "dm_mod", "nbd"]), unique=True, max_size=4)
lines = st.lists(st.sampled_from(["", "# comment", "loop", "aoe aoe_iflist=eth0", "  ", "zram"]),
                 max_size=8)


@given(lines, names)
def test_etc_modules_edit_keeps_lines_and_is_idempotent(existing: list[str],
                                                        wanted: list[str]) -> None:
    text = "\n".join(existing).encode() + b"\n" if existing else None
    once = module_kind.edit_etc_modules(text, wanted)
    assert module_kind.edit_etc_modules(once, wanted) == once          # no duplicate, no growth
    kept = [line for line in (text or b"").split(b"\n")[:-1]]
    assert [line for line in once.split(b"\n")[:-1] if line in kept] == kept or not kept
    for name in wanted:
        assert any(line.split()[:1] == [name.encode()] for line in once.split(b"\n"))
    def blanks(t: bytes | None) -> int:
        return sum(1 for line in (t or b"").split(b"\n")[:-1] if not line.strip())
    assert blanks(once) == blanks(text)                      # no blank-line growth
