"""Plan output (human and JSON) and the plan/apply/facts/stat commands under a sandbox root."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aoeprov.cli import main
from aoeprov.cli import stat as stat_cli
from aoeprov.reconciler.actions import Drift, Noop, Op, RunCommand, WaitForDevice, WriteFile
from aoeprov.reconciler.engine import Plan
from aoeprov.reconciler.render import PLAN_SCHEMA, plan_to_json, render_plan
from tests.unit.reconciler.fakes import REPO

TUTORIAL = str(REPO / "examples" / "tutorial.yaml")


def sample_plan() -> Plan:
    return Plan(host="server1", kinds=("partition", "fstab"), source="t.yaml", actions=(
        WaitForDevice(kind="discovery", target="/dev/etherd/e0.1", op=Op.WAIT,
                      summary="wait for e0.1", aoe_name="e0.1"),
        RunCommand(kind="partition", target="/dev/etherd/e0.1", op=Op.DESTROY,
                   summary="replace the table", argv=("sfdisk", "/dev/etherd/e0.1"),
                   stdin="label: dos\n", destructive=True, requires_allow=True,
                   data_loss="gpt table: 1 partition (ext4, 20 GiB)", provisional=True),
        WriteFile(kind="fstab", target="/etc/fstab", op=Op.CHANGE, summary="add /storage",
                  content=b"a\nb\n", before=b"a\n"),
        Drift(kind="module", target="aoe", op=Op.CHANGE, summary="reload required",
              remedy="modprobe -r aoe"),
    ), noops=(Noop("mount", "/storage", "mounted"),))


def test_file_diff_shows_what_is_not_text() -> None:
    """A \\r or a Latin-1 byte in an fstab line is shown escaped, never interpreted."""
    action = WriteFile(kind="fstab", target="/etc/fstab", op=Op.CHANGE, summary="x",
                       before=b"# off:\r/dev/sdc1 /backup\n/caf\xe9\n",
                       content=b"# off:\r/dev/sdc1 /backup\n/caf\xe9\nours\n")
    text = render_plan(Plan(host="h", kinds=("fstab",), source="t", actions=(action,), noops=()))
    assert "     # off:\\r/dev/sdc1 /backup\n     /caf\\xe9\n    +ours\n" in text
    data = action.to_json()
    assert data["before"] == "# off:\r/dev/sdc1 /backup\n/caf\\xe9\n"
    assert data["content_base64"] == "IyBvZmY6DS9kZXYvc2RjMSAvYmFja3VwCi9jYWbpCm91cnMK"


def test_human_plan() -> None:
    text = render_plan(sample_plan(), verbose=True)
    assert "… discovery /dev/etherd/e0.1: wait for e0.1" in text
    assert ("- partition /dev/etherd/e0.1: replace the table  [BLOCKED: needs `wipe: true` and "
            "--allow-destroy; decided after the device appears]") in text
    assert "    would lose: gpt table: 1 partition (ext4, 20 GiB)" in text
    assert "    | label: dos" in text
    assert "    --- /etc/fstab\n    +++ /etc/fstab\n" in text and "    +b" in text
    assert "! module aoe: reload required  [drift: apply leaves it]" in text
    assert "= mount /storage: mounted" in text
    assert text.rstrip().endswith("Plan: 0 to create, 1 to change, 1 to destroy, 1 step, "
                                  "1 drift; 1 BLOCKED; 1 decided after devices appear.")
    assert text.startswith("aoeprov plan for host server1 (t.yaml)\n")   # no "N resource kinds"


def test_json_mode_is_octal_text() -> None:
    action = WriteFile(kind="fstab", target="/etc/fstab", op=Op.CHANGE, summary="s", content=b"")
    assert action.to_json()["mode"] == "0644"


def test_json_plan_is_stable() -> None:
    data = plan_to_json(sample_plan())
    assert data["schema"] == PLAN_SCHEMA and data["changes"] is True
    assert data["counts"] == {"create": 0, "change": 1, "destroy": 1, "run": 0, "wait": 1,
                              "drift": 1, "blocked": 1, "prune": 0}
    assert [a["type"] for a in data["actions"]] == ["WaitForDevice", "RunCommand", "WriteFile",
                                                    "Drift"]
    blocked = data["actions"][1]
    assert blocked["requires_allow"] is True and blocked["provisional"] is True
    assert blocked["data_loss"].startswith("gpt table")
    assert data["noops"] == [{"kind": "mount", "target": "/storage", "reason": "mounted"}]
    json.dumps(data)


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.tools
def test_plan_apply_plan_under_root(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = [TUTORIAL, "--host", "server1", "--root", str(tmp_path), "--only", "module,fstab,boot"]
    rc, out, _ = run_cli(capsys, "plan", *args, "--detailed-exitcode")
    assert rc == 2 and "+ fstab /etc/fstab" in out
    rc, out, _ = run_cli(capsys, "apply", *args, "--json")
    report = json.loads(out)
    assert rc == 0 and report["changed"] and report["schema"] == "aoeprov.apply/1"
    assert {e["target"] for e in report["executed"]} >= {"/etc/fstab", "/etc/modules"}
    rc, out, _ = run_cli(capsys, "plan", *args, "--detailed-exitcode", "--json")
    assert rc == 0 and json.loads(out)["actions"] == []
    assert (tmp_path / "etc/systemd/system/remote-fs.target.wants/aoeprov-initiator.service"
            ).is_symlink()


def test_usage_error_exits_1_not_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """argparse's own exit 2 would read as "changes pending" to a script (converge.yml)."""
    with pytest.raises(SystemExit) as exc:
        main(["plan", TUTORIAL, "--root", str(tmp_path), "--detailed-exitcdoe"])
    assert exc.value.code == 1 and "unrecognized arguments" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["nonsense"])
    assert exc.value.code == 1


