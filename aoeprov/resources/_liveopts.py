"""A live mount's options against the spec's: what a remount changes, what it cannot.

``/proc/self/mountinfo`` shows per-mount flags (field 6: ``rw,nodev,relatime``)
and the superblock's options (the last field: ``rw,errors=remount-ro``). The
flags of the VFS (ro/rw, nodev, nosuid, noexec, the atime family) and the
superblock flags sync, dirsync and lazytime are changed in place by
``mount -o remount,...`` on ext4 and xfs alike. Filesystem options (``data=``,
``commit=``, ``discard``...) are compared with the superblock options as shown;
one that is not shown cannot be told apart from one a remount silently ignores,
so it is reported as drift whose remedy is unmounting and mounting again.

Pure functions of the mountinfo fields and the spec's option list.
"""

from __future__ import annotations

from dataclasses import dataclass

# option -> (flag family, value): the spec's word sets the family to the value
_VFS: dict[str, tuple[str, str]] = {
    "ro": ("ro", "ro"), "rw": ("ro", "rw"),
    "nodev": ("dev", "nodev"), "dev": ("dev", "dev"),
    "nosuid": ("suid", "nosuid"), "suid": ("suid", "suid"),
    "noexec": ("exec", "noexec"), "exec": ("exec", "exec"),
    "noatime": ("atime", "noatime"), "relatime": ("atime", "relatime"),
    "strictatime": ("atime", "strictatime"),
    "nodiratime": ("diratime", "nodiratime"), "diratime": ("diratime", "diratime"),
}
# families whose default applies when the spec says nothing (mount(8)'s "defaults")
_DEFAULTS = {"ro": "rw", "dev": "dev", "suid": "suid", "exec": "exec"}
_SUPER_FLAGS = {"sync": "async", "dirsync": "", "lazytime": "nolazytime"}
# words mount(8) understands that are not filesystem options, or imply several flags
_NOT_COMPARED = frozenset({"defaults", "async", "auto", "noauto", "nouser", "user", "users",
                           "owner", "group", "loop", "nofail", "_netdev", "remount", "bind"})


@dataclass(frozen=True)
class OptionCheck:
    remount: tuple[str, ...] = ()      # words for `mount -o remount,...`
    live: tuple[str, ...] = ()         # what the live mount has for those, to say so
    not_changeable: tuple[str, ...] = ()   # spec options a remount cannot be trusted with


def live_family(per_mount: set[str], family: str) -> str:
    """A flag family's live value from the per-mount options."""
    if family == "ro":
        return "ro" if "ro" in per_mount else "rw"
    if family == "atime":
        for word in ("noatime", "relatime"):
            if word in per_mount:
                return word
        return "strictatime"
    if family == "diratime":
        return "nodiratime" if "nodiratime" in per_mount else "diratime"
    return f"no{family}" if f"no{family}" in per_mount else family


def check_options(wanted: tuple[str, ...], per_mount: str, super_options: str) -> OptionCheck:
    """Compare the spec's mount(8) options with a live mount's fields."""
    mine = set(per_mount.split(",")) if per_mount else set()
    sb = set(super_options.split(",")) if super_options else set()
    words = [w for w in wanted if w not in _NOT_COMPARED and not w.startswith("x-")]
    implied = {"user", "users", "owner", "group"} & set(wanted)   # imply nodev,nosuid,noexec
    want: dict[str, str] = {} if implied else dict(_DEFAULTS)
    want["ro"] = "rw"
    for word in words:
        if word in _VFS:
            family, value = _VFS[word]
            want[family] = value
    remount, live, other = [], [], []
    for family, value in want.items():
        have = live_family(mine, family)
        if have != value:
            remount.append(value)
            live.append(have)
    for word in words:
        if word in _VFS:
            continue
        if word in _SUPER_FLAGS:
            if word not in sb:
                remount.append(word)
                live.append(_SUPER_FLAGS[word] or f"no {word}")
        elif word not in sb:
            other.append(word)
    return OptionCheck(tuple(remount), tuple(live), tuple(other))
