"""`osbuilder-agent boot` end to end on a temp root: sources -> validation -> appliers,
fallback to the last good config, nothing half-applied, idempotent re-runs."""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from osbuilder.node.configure import boot
from osbuilder.node.paths import AgentPaths
from osbuilder.shared.nodeconfig.accounts import Accounts
from osbuilder.shared.nodeconfig.facts import Facts
from osbuilder.shared.nodeconfig.judged import BUILD_VERDICT, verdict_record
from osbuilder.shared.nodeconfig.loader import Verdict, judge
from tests.unit.test_apply_all import snapshot
from tests.unit.test_apply_fs import make_root

FACTS = Facts(macs=("52:54:00:ab:cd:ef",), wireless=(), serial=None, hostname=None)


def node(tmp_path: Path, config: dict[str, object] | str, cmdline: str = "") -> AgentPaths:
    root = make_root(tmp_path / "root")
    (tmp_path / "boot").mkdir(exist_ok=True)
    text = config if isinstance(config, str) else yaml.safe_dump(config)
    (tmp_path / "boot/config.yaml").write_text(text)
    (tmp_path / "cmdline").write_text(cmdline)
    return AgentPaths(root=root, cmdline=tmp_path / "cmdline", boot_dir=tmp_path / "boot",
                      image_default=tmp_path / "none.yaml", user_data=tmp_path / "none.txt",
                      instance_data=tmp_path / "none.json", state_dir=root / "var/lib/osbuilder")


def paths_code(paths: AgentPaths) -> str:
    """Python lines that make `paths` again as `paths`, in a process of its own."""
    fields = json.dumps({k: str(v) for k, v in vars(paths).items()})
    return ("import json; from pathlib import Path\n"
            "from osbuilder.node.paths import AgentPaths\n"
            f"paths = AgentPaths(**{{k: Path(v) for k, v in json.loads({fields!r}).items()}})\n")


def test_boot_applies_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths = node(tmp_path, {"hostname": "n1", "k3os": {"password": "pw", "labels": {"a": "b"}}},
                 cmdline="ro osb.slot=a k3os.token=from-cmdline")
    out = boot(paths, FACTS)
    assert out.errors == []
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line == (f"osbuilder-agent: applied config (sources=cmdline,{tmp_path}/boot/"
                    "config.yaml, role=server, hostname=n1)")
    k3s = yaml.safe_load((paths.root / "etc/rancher/k3s/config.yaml").read_text())
    assert k3s["token"] == "from-cmdline" and k3s["node-label"] == ["a=b"]
    assert (paths.root / "etc/hostname").read_text().strip() == "n1"
    state = json.loads(paths.state_file.read_text())
    assert state["result"] == "applied" and state["k3s_unit"] == "k3s.service"
    # the saved config holds password and token; the state record is for `status` (osb)
    assert paths.last_good.stat().st_mode & 0o777 == 0o600
    assert paths.state_file.stat().st_mode & 0o777 == 0o644


def test_unchanged_config_changes_nothing(tmp_path: Path) -> None:
    paths = node(tmp_path, {"hostname": "n1", "k3os": {"password": "pw"}})
    boot(paths, FACTS)

    def files() -> dict[str, object]:  # the state record says when it ran: it must change
        return {k: v for k, v in snapshot(paths.root).items()
                if k not in ("var/lib/osbuilder", "var/lib/osbuilder/agent-state.json")}

    before = files()
    boot(paths, FACTS)
    assert files() == before


@pytest.mark.parametrize("bad, where", [
    ("hostname: n2\nk3os: {labels: [red]}\n", "k3os.labels"),
    ("hostname: n2\nk3os:\n  wifi: [{name: x, passphrase: short}]\n", "k3os.wifi[0].passphrase"),
    ("hostname: n2\nk3os: [\n", "boot/config.yaml"),
])
def test_bad_config_keeps_last_good(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    bad: str, where: str) -> None:
    paths = node(tmp_path, {"hostname": "n1", "k3os": {"password": "pw"}})
    boot(paths, FACTS)
    shadow = (paths.root / "etc/shadow").read_text()
    capsys.readouterr()
    (tmp_path / "boot/config.yaml").write_text(bad)
    out = boot(paths, FACTS)
    printed = capsys.readouterr().out
    assert f"osbuilder-agent: config error at {where}: " in printed.replace(f"{tmp_path}/", "")
    assert "applied config (kept last good config)" in printed and "hostname=n1" in printed
    assert (paths.root / "etc/hostname").read_text().strip() == "n1"
    assert (paths.root / "etc/shadow").read_text() == shadow, "password kept"
    assert not (paths.root / "etc/wpa_supplicant").exists(), "nothing of the bad config"
    assert out.errors and json.loads(paths.state_file.read_text())["result"] == "error"


