"""probe(): broadcast discovery, IDENTIFY of each responder, conflict detection."""

from __future__ import annotations

import json

from aoeprov.aoe.ata import Identity
from aoeprov.aoe.wire import mac_to_str
from aoeprov.client import Multipath, Responder, classify, find_conflicts, probe
from aoeprov.client.probe import BUILTIN_MODEL, format_table, human_size
from aoeprov.client.session import TargetInfo
from aoeprov.targetd.export import MODEL

from .fake import TARGET_MAC, FakeTarget, Peer

OTHER_MAC = bytes.fromhex("020000000009")


def info(shelf: int, slot: int, mac: str) -> TargetInfo:
    return TargetInfo(shelf, slot, mac, 16, 0x4019, 2, b"", 1)


def test_find_conflicts_needs_two_different_macs():
    a, b = "02:00:00:00:00:01", "02:00:00:00:00:02"
    assert find_conflicts([info(0, 1, a), info(0, 1, a), info(0, 2, b)]) == ()
    (conflict,) = find_conflicts([info(0, 1, b), info(0, 2, a), info(0, 1, a)])
    assert (conflict.shelf, conflict.slot, conflict.macs) == (0, 1, (a, b))
    assert str(conflict).startswith("CONFLICT e0.1 is answered by 2 MACs")
    assert conflict.reason == "identities not compared"


def test_probe_lists_every_responder_with_its_size():
    fake = FakeTarget(Peer(0, 1, sectors=2048, config=b"owner=x"), Peer(7, 3, mac=OTHER_MAC,
                                                                       sectors=100,
                                                                       sectors_per_frame=17),
                      mtu=9000)
    result = probe(["fake0"], timeout=0.05, open_transport=lambda _name: fake)
    assert result.conflicts == ()
    rows = {(r.name, r.info.mac): r for r in result.responders}
    first = rows["e0.1", mac_to_str(TARGET_MAC)]
    assert first.size_bytes == 2048 * 512
    assert first.payload == 1024  # the peer advertises 2 sectors per frame
    assert first.info.config == b"owner=x"
    second = rows["e7.3", mac_to_str(OTHER_MAC)]
    assert second.size_bytes == 100 * 512
    assert second.payload == 8704
    as_json = json.loads(json.dumps(result.to_json()))
    assert {r["device"] for r in as_json["responders"]} == {"e0.1", "e7.3"}
    assert fake.closed


def test_probe_reports_a_conflict_and_both_claimants():
    fake = FakeTarget(Peer(0, 1), Peer(0, 1, mac=OTHER_MAC, sectors=64))
    result = probe(["fake0"], timeout=0.05, open_transport=lambda _name: fake)
    assert len(result.responders) == 2
    (conflict,) = result.conflicts
    assert conflict.macs == tuple(sorted([mac_to_str(TARGET_MAC), mac_to_str(OTHER_MAC)]))
    table = format_table(result)
    assert table.splitlines()[0].split()[:3] == ["DEVICE", "MAC", "IFACE"]
    assert "CONFLICT e0.1" in table.splitlines()[-1]


def test_a_responder_that_fails_identify_is_still_listed():
    fake = FakeTarget(Peer(0, 1))
    fake.drop = lambda _n, frame: getattr(frame.arg, "cmd_status", None) == 0xEC
    result = probe(["fake0"], timeout=0.05, open_transport=lambda _name: fake)
    (only,) = result.responders
    assert only.identity is None
    assert only.problem.startswith("IDENTIFY failed")
    assert "IDENTIFY failed" in format_table(result)


def test_human_size():
    assert human_size(512) == "512B"
    assert human_size(8 << 20) == "8.0MiB"
    assert human_size(20 << 30) == "20.0GiB"


def responder(mac: str, serial: str | None, model: str = BUILTIN_MODEL, sectors: int = 64,
              config: bytes = b"") -> Responder:
    ident = None if serial is None else Identity(sectors, True, serial, model, "0.1")
    return Responder("eth0", TargetInfo(0, 1, mac, 16, 0x10, 2, config, 1), 1024, ident)


A, B = "02:00:00:00:00:01", "02:00:00:00:00:02"


def test_one_builtin_target_through_two_macs_is_multipath():
    (path,), conflicts = classify([responder(A, "0.1:abc"), responder(B, "0.1:abc")])
    assert conflicts == () and path == Multipath(0, 1, (A, B), "0.1:abc")
    assert str(path) == ("MULTIPATH e0.1: one target (serial 0.1:abc) answers through 2 MACs "
                         "(02:00:00:00:00:01, 02:00:00:00:00:02): paths to the same disk")


def test_two_identities_are_a_conflict():
    for other in (responder(B, "0.1:def"), responder(B, "0.1:abc", sectors=65),
                  responder(B, "0.1:abc", config=b"owner=y")):
        multipath, (conflict,) = classify([responder(A, "0.1:abc"), other])
        assert multipath == () and conflict.reason == "different identities"


def test_unknown_or_generic_identities_stay_conflicts():
    _m, (failed,) = classify([responder(A, "0.1:abc"), responder(B, None)])
    assert failed.reason == "IDENTIFY failed on one: identities unknown"
    _m, (generic,) = classify([responder(A, "SN", "vblade"), responder(B, "SN", "vblade")])
    assert "does not make its serial unique" in generic.reason
    assert "does not make its serial unique" in str(generic)


def test_the_builtin_model_is_the_targets():
    assert BUILTIN_MODEL == MODEL
