"""Reading a spec is bounded: at most the limit plus one byte, never a FIFO, a device or a
directory (refused before reading), and ``-`` reads standard input with the same bound."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from aoeprov.errors import SpecError
from aoeprov.spec import load_spec
from aoeprov.spec.yamldoc import MAX_BYTES

ROOT = Path(__file__).parents[3]
TUTORIAL = ROOT / "examples" / "tutorial.yaml"
DEVICE = "a character device; a spec is a regular file (or - for standard input)"


def message(path: str | Path) -> str:
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    (issue,) = caught.value.issues
    return str(issue)


def test_dev_zero_is_refused_before_reading() -> None:
    assert message("/dev/zero") == (f"/dev/zero:0:0: <document>: cannot read the spec: it is "
                                    f"{DEVICE}")


def test_a_directory_is_refused(tmp_path: Path) -> None:
    assert message(tmp_path) == (f"{tmp_path}:0:0: <document>: cannot read the spec: it is a "
                                 "directory; a spec is a regular file (or - for standard input)")


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "spec.yaml"
    os.mkfifo(fifo)
    result: list[str] = []
    reader = threading.Thread(target=lambda: result.append(message(fifo)), daemon=True)
    reader.start()
    reader.join(timeout=30)
    assert not reader.is_alive(), "load_spec blocked on a FIFO"
    assert result == [f"{fifo}:0:0: <document>: cannot read the spec: it is a FIFO (named pipe); "
                      "a spec is a regular file (or - for standard input)"]


def test_a_symlink_to_a_device_is_refused(tmp_path: Path) -> None:
    link = tmp_path / "spec.yaml"
    link.symlink_to("/dev/zero")
    assert message(link) == f"{link}:0:0: <document>: cannot read the spec: it is {DEVICE}"


def test_too_big_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    with big.open("wb") as fh:
        fh.truncate(MAX_BYTES + 4096)
    assert message(big) == (f"{big}:1:1: <document>: file is more than {MAX_BYTES} bytes; a "
                            f"spec may be at most {MAX_BYTES} bytes")


def run_validate_stdin(data: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "aoeprov", "validate", "-"], input=data,
                          capture_output=True, timeout=120, cwd=ROOT)


def test_stdin_is_read() -> None:
    done = run_validate_stdin(TUTORIAL.read_bytes())
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode() == "-: valid (2 hosts, 1 targets, 1 exports, 1 disks, 1 mounts)\n"


def test_stdin_has_the_same_bound() -> None:
    """An endless producer: aoeprov stops after the limit plus one byte and says so."""
    producer = subprocess.Popen(["cat", "/dev/zero"], stdout=subprocess.PIPE)
    try:
        done = subprocess.run([sys.executable, "-m", "aoeprov", "validate", "-"],
                              stdin=producer.stdout, capture_output=True, timeout=120, cwd=ROOT)
    finally:
        producer.kill()
        producer.wait()
        assert producer.stdout is not None
        producer.stdout.close()
    assert done.returncode == 1
    assert done.stdout.decode() == (f"-:1:1: <document>: file is more than {MAX_BYTES} bytes; "
                                    f"a spec may be at most {MAX_BYTES} bytes\n")