def test_first_boot_with_bad_config_uses_image_defaults(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    paths = node(tmp_path, "k3os: {labels: [x]}\n")
    boot(paths, FACTS)
    printed = capsys.readouterr().out
    assert "config error at k3os.labels: expected object, got list" in printed
    assert "sources=(image defaults), role=server, hostname=osb-abcdef" in printed


def test_online_fetches_config_url_caches_and_reapplies(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """config_url is served by a local HTTP server (stands in for the user's server)."""
    from osbuilder.node.configure import online
    from tests.unit.test_apply_fs import serve

    monkeypatch.setattr("osbuilder.node.configure.FIRST_RETRY_DELAY_S", 0.01)
    routes = {"/node.yaml": (200, b"hostname: from-url\nk3os: {labels: {src: url}}\n"),
              "/images/extra.tar": (200, b"image bytes")}
    with serve(routes) as (base, hits):
        image = {"url": f"{base}/images/extra.tar", "allow_http": True,
                 "sha256": hashlib.sha256(b"image bytes").hexdigest()}
        paths = node(tmp_path, {"k3os": {"config_url": {"url": f"{base}/node.yaml",
                                                        "allow_http": True},
                                         "airgap_images": [image]}})
        boot(paths, FACTS)
        assert (paths.root / "etc/hostname").read_text().strip() != "from-url"
        assert online(paths, FACTS) == []
        assert paths.config_url_cache.read_text().startswith("hostname: from-url")
        assert (paths.root / "etc/hostname").read_text().strip() == "from-url"
        images = paths.root / "var/lib/rancher/k3s/agent/images/extra.tar"
        assert images.read_bytes() == b"image bytes"
        n = len(hits)
        online(paths, FACTS)
        assert len(hits) == n + 1, "unchanged config_url: fetched, not re-applied; images kept"
    # the server is gone: the next boot uses the cached copy
    capsys.readouterr()
    boot(paths, FACTS)
    assert "sources=" in capsys.readouterr().out
    assert (paths.root / "etc/hostname").read_text().strip() == "from-url"
    warnings = online(paths, FACTS)
    assert warnings and "(after 5 tries) (using the cached copy)" in warnings[0]


def test_online_applies_user_data_that_arrived_after_boot(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """cloud-init fetches user-data once the network is up, after `boot` ran."""
    from osbuilder.node.configure import online

    paths = node(tmp_path, {"k3os": {"password": "pw"}})
    boot(paths, FACTS)
    assert online(paths, FACTS) == []
    assert "applying it" not in capsys.readouterr().out, "nothing changed: nothing re-applied"
    paths.user_data.write_text("hostname: from-user-data\n")
    online(paths, FACTS)
    assert "config changed since boot: applying it" in capsys.readouterr().out
    assert (paths.root / "etc/hostname").read_text().strip() == "from-user-data"


def test_ec2_key_pair_and_cloud_config_user_data(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """EC2: the launch key pair (cloud-init's instance-data) reaches osb; a #cloud-config
    gives its hostname and k3os: block to the agent, the rest stays cloud-init's."""
    paths = node(tmp_path, {"k3os": {"password": "pw"}})
    paths.instance_data.write_text('{"v1": {"public_ssh_keys": ["ssh-ed25519 AAAAC3Nz ec2"]}}')
    paths.user_data.write_text("#cloud-config\nhostname: ec2-7\nruncmd: [reboot]\n"
                               "k3os: {labels: {zone: eu-west-1a}}\n")
    out = boot(paths, FACTS)
    assert out.errors == []
    assert out.sources == [str(paths.boot_dir / "config.yaml"), str(paths.instance_data),
                           str(paths.user_data)]
    assert (paths.root / "etc/hostname").read_text().strip() == "ec2-7"
    keys = (paths.root / "home/osb/.ssh/authorized_keys").read_text()
    assert "ssh-ed25519 AAAAC3Nz ec2" in keys
    k3s = yaml.safe_load((paths.root / "etc/rancher/k3s/config.yaml").read_text())
    assert k3s["node-label"] == ["zone=eu-west-1a"]
    assert "hostname=ec2-7" in capsys.readouterr().out


def test_later_units_are_started_only_with_work_to_do(tmp_path: Path) -> None:
    """`boot` leaves the markers that osbuilder-online/-run-cmd.service are conditioned on:
    a plain config starts neither (each is a Python start at boot)."""
    paths = node(tmp_path / "plain", {"hostname": "n1", "k3os": {"password": "pw"}})
    boot(paths, FACTS)
    assert not paths.online_marker.exists() and not paths.run_cmd_marker.exists()

    paths = node(tmp_path / "work", {"k3os": {"config_url": "https://127.0.0.1:9/n.yaml"},
                                     "ssh_authorized_keys": ["github:someone"],
                                     "run_cmd": ["true"]})
    boot(paths, FACTS)
    assert paths.online_marker.read_text().split("\n")[:2] == ["config_url",
                                                               "ssh_authorized_keys"]
    assert paths.run_cmd_marker.is_file()

    # cloud-init on (the EC2 boards): user-data may arrive after boot, so `online` runs
    (paths.boot_dir / "config.yaml").write_text("hostname: n1\n")
    (paths.root / "etc/cloud/cloud-init.disabled").unlink()
    boot(paths, FACTS)
    assert paths.online_marker.read_text() == "cloud-init user-data\n"
    assert not paths.run_cmd_marker.exists(), "run_cmd gone from the config: marker removed"


def test_resolved_and_timesyncd_restart_only_for_their_servers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither waits for `boot` (osbuilder-boot.service starts them side by side): each is
    restarted when the config names its servers, so that it reads the drop-in `boot`
    wrote (the e2e server test checks timesyncd's servers in the VM)."""
    started: list[list[str]] = []
    monkeypatch.setattr("osbuilder.node.configure.start_units",
                        lambda root, hostname, units, *_: started.append(units))
    boot(node(tmp_path / "plain", {"hostname": "n1"}), FACTS)
    boot(node(tmp_path / "servers", {"k3os": {"ntp_servers": ["ntp.example.test"],
                                              "dns_nameservers": ["10.0.0.53"]}}), FACTS)
    assert started == [[], ["systemd-resolved.service", "systemd-timesyncd.service"]]


def test_boot_command_line_skips_the_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    """`osbuilder-agent boot` runs before every login prompt: it goes straight to the boot
    command (building the 18 sub-parsers cost seconds under emulation); any other
    argument list still goes through the parser."""
    from osbuilder.node import agent_cli

    ran: list[AgentPaths] = []
    parsers: list[int] = []
    real = agent_cli.build_parser

    def boot_command(paths: AgentPaths) -> int:
        ran.append(paths)
        return 1

    def build_parser() -> argparse.ArgumentParser:
        parsers.append(1)
        return real()

    monkeypatch.setattr(agent_cli, "boot_command", boot_command)
    monkeypatch.setattr(agent_cli, "build_parser", build_parser)
    assert agent_cli.main(["boot"]) == 1 and ran == [AgentPaths()] and parsers == []
    with pytest.raises(SystemExit) as exc:
        agent_cli.main(["boot", "--bogus"])
    assert exc.value.code == 2 and parsers == [1] and len(ran) == 1


def test_first_boot_takes_the_builds_verdict_without_the_validator(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The build judges the config it puts on the boot partition and writes its verdict
    beside it (stages/boot_partition.py): a first boot with that very config applies it
    without starting the validator, like every later boot with its last good config. Any
    change to the config, or another schema, and the node judges it itself."""
    from osbuilder.host.boards import load_board
    from osbuilder.host.stages.boot_partition import IMAGE_DEFAULT, write_first_boot_verdict
    from osbuilder.node import configure
    from osbuilder.shared.file_writes import write_json

    judged: list[dict[str, Any]] = []

    def spy(merged: dict[str, Any], sources: tuple[str, ...] = (),
            accounts: Accounts | None = None) -> Verdict:
        judged.append(merged)
        return judge(merged, sources, accounts)

    monkeypatch.setattr(configure, "judge", spy)
    # the build merges the image default the node reads
    assert Path("/") / IMAGE_DEFAULT == AgentPaths().image_default
    paths = node(tmp_path, {"hostname": "n1", "k3os": {"password": "pw"}})
    write_first_boot_verdict(load_board("qemu-amd64"), paths.boot_dir)  # as the build does
    record = json.loads((paths.boot_dir / BUILD_VERDICT).read_text())
    out = boot(paths, FACTS)
    assert out.errors == [] and judged == [], "the build's verdict was not taken"
    assert (paths.root / "etc/hostname").read_text().strip() == "n1"
    assert json.loads(paths.state_file.read_text())["judged_by"] == "build"
    assert json.loads(paths.last_good.read_text())["config"]["hostname"] == "n1"

    boot(paths, FACTS)  # the reboot: the node's own record now
    assert judged == [] and json.loads(paths.state_file.read_text())["judged_by"] == \
        "last good config"

    (tmp_path / "boot/config.yaml").write_text("hostname: n2\n")  # edited after the build
    boot(paths, FACTS)
    assert judged == [{"hostname": "n2"}]
    assert json.loads(paths.state_file.read_text())["judged_by"] == "validator"

    # a hostile record on the boot partition: too big to read, so the validator judges
    big = node(tmp_path / "big", {"hostname": "n1"})
    (big.boot_dir / BUILD_VERDICT).write_text("[" * 2_000_000)
    assert boot(big, FACTS).errors == [] and len(judged) == 2
    assert json.loads(big.state_file.read_text())["judged_by"] == "validator"

    # the same config as the build's, but a record made under another schema
    fresh = node(tmp_path / "other", {"hostname": "n1", "k3os": {"password": "pw"}})
    write_json(fresh.boot_dir / BUILD_VERDICT, {**record, "schema": "0" * 64})
    boot(fresh, FACTS)
    assert len(judged) == 3 and (fresh.root / "etc/hostname").read_text().strip() == "n1"


def test_the_build_gives_no_verdict_on_a_config_it_refuses(tmp_path: Path) -> None:
    from osbuilder.host.boards import load_board
    from osbuilder.host.stages.boot_partition import first_boot_verdict

    board = load_board("qemu-amd64")
    assert first_boot_verdict(board, tmp_path) == verdict_record({}), "no config: defaults"
    (tmp_path / "config.yaml").write_text("k3os: {labels: [x]}\n")
    assert first_boot_verdict(board, tmp_path) is None
    (tmp_path / "config.yaml").write_bytes(b"k3os: [\n")
    assert first_boot_verdict(board, tmp_path) is None


def test_boot_status_line_leaves_the_upgrade_code_unimported(tmp_path: Path) -> None:
    """The console's status line after `boot` needs no slot or upgrade facts; their
    modules (boot loaders, slot choosers) cost 1.3 s of an emulated boot's agent."""
    code = ("import sys; from pathlib import Path\n"
            "from osbuilder.node import agent_cli, status\n"
            "from osbuilder.node.paths import AgentPaths\n"
            f"s = status.gather(AgentPaths(state_dir=Path({str(tmp_path)!r})), upgrade=False)\n"
            "assert s.upgrade is None, s.upgrade\n"
            "print(sorted(m for m in sys.modules if m.startswith('osbuilder.node.upgrade')\n"
            "             or m == 'osbuilder.shared.nodeconfig.model'))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]", out  # nor the config model: `status` judges nothing


def test_boot_imports_only_what_it_uses(tmp_path: Path) -> None:
    """`boot` runs before the login prompt on every boot, where each module costs tens of
    milliseconds under emulation (docs/benchmarks.md): no parser, no temp-file or socket
    module, nothing only some configs need (random names, IP address checks). The
    boot measured is a second one: the first judged the config (the validator's imports)."""
    paths = node(tmp_path, {"hostname": "n1", "k3os": {"password": "pw"}})
    boot(paths, FACTS)
    (paths.root / "etc/hostname").unlink()
    code = ("import sys\n"
            "before = set(sys.modules)  # the interpreter's own start (site) is not boot's\n"
            "import osbuilder.node.agent_cli\n"
            "from osbuilder.node import configure\n"
            "from osbuilder.shared.nodeconfig.facts import Facts\n"
            + paths_code(paths) +
            "configure.boot(paths, Facts(('52:54:00:ab:cd:ef',), (), None, None),\n"
            "               commands=lambda *a: [])\n"
            "print('loaded:', *sorted(m for m in ('argparse', 'difflib', 'tempfile', 'shutil',\n"
            "    'socket', 'secrets', 'random', 'ipaddress', 'bz2', 'lzma', 'jsonschema')\n"
            "    if m in set(sys.modules) - before))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert (paths.root / "etc/hostname").read_text().strip() == "n1", out.stderr
    assert out.stdout.strip().splitlines()[-1] == "loaded:", out.stdout


def test_boot_is_ready_for_systemd_before_the_status_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """osbuilder-boot.service is Type=notify: the agent sends READY=1 (sd_notify(3)) once
    the config is applied, and only then imports and prints the console's status line,
    which nothing waits for."""
    import socket

    from osbuilder.node import agent_cli, status

    paths = node(tmp_path, {"hostname": "n1", "k3os": {"password": "pw"}})
    (paths.root / "etc/machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    address = str(tmp_path / "notify")
    received: list[bytes] = []
    real = status.gather

    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(address)
        s.setblocking(False)

        def gather(*args: Any, **kwargs: Any) -> status.Status:
            received.append(s.recv(4096))  # BlockingIOError: READY=1 not sent yet
            return real(*args, **kwargs)

        monkeypatch.setattr(status, "gather", gather)
        monkeypatch.setenv("NOTIFY_SOCKET", address)
        assert agent_cli.boot_command(paths) == 0
    out = capsys.readouterr().out
    assert received == [b"READY=1"], out
    assert "applied config" in out and "agent error" not in out, out
