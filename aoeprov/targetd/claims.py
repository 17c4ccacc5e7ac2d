"""Before serving a shelf.slot: is someone else already answering for it?

Two targets answering for one shelf.slot corrupt data: the Linux initiator takes
every MAC that answers as a path to one disk and spreads I/O over them. A target
therefore checks, for each export it is about to serve, in two ways:

- On this host (this network namespace): every target holds an abstract Unix
  socket named after the shelf.slot while it serves it. A second aoeprov target
  cannot hear the first on the wire when both use one interface (each drops the
  frames its own host sends), so this is the only way they see each other; the
  holder's pid is named (``SO_PEERCRED``).
- On the links: a config query for each shelf.slot is sent on each of the
  export's interfaces that is up, and any answer within ``QUERY_WAIT`` seconds
  names a responder (its MAC and interface). The socket used here hears frames
  sent by other programs of this host too (no PACKET_IGNORE_OUTGOING), so a
  vblade on the same interface answers as well.

A found responder refuses the export unless ``force`` (the operator says the
other one is a path to the same data, or is going away). Links that are down
are not queried.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import secrets
import select
import socket
import struct
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from aoeprov.aoe.wire import (
    AOE_HDR,
    BROADCAST_MAC,
    ETH_P_AOE,
    FLAG_RESPONSE,
    USER_TAG_BIT,
    VERSION_BITS,
    Command,
    ConfigArg,
    ConfigCommand,
    mac_to_str,
)
from aoeprov.targetd.config import ExportConfig

LOG = logging.getLogger(__name__)

QUERY_WAIT = 0.3  # seconds; a target answers a config query at once
UCRED = struct.Struct("=iII")  # pid, uid, gid
RECV_SIZE = 2048


@dataclass(frozen=True)
class Responder:
    """Someone already answering for a shelf.slot."""

    shelf: int
    slot: int
    where: str     # "pid 123 on this host" or "02:00:00:00:00:01 on eth0 (...)"
    mac: str = ""  # the responder's MAC when it answered on a link

    def __str__(self) -> str:
        return f"e{self.shelf}.{self.slot} is already served by {self.where}"


def claim_name(shelf: int, slot: int) -> bytes:
    return f"\0aoeprov-target/e{shelf}.{slot}".encode()


class LocalClaims:
    """The abstract sockets this process holds, one per shelf.slot it serves."""

    def __init__(self) -> None:
        self._held: dict[tuple[int, int], socket.socket] = {}

    def take(self, shelf: int, slot: int) -> Responder | None:
        """Hold shelf.slot; the other local holder if there is one (nothing is taken then)."""
        key = (shelf, slot)
        if key in self._held:
            return None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            sock.bind(claim_name(shelf, slot))
            sock.listen(64)
        except OSError as exc:
            sock.close()
            if exc.errno != errno.EADDRINUSE:
                LOG.warning("cannot claim e%d.%d on this host: %s", shelf, slot, exc)
                return None
            return Responder(shelf, slot, _holder(shelf, slot))
        self._held[key] = sock
        return None

    def keep_only(self, keys: Iterable[tuple[int, int]]) -> None:
        """Release every claim but ``keys``."""
        wanted = set(keys)
        for key in list(self._held):
            if key not in wanted:
                self._held.pop(key).close()

    def close(self) -> None:
        self.keep_only(())


def _holder(shelf: int, slot: int) -> str:
    """Who holds the claim: its pid and command, as far as it can be learnt."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as sock:
        sock.settimeout(1.0)
        try:
            sock.connect(claim_name(shelf, slot))
            pid = UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                               UCRED.size))[0]
        except OSError:
            return "another aoeprov target on this host"
    command = ""
    with contextlib.suppress(OSError):
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        command = raw.replace(b"\0", b" ").decode(errors="replace").strip()
    return f"pid {pid} on this host" + (f" ({command})" if command else "")


