"""Run a server as a supervised background process where systemd is not PID 1.

``start`` double-forks a supervisor (own session, stdio on a log file) that
writes its pid file, runs the command, restarts it when it exits (with a
growing back-off, like ``Restart=always``), forwards SIGHUP to it (reload) and on
SIGTERM stops it and removes the pid file. ``start`` is idempotent and returns
once the pid file names a live supervisor. A pid file whose process is gone, or
is not this supervisor for this pid file, is stale and ignored.

Run by plan actions as ``python -m aoeprov.resources._supervise start|signal|stop``.
This process uses ``subprocess`` only: it forks, so no ``sh`` here.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from aoeprov.errors import AoeprovError
from aoeprov.hostfile import atomic_write

LOG = logging.getLogger(__name__)

MODULE = "aoeprov.resources._supervise"
START_TIMEOUT = 5.0
STOP_TIMEOUT = 10.0
MAX_BACKOFF = 30.0
STEADY_RUN = 60.0  # a child that ran this long resets the back-off


def parse_pid_file(text: str) -> int | None:
    try:
        pid = int(text.strip())
    except ValueError:
        return None
    return pid if pid > 0 else None


def is_supervisor(cmdline: bytes, pid_file: Path) -> bool:
    """``/proc/PID/cmdline`` of a supervisor started for this pid file?"""
    args = cmdline.split(b"\0")
    return MODULE.encode() in args and str(pid_file).encode() in args


def running_pid(pid_file: Path, proc: Path = Path("/proc")) -> int | None:
    """The live supervisor's pid, or None (no pid file, or a stale one)."""
    pid_file = Path(os.path.abspath(pid_file))
    try:
        pid = parse_pid_file(pid_file.read_text())
    except FileNotFoundError:
        return None
    if pid is None:
        return None
    return pid if _is_alive_supervisor(pid, pid_file, proc) else None


def _is_alive_supervisor(pid: int, pid_file: Path, proc: Path = Path("/proc")) -> bool:
    try:
        return is_supervisor((proc / str(pid) / "cmdline").read_bytes(), pid_file)
    except OSError:
        return False


def start(pid_file: Path, log_file: Path, command: Sequence[str]) -> int:
    """Start the supervisor unless one runs; return its pid."""
    pid_file = Path(os.path.abspath(pid_file))
    pid = running_pid(pid_file)
    if pid is not None:
        return pid
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.unlink(missing_ok=True)  # stale
    argv = [sys.executable, "-m", MODULE, "run", "--pid-file", str(pid_file), "--", *command]
    child = os.fork()
    if child == 0:  # first child: new session, fork the supervisor, leave
        try:
            os.setsid()
            if os.fork() == 0:
                _exec_detached(argv, log_file)
        finally:
            os._exit(0)
    os.waitpid(child, 0)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        pid = running_pid(pid_file)
        if pid is not None:
            return pid
        time.sleep(0.02)
    raise AoeprovError(f"the supervisor did not write {pid_file} within {START_TIMEOUT:g}s "
                       f"(see {log_file})")


def _exec_detached(argv: list[str], log_file: Path) -> None:
    null = os.open(os.devnull, os.O_RDONLY)
    log = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.closerange(3, 1 << 16)
    os.chdir("/")
    os.execv(argv[0], argv)


def send(pid_file: Path, signum: int) -> bool:
    """Signal the supervisor (it forwards SIGHUP); False when none runs."""
    pid = running_pid(pid_file)
    if pid is None:
        return False
    os.kill(pid, signum)
    return True


def stop(pid_file: Path) -> None:
    pid = running_pid(pid_file)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while time.monotonic() < deadline:
        if not _is_alive_supervisor(pid, Path(os.path.abspath(pid_file))):
            return  # exited (a zombie's cmdline is empty)
        time.sleep(0.02)
    raise AoeprovError(f"supervisor {pid} did not stop within {STOP_TIMEOUT:g}s")


class Supervisor:
    """The loop inside the detached process."""

    def __init__(self, pid_file: Path, command: Sequence[str]) -> None:
        self.pid_file = pid_file
        self.command = list(command)
        self.child: subprocess.Popen[bytes] | None = None
        self.stopping = False

    def _on_hup(self, _signum: int, _frame: FrameType | None) -> None:
        if self.child is not None and self.child.poll() is None:
            LOG.info("forwarding SIGHUP to %d", self.child.pid)
            self.child.send_signal(signal.SIGHUP)

    def _on_term(self, _signum: int, _frame: FrameType | None) -> None:
        self.stopping = True
        if self.child is not None and self.child.poll() is None:
            self.child.terminate()

    def run(self) -> int:
        signal.signal(signal.SIGHUP, self._on_hup)
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, self._on_term)
        atomic_write(self.pid_file, f"{os.getpid()}\n")
        backoff = 1.0
        try:
            while not self.stopping:
                began = time.monotonic()
                self.child = subprocess.Popen(self.command)
                LOG.info("started %s as %d", self.command, self.child.pid)
                rc = self.child.wait()
                if self.stopping:
                    break
                ran = time.monotonic() - began
                backoff = 1.0 if ran >= STEADY_RUN else min(backoff * 2, MAX_BACKOFF)
                LOG.warning("%s exited with %s after %.1fs; restarting in %.0fs",
                            self.command[0], rc, ran, backoff)
                time.sleep(backoff)
        finally:
            if self.child is not None and self.child.poll() is None:
                self.child.terminate()
                self.child.wait()
            if running_pid(self.pid_file) in (os.getpid(), None):
                self.pid_file.unlink(missing_ok=True)
        return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}")
    sub = parser.add_subparsers(dest="verb", required=True)
    for verb in ("start", "run"):
        p = sub.add_parser(verb)
        p.add_argument("--pid-file", required=True, type=Path)
        if verb == "start":
            p.add_argument("--log", required=True, type=Path)
        p.add_argument("command", nargs=argparse.REMAINDER)
    p = sub.add_parser("signal")
    p.add_argument("--pid-file", required=True, type=Path)
    p.add_argument("signal", choices=["HUP", "TERM"])
    p = sub.add_parser("stop")
    p.add_argument("--pid-file", required=True, type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s supervise %(levelname)s %(message)s")
    try:
        if args.verb in ("start", "run"):
            command = args.command[1:] if args.command[:1] == ["--"] else args.command
            if not command:
                parser.error("no command to supervise")
            if args.verb == "run":
                return Supervisor(args.pid_file, command).run()
            sys.stdout.write(f"{start(args.pid_file, args.log, command)}\n")
        elif args.verb == "signal":
            if not send(args.pid_file, getattr(signal, f"SIG{args.signal}")):
                sys.stderr.write(f"no supervisor runs for {args.pid_file}\n")
                return 1
        else:
            stop(args.pid_file)
    except AoeprovError as exc:
        sys.stderr.write(f"aoeprov: error: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
