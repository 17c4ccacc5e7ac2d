"""The host half of the lab's control channel: a ``Runner`` that runs commands in a guest.

qemu exposes the guest agent's virtio-serial port as a unix socket on the host. qemu
serves one client at a time, so every client holds an exclusive ``flock`` on a lock
file next to the socket for the length of one request; that keeps ``lab exec`` from
several processes safe.
"""

from __future__ import annotations

import fcntl
import json
import logging
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

from aoeprov.errors import CommandError, DeviceTimeout, LabError
from aoeprov.runner import Result

LOG = logging.getLogger(__name__)


class GuestChannel:
    """Runs argv tuples in one guest; satisfies the ``Runner`` protocol."""

    def __init__(self, vm_name: str, socket_path: Path, lock_path: Path) -> None:
        self.vm_name = vm_name
        self.socket_path = socket_path
        self.lock_path = lock_path

    def _request(self, payload: dict[str, object], timeout: float) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        req_id = uuid.uuid4().hex
        line = json.dumps({"id": req_id, **payload}).encode() + b"\n"
        with self.lock_path.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                    sock.settimeout(max(0.1, deadline - time.monotonic()))
                    sock.connect(str(self.socket_path))
                    sock.sendall(line)
                    return self._read_reply(sock, req_id, deadline)
            except (ConnectionError, FileNotFoundError) as exc:
                raise LabError(f"{self.vm_name}: control channel {self.socket_path}: {exc}") \
                    from exc
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read_reply(self, sock: socket.socket, req_id: str,
                    deadline: float) -> dict[str, object]:
        buf = b""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DeviceTimeout(f"{self.vm_name}: no answer from the guest agent")
            sock.settimeout(remaining)
            try:
                chunk = sock.recv(1 << 20)
            except TimeoutError as exc:
                raise DeviceTimeout(f"{self.vm_name}: no answer from the guest agent") from exc
            if not chunk:
                raise LabError(f"{self.vm_name}: the VM closed its control channel")
            buf += chunk
            while b"\n" in buf:
                raw, buf = buf.split(b"\n", 1)
                try:
                    reply = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(reply, dict) and reply.get("id") == req_id:
                    return reply
                LOG.debug("%s: skipping a stale reply", self.vm_name)

    def ping(self, timeout: float = 2.0) -> bool:
        try:
            self._request({}, timeout)
        except (DeviceTimeout, LabError):
            return False
        return True

    def wait_ready(self, timeout: float, alive: Callable[[], bool] | None = None) -> float:
        """Seconds until the agent answers; ``alive()`` (if given) is checked between tries."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if alive is not None and not alive():
                raise LabError(f"{self.vm_name}: qemu exited while booting")
            if self.ping(timeout=min(2.0, timeout)):
                return time.monotonic() - start
            time.sleep(0.2)
        raise DeviceTimeout(f"{self.vm_name}: guest agent not up after {timeout:.0f}s")

    def run(self, argv: Sequence[str], *, stdin: str | bytes | None = None,
            ok_codes: Sequence[int] = (0,), timeout: float | None = None) -> Result:
        argv = tuple(argv)
        text_in = stdin.decode() if isinstance(stdin, bytes) else stdin
        limit = timeout if timeout is not None else 300.0
        LOG.debug("%s: run %s", self.vm_name, argv)
        # the agent enforces ``limit``; the margin covers transfer and a busy guest
        reply = self._request({"argv": list(argv), "stdin": text_in, "timeout": limit},
                              limit + min(10.0, limit))
        result = Result(argv, int(str(reply["rc"])), str(reply["stdout"]), str(reply["stderr"]))
        LOG.debug("%s: rc=%s stdout=%r stderr=%r", self.vm_name, result.rc, result.stdout,
                  result.stderr)
        if result.rc not in ok_codes:
            raise CommandError(argv, result.rc, result.stdout, result.stderr,
                               reason=f"in VM {self.vm_name}: exit {result.rc}: "
                                      f"{_last_line(result.stderr or result.stdout)}")
        return result


def _last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else ""
