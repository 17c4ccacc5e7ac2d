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

Signals (installed by ``install_signal_handlers``): SIGTERM/SIGINT stop after
the current batch, closing exports with a final fsync; SIGHUP re-reads the
export list through the ``reload`` callable, keeping unchanged exports (and
their config string, mask and reserve lists, counters) untouched, re-reads each
link's MTU and reopens links that failed (an interface deleted and created
again); SIGUSR1 reports the counters through ``on_stats``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import time
from collections.abc import Callable, Sequence
from types import FrameType

from aoeprov.aoe.transport import EthernetTransport
from aoeprov.errors import AoeprovError
from aoeprov.link.batch import BatchReceiver, ReplyBuffer
from aoeprov.link.transport import Transport
from aoeprov.targetd.batch import BatchServer
from aoeprov.targetd.config import ExportConfig, check_unique
from aoeprov.targetd.export import Export
from aoeprov.targetd.protocol import Frame, TargetProtocol

LOG = logging.getLogger(__name__)

DEFAULT_BATCH = 32
# batches taken from one link before looking at the others again
MAX_ROUNDS_PER_WAKEUP = 8

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
                 fast_path: bool = True) -> None:
        check_unique(configs)
        self._configs = list(configs)
        self._open_link = open_link
        self._reload = reload
        self._on_stats = on_stats
        self._hostname = hostname
        self.batch = batch
        self.engine = TargetProtocol()
        # links that offer batched I/O are served by the fast path (target.batch)
        self.fast_path = fast_path
        self._batcher = BatchServer(self.engine)
        self._batch_io: dict[str, tuple[BatchReceiver, ReplyBuffer]] = {}
        self.links: dict[str, Transport] = {}
        self.link_errors = 0
        self._failed_links: set[str] = set()  # reopened on the next reload (SIGHUP)
        self.started_at = time.monotonic()
        # select.poll rather than selectors: this is the per-wakeup path, keep it thin
        self._poll = select.poll()
        self._by_fd: dict[int, Transport] = {}
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._poll.register(self._wake_r, select.POLLIN)
        self._stop = False
        self._want_reload = False
        self._want_stats = False
        self._closed = False

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> None:
        """Open every export and link, then announce the exports (raises on failure)."""
        exports = self._open_exports(self._configs, {})
        try:
            self._set_links({i for e in exports for i in e.config.interfaces})
        except BaseException:
            for exp in exports:
                exp.close()
            raise
        self.engine.set_exports(exports)
        for exp in exports:
            LOG.info("serving %s (%s) from %s: %d sectors, %s, %s, on %s", exp.config.aoe_name,
                     exp.label, exp.config.path, exp.sectors,
                     "read-only" if exp.read_only else "read-write", exp.config.write_mode,
                     ",".join(exp.config.interfaces))
        self._announce(exports)

    def run(self) -> None:
        """Serve until ``request_stop`` (or SIGTERM)."""
        while not self._stop:
            if len(self.links) == 1 and self._batch_io:
                self._wait_on_sole_link()
            else:
                self.step(None)

    def _wait_on_sole_link(self) -> None:
        """One link: wait in its receive call itself, saving a poll per wakeup.

        Signals interrupt the wait (their handlers set the flags checked here);
        one landing just before it is served within ``WAIT_LIMIT`` seconds.
        """
        (link,) = self.links.values()
        receiver, replies = self._batch_io[link.ifname]
        try:
            frames = receiver.recv(wait=True)
            if frames:
                self._batcher.serve_batch(frames, link, replies)
                if len(frames) == receiver.slots:
                    self._serve_batched(link, receiver, replies)
        except OSError as exc:
            self.link_errors += 1
            self._failed_links.add(link.ifname)
            LOG.warning("link %s: %s (SIGHUP reopens it once the interface is back)",
                        link.ifname, exc)
            select.select([self._wake_r], [], [], 1.0)  # a link gone: do not spin on it
        if self._want_reload or self._want_stats:
            self._drain_wake()
            self._service_requests()

    def step(self, timeout: float | None) -> int:
        """Wait up to ``timeout`` for frames, handle them; returns how many were handled."""
        handled = 0
        ms = -1 if timeout is None else int(timeout * 1000)
        for fd, _events in self._poll.poll(ms):
            link = self._by_fd.get(fd)
            if link is None:
                self._drain_wake()
                continue
            handled += self._serve_link(link)
        self._service_requests()
        return handled

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for link in self.links.values():
            link.close()
        self.links.clear()
        for exp in self.engine.exports:
            exp.close()
        self.engine.set_exports(())
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
            return self._serve_batched(link, *io)

        def answer(frames: Sequence[Frame]) -> None:
            deferred = self.engine.handle_batch(frames, link, link.send)
            if deferred:
                link.send_batch(deferred)

        return self._drain(link, lambda: link.recv_batch(self.batch, 0), answer, self.batch)

    def _serve_batched(self, link: Transport, receiver: BatchReceiver,
                       replies: ReplyBuffer) -> int:
        return self._drain(link, receiver.recv,
                           lambda frames: self._batcher.serve_batch(frames, link, replies),
                           receiver.slots)

    def _drain(self, link: Transport, receive: Callable[[], Sequence[Frame]],
               serve: Callable[[Sequence[Frame]], None], full: int) -> int:
        """Serve what ``link`` has queued: batch after batch while they come ``full``, at
        most ``MAX_ROUNDS_PER_WAKEUP`` of them, so other links get their turn."""
        handled = 0
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
            self._link_failed(link, exc)
        return handled

    def _link_failed(self, link: Transport, exc: OSError) -> None:
        # a link that went down or vanished: the initiator will retransmit
        self.link_errors += 1
        self._failed_links.add(link.ifname)
        LOG.warning("link %s: %s (SIGHUP reopens it once the interface is back)",
                    link.ifname, exc)

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

    def _add_link(self, ifname: str, link: Transport) -> None:
        self.links[ifname] = link
        self._poll.register(link.fileno(), select.POLLIN)
        self._by_fd[link.fileno()] = link
        self._open_batch_io(link)

    def _reopen_failed_links(self) -> None:
        """Open again the links that failed (an interface deleted and created again)."""
        for ifname in sorted(self._failed_links & set(self.links)):
            try:
                link = self._open_link(ifname)
            except AoeprovError as exc:
                LOG.warning("link %s is still unusable: %s", ifname, exc)
                continue
            self._drop_link(ifname)
            self._add_link(ifname, link)
            self._failed_links.discard(ifname)
            LOG.info("link %s reopened", ifname)
            try:
                link.send_batch(self.engine.announcements(link))
            except OSError as exc:
                LOG.warning("link %s: cannot announce exports: %s", ifname, exc)

    # -- exports, links, reload -------------------------------------------------

    def _open_exports(self, configs: Sequence[ExportConfig],
                      keep: dict[ExportConfig, Export]) -> list[Export]:
        """Exports for ``configs``: reuse ``keep[config]`` when present, open the rest."""
        opened: list[Export] = []
        result: list[Export] = []
        try:
            for config in configs:
                if config in keep:
                    result.append(keep[config])
                    continue
                exp = Export(config, hostname=self._hostname)
                opened.append(exp)
                result.append(exp)
        except BaseException:
            for exp in opened:
                exp.close()
            raise
        return result

    def _set_links(self, wanted: set[str]) -> None:
        new: dict[str, Transport] = {}
        try:
            for ifname in sorted(wanted - set(self.links)):
                new[ifname] = self._open_link(ifname)
        except BaseException:
            for link in new.values():
                link.close()
            raise
        for ifname in sorted(set(self.links) - wanted):
            self._drop_link(ifname)
            self._failed_links.discard(ifname)
        for ifname, link in new.items():
            self._add_link(ifname, link)

    def reload(self) -> bool:
        """Switch to the export list ``reload()`` returns; on any error keep the old one."""
        self._reopen_failed_links()
        for link in self.links.values():
            try:  # an MTU change shows in the next config reply, as with vblade
                link.refresh_mtu()
            except OSError as exc:
                LOG.warning("link %s: cannot read its MTU: %s", link.ifname, exc)
            else:
                self._open_batch_io(link)
        if self._reload is None:
            LOG.warning("reload requested, but this target has no export list to re-read")
            return False
        current = {exp.config: exp for exp in self.engine.exports}
        try:
            configs = list(self._reload())
            check_unique(configs)
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
        self._announce(fresh)
        LOG.info("reloaded: %d exports, %d new, %d removed", len(exports), len(fresh), len(gone))
        return True

    def _announce(self, exports: Sequence[Export]) -> None:
        for link in self.links.values():
            frames = self.engine.announcements(link, exports)
            try:
                link.send_batch(frames)
            except OSError as exc:
                self.link_errors += 1
                LOG.warning("link %s: cannot announce exports: %s", link.ifname, exc)

    # -- counters ---------------------------------------------------------------

    def stats(self) -> dict[str, object]:
        return {"uptime": round(time.monotonic() - self.started_at, 3),
                "link_errors": self.link_errors, **self.engine.stats()}

    def report_stats(self) -> None:
        stats = self.stats()
        if self._on_stats is not None:
            self._on_stats(stats)
        else:
            LOG.info("counters: %s", stats)

