"""``aoeprov pull --install``: a oneshot service and a timer that runs it on an interval.

The units run the same pull command line minus ``--install`` with the installed
``aoeprov`` console script (an absolute path: systemd does not search $PATH for
ExecStart in every version). ``RandomizedDelaySec`` spreads a fleet's fetches.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from aoeprov.host import Host
from aoeprov.reconciler.systemd import NO_RELOAD, UNIT_DIR, systemd_running

SERVICE = "aoeprov-pull.service"
TIMER = "aoeprov-pull.timer"
MANAGED = "# Written by `aoeprov pull --install`; run it again to change this file."


def _quote(arg: str) -> str:
    # systemd's own quoting is close to the shell's for plain words; `%` is a specifier
    return shlex.quote(arg).replace("%", "%%")


def service_unit(argv: Sequence[str]) -> str:
    return f"""{MANAGED}
[Unit]
Description=aoeprov pull: converge this host on its config repo
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
ExecStart={' '.join(_quote(a) for a in argv)}
"""


def timer_unit(interval: str, randomized_delay: str) -> str:
    return f"""{MANAGED}
[Unit]
Description=aoeprov pull every {interval}

[Timer]
OnBootSec=1min
OnUnitInactiveSec={interval}
RandomizedDelaySec={randomized_delay}
Persistent=false

[Install]
WantedBy=timers.target
"""


def install(host: Host, argv: Sequence[str], interval: str, randomized_delay: str) -> list[str]:
    """Write both units; where systemd runs (not under --root), enable and start the timer.

    Returns what was done, one line each, for the user."""
    done = []
    for name, text in ((SERVICE, service_unit(argv)),
                       (TIMER, timer_unit(interval, randomized_delay))):
        host.write_bytes(f"{UNIT_DIR}/{name}", text.encode(), mode=0o644)
        done.append(f"wrote {UNIT_DIR}/{name}")
    if systemd_running() and not host.sandboxed:
        host.runner.run(("systemctl", "daemon-reload"))
        # reloaded just now: enable need not reload again (``reconciler.systemd``)
        host.runner.run(("systemctl", NO_RELOAD, "enable", "--now", TIMER))
        done.append(f"enabled and started {TIMER}")
    return done
