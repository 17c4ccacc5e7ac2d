"""The guest half of the lab's control channel: runs commands sent over a virtio-serial port.

Started in each guest by a runtime systemd unit the lab injects. The protocol is one
JSON object per line each way: a request ``{"id", "argv", "stdin", "timeout"}``
gets ``{"id", "rc", "stdout", "stderr"}``. Requests run one at a time; a client
that goes away before its answer simply never reads it, and the next client skips
answers whose id is not its own. Standard library only: this runs under the host's
Python inside the guest, early in boot.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

PORTS = Path("/sys/class/virtio-ports")
RC_TIMEOUT = 124
RC_NOT_FOUND = 127


def find_port(name: str) -> Path | None:
    """/dev/vportNpM for the port called ``name`` (no udev symlink needed this early)."""
    if not PORTS.is_dir():
        return None
    for port in PORTS.iterdir():
        try:
            if (port / "name").read_text().strip() == name:
                return Path("/dev") / port.name
        except OSError:
            continue
    return None


def execute(request: dict[str, object]) -> dict[str, object]:
    argv = [str(a) for a in request["argv"]]  # type: ignore[attr-defined]
    stdin = request.get("stdin")
    timeout = request.get("timeout")
    env = {**os.environ, "LC_ALL": "C", "LANG": "C",
           "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
    try:
        done = subprocess.run(argv, input=str(stdin) if stdin is not None else None,
                              capture_output=True, text=True, errors="replace", env=env,
                              timeout=float(timeout) if timeout else None,  # type: ignore[arg-type]
                              stdin=None if stdin is not None else subprocess.DEVNULL)
    except FileNotFoundError as exc:
        return {"rc": RC_NOT_FOUND, "stdout": "", "stderr": str(exc)}
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else ""
        return {"rc": RC_TIMEOUT, "stdout": out, "stderr": f"timed out after {timeout}s"}
    return {"rc": done.returncode, "stdout": done.stdout, "stderr": done.stderr}


def serve(port_name: str) -> None:
    path = find_port(port_name)
    while path is None:
        time.sleep(0.2)
        path = find_port(port_name)
    fd = os.open(path, os.O_RDWR)
    buf = b""
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:  # no host connected: the port reads as EOF until one connects
            time.sleep(0.1)
            continue
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            reply = handle(line)
            if reply is not None:
                write_all(fd, reply)


def write_all(fd: int, data: bytes) -> None:
    try:
        while data:
            data = data[os.write(fd, data):]
    except OSError:
        pass  # the client left before its answer; nothing to tell


def handle(line: bytes) -> bytes | None:
    try:
        request = json.loads(line)
    except ValueError:
        return None
    if not isinstance(request, dict) or "id" not in request:
        return None
    ping = {"rc": 0, "stdout": "", "stderr": ""}
    result = execute(request) if request.get("argv") else ping
    return json.dumps({"id": request["id"], **result}).encode() + b"\n"


if __name__ == "__main__":
    serve(sys.argv[1])