def query_links(exports: Sequence[ExportConfig], interfaces: Iterable[str],
                wait: float = QUERY_WAIT) -> list[Responder]:
    """Ask each of ``interfaces`` who answers for the exports served there."""
    sockets: dict[int, tuple[socket.socket, str, bytes, dict[int, tuple[int, int]]]] = {}
    found: dict[tuple[int, int, str], Responder] = {}
    try:
        for ifname in sorted(interfaces):
            wanted = [(e.shelf, e.slot) for e in exports if ifname in e.interfaces]
            if not wanted:
                continue
            opened = _open(ifname)
            if opened is None:
                continue
            sock, mac = opened
            tags: dict[int, tuple[int, int]] = {}
            sockets[sock.fileno()] = (sock, ifname, mac, tags)
            for shelf, slot in wanted:
                tag = USER_TAG_BIT | secrets.randbelow(1 << 31)
                tags[tag] = (shelf, slot)
                header = AOE_HDR.pack(BROADCAST_MAC, mac, ETH_P_AOE, VERSION_BITS, 0, shelf,
                                      slot, Command.CONFIG, tag)
                try:
                    sock.send(header + ConfigArg(0, 0, 0, ConfigCommand.READ).pack())
                except OSError as exc:
                    LOG.info("link %s: cannot ask who serves e%d.%d: %s", ifname, shelf, slot,
                             exc)
        if not sockets:
            return []
        poller = select.poll()
        for fd in sockets:
            poller.register(fd, select.POLLIN)
        deadline = time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            for fd, _event in poller.poll(int(left * 1000) + 1):
                sock, ifname, _mac, tags = sockets[fd]
                try:
                    frames = _queued(sock)
                except OSError:  # the link went down meanwhile
                    poller.unregister(fd)
                    continue
                for frame in frames:
                    answer = _answer(frame, tags)
                    if answer is not None:
                        shelf, slot, src = answer
                        found.setdefault((shelf, slot, src), Responder(
                            shelf, slot, f"{src} on {ifname} (it answered a config query)", src))
    finally:
        for sock, *_rest in sockets.values():
            sock.close()
    return list(found.values())


def _open(ifname: str) -> tuple[socket.socket, bytes] | None:
    try:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                             socket.htons(ETH_P_AOE))
    except OSError as exc:
        LOG.warning("cannot ask link %s who serves its exports: %s", ifname, exc)
        return None
    try:
        sock.bind((ifname, ETH_P_AOE))
        mac = bytes(sock.getsockname()[4][:6])
        sock.setblocking(False)
        _queued(sock)  # frames from before the bind, and a pending "network is down"
    except OSError as exc:
        sock.close()
        if exc.errno == errno.ENETDOWN:
            LOG.info("link %s is down: not asked who serves its exports", ifname)
        else:
            LOG.warning("cannot ask link %s who serves its exports: %s", ifname, exc)
        return None
    return sock, mac


def _queued(sock: socket.socket) -> list[bytes]:
    frames = []
    while True:
        try:
            frames.append(sock.recv(RECV_SIZE))
        except BlockingIOError:
            return frames


def _answer(frame: bytes, tags: dict[int, tuple[int, int]]) -> tuple[int, int, str] | None:
    if len(frame) < AOE_HDR.size:
        return None
    _dst, src, ethertype, verfl, _err, shelf, slot, cmd, tag = AOE_HDR.unpack_from(frame)
    if (ethertype != ETH_P_AOE or not verfl & FLAG_RESPONSE or cmd != Command.CONFIG
            or tags.get(tag) != (shelf, slot)):
        return None
    return shelf, slot, mac_to_str(src)


def check(exports: Sequence[ExportConfig], interfaces: Iterable[str], local: LocalClaims,
          ) -> dict[tuple[int, int], list[Responder]]:
    """Responders per shelf.slot of ``exports`` (claims taken for the free ones)."""
    taken: dict[tuple[int, int], list[Responder]] = {}
    for exp in exports:
        other = local.take(exp.shelf, exp.slot)
        if other is not None:
            taken.setdefault((exp.shelf, exp.slot), []).append(other)
    for responder in query_links(exports, interfaces):
        taken.setdefault((responder.shelf, responder.slot), []).append(responder)
    return taken

