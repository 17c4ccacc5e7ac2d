"""Paths on a host that a spec names (mount points, image files): one normal form, and
the places a spec must never point at.

``/data/``, ``/./data/.``, ``//data`` and ``/srv/../data`` are all ``/data``: the model
keeps only the normal form, so every comparison (duplicate mount points, fstab lines,
mountinfo) compares like with like. ``..`` is resolved textually, as the checks must
decide from the spec alone; symlinks on the host are the planners' business.
"""

from __future__ import annotations

import posixpath

# The system itself: nothing is mounted over them or below them, no image file lives in
# them. Any top-level /lib* (lib32, lib64, libx32) counts as /lib.
SYSTEM_TREES = ("/bin", "/boot", "/dev", "/etc", "/lib", "/proc", "/run", "/sbin", "/sys",
                "/usr")
# Only these directories themselves: their subdirectories are ordinary places
# (/var/lib/postgresql is a classic mount point).
SYSTEM_ONLY_ITSELF = ("/", "/var")
# Where aoeprov keeps its own state (lock, journal, loop links): never hidden by a mount.
AOEPROV_STATE = ("/run/aoeprov", "/var/lib/aoeprov")


def normalize_path(path: str) -> str:
    """The one normal form of an absolute path: no ``.``, ``..``, repeated or trailing ``/``.

    ``posixpath.normpath`` keeps a leading ``//`` (POSIX leaves it implementation-defined);
    Linux treats it as ``/``, and so does this. A relative path stays relative (the checks
    refuse it with its own message).
    """
    normal = posixpath.normpath(path) if path else path
    if normal.startswith("//"):
        normal = "/" + normal.lstrip("/")
    return normal


def _within(path: str, tree: str) -> bool:
    return path == tree or path.startswith(tree.rstrip("/") + "/")


def _system_tree(path: str) -> str | None:
    """The top-level system directory ``path`` is in (all of them are top-level)."""
    if not path.startswith("/") or path == "/":
        return None
    first = "/" + path.split("/")[1]
    return first if first in SYSTEM_TREES or first.startswith("/lib") else None


def system_place(path: str) -> str | None:
    """Why an image file may not live at normalised ``path``, or None when it may."""
    tree = _system_tree(path)
    if tree is not None:
        return f"is inside the system directory {tree}" if path != tree else \
            f"is the system directory {tree}"
    if path in SYSTEM_ONLY_ITSELF:
        return f"is the system directory {path}"
    state = next((s for s in AOEPROV_STATE if _within(path, s)), None)
    if state is not None:
        return f"is inside aoeprov's state directory {state}"
    return None


def forbidden_mount_point(path: str) -> str | None:
    """Why nothing may be mounted at normalised ``path``, or None when it may.

    A mount hides what is below it at every boot: the system directories, anything in
    them, ``/`` and ``/var`` themselves, aoeprov's state directories and the directories
    holding them.
    """
    reason = system_place(path)
    if reason is not None:
        return reason
    holds = next((s for s in AOEPROV_STATE if _within(s, path)), None)
    if holds is not None:
        return f"holds aoeprov's state directory {holds}"
    return None


def is_under(path: str, directory: str) -> bool:
    """Normalised ``path`` is ``directory`` or inside it."""
    return _within(path, directory)
