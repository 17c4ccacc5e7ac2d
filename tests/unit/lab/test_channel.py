"""The control channel: the guest agent's request handling and the host client, over a socket."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from aoeprov.errors import CommandError, DeviceTimeout, LabError
from aoeprov.lab.agent import RC_NOT_FOUND, RC_TIMEOUT, handle
from aoeprov.lab.channel import GuestChannel


def ask(request: dict[str, object]) -> dict[str, object]:
    reply = handle(json.dumps(request).encode())
    assert reply is not None and reply.endswith(b"\n")
    return dict(json.loads(reply))


def test_agent_runs_argv_with_stdin() -> None:
    reply = ask({"id": "a", "argv": ["sh", "-c", "cat; echo err >&2; exit 3"], "stdin": "in\n"})
    assert reply == {"id": "a", "rc": 3, "stdout": "in\n", "stderr": "err\n"}


def test_agent_ping_missing_program_and_timeout() -> None:
    assert ask({"id": "p"}) == {"id": "p", "rc": 0, "stdout": "", "stderr": ""}
    assert ask({"id": "m", "argv": ["/no/such/program"]})["rc"] == RC_NOT_FOUND
    slow = ask({"id": "t", "argv": ["sleep", "5"], "timeout": 0.2})
    assert slow["rc"] == RC_TIMEOUT and "timed out" in str(slow["stderr"])


def test_agent_ignores_garbage() -> None:
    assert handle(b"not json") is None
    assert handle(b'["no", "id"]') is None


@pytest.fixture
def fake_vm(tmp_path: Path) -> Iterator[tuple[GuestChannel, list[bytes]]]:
    """A unix socket served like qemu serves the agent port: a stale reply comes first."""
    path = tmp_path / "agent.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    seen: list[bytes] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn, conn.makefile("rb") as lines:
                conn.sendall(b'{"id": "stale", "rc": 9, "stdout": "", "stderr": ""}\n')
                for line in lines:
                    seen.append(line)
                    if b"hang" in line:
                        continue
                    reply = handle(line.rstrip(b"\n"))
                    assert reply is not None
                    conn.sendall(reply[:5])  # answers may arrive in pieces
                    conn.sendall(reply[5:])

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield GuestChannel("vm1", path, tmp_path / "agent.lock"), seen
    server.close()


def test_channel_runs_commands_and_skips_stale_replies(
        fake_vm: tuple[GuestChannel, list[bytes]]) -> None:
    channel, seen = fake_vm
    assert channel.ping()
    result = channel.run(("sh", "-c", "echo out; exit 4"), ok_codes=(4,))
    assert (result.rc, result.stdout) == (4, "out\n")
    with pytest.raises(CommandError, match="in VM vm1: exit 1"):
        channel.run(("false",))
    assert len(seen) == 3


def test_channel_times_out_on_a_silent_guest(fake_vm: tuple[GuestChannel, list[bytes]]) -> None:
    channel, _ = fake_vm
    with pytest.raises(DeviceTimeout, match="vm1: no answer"):
        channel.run(("echo", "hang"), timeout=0.3)


def test_channel_to_a_missing_vm(tmp_path: Path) -> None:
    channel = GuestChannel("gone", tmp_path / "none.sock", tmp_path / "lock")
    with pytest.raises(LabError, match="gone: control channel"):
        channel.run(("true",))
    assert not channel.ping()
