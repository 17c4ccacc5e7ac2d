"""Ansible connection plugin: run tasks in an aoeprov lab VM over its control channel.

The lab's guests have no IP address and no sshd (the bridge only carries AoE
frames, and the guests run the host's own userland, which has no SSH server); the
control channel (a virtio-serial port, ``aoeprov.lab.agent``) already runs any
argv as root. This plugin speaks that channel's protocol: one JSON request per
line over the VM's unix socket, under the same ``flock`` the lab's own client
takes, so it never interleaves with ``aoeprov lab exec``. Standard library only:
ansible-playbook runs under Debian's python3, which has not got aoeprov's
dependencies.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import socket
import time
import uuid

from ansible.errors import AnsibleConnectionFailure, AnsibleError
from ansible.plugins.connection import ConnectionBase

DOCUMENTATION = """
    name: aoeprov_lab
    short_description: run tasks in an aoeprov lab VM over its control channel
    description:
        - Runs commands as root in a VM of an aoeprov lab through the lab's guest agent.
    author: aoeprov
    options:
      vm_dir:
        description: The VM's directory in the lab state directory (agent.sock, agent.lock).
        vars:
          - name: aoeprov_lab_vm_dir
        required: true
      command_timeout:
        description: Seconds a command may run (the agent kills it then).
        default: 900
        type: int
        vars:
          - name: aoeprov_lab_command_timeout
"""


# The agent is a system service without $HOME, and Ansible's remote temp paths start with
# "~/": every command gets root's HOME (the agent runs as root), and file transfers expand "~/".
# The agent's PYTHONPATH points at the lab's checkout: a host's commands must not see it (pip
# would take that aoeprov for an installed one).
ENV = ["/usr/bin/env", "-u", "PYTHONPATH", "-u", "PYTHONDONTWRITEBYTECODE", "HOME=/root"]
HOME_PATH = 'case "$1" in "~/"*) set -- "$HOME/${1#??}" ;; esac; '


class Connection(ConnectionBase):
    transport = "aoeprov_lab"
    has_pipelining = True

    def _connect(self) -> Connection:
        self._connected = True
        return self

    def _request(self, argv: list[str], stdin: str | None = None) -> tuple[int, str, str]:
        vm_dir = self.get_option("vm_dir")
        limit = float(self.get_option("command_timeout"))
        deadline = time.monotonic() + limit + 10.0
        req_id = uuid.uuid4().hex
        line = json.dumps({"id": req_id, "argv": ENV + argv, "stdin": stdin,
                           "timeout": limit}).encode() + b"\n"
        with open(os.path.join(vm_dir, "agent.lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                    sock.settimeout(limit + 10.0)
                    sock.connect(os.path.join(vm_dir, "agent.sock"))
                    sock.sendall(line)
                    buf = b""
                    while time.monotonic() < deadline:
                        chunk = sock.recv(1 << 20)
                        if not chunk:
                            raise AnsibleConnectionFailure(f"{vm_dir}: the VM closed its channel")
                        buf += chunk
                        while b"\n" in buf:
                            raw, buf = buf.split(b"\n", 1)
                            reply = json.loads(raw)
                            if reply.get("id") == req_id:   # skip a stale answer
                                return int(reply["rc"]), reply["stdout"], reply["stderr"]
            except OSError as exc:
                raise AnsibleConnectionFailure(f"{vm_dir}: control channel: {exc}") from exc
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        raise AnsibleConnectionFailure(f"{vm_dir}: no answer within {limit:.0f}s")

    def exec_command(self, cmd: str, in_data: bytes | None = None,
                     sudoable: bool = True) -> tuple[int, bytes, bytes]:
        super().exec_command(cmd, in_data=in_data, sudoable=sudoable)
        rc, out, err = self._request(["/bin/sh", "-c", cmd],
                                     in_data.decode() if in_data is not None else None)
        return rc, out.encode(), err.encode()

    def put_file(self, in_path: str, out_path: str) -> None:
        super().put_file(in_path, out_path)
        with open(in_path, "rb") as fh:
            data = base64.b64encode(fh.read()).decode()
        rc, _, err = self._request(["/bin/sh", "-c", HOME_PATH + 'base64 -d > "$1"', "sh",
                                    out_path], data)
        if rc != 0:
            raise AnsibleError(f"put_file {in_path} -> {out_path}: {err.strip()}")

    def fetch_file(self, in_path: str, out_path: str) -> None:
        super().fetch_file(in_path, out_path)
        rc, out, err = self._request(["/bin/sh", "-c", HOME_PATH + 'base64 -w0 "$1"', "sh",
                                      in_path])
        if rc != 0:
            raise AnsibleError(f"fetch_file {in_path}: {err.strip()}")
        with open(out_path, "wb") as fh:
            fh.write(base64.b64decode(out))

    def close(self) -> None:
        self._connected = False
