"""The systemd units the lab puts into each guest's ``/run/systemd/system``.

The guest runs the host's own root filesystem, so it would start every service the
host has enabled (a database server, timers...). Runtime masks in ``/run`` silence
those without touching the guest's ``/etc``, which belongs to the spec under test.
The agent unit starts the control channel; the net unit brings every NIC (``eth0``,
and ``eth1``... on labs with several networks) up with the lab's MTU before
``network-online.target`` (the spec's hosts have their interfaces up).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

AGENT_PORT = "aoeprov.agent"  # virtio-serial port name
ENV_FILE = "/run/aoeprov-lab.env"
AGENT_UNIT = "aoeprov-lab-agent.service"
NET_UNIT = "aoeprov-lab-net.service"

# Units the host may enable that matter to AoE storage: never masked in a guest.
KEEP_PREFIXES = ("aoe", "vblade", "lvm2", "dm-event", "blk-availability", "remote-fs",
                 "systemd-udev", "systemd-modules-load", "systemd-pstore")

# Always masked: consoles would mix a login prompt into the console log, and time
# sync, periodic jobs and the tty getty only slow an emulated boot.
ALWAYS_MASKED = ("serial-getty@ttyS0.service", "getty@tty1.service", "console-getty.service",
                 "systemd-timesyncd.service", "e2scrub_reap.service", "man-db.timer",
                 "apt-daily.timer", "apt-daily-upgrade.timer", "dpkg-db-backup.timer",
                 "fstrim.timer", "e2scrub_all.timer", "cron.service", "ssh.service",
                 "rsyslog.service", "exim4.service", "postfix.service")


@dataclass(frozen=True)
class RuntimeUnits:
    """Files and symlinks to create under the guest's /run/systemd/system."""

    files: dict[str, str]     # relative path -> content
    symlinks: dict[str, str]  # relative path -> link target


def host_enabled_units(etc_systemd: Path) -> list[str]:
    """Unit names enabled on the host: entries of /etc/systemd/system/*.wants/."""
    names: set[str] = set()
    for wants in etc_systemd.glob("*.wants"):
        names.update(p.name for p in wants.iterdir())
    for requires in etc_systemd.glob("*.requires"):
        names.update(p.name for p in requires.iterdir())
    return sorted(names)


def units_to_mask(host_enabled: Iterable[str]) -> list[str]:
    """What the guest must not start: host-enabled units unrelated to AoE storage."""
    masked = {u for u in host_enabled if not u.startswith(KEEP_PREFIXES)
              and not u.endswith((".target", ".socket"))}
    return sorted(masked | set(ALWAYS_MASKED))


def agent_unit(python: str, checkout: str) -> str:
    return f"""[Unit]
Description=aoeprov lab control agent
DefaultDependencies=no
After=local-fs.target
Conflicts=shutdown.target
Before=shutdown.target

[Service]
Environment=PYTHONPATH={checkout}
Environment=PYTHONDONTWRITEBYTECODE=1
ExecStart={python} -m aoeprov.lab.agent {AGENT_PORT}
Restart=always
RestartSec=1
"""


# eth1... may show up a moment after eth0: each is waited for (10 s) before it is set up.
# In the unit every $ is doubled: systemd would expand $n itself.
NET_SCRIPT = ('n=0; while [ "$n" -lt "$NICS" ]; do i=0; '
              'while [ ! -e /sys/class/net/eth$n ] && [ "$i" -lt 100 ]; do sleep 0.1; '
              'i=$((i+1)); done; /sbin/ip link set dev eth$n mtu "$MTU" up || exit 1; '
              'n=$((n+1)); done')

NET_UNIT_TEXT = f"""[Unit]
Description=aoeprov lab: bring the NICs up with the lab's MTU
After=sys-subsystem-net-devices-eth0.device
Wants=sys-subsystem-net-devices-eth0.device
Before=network.target network-online.target
DefaultDependencies=no

[Service]
Type=oneshot
RemainAfterExit=yes
EnvironmentFile={ENV_FILE}
ExecStart=/bin/sh -c '{NET_SCRIPT.replace("$", "$$")}'
"""


def runtime_units(python: str, checkout: str, masked: Iterable[str]) -> RuntimeUnits:
    files = {AGENT_UNIT: agent_unit(python, checkout), NET_UNIT: NET_UNIT_TEXT}
    links = {f"sysinit.target.wants/{AGENT_UNIT}": f"../{AGENT_UNIT}",
             f"multi-user.target.wants/{NET_UNIT}": f"../{NET_UNIT}",
             f"network-online.target.wants/{NET_UNIT}": f"../{NET_UNIT}"}
    links.update({name: "/dev/null" for name in masked})
    return RuntimeUnits(files, links)
