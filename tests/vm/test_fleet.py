"""Fleets on real hosts: the Ansible playbook, then the pull agent, on one lab (issue 13).

One lab for the module: two real-kernel VMs booted from the tutorial spec without
converging them. The playbook (``playbooks/site.yml``, unmodified: only the
inventory and extra variables are the test's) installs aoeprov in each guest from
a wheelhouse built from this checkout (the guests reach no package registry) and
converges them; later the same guests follow a bare git repo with the installed
``aoeprov pull``. Ansible reaches the guests through a small connection plugin
over the lab's control channel (``tests/vm/ansible``): the guests have no IP
address and no SSH server.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from aoeprov.lab.lab import Lab
from aoeprov.lab.up import up
from tests.conftest import require_root, require_tools
from tests.vm.conftest import LAB_TOOLS, REPO, TUTORIAL

pytestmark = pytest.mark.vm
LOG = logging.getLogger(__name__)

PLAYBOOK = REPO / "playbooks" / "site.yml"
PLUGINS = Path(__file__).resolve().parent / "ansible" / "connection_plugins"
VENV = "/opt/aoeprov-fleet-test"      # not /opt/aoeprov: the guests see the host's /opt
AOEPROV = f"{VENV}/bin/aoeprov"
TARGET, INITIATOR = "server2", "server1"
PROM = "/var/lib/prometheus/node-exporter/aoeprov-pull.prom"
PULL_STATE = "/var/lib/aoeprov/pull/state.json"  # the agent's record (aoeprov.pull.agent)


@dataclass
class Fleet:
    lab: Lab
    tmp: Path
    wheelhouse: Path      # the archive the playbook installs from (-e aoeprov_wheelhouse)
    shared: Path          # a host directory the guests see live (Lab.shared_dir): the config repo
    spec: dict[str, Any]  # the lab's copy of the tutorial (1G volume)

    def run(self, host: str, *argv: str, ok_codes: tuple[int, ...] = (0,),
            timeout: float = 600.0) -> str:
        return self.lab.run(host, argv, ok_codes=ok_codes, timeout=timeout).stdout

    def aoeprov(self, host: str, *args: str, ok_codes: tuple[int, ...] = (0,)) -> str:
        """The installed aoeprov, run as a host runs it (without the lab agent's PYTHONPATH,
        which points at this checkout)."""
        return self.run(host, "env", "-u", "PYTHONPATH", AOEPROV, *args, ok_codes=ok_codes)

    def write_spec(self, name: str, spec: dict[str, Any]) -> Path:
        path = self.tmp / name
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        return path


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    require_root("the vm tier")
    require_tools(*LAB_TOOLS, "ansible-playbook", "git")
    tmp = tmp_path_factory.mktemp("fleet")
    wheels = tmp / "wheels"
    # the connected side of an air-gapped install: aoeprov and its dependencies as wheels
    pip_wheel(REPO, wheels)
    wheelhouse = pack_wheelhouse(tmp / "aoeprov-wheelhouse.tar.gz", sorted(wheels.glob("*.whl")))
    lab = Lab(tmp / "lab", progress=lambda msg: LOG.info("%s", msg))
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        up(lab, TUTORIAL, sizes={"storage1": "1G"}, apply=False)
        spec = yaml.safe_load((lab.state_dir / "spec.yaml").read_text())
        # the config repo lives where the guests see the host's changes at once
        yield Fleet(lab, tmp, wheelhouse, lab.shared_dir, spec)
    finally:
        lab.down()
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pack_wheelhouse(path: Path, wheels: list[Path]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for wheel in wheels:
            tar.add(wheel, arcname=wheel.name)
    return path


def pip_wheel(source: Path, out: Path, *options: str) -> None:
    """``pip wheel`` of ``source`` into ``out`` (with its dependencies unless ``options`` say
    ``--no-deps``: those come from the package index, on the controller only)."""
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", *options,
                           "--wheel-dir", str(out), str(source)], capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        pytest.fail(f"cannot build wheels of {source} (pip wheel needs the package index on "
                    f"the controller): {done.stderr}", pytrace=False)


# -- the playbook ------------------------------------------------------------------------------

@dataclass
class PlaybookRun:
    rc: int
    output: str

    def recap(self) -> dict[str, dict[str, int]]:
        out = {}
        for m in re.finditer(r"^(\S+)\s+: ((?:\w+=\d+\s*)+)$", self.output, re.M):
            out[m.group(1)] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))}
        return out


def inventory(fleet: Fleet, extra_targets: dict[str, tuple[str, str]] | None = None) -> Path:
    """INI inventory; ``extra_targets``: inventory name -> (VM, spec host name)."""
    def vm_dir(vm: str) -> str:
        return str(fleet.lab.vm(vm).directory)

    lines = ["[aoe_targets]", f"{TARGET} aoeprov_lab_vm_dir={vm_dir(TARGET)}"]
    for name, (vm, host) in (extra_targets or {}).items():
        lines.append(f"{name} aoeprov_lab_vm_dir={vm_dir(vm)} aoeprov_host={host}")
    lines += ["[aoe_initiators]", f"{INITIATOR} aoeprov_lab_vm_dir={vm_dir(INITIATOR)}",
              "[all:vars]", "ansible_connection=aoeprov_lab",
              "ansible_python_interpreter=/usr/bin/python3",
              # the guests run as root and have no sudo: become has nothing to do
              "ansible_become=false"]
    path = fleet.tmp / f"inventory-{uuid.uuid4().hex[:6]}.ini"
    path.write_text("\n".join(lines) + "\n")
    return path


def playbook(fleet: Fleet, spec: Path, *extra: str, inv: Path | None = None,
             wheelhouse: Path | None = None) -> PlaybookRun:
    home = fleet.tmp / "ansible-home"
    home.mkdir(exist_ok=True)
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(home), "LC_ALL": "C.UTF-8",
           "ANSIBLE_CONNECTION_PLUGINS": str(PLUGINS), "ANSIBLE_PIPELINING": "true",
           "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
           "ANSIBLE_RETRY_FILES_ENABLED": "false", "ANSIBLE_DEPRECATION_WARNINGS": "false"}
    # the controller's files given as the README's example gives them: relative to the
    # directory ansible-playbook runs in
    archive = wheelhouse or fleet.wheelhouse
    argv = ["ansible-playbook", "-i", str(inv or inventory(fleet)), str(PLAYBOOK),
            "-e", f"aoeprov_spec_src={os.path.relpath(spec, fleet.tmp)}",
            "-e", f"aoeprov_wheelhouse={os.path.relpath(archive, fleet.tmp)}",
            "-e", f"aoeprov_venv={VENV}", *extra]
    start = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False,
                          cwd=fleet.tmp, timeout=1500)
    LOG.info("ansible-playbook %s: rc %s in %.1fs", " ".join(extra), done.returncode,
             time.monotonic() - start)
    return PlaybookRun(done.returncode, done.stdout + done.stderr)


def with_noatime(spec: dict[str, Any]) -> dict[str, Any]:
    spec = json.loads(json.dumps(spec))
    spec["mounts"][0]["options"].append("noatime")
    return spec


def test_playbook_converges_real_hosts_targets_first(fleet: Fleet) -> None:
    spec = fleet.write_spec("tutorial.yaml", fleet.spec)
    first = playbook(fleet, spec)
    assert first.rc == 0, first.output
    recap = first.recap()
    assert recap[TARGET]["changed"] > 0 and recap[INITIATOR]["changed"] > 0, first.output
    assert recap[TARGET]["failed"] == recap[INITIATOR]["failed"] == 0
    targets = first.output.index("PLAY [Converge target hosts")
    initiators = first.output.index("PLAY [Converge initiator hosts")
    assert targets < initiators
    # the target converged in its play, the initiator only in the next one
    assert f"changed: [{TARGET}]" in first.output[targets:initiators]
    assert f"[{INITIATOR}]" not in first.output[targets:initiators]
    assert f"changed: [{INITIATOR}]" in first.output[initiators:]
    # installed from the wheelhouse, and the tutorial's result on the initiator
    assert fleet.aoeprov(INITIATOR, "--version").startswith("aoeprov ")
    assert "/dev/etherd/e0.1p1 on /storage type ext3" in fleet.run(INITIATOR, "mount")
    assert fleet.run(TARGET, "systemctl", "is-active", "aoeprov-target.service").strip() \
        == "active"

    # The second week: aoeprov changed, `make wheelhouse` again, the playbook again. The version
    # number did not move (it rarely does between two builds of a checkout), so a plain
    # `pip install` would call it "already satisfied" and keep the old code on every host.
    rebuilt = rebuilt_wheelhouse(fleet)
    assert all(REBUILT not in installed_init(fleet, h) for h in (TARGET, INITIATOR))
    second = playbook(fleet, spec, wheelhouse=rebuilt)
    assert second.rc == 0, second.output
    # only the install changed anything: the spec, the storage and the mounts were as they are
    assert changed_tasks(second.output) == {TARGET: INSTALL_TASKS, INITIATOR: INSTALL_TASKS}, \
        second.output
    for host in (TARGET, INITIATOR):
        assert REBUILT in installed_init(fleet, host), host
        assert fleet.run(host, "cat", f"{VENV}/aoeprov-wheelhouse.sha256").strip() == \
            hashlib.sha256(rebuilt.read_bytes()).hexdigest()
    fleet.wheelhouse = rebuilt   # the later runs: the same archive, installed nothing anew

    # The third run, nothing changed anywhere: a real run (not --check) changes nothing on
    # either host, and the same archive is neither unpacked nor handed to pip again.
    third = playbook(fleet, spec)
    assert third.rc == 0, third.output
    assert {h: (r["changed"], r["failed"]) for h, r in third.recap().items()} == \
        {TARGET: (0, 0), INITIATOR: (0, 0)}, third.output
    assert_archive_not_installed_again(third.output)


REBUILT = "# rebuilt by test_fleet: same version, other code"
INSTALL_TASKS = frozenset({
    "The wheelhouse's directory, emptied (no wheels of an earlier archive)",
    "The wheelhouse's directory",
    "The wheelhouse, for an install without network (one archive, one transfer)",
    "aoeprov in its own virtualenv",
    "The wheelhouse installed, recorded in the venv"})


def rebuilt_wheelhouse(fleet: Fleet) -> Path:
    """The wheelhouse again, aoeprov's wheel built from a copy of this checkout with one
    line added to ``aoeprov/__init__.py``: other code, the same version number."""
    source = fleet.tmp / "rebuilt-src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        (source / name).write_bytes((REPO / name).read_bytes())
    for tree in ("aoeprov", "man"):   # what pyproject.toml packages
        shutil.copytree(REPO / tree, source / tree, ignore=shutil.ignore_patterns("__pycache__"))
    init = source / "aoeprov" / "__init__.py"
    init.write_text(init.read_text() + REBUILT + "\n")
    pip_wheel(source, fleet.tmp / "rebuilt-wheels", "--no-deps")
    (wheel,) = (fleet.tmp / "rebuilt-wheels").glob("aoeprov-*.whl")
    others = [w for w in (fleet.tmp / "wheels").glob("*.whl") if not w.name.startswith("aoeprov-")]
    return pack_wheelhouse(fleet.tmp / "aoeprov-wheelhouse-rebuilt.tar.gz", [wheel, *others])


def installed_init(fleet: Fleet, host: str) -> str:
    """The installed package's ``__init__.py`` (the venv's, not this checkout's)."""
    return fleet.run(host, "sh", "-c", f"cat {VENV}/lib/python3*/site-packages/aoeprov/__init__.py")


