"""The ``aoeprov probe`` command's arguments and interface defaults."""

from __future__ import annotations

import socket
from pathlib import Path

from aoeprov.cli import build_parser
from aoeprov.cli.probe import default_interfaces


def test_arguments():
    args = build_parser().parse_args(["probe", "-i", "eth1", "-i", "eth2", "--timeout", "2.5",
                                      "--json"])
    assert (args.interfaces, args.timeout, args.json) == (["eth1", "eth2"], 2.5, True)
    args = build_parser().parse_args(["probe"])
    assert (args.interfaces, args.timeout, args.json) == ([], 1.0, False)


def test_default_interfaces_are_the_up_ones_except_loopback(tmp_path: Path):
    names = [name for _i, name in socket.if_nameindex()]
    for name in names:
        (tmp_path / name).mkdir()
        (tmp_path / name / "flags").write_text("0x9\n" if name == "lo" else "0x1003\n")
    down = next((n for n in names if n != "lo"), None)
    if down is not None:
        (tmp_path / down / "flags").write_text("0x1002\n")
    expected = [n for n in names if n not in ("lo", down)]
    assert default_interfaces(tmp_path) == expected