def test_missing_root_says_does_not_exist(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run_cli(capsys, "plan", TUTORIAL, "--host", "server1",
                         "--root", str(tmp_path / "nope"))
    assert rc == 1 and "does not exist" in err


def test_drift_only_plan_exits_0_blocked_plan_exits_1(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """2 only when apply would carry something out; a blocked plan is an error with its reason."""
    from aoeprov.cli import plan as plan_cli

    drift = Drift(kind="module", target="aoe", op=Op.CHANGE, summary="reload required")
    blocked = RunCommand(kind="filesystem", target="/dev/x", op=Op.DESTROY, summary="wipe",
                         argv=("wipefs", "--all", "/dev/x"), requires_allow=True,
                         destructive=True, data_loss="an ext4 filesystem")
    assert plan_cli.exit_code(Plan("h", (), (drift,), ()), detailed=True) == 0
    assert plan_cli.exit_code(Plan("h", (), (drift, blocked), ()), detailed=True) == 1
    assert "would lose: an ext4 filesystem" in capsys.readouterr().err
    assert plan_cli.exit_code(Plan("h", (), (blocked,), ()), detailed=False) == 1
    write = WriteFile(kind="fstab", target="/etc/fstab", op=Op.CHANGE, summary="s", content="")
    assert plan_cli.exit_code(Plan("h", (), (write, drift), ()), detailed=True) == 2
    assert plan_cli.exit_code(Plan("h", (), (write,), ()), detailed=False) == 0


def test_plan_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run_cli(capsys, "plan", TUTORIAL, "--host", "nobody", "--root", str(tmp_path))
    assert rc == 1 and "hosts: server2, server1" in err
    rc, _, err = run_cli(capsys, "plan", TUTORIAL, "--root", str(tmp_path), "--skip", "bogus")
    assert rc == 1 and "unknown resource kind(s) bogus" in err


def test_facts_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/fstab").write_text("proc /proc proc defaults 0 0\n")
    rc, out, _ = run_cli(capsys, "facts", "--root", str(tmp_path), "--only", "fstab,boot",
                         "--json")
    data = json.loads(out)
    assert rc == 0 and data["facts"]["fstab"] == {"content": "proc /proc proc defaults 0 0\n"}
    assert data["facts"]["boot"]["unit"] is None and data["errors"] == {}


def fake_sysfs(root: Path) -> Path:
    for name, size, state in (("e0.10", "41943040", "up"), ("e0.2", "2048", "down,closewait")):
        d = root / f"etherd!{name}"
        d.mkdir(parents=True)
        for attr, value in (("size", size), ("netif", "eth0"), ("payload", "1024"),
                            ("state", state), ("mac", "525400123456")):
            (d / attr).write_text(value + "\n")
    (root / "loop0").mkdir()
    return root


def test_stat_reads_sysfs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    devs = stat_cli.read_devices(fake_sysfs(tmp_path))
    assert [d.device for d in devs] == ["e0.2", "e0.10"]
    assert devs[1].size == 41943040 * 512 and devs[1].macs == ("52:54:00:12:34:56",)
    table = stat_cli.format_table(devs)
    assert "e0.10" in table and "21.475GB" in table and "down,closewait" in table
    args = type("A", (), {"json": True, "no_probe": False, "timeout": 0.1})()
    asked: list[str] = []

    def asker(dev: stat_cli.AoeDeviceStat, timeout: float) -> stat_cli.AoeDeviceStat:
        asked.append(dev.device)
        return stat_cli.replace(dev, answers="no", detail="timed out")

    assert stat_cli.run(args, tmp_path, asker) == 0
    data = json.loads(capsys.readouterr().out)
    assert asked == ["e0.2", "e0.10"] and data["devices"][0]["answers"] == "no"


def test_stat_unknown_without_interface() -> None:
    dev = stat_cli.AoeDeviceStat("e0.1", 1, (), 1024, "up")
    assert stat_cli.ask_target(dev, 0.1).answers == "unknown"


def test_rc_local_duplicates_commented_out_with_prune(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The tutorial's rc.local: reported by line number, then commented out by apply --prune,
    atomically, keeping its mode and every other byte; nothing is deleted."""
    rc = tmp_path / "etc/rc.local"
    rc.parent.mkdir()
    text = b"#!/bin/sh -e\naoe-discover\nsleep 5\nmount -a\nlogger \xe9t\xe9\nexit 0\n"
    rc.write_bytes(text)
    rc.chmod(0o755)
    args = [TUTORIAL, "--host", "server1", "--root", str(tmp_path), "--only", "boot"]
    code, out, _ = run_cli(capsys, "plan", *args, "--detailed-exitcode")
    assert code == 2 and "- boot /etc/rc.local:2: line 2 `aoe-discover`" in out
    assert rc.read_bytes() == text
    code, _, _ = run_cli(capsys, "apply", *args, "--prune")
    assert code == 0
    lines = rc.read_bytes().split(b"\n")
    assert lines[0] == b"#!/bin/sh -e" and lines[4:] == [b"logger \xe9t\xe9", b"exit 0", b""]
    assert all(line.startswith(b"# disabled by aoeprov") for line in lines[1:4])
    assert lines[1].endswith(b": aoe-discover") and rc.stat().st_mode & 0o777 == 0o755
    code, out, _ = run_cli(capsys, "plan", *args, "--prune", "--detailed-exitcode")
    assert code == 0, out


def test_a_host_deleted_from_the_spec_is_pruned(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """server1 left the spec: without --prune that is an error saying --prune removes what
    aoeprov set up there; with it, its fstab line goes and the hand-written lines stay."""
    import yaml

    doc = yaml.safe_load(Path(TUTORIAL).read_text())
    for key in ("exports", "disks", "partitions", "filesystems", "mounts"):
        doc.pop(key)
    doc["hosts"] = [h for h in doc["hosts"] if h["name"] != "server1"]
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(doc))
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/fstab").write_text("proc /proc proc defaults 0 0\n/dev/etherd/e0.1p1 /storage "
                                    "ext3 defaults,_netdev,x-aoeprov 0 0\n")
    args = [str(spec), "--host", "server1", "--root", str(root), "--only", "fstab,boot"]
    code, _, err = run_cli(capsys, "plan", *args)
    assert code == 1 and "the spec has no host 'server1'" in err and "--prune" in err
    code, out, _ = run_cli(capsys, "apply", *args, "--prune")
    assert code == 0, out
    assert (root / "etc/fstab").read_text() == "proc /proc proc defaults 0 0\n"
