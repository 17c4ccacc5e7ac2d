"""The rc.local hacks aoeprov replaces: found, reported by line number, commented out.

The AoE tutorial starts everything from ``/etc/rc.local``: ``vbladed 0 1 eth0
/dev/vg0/storage1`` on the target, ``aoe-discover``, a ``sleep`` and ``mount -a``
on the initiator. Once the spec manages those (the export, discovery and the
mounts), the lines duplicate it and race it at boot. They are found here, by
pure functions of the file's bytes (split on ``\\n`` only, like fstab); the boot
resource reports them and, with ``--prune``, comments them out with a marker
naming aoeprov, never deleting a line, every other byte kept.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

from aoeprov.hostfile import join_lines, split_lines

RC_LOCAL = "/etc/rc.local"
MARKER = b"# disabled by aoeprov, which manages this now"
_VBLADE_VALUED = {"-b", "-m", "-o", "-l"}   # vblade options that take a value


@dataclass(frozen=True)
class Duplicate:
    number: int        # 1-based line number
    text: str          # the line as shown (undecodable bytes escaped)
    what: str          # what the spec manages that it duplicates


def _words(line: bytes) -> list[str]:
    command = line.split(b"#", 1)[0].decode("utf-8", "replace")
    return command.replace(";", " ").replace("&", " ").split()


def vblade_shelf_slot(words: list[str]) -> tuple[int, int] | None:
    """``vbladed [-b 64 -r ...] 0 1 eth0 /dev/vg0/storage1`` -> (0, 1)."""
    args, i = [], 1
    while i < len(words):
        if words[i] in _VBLADE_VALUED:
            i += 2
            continue
        if not words[i].startswith("-"):
            args.append(words[i])
        i += 1
    try:
        return int(args[0]), int(args[1])
    except (IndexError, ValueError):
        return None


def find_duplicates(content: bytes, exports: Iterable[tuple[int, int]], *, discovers: bool,
                    mounts: bool) -> list[Duplicate]:
    """Lines doing what the spec manages: vblade/vbladed for a spec export (shelf, slot),
    ``aoe-discover`` and the ``sleep`` right after it (``discovers``), ``mount -a``
    (``mounts``)."""
    wanted = set(exports)
    out: list[Duplicate] = []
    after_discover = False
    for number, line in enumerate(split_lines(content), start=1):
        words = _words(line)
        if not words:
            continue
        program = os.path.basename(words[0])
        what = ""
        if program in {"vblade", "vbladed"}:
            found = vblade_shelf_slot(words)
            if found in wanted:
                what = f"export e{found[0]}.{found[1]}"
        elif program == "aoe-discover" and discovers:
            what = "AoE discovery (aoeprov-initiator.service)"
        elif program == "sleep" and after_discover:
            what = "the wait after aoe-discover (aoeprov-initiator.service waits for the devices)"
        elif program == "mount" and "-a" in words[1:] and mounts:
            what = "the mounts (fstab lines aoeprov manages, ordered after discovery)"
        after_discover = program == "aoe-discover" and discovers
        if what:
            out.append(Duplicate(number, line.decode("utf-8", "backslashreplace").strip(), what))
    return out


def comment_out(content: bytes, numbers: Iterable[int]) -> bytes:
    """``content`` with lines ``numbers`` commented out behind aoeprov's marker; every other
    byte as it was (a final line without a newline keeps having none)."""
    lines = split_lines(content)
    chosen = set(numbers)
    out = [MARKER + b": " + line if i in chosen else line
           for i, line in enumerate(lines, start=1)]
    text = join_lines(out)
    return text if content.endswith(b"\n") or not content else text[:-1]