def task_blocks(output: str) -> Iterator[tuple[str, str]]:
    """(task name, what ansible-playbook printed for it) for every task, in order."""
    for block in output.split("\nTASK [")[1:]:
        name, _, printed = block.partition("] ")
        yield name, printed.split("\nPLAY ", 1)[0]


def changed_tasks(output: str) -> dict[str, frozenset[str]]:
    """Host -> the names of the tasks that reported "changed" for it."""
    changed: dict[str, set[str]] = {}
    for name, printed in task_blocks(output):
        for host in re.findall(r"^changed: \[([^\]]+)\]", printed, re.M):
            changed.setdefault(host, set()).add(name)
    return {host: frozenset(names) for host, names in changed.items()}


def task_output(output: str, task: str) -> str:
    """What ansible-playbook printed for the first task whose name starts with ``task``."""
    found = next((printed for name, printed in task_blocks(output) if name.startswith(task)),
                 None)
    assert found is not None, f"no task {task!r} in:\n{output}"
    return found


def assert_archive_not_installed_again(output: str) -> None:
    """The archive the hosts were installed from: neither unpacked nor handed to pip, on both."""
    for task in ("The wheelhouse, for an install", "aoeprov in its own virtualenv"):
        shown = task_output(output, task)
        assert f"skipping: [{TARGET}]" in shown and f"skipping: [{INITIATOR}]" in shown, shown


