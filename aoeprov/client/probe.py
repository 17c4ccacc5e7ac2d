"""Find every AoE target on some interfaces, and tell multipath from conflicts.

A probe broadcasts one config query per interface (tag bit 31 set, like
``aoe-sancheck``), gathers every answer until the timeout, then asks each responder
for IDENTIFY to learn its size and identity.

The Linux initiator takes every MAC that answers for a shelf.slot as a path to one
disk and spreads I/O over them. That is right when one target answers through
several NICs (multipath: more bandwidth, survives a link loss) and corrupts data
when two different targets answer. The two are told apart by the target's
identity: IDENTIFY model, serial and size, and the config string. aoeprov's
built-in target makes its serial unique per export and host, so equal identities
from it are one target (``Multipath``); different identities are two targets
(``Conflict``). Other targets (vblade: one fixed serial) cannot be told apart this
way, nor can a responder whose IDENTIFY failed: those stay conflicts, with the
reason said.
"""

from __future__ import annotations

import logging
import secrets
import select
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from aoeprov.aoe.ata import Identity
from aoeprov.aoe.transport import EthernetTransport
from aoeprov.aoe.wire import (
    AOE_HDR,
    BROADCAST_MAC,
    BROADCAST_SHELF,
    BROADCAST_SLOT,
    ETH_P_AOE,
    FLAG_ERROR,
    FLAG_RESPONSE,
    SECTOR_SIZE,
    USER_TAG_BIT,
    VERSION_BITS,
    AoeHeader,
    Command,
    ConfigArg,
    ConfigCommand,
)
from aoeprov.client.session import (
    AoeClient,
    TargetInfo,
    payload_sectors,
    target_info,
)
from aoeprov.errors import AoeprovError, ProtocolError
from aoeprov.link.transport import Transport

LOG = logging.getLogger(__name__)



@dataclass(frozen=True)
class Responder:
    """One (local interface, target MAC, shelf.slot) that answered the query."""

    interface: str
    info: TargetInfo
    payload: int                 # bytes of sector data per frame on this path
    identity: Identity | None    # None when IDENTIFY failed (see ``problem``)
    problem: str = ""

    @property
    def name(self) -> str:
        return f"e{self.info.shelf}.{self.info.slot}"

    @property
    def size_bytes(self) -> int | None:
        return None if self.identity is None else self.identity.sectors * SECTOR_SIZE

    def to_json(self) -> dict[str, object]:
        ident = self.identity
        return {
            "device": self.name,
            "shelf": self.info.shelf,
            "slot": self.info.slot,
            "mac": self.info.mac,
            "interface": self.interface,
            "size_bytes": self.size_bytes,
            "sectors": None if ident is None else ident.sectors,
            "payload": self.payload,
            "buffer_count": self.info.buffer_count,
            "firmware": f"0x{self.info.firmware:04x}",
            "config": self.info.config.decode("utf-8", "replace"),
            "model": None if ident is None else ident.model,
            "serial": None if ident is None else ident.serial,
            "problem": self.problem or None,
        }


# the IDENTIFY model of aoeprov's built-in target (targetd.export.MODEL), whose serial
# is unique per export and host
BUILTIN_MODEL = "aoeprov built-in AoE target"


@dataclass(frozen=True)
class Conflict:
    """Several MACs answering for one shelf.slot that are not (known to be) one target."""

    shelf: int
    slot: int
    macs: tuple[str, ...]
    reason: str = "different identities"

    def __str__(self) -> str:
        return (f"CONFLICT e{self.shelf}.{self.slot} is answered by {len(self.macs)} MACs "
                f"({', '.join(self.macs)}; {self.reason}): an initiator would treat them as "
                f"paths to one disk and corrupt both")

    def to_json(self) -> dict[str, object]:
        return {"device": f"e{self.shelf}.{self.slot}", "shelf": self.shelf, "slot": self.slot,
                "macs": list(self.macs), "reason": self.reason}


@dataclass(frozen=True)
class Multipath:
    """One target answering for a shelf.slot through several MACs (its NICs)."""

    shelf: int
    slot: int
    macs: tuple[str, ...]
    serial: str

    def __str__(self) -> str:
        return (f"MULTIPATH e{self.shelf}.{self.slot}: one target (serial {self.serial}) "
                f"answers through {len(self.macs)} MACs ({', '.join(self.macs)}): paths to "
                f"the same disk")

    def to_json(self) -> dict[str, object]:
        return {"device": f"e{self.shelf}.{self.slot}", "shelf": self.shelf, "slot": self.slot,
                "macs": list(self.macs), "serial": self.serial}


