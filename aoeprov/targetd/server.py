"""The target process: links, the event loop, reload, signals, counters.

One thread. Each wakeup drains up to ``batch`` frames per link before any reply
is sent, so a window of requests costs one wakeup and, for sync exports, one
``fdatasync``. Links that offer batched I/O (``batch_io``: recvmmsg/sendmmsg on
Ethernet) are served by the fast path of ``target.batch``, which builds replies
in place and merges adjacent reads and writes; other links frame by frame
(``TargetProtocol.handle_batch``), the same protocol. With a single link the loop waits
in the receive call itself instead of in ``poll``. No ``sh`` and no other
threads here: the process may fork nothing and stays easy to reason about under
signals.

Links change under a target that runs for months, and it follows them
(``targetd.netlink``, when a ``LinkMonitor`` is given):

- a link that is down (at start, or later) is waited for while the other links
  are served, said once in the log; when it comes back up the exports are
  announced on it again, so initiators see them without a discover;
- an MTU change is taken at once: replies are built for the new size and the
  exports are announced with the new sectors per frame; a reply that no longer
  fits (the change raced a batch) makes the link re-read its MTU too, and the
  initiator's retransmission gets a reply that fits, or an ATA error for a
  request larger than the link now carries;
- an interface deleted and created again is reopened when it comes back.

Without a monitor (unit tests over in-memory links) a failed link keeps being
served as frames arrive, and SIGHUP reopens it.

Signals (installed by ``install_signal_handlers``): SIGTERM/SIGINT stop after
the current batch, closing exports with a final fsync; SIGHUP re-reads the
export list through the ``reload`` callable, keeping unchanged exports (and
their config string, mask and reserve lists, counters) untouched, re-reads the
state files and each link's MTU and reopens links that failed; SIGUSR1 reports
the counters (``snapshot``) through ``on_stats``.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import signal
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

from aoeprov.aoe.transport import EthernetTransport
from aoeprov.aoe.wire import mac_to_str
from aoeprov.errors import AoeprovError, HostError, TargetError
from aoeprov.link.batch import BatchReceiver, ReplyBuffer
from aoeprov.link.packet import packet_drops
from aoeprov.link.transport import Transport
from aoeprov.targetd import claims
from aoeprov.targetd.batch import BatchServer
from aoeprov.targetd.config import ExportConfig, check_unique
from aoeprov.targetd.diskio import open_disk_io
from aoeprov.targetd.export import Export
from aoeprov.targetd.netlink import LinkEvent, LinkMonitor
from aoeprov.targetd.protocol import Frame, TargetProtocol, sectors_per_frame
from aoeprov.targetd.state import StateStore

LOG = logging.getLogger(__name__)

DEFAULT_BATCH = 32
# batches taken from one link before looking at the others again
MAX_ROUNDS_PER_WAKEUP = 8
# How often (seconds) a target waiting in a sole link's receive call looks for link
# changes: often, so replies are built for a lowered MTU within this time (a look costs
# one non-blocking receive); a reply built just before is caught by its EMSGSIZE.
MONITOR_INTERVAL = 0.02
SNAPSHOT_VERSION = 1

# link states in ``snapshot()["links"]``
UP, DOWN, FAILED = "up", "down", "failed"

StatsCallback = Callable[[dict[str, object]], None]


def open_ethernet(ifname: str) -> Transport:
    return EthernetTransport(ifname, responses=False)


class TargetServer:
    """Serves ``configs``; ``open_link`` makes the transport for an interface name."""

    def __init__(self, configs: Sequence[ExportConfig], *,
                 open_link: Callable[[str], Transport] = open_ethernet,
                 reload: Callable[[], Sequence[ExportConfig]] | None = None,
                 on_stats: StatsCallback | None = None,
                 hostname: str | None = None, batch: int = DEFAULT_BATCH,
                 fast_path: bool = True, state_dir: Path | None = None,
                 monitor: LinkMonitor | None = None, check_claims: bool = False,
                 force: bool = False) -> None:
        check_unique(configs)
        self._configs = list(configs)
        self._open_link = open_link
        self._reload = reload
        self._on_stats = on_stats
        self._hostname = hostname
        self.batch = batch
        self.engine = TargetProtocol()
        # peer-set state (config string, masks, reserve) kept across restarts
        self.state = StateStore(state_dir)
        self.engine.on_state_change = self.state.save
        # links that offer batched I/O are served by the fast path (target.batch)
        self.fast_path = fast_path
        # exports on a disk: their I/O runs in worker threads (target.diskio), whose
        # finished jobs wake the loop through this file descriptor
        self.disk = open_disk_io() if fast_path else None
        self._batcher = BatchServer(self.engine, self.disk)
        self._batch_io: dict[str, tuple[BatchReceiver, ReplyBuffer]] = {}
        self.links: dict[str, Transport] = {}  # the open ones
        self.link_errors = 0
        # every wanted link's state; wanted links missing from ``links`` wait to be opened
        self._link_state: dict[str, str] = {}
        self._ifindex: dict[str, int] = {}
        self._rx_dropped: dict[str, int] = {}
        self._monitor = monitor
        self._next_check = 0.0
        # who else serves our shelf.slots (targetd.claims); off for in-memory links
        self._claims = claims.LocalClaims() if check_claims else None
        self.force = force
        self.started_at = time.monotonic()
        # select.poll rather than selectors: this is the per-wakeup path, keep it thin
        self._poll = select.poll()
        self._by_fd: dict[int, Transport] = {}
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._poll.register(self._wake_r, select.POLLIN)
        if monitor is not None:
            self._poll.register(monitor.fileno(), select.POLLIN)
        if self.disk is not None:
            self._poll.register(self.disk.fileno(), select.POLLIN)
        self._stop = False
        self._want_reload = False
        self._want_stats = False
        self._closed = False

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> None:
        """Open every export and link, then announce the exports (raises on failure)."""
        exports = self._open_exports(self._configs, {})
        try:
            refused = self._others_serving(self._configs)
            if refused:
                raise TargetError(f"{'; '.join(map(str, refused))}: refusing to serve "
                                  f"{'it' if len(refused) == 1 else 'them'} (--force serves "
                                  f"anyway)")
            self._set_links({i for e in exports for i in e.config.interfaces})
        except BaseException:
            for exp in exports:
                exp.close()
            if self._claims is not None:
                self._claims.close()
            raise
        self.engine.set_exports(exports)
        for exp in exports:
            LOG.info("serving %s (%s) from %s: %d sectors, %s, %s, on %s", exp.config.aoe_name,
                     exp.label, exp.config.path, exp.sectors,
                     "read-only" if exp.read_only else "read-write", exp.config.write_mode,
                     ",".join(exp.config.interfaces))
        self._announce(exports)

    def _others_serving(self, configs: Sequence[ExportConfig]) -> list[claims.Responder]:
        """Who else answers for the shelf.slots of ``configs`` (none: nobody, or --force).

        Claims the free ones on this host. Answers from our own links do not count
        (two of them may share a broadcast domain: multipath).
        """
        if self._claims is None or not configs:
            return []
        own = {mac_to_str(link.mac) for link in self.links.values()}
        found = claims.check(configs, {i for c in configs for i in c.interfaces}, self._claims)
        others = [r for key in sorted(found) for r in found[key] if r.mac not in own]
        if others and self.force:
            LOG.warning("%s: serving anyway (--force)", "; ".join(map(str, others)))
            return []
        return others

    def run(self) -> None:
        """Serve until ``request_stop`` (or SIGTERM)."""
        while not self._stop:
            link = self._sole_link()
            if link is not None:
                self._serve_sole_link(link)
            else:
                self.step(None)

    def _sole_link(self) -> Transport | None:
        """The one link, when the loop may wait in its receive call: it is the only one
        wanted, it is up, it has batched I/O, and no disk I/O is in flight."""
        if (len(self.links) == 1 and self._batch_io and not self._batcher.busy
                and len(self._link_state) == 1 and UP in self._link_state.values()):
            return next(iter(self.links.values()))
        return None

    def _serve_sole_link(self, link: Transport) -> None:
        """Wait in the link's receive call itself (a poll per wakeup saved), wakeup after
        wakeup, until something else needs the loop: a signal's request, disk I/O in
        flight, or the time to look at link changes (every ``MONITOR_INTERVAL`` seconds).

        Signals interrupt the wait (their handlers set the flags checked here); one
        landing just before it is served within ``WAIT_LIMIT`` seconds. What is set
        up here holds for the whole loop: a reload or a link change ends it first.
        """
        receiver, replies = self._batch_io[link.ifname]
        serve, full = self._batcher.serve_batch, receiver.slots
        exports = list(self.engine.table(link.ifname).values())
        monitor = self._monitor
        while True:
            before = [exp.counters.frames_in for exp in exports]
            try:
                frames = receiver.recv(wait=True)
                if frames:
                    serve(frames, link, replies)
                    if len(frames) == full:
                        self._drain(link, receiver.recv,
                                    lambda more: serve(more, link, replies), full, count=False)
            except OSError as exc:
                self._link_error(link, exc)
                break
            _note_in_flight(exports, before)
            if self._stop or self._want_reload or self._want_stats or self._batcher.busy:
                break
            if monitor is not None and time.monotonic() >= self._next_check:
                self._check_monitor()
                break
        if self._want_reload or self._want_stats:
            self._drain_wake()
            self._service_requests()

    def step(self, timeout: float | None) -> int:
        """Wait up to ``timeout`` for frames, handle them; returns how many were handled."""
        handled = 0
        ms = -1 if timeout is None else int(timeout * 1000)
        ready = self._poll.poll(ms)
        monitor = self._monitor
        if monitor is not None and any(fd == monitor.fileno() for fd, _events in ready):
            self._check_monitor()  # before serving: an MTU change decides what fits
        for fd, _events in ready:
            link = self._by_fd.get(fd)
            if link is None and self.disk is not None and fd == self.disk.fileno():
                self._batcher.complete()
                continue
            if link is None:
                if fd == self._wake_r:
                    self._drain_wake()
                continue
            if self.links.get(link.ifname) is link:  # not closed by a link change above
                handled += self._serve_link(link)
        self._service_requests()
        return handled

    def settle(self) -> None:
        """Wait for the disk I/O in flight and send its replies."""
        self._batcher.drain()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.settle()  # disk I/O in flight finishes and is answered first
        if self.disk is not None:
            self.disk.close()
        for link in self.links.values():
            link.close()
        self.links.clear()
        for exp in self.engine.exports:
            exp.close()
        self.engine.set_exports(())
        if self._monitor is not None:
            self._monitor.close()
        if self._claims is not None:
            self._claims.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    # -- requests from signal handlers (or tests) -----------------------------

    def request_stop(self) -> None:
        self._stop = True
        self._wake()

    def request_reload(self) -> None:
        self._want_reload = True
        self._wake()

    def request_stats(self) -> None:
        self._want_stats = True
        self._wake()

    def install_signal_handlers(self) -> None:
        def on_signal(signum: int, _frame: FrameType | None) -> None:
            if signum in (signal.SIGTERM, signal.SIGINT):
                self.request_stop()
            elif signum == signal.SIGHUP:
                self.request_reload()
            elif signum == signal.SIGUSR1:
                self.request_stats()

        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
            signal.signal(sig, on_signal)

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # pipe full means already awake
            os.write(self._wake_w, b"\0")

    def _drain_wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_r, 512):
                pass

    def _service_requests(self) -> None:
        if self._want_reload:
            self._want_reload = False
            self.reload()
        if self._want_stats:
            self._want_stats = False
            self.report_stats()

    # -- frames -----------------------------------------------------------------

    def _serve_link(self, link: Transport) -> int:
        io = self._batch_io.get(link.ifname)
        if io is not None:
            receiver, replies = io
            return self._drain(link, receiver.recv,
                               lambda frames: self._batcher.serve_batch(frames, link, replies),
                               receiver.slots)

        def answer(frames: Sequence[Frame]) -> None:
            deferred = self.engine.handle_batch(frames, link, link.send)
            if deferred:
                link.send_batch(deferred)

        return self._drain(link, lambda: link.recv_batch(self.batch, 0), answer, self.batch)

    def _drain(self, link: Transport, receive: Callable[[], Sequence[Frame]],
               serve: Callable[[Sequence[Frame]], None], full: int, count: bool = True) -> int:
        """Serve what ``link`` has queued: batch after batch while they come ``full``, at
        most ``MAX_ROUNDS_PER_WAKEUP`` of them, so other links get their turn."""
        handled = 0
        exports = list(self.engine.table(link.ifname).values()) if count else []
        before = [exp.counters.frames_in for exp in exports]
        try:
            for _round in range(MAX_ROUNDS_PER_WAKEUP):
                frames = receive()
                if not frames:
                    break
                serve(frames)
                handled += len(frames)
                if len(frames) < full:
                    break
        except OSError as exc:
            self._link_error(link, exc)
        _note_in_flight(exports, before)
        return handled

    # -- links that change --------------------------------------------------------

    def _link_error(self, link: Transport, exc: OSError) -> None:
        """A receive or send on ``link`` failed: find out what changed, and follow it."""
        self.link_errors += 1
        ifname = link.ifname
        if exc.errno == errno.EMSGSIZE:
            # a reply built for a larger MTU than the link has now
            self._refresh_mtu(link, f"a reply of this size no longer fits ({exc.strerror})")
            return
        if self._monitor is not None:
            try:
                now = self._monitor.current().get(ifname)
            except OSError as nl_exc:
                LOG.warning("link %s: %s, and its state cannot be read: %s", ifname, exc, nl_exc)
            else:
                if now is None:
                    self._link_gone(ifname)
                else:
                    self._on_link_event(now, cause=str(exc.strerror or exc))
                return
        if self._link_state.get(ifname) != FAILED:
            self._link_state[ifname] = FAILED
            LOG.warning("link %s: %s; its frames are served again as soon as they arrive, and "
                        "SIGHUP reopens it if the interface was created anew",
                        ifname, exc.strerror or exc)

    def _check_monitor(self) -> None:
        assert self._monitor is not None
        self._next_check = time.monotonic() + MONITOR_INTERVAL
        try:
            events = self._monitor.read()
        except (OSError, AoeprovError) as exc:
            LOG.warning("cannot read link changes: %s", exc)
            return
        for event in events:
            if event.ifname in self._link_state:
                self._on_link_event(event)

    def _on_link_event(self, event: LinkEvent, cause: str = "") -> None:
        ifname = event.ifname
        state = self._link_state.get(ifname)
        if event.deleted:
            self._link_gone(ifname)
            return
        if not event.up:
            if state != DOWN:
                self._link_state[ifname] = DOWN
                LOG.warning("link %s is down%s: waiting for it to come up, serving the other "
                            "links meanwhile", ifname, f" ({cause})" if cause else "")
            return
        link = self.links.get(ifname)
        reopened = False
        if link is None or self._ifindex.get(ifname, event.index) != event.index:
            # not opened yet (down at start), or the interface was created anew
            try:
                new = self._open_link(ifname)
            except (AoeprovError, OSError) as exc:
                if state != FAILED:
                    self._link_state[ifname] = FAILED
                    LOG.warning("link %s is up but cannot be opened: %s", ifname, exc)
                return
            if link is not None:
                self._drop_link(ifname)
            self._add_link(ifname, new, event.index)
            link, reopened = new, True
        elif event.mtu is not None and event.mtu != link.mtu:
            self._refresh_mtu(link, "changed")
            if state == UP:
                return  # announced by _refresh_mtu
        self._link_state[ifname] = UP
        if state != UP or reopened:
            LOG.warning("link %s is up%s: serving it, exports announced", ifname,
                        " (reopened)" if reopened and state == UP else "")
            self._announce_on(link)

    def _link_gone(self, ifname: str) -> None:
        if ifname in self.links:
            self._drop_link(ifname)
        if self._link_state.get(ifname) != DOWN:
            self._link_state[ifname] = DOWN
            LOG.warning("link %s is gone: waiting for the interface to come back, serving the "
                        "other links meanwhile", ifname)

    def _refresh_mtu(self, link: Transport, why: str) -> None:
        old = link.mtu
        try:
            mtu = link.refresh_mtu()
        except OSError as exc:
            LOG.warning("link %s: cannot read its MTU: %s", link.ifname, exc)
            return
        if mtu == old:
            return
        self._open_batch_io(link)
        LOG.warning("link %s: MTU %d -> %d (%s): now %d sectors per frame, announced again",
                    link.ifname, old, mtu, why, sectors_per_frame(mtu))
        self._announce_on(link)

    def _open_batch_io(self, link: Transport) -> None:
        """Set up (again, after an MTU change) the batched I/O of ``link`` if it has one."""
        self._batch_io.pop(link.ifname, None)
        make = getattr(link, "batch_io", None)
        if not self.fast_path or make is None:
            return
        io = make(self.batch)
        if io is not None:
            self._batch_io[link.ifname] = io

    def _drop_link(self, ifname: str) -> None:
        self._batch_io.pop(ifname, None)
        link = self.links.pop(ifname)
        self._poll.unregister(link.fileno())
        del self._by_fd[link.fileno()]
        link.close()

    def _add_link(self, ifname: str, link: Transport, index: int | None = None) -> None:
        self.links[ifname] = link
        self._poll.register(link.fileno(), select.POLLIN)
        self._by_fd[link.fileno()] = link
        if index is None:
            with contextlib.suppress(OSError):
                index = socket.if_nametoindex(ifname)
        if index is not None:
            self._ifindex[ifname] = index
        self._open_batch_io(link)

    def _try_open(self, ifname: str, states: dict[str, LinkEvent] | None) -> Transport | None:
        """Open ``ifname``; None (and the link waits) when it exists but is down."""
        now = None if states is None else states.get(ifname)
        if now is not None and not now.up:
            self._link_state[ifname] = DOWN
            LOG.warning("link %s is down: waiting for it to come up, serving the other links "
                        "meanwhile", ifname)
            return None
        try:
            link = self._open_link(ifname)
        except OSError as exc:
            # a raw socket on an interface that is down fails its first receive
            if exc.errno != errno.ENETDOWN:
                raise HostError(f"cannot use interface {ifname!r} for AoE: {exc}") from exc
            self._link_state[ifname] = DOWN
            LOG.warning("link %s is down: waiting for it to come up, serving the other links "
                        "meanwhile", ifname)
            return None
        self._link_state[ifname] = UP
        return link

    def _reopen_failed_links(self) -> None:
        """Open again the links that failed or wait (an interface deleted and created again)."""
        for ifname in sorted(self._link_state):
            if self._link_state[ifname] == UP and ifname in self.links:
                continue
            try:
                link = self._open_link(ifname)
            except (AoeprovError, OSError) as exc:
                LOG.warning("link %s is still unusable: %s", ifname, exc)
                continue
            if ifname in self.links:
                self._drop_link(ifname)
            self._add_link(ifname, link)
            self._link_state[ifname] = UP
            LOG.info("link %s reopened", ifname)
            self._announce_on(link)

    # -- exports, links, reload -------------------------------------------------

    def _open_exports(self, configs: Sequence[ExportConfig],
                      keep: dict[ExportConfig, Export]) -> list[Export]:
        """Exports for ``configs``: reuse ``keep[config]`` when present, open the rest.

        Every export takes its saved state (``targetd.state``), the kept ones too:
        SIGHUP re-reads the state files.
        """
        opened: list[Export] = []
        result: list[Export] = []
        try:
            for config in configs:
                exp = keep.get(config)
                if exp is not None and exp.resized():
                    # the backing store grew (lvextend, a longer image): reopened at its new
                    # size, which initiators see on their next identify (aoe revalidate)
                    LOG.info("%s: %s changed size, reopening it", config.aoe_name, config.path)
                    exp = None
                if exp is None:
                    exp = Export(config, hostname=self._hostname)
                    opened.append(exp)
                result.append(exp)
        except BaseException:
            for exp in opened:
                exp.close()
            raise
        for exp in result:
            self.state.restore(exp)
        return result

    def _set_links(self, wanted: set[str]) -> None:
        states = None
        if self._monitor is not None:
            try:
                states = self._monitor.current()
            except OSError as exc:
                LOG.warning("cannot read the state of the links: %s", exc)
        new: dict[str, Transport] = {}
        waiting: set[str] = set()
        try:
            for ifname in sorted(wanted - set(self._link_state)):
                link = self._try_open(ifname, states)
                if link is None:
                    waiting.add(ifname)
                else:
                    new[ifname] = link
        except BaseException:
            for link in new.values():
                link.close()
            for ifname in new.keys() | waiting:
                self._link_state.pop(ifname, None)
            raise
        for ifname in sorted(set(self._link_state) - wanted):
            if ifname in self.links:
                self._drop_link(ifname)
            del self._link_state[ifname]
        for ifname, link in new.items():
            event = None if states is None else states.get(ifname)
            self._add_link(ifname, link, None if event is None else event.index)

    def reload(self) -> bool:
        """Switch to the export list ``reload()`` returns; on any error keep the old one."""
        self.settle()  # no disk job may outlive the export it works on
        self._reopen_failed_links()
        for link in list(self.links.values()):
            self._refresh_mtu(link, "seen on reload")
        if self._reload is None:
            LOG.warning("reload requested, but this target has no export list to re-read")
            for exp in self.engine.exports:
                self.state.restore(exp)
            return False
        current = {exp.config: exp for exp in self.engine.exports}
        try:
            configs = list(self._reload())
            check_unique(configs)
            configs = self._without_taken(configs)
            exports = self._open_exports(configs, current)
        except AoeprovError as exc:
            LOG.error("reload failed, still serving the previous exports: %s", exc)
            return False
        fresh = [exp for exp in exports if exp.config not in current]
        try:
            self._set_links({i for e in exports for i in e.config.interfaces})
        except AoeprovError as exc:
            LOG.error("reload failed, still serving the previous exports: %s", exc)
            for exp in fresh:
                exp.close()
            return False
        kept = {id(exp) for exp in exports}
        gone = [exp for exp in self.engine.exports if id(exp) not in kept]
        self.engine.set_exports(exports)
        for exp in gone:
            LOG.info("no longer serving %s (%s)", exp.config.aoe_name, exp.label)
            exp.close()
        for exp in fresh:
            LOG.info("now serving %s (%s) from %s", exp.config.aoe_name, exp.label,
                     exp.config.path)
        self._configs = configs
        if self._claims is not None:
            self._claims.keep_only((e.shelf, e.slot) for e in configs)
        self._announce(fresh)
        LOG.info("reloaded: %d exports, %d new, %d removed", len(exports), len(fresh), len(gone))
        return True

    def _without_taken(self, configs: list[ExportConfig]) -> list[ExportConfig]:
        """``configs`` less the new shelf.slots someone else already serves (logged)."""
        served = {(e.shelf, e.slot) for e in self.engine.exports}
        refused = self._others_serving([c for c in configs if (c.shelf, c.slot) not in served])
        if not refused:
            return configs
        LOG.error("%s: not serving %s (--force serves anyway)", "; ".join(map(str, refused)),
                  "it" if len(refused) == 1 else "them")
        taken = {(r.shelf, r.slot) for r in refused}
        return [c for c in configs if (c.shelf, c.slot) not in taken]

    def _announce(self, exports: Sequence[Export] | None = None) -> None:
        for ifname, link in self.links.items():
            if self._link_state.get(ifname) == UP:
                self._announce_on(link, exports)

    def _announce_on(self, link: Transport, exports: Sequence[Export] | None = None) -> None:
        """The unsolicited config announcement of ``exports`` (all) on ``link``."""
        frames = self.engine.announcements(link, exports)
        try:
            link.send_batch(frames)
        except OSError as exc:
            self.link_errors += 1
            LOG.warning("link %s: cannot announce exports: %s", link.ifname, exc)

    # -- counters ---------------------------------------------------------------

    def snapshot(self) -> dict[str, object]:
        """Every counter of this target, as ``--stats-file`` and SIGUSR1 report them.

        The shape is stable (``version`` changes if it ever must); keys are only
        ever added::

            {"version": 1,
             "uptime": 12.5,              # seconds since the target started
             "link_errors": 0,            # failed receives/sends (each one logged)
             "state_errors": 0,           # state files that could not be written
             "frames_in": 0, "not_ours": 0, "malformed": 0, "broadcast_ignored": 0,
             "vendor_ignored": 0, "internal_errors": 0,   # all links, all exports
             "links": [{"interface": "eth0", "state": "up" | "down" | "failed",
                        "mtu": 1500, "sectors_per_frame": 2,
                        "rx_dropped": 0}],  # frames the kernel dropped: socket queue full
             "exports": [{"name": "storage1", "aoe": "e0.1", "path": "/dev/vg0/storage1",
                          "sectors": 2048, "read_only": False, "write_mode": "sync",
                          "buffer_count": 64,
                          "frames_in": 0, "frames_out": 0, "reads": 0, "writes": 0,
                          "bytes_read": 0, "bytes_written": 0, "flushes": 0,
                          "ata_errors": 0, "aoe_errors": 0, "masked": 0,
                          "in_flight": 0, "in_flight_max": 0, "queue_full": 0}]}

        Every value but ``uptime``, ``links[].state``, ``mtu``, ``in_flight`` and the
        export's descriptive fields is a counter that only grows while the process
        lives (``in_flight``/``in_flight_max``/``queue_full``: see ``ExportCounters``).
        """
        links = []
        for ifname in sorted(self._link_state):
            link = self.links.get(ifname)
            if link is not None:
                drops = packet_drops(link.fileno())
                if drops:
                    self._rx_dropped[ifname] = self._rx_dropped.get(ifname, 0) + drops
            mtu = None if link is None else link.mtu
            links.append({"interface": ifname, "state": self._link_state[ifname],
                          "mtu": mtu,
                          "sectors_per_frame": None if mtu is None else sectors_per_frame(mtu),
                          "rx_dropped": self._rx_dropped.get(ifname, 0)})
        return {"version": SNAPSHOT_VERSION,
                "uptime": round(time.monotonic() - self.started_at, 3),
                "link_errors": self.link_errors, "state_errors": self.state.errors,
                **self.engine.counters.to_json(), "links": links,
                "exports": [exp.to_json() for exp in self.engine.exports]}

    stats = snapshot

    def summary(self) -> str:
        """One line for the log when the target stops."""
        exports = self.engine.exports
        errors = sum(e.counters.ata_errors + e.counters.aoe_errors for e in exports)
        written = sum(e.counters.bytes_written for e in exports)
        read = sum(e.counters.bytes_read for e in exports)
        return (f"served {len(exports)} exports for {time.monotonic() - self.started_at:.0f}s: "
                f"{self.engine.counters.frames_in} frames in, {read} bytes read, "
                f"{written} bytes written, {errors} errors, {self.link_errors} link errors")

    def report_stats(self) -> None:
        stats = self.snapshot()
        if self._on_stats is not None:
            self._on_stats(stats)
        else:
            LOG.info("counters: %s", stats)


def _note_in_flight(exports: list[Export], before: list[int]) -> None:
    """Per export, the requests one wakeup found waiting (see ``ExportCounters``):
    ``before`` holds each export's ``frames_in`` when the wakeup began."""
    for exp, then in zip(exports, before, strict=True):
        counters = exp.counters
        waiting = counters.frames_in - then
        if waiting:
            counters.in_flight = waiting
            if waiting > counters.in_flight_max:
                counters.in_flight_max = waiting
            if waiting >= exp.buffer_count:
                counters.queue_full += 1