def test_playbook_check_mode_reports_and_changes_nothing(fleet: Fleet) -> None:
    before = {p: fleet.run(INITIATOR, "sha256sum", p) for p in ("/etc/fstab",
                                                                "/etc/aoeprov/spec.yaml")}
    changed = fleet.write_spec("noatime.yaml", with_noatime(fleet.spec))
    check = playbook(fleet, changed, "--check")
    assert check.rc == 0, check.output
    assert check.recap()[INITIATOR]["changed"] > 0, check.output
    assert_archive_not_installed_again(check.output)
    targets = check.output.index("PLAY [Converge target hosts")
    initiators = check.output.index("PLAY [Converge initiator hosts")
    # the target has nothing to do; the initiator's plan of the new spec has
    assert f"ok: [{TARGET}]" in check.output[targets:initiators]
    assert f"changed: [{INITIATOR}]" in check.output[initiators:]
    assert "noatime" in check.output[initiators:]   # the shown plan is the new spec's
    assert {p: fleet.run(INITIATOR, "sha256sum", p) for p in before} == before
    assert fleet.run(INITIATOR, "sh", "-c", "ls -d /tmp/ansible.*.aoeprov 2>/dev/null || true") \
        .strip() == ""                      # no staged spec left behind


def test_a_failing_target_stops_the_initiators_play(fleet: Fleet) -> None:
    fstab = fleet.run(INITIATOR, "cat", "/etc/fstab")
    spec = with_noatime(fleet.spec)
    # a second target host, on the initiator's VM, whose volume group does not exist
    spec["hosts"].append({"name": "broken", "roles": ["target"], "interfaces": ["eth0"]})
    spec["targets"].append({"name": "lost", "host": "broken",
                            "lvm": {"vg": "novg", "lv": "lost", "size": "64M"}})
    spec["exports"].append({"name": "lost", "target": "lost", "shelf": 9, "slot": 9,
                            "interfaces": ["eth0"]})
    run = playbook(fleet, fleet.write_spec("broken.yaml", spec),
                   inv=inventory(fleet, {"broken": (INITIATOR, "broken")}))
    assert run.rc != 0, run.output
    assert "volume group 'novg' does not exist on broken" in run.output
    assert "PLAY [Converge initiator hosts" not in run.output, run.output
    assert fleet.run(INITIATOR, "cat", "/etc/fstab") == fstab