@dataclass(frozen=True)
class ProbeResult:
    responders: tuple[Responder, ...]
    conflicts: tuple[Conflict, ...]
    multipath: tuple[Multipath, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {
            "responders": [r.to_json() for r in self.responders],
            "conflicts": [c.to_json() for c in self.conflicts],
            "multipath": [m.to_json() for m in self.multipath],
        }


def find_conflicts(infos: Iterable[TargetInfo]) -> tuple[Conflict, ...]:
    """Every shelf.slot claimed by more than one MAC (the same MAC seen twice is fine),
    identities unknown."""
    macs: dict[tuple[int, int], set[str]] = {}
    for info in infos:
        macs.setdefault((info.shelf, info.slot), set()).add(info.mac)
    return tuple(Conflict(shelf, slot, tuple(sorted(found)), "identities not compared")
                 for (shelf, slot), found in sorted(macs.items()) if len(found) > 1)


def classify(responders: Iterable[Responder],
             ) -> tuple[tuple[Multipath, ...], tuple[Conflict, ...]]:
    """Shelf.slots answered by several MACs: one target's paths, or a conflict (and why)."""
    by_address: dict[tuple[int, int], list[Responder]] = {}
    for r in responders:
        by_address.setdefault((r.info.shelf, r.info.slot), []).append(r)
    multipath, conflicts = [], []
    for (shelf, slot), found in sorted(by_address.items()):
        macs = tuple(sorted({r.info.mac for r in found}))
        if len(macs) < 2:
            continue
        if any(r.identity is None for r in found):
            conflicts.append(Conflict(shelf, slot, macs,
                                      "IDENTIFY failed on one: identities unknown"))
            continue
        identities = {(r.identity.model, r.identity.serial, r.identity.sectors, r.info.config)
                      for r in found if r.identity is not None}
        if len(identities) > 1:
            conflicts.append(Conflict(shelf, slot, macs, "different identities"))
        else:
            ((model, serial, _sectors, _config),) = identities
            if model == BUILTIN_MODEL:
                multipath.append(Multipath(shelf, slot, macs, serial))
            else:
                conflicts.append(Conflict(
                    shelf, slot, macs, f"equal identities, but {model!r} does not make its "
                    f"serial unique, so a second target cannot be told from a second path"))
    return tuple(multipath), tuple(conflicts)


def config_query(src: bytes, tag: int, shelf: int = BROADCAST_SHELF,
                 slot: int = BROADCAST_SLOT) -> bytes:
    header = AOE_HDR.pack(BROADCAST_MAC, src, ETH_P_AOE, VERSION_BITS, 0, shelf, slot,
                          Command.CONFIG, tag)
    return header + ConfigArg(0, 0, 0, ConfigCommand.READ).pack()


def broadcast_query(transports: Sequence[Transport],
                    timeout: float) -> list[tuple[str, TargetInfo]]:
    """Send a config query on each transport; every distinct answer within ``timeout``."""
    tags = {}
    for transport in transports:
        tag = USER_TAG_BIT | secrets.randbelow(1 << 31)
        tags[transport.fileno()] = (transport, tag)
        transport.send(config_query(transport.mac, tag))
    poller = select.poll()
    for fd in tags:
        poller.register(fd, select.POLLIN)
    seen: dict[tuple[str, str, int, int], TargetInfo] = {}
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        for fd, _event in poller.poll(int(left * 1000) + 1):
            transport, tag = tags[fd]
            for frame in transport.recv_batch(64, 0):
                info = _config_answer(frame, transport.mac, tag)
                if info is not None:
                    seen.setdefault((transport.ifname, info.mac, info.shelf, info.slot), info)
    return [(ifname, info) for (ifname, *_rest), info in sorted(seen.items())]


def _config_answer(frame: bytes, mac: bytes, tag: int) -> TargetInfo | None:
    if len(frame) < AOE_HDR.size:
        return None
    fields = AOE_HDR.unpack_from(frame)
    dst, verfl, command, got_tag = fields[0], fields[3], fields[7], fields[8]
    if (got_tag != tag or dst != mac or command != Command.CONFIG
            or not verfl & FLAG_RESPONSE or verfl & FLAG_ERROR):
        return None
    try:
        header = AoeHeader.unpack(frame)
        info = target_info(header, frame[AOE_HDR.size:])
    except ProtocolError as exc:
        LOG.warning("ignoring a malformed config answer: %s", exc)
        return None
    if info.shelf == BROADCAST_SHELF or info.slot == BROADCAST_SLOT:
        LOG.warning("ignoring %s: it answered with the broadcast address", info.mac)
        return None
    return info


def probe(interfaces: Sequence[str], timeout: float = 1.0,
          open_transport: Callable[[str], Transport] | None = None) -> ProbeResult:
    """Query ``interfaces``, IDENTIFY every responder, and report multipath and conflicts."""
    opener = open_transport or (lambda name: EthernetTransport(name, responses=True))
    transports = {name: opener(name) for name in interfaces}
    try:
        answers = broadcast_query(list(transports.values()), timeout)
        responders = [_identify(transports[ifname], info, timeout) for ifname, info in answers]
    finally:
        for transport in transports.values():
            transport.close()
    multipath, conflicts = classify(responders)
    return ProbeResult(tuple(responders), conflicts, multipath)


def _identify(transport: Transport, info: TargetInfo, timeout: float) -> Responder:
    payload = payload_sectors(transport.mtu, info.sectors_per_frame) * SECTOR_SIZE
    client = AoeClient(transport, info.shelf, info.slot, target_mac=info.mac,
                       timeout=max(0.05, timeout / 4), max_timeout=timeout, retries=2)
    try:
        identity = client.identify()
    except AoeprovError as exc:
        LOG.warning("IDENTIFY of e%d.%d at %s failed: %s", info.shelf, info.slot, info.mac, exc)
        return Responder(transport.ifname, info, payload, None, f"IDENTIFY failed: {exc}")
    return Responder(transport.ifname, info, payload, identity)


def format_table(result: ProbeResult) -> str:
    """The human listing ``aoeprov probe`` prints."""
    rows = [("DEVICE", "MAC", "IFACE", "SIZE", "PAYLOAD", "BUFCNT", "FIRMWARE", "CONFIG")]
    for r in result.responders:
        size = "?" if r.size_bytes is None else human_size(r.size_bytes)
        rows.append((r.name, r.info.mac, r.interface, size, str(r.payload),
                     str(r.info.buffer_count), f"0x{r.info.firmware:04x}",
                     r.info.config.decode("utf-8", "replace") or "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    lines += [f"{r.name} at {r.info.mac}: {r.problem}" for r in result.responders if r.problem]
    lines += [str(m) for m in result.multipath]
    lines += [str(c) for c in result.conflicts]
    return "\n".join(lines)


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return f"{size}B"