# -- the pull agent ----------------------------------------------------------------------------

class BareRepo:
    """A bare config repo on the host, in a directory the guests see; commits pushed to it."""

    def __init__(self, fleet: Fleet) -> None:
        self.bare = fleet.shared / "config.git"
        self.work = fleet.tmp / "config-work"
        self.env = {**os.environ, "GIT_AUTHOR_NAME": "Ops", "GIT_AUTHOR_EMAIL": "ops@example.org",
                    "GIT_COMMITTER_NAME": "Ops", "GIT_COMMITTER_EMAIL": "ops@example.org",
                    "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"}
        self.git("init", "--quiet", "--bare", "--initial-branch=main", str(self.bare))
        self.git("init", "--quiet", "--initial-branch=main", str(self.work))

    def git(self, *args: str, cwd: Path | None = None) -> str:
        done = subprocess.run(["git", *args], cwd=cwd, env=self.env, capture_output=True,
                              text=True, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def push(self, spec: dict[str, Any] | str, message: str) -> str:
        path = self.work / "fleet" / "aoeprov.yaml"
        path.parent.mkdir(exist_ok=True)
        path.write_text(spec if isinstance(spec, str) else yaml.safe_dump(spec, sort_keys=False))
        self.git("add", "-A", cwd=self.work)
        self.git("commit", "--quiet", "-m", message, cwd=self.work)
        self.git("push", "--quiet", str(self.bare), "HEAD:main", cwd=self.work)
        return self.git("rev-parse", "HEAD", cwd=self.work)


def status(fleet: Fleet, host: str) -> dict[str, Any]:
    out = fleet.aoeprov(host, "pull", "--status", "--json")
    data: dict[str, Any] = json.loads(out)
    return data


def saved_record(fleet: Fleet, host: str) -> dict[str, Any]:
    """The record as the agent last saved it ({} before its first run), read with ``cat``."""
    text = fleet.run(host, "sh", "-c", f"cat {PULL_STATE} 2>/dev/null || true")
    data: dict[str, Any] = json.loads(text) if text.strip() else {}
    return data


def wait_for(fleet: Fleet, commit: str, key: str, timeout: float = 420.0) -> dict[str, dict]:
    """Poll both hosts' records until ``key`` is ``commit`` on both and their last run ended;
    returns them as ``aoeprov pull --status --json`` prints them.

    Polled with ``cat``: an ``aoeprov`` run is a Python start-up in each emulated guest,
    and polling with it every few seconds slowed the very runs it waited for."""
    def reached(records: dict[str, dict]) -> bool:
        return all(r.get(key) == commit and r.get("result") not in (None, "failed", "")
                   for r in records.values())

    deadline = time.monotonic() + timeout
    saved: dict[str, dict] = {}
    while time.monotonic() < deadline:
        saved = {h: saved_record(fleet, h) for h in (TARGET, INITIATOR)}
        if reached(saved):
            records = {h: status(fleet, h) for h in (TARGET, INITIATOR)}
            if reached(records):  # else a timer's run began in between: poll on
                return records
        time.sleep(3)
    pytest.fail(f"hosts did not reach {key}={commit[:12]} in {timeout:.0f}s: {saved}")


def start_pulls(fleet: Fleet) -> None:
    # the initiator first: its new disk is not served yet, so it waits or retries
    for host in (INITIATOR, TARGET):
        fleet.run(host, "systemctl", "start", "--no-block", "aoeprov-pull.service")


def second_disk(spec: dict[str, Any]) -> dict[str, Any]:
    """The tutorial plus noatime on /storage and a second export, disk, partition and mount."""
    spec = with_noatime(spec)
    spec["targets"].append({"name": "storage2", "host": TARGET,
                            "file": {"path": "/srv/storage2.img", "size": "256M"}})
    spec["exports"].append({"name": "storage2", "target": "storage2", "shelf": 0, "slot": 2,
                            "interfaces": ["eth0"]})
    spec["disks"].append({"name": "e0.2", "host": INITIATOR, "shelf": 0, "slot": 2,
                          "target_host": TARGET, "table": "dos"})
    spec["partitions"].append({"name": "e0.2p1", "disk": "e0.2", "number": 1,
                               "type": "83", "size": "rest"})
    spec["filesystems"].append({"name": "second", "device": "e0.2p1", "type": "ext4"})
    spec["mounts"].append({"path": "/storage2", "filesystem": "second",
                           "options": ["defaults", "_netdev"]})
    return spec


def prom_values(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def test_pull_agent_follows_a_repo(fleet: Fleet) -> None:
    repo = BareRepo(fleet)
    first = repo.push(fleet.spec, "the tutorial")
    url = f"file://{repo.bare}"
    for host in (TARGET, INITIATOR):
        out = fleet.aoeprov(host, "pull", url, "--ref", "main", "--spec", "fleet/aoeprov.yaml",
                            "--install", "--interval", "20s", "--randomized-delay", "5s")
        assert "enabled and started aoeprov-pull.timer" in out, out
        assert fleet.run(host, "systemctl", "is-enabled", "aoeprov-pull.timer").strip() \
            == "enabled"
    # the hosts already are as the tutorial says (the playbook converged them)
    records = wait_for(fleet, first, "applied_commit")
    assert all(r["result"] == "converged" for r in records.values()), records

    second = repo.push(second_disk(fleet.spec), "noatime, and a second disk")
    start_pulls(fleet)
    records = wait_for(fleet, second, "applied_commit")
    LOG.info("runs after the second commit: %s", {h: r["runs"] for h, r in records.items()})
    mounts = fleet.run(INITIATOR, "mount")
    assert "/dev/etherd/e0.2p1 on /storage2 type ext4" in mounts, mounts
    fstab = fleet.run(INITIATOR, "cat", "/etc/fstab")
    assert re.search(r"/dev/etherd/e0\.1p1\s+/storage\s+ext3\s+\S*noatime", fstab), fstab

    before = {h: fleet.run(h, "sh", "-c", "sha256sum /etc/fstab /etc/aoeprov/target.json "
                                          "2>/dev/null; true") for h in (TARGET, INITIATOR)}
    bad = repo.push(yaml.safe_dump(second_disk(fleet.spec), sort_keys=False)
                    .replace("slot: 2", "slot: two"), "a typo")
    start_pulls(fleet)
    records = wait_for(fleet, bad, "seen_commit")
    for host, rec in records.items():
        assert (rec["result"], rec["good_commit"], rec["applied_commit"]) == \
            ("refused", second, second), (host, rec)
        assert rec["last_error"]["commit"] == bad
        assert "slot" in rec["last_error"]["message"]
    assert {h: fleet.run(h, "sh", "-c", "sha256sum /etc/fstab /etc/aoeprov/target.json "
                                        "2>/dev/null; true") for h in before} == before

    # drift: stop the initiator's timer (before the fix is pushed: a run it started
    # would apply the fix), edit its fstab by hand, and only plan
    fleet.run(INITIATOR, "systemctl", "stop", "aoeprov-pull.timer")
    deadline = time.monotonic() + 300
    while fleet.run(INITIATOR, "systemctl", "show", "-p", "ActiveState", "--value",
                    "aoeprov-pull.service").strip() in ("activating", "deactivating"):
        assert time.monotonic() < deadline, "the timer's last run did not end"
        time.sleep(3)    # let a run the timer started end: it holds the lock
    fixed = repo.push(second_disk(fleet.spec), "fix the typo")
    fleet.run(INITIATOR, "sed", "-i", "s/noatime/relatime/", "/etc/fstab")
    out = fleet.aoeprov(INITIATOR, "pull", url, "--ref", "main", "--spec", "fleet/aoeprov.yaml",
                        "--mode", "plan", "--detailed-exitcode", ok_codes=(2,))
    assert out.startswith("pending:"), out
    rec = status(fleet, INITIATOR)
    assert (rec["result"], rec["seen_commit"], rec["good_commit"], rec["applied_commit"]) == \
        ("pending", fixed, fixed, second), rec
    assert rec["pending"] >= 1
    metrics = prom_values(fleet.run(INITIATOR, "cat", PROM))
    assert metrics[("aoeprov_pull_pending_changes", ())] == rec["pending"]
    assert metrics[("aoeprov_pull_result", (("result", "pending"),))] == 1
    assert "relatime" in fleet.run(INITIATOR, "cat", "/etc/fstab")   # plan changed nothing
    # the agent, back on, puts it right
    fleet.run(INITIATOR, "systemctl", "start", "aoeprov-pull.service", timeout=900)
    rec = status(fleet, INITIATOR)
    assert (rec["result"], rec["applied_commit"], rec["pending"]) == ("applied", fixed, 0), rec
    assert "noatime" in fleet.run(INITIATOR, "cat", "/etc/fstab")
    assert prom_values(fleet.run(INITIATOR, "cat", PROM))[
        ("aoeprov_pull_pending_changes", ())] == 0
