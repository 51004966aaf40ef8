"""A boot whose inputs did not change replays the last full boot (osbuilder.node.replay):
the same files, modes and owners as a full boot, its commands run again; any changed
input, a refused config or a one-time password means a full boot; a record of any other
shape is refused."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from osbuilder.node import agent_cli, replay
from osbuilder.node.paths import AgentPaths
from tests.unit.test_agent_boot import node, paths_code

KEY = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHx0Vq0hX3tIo2k2uXl8cDqY7hTq7bS4m7d0qT2p3xYz "
       "osb@x")


def config(tmp_path: Path) -> dict[str, Any]:
    """A config that makes every kind of step: files, removals, folders, a link (k3s's
    unit), commands, unit restarts (not started: the root is not /)."""
    return {"hostname": "n1", "ssh_authorized_keys": [KEY],
            "write_files": [{"path": "/etc/motd.d/x", "content": "hi\n",
                             "permissions": "0640"}],
            "init_cmd": [f"echo init >> {tmp_path}/cmds"],
            "boot_cmd": [f"echo boot >> {tmp_path}/cmds"],
            "k3os": {"password": "pw", "labels": {"a": "b"}, "token": "t",
                     "sysctl": {"vm.swappiness": "10"}, "modules": ["br_netfilter"],
                     "dns_nameservers": ["1.1.1.1"], "ntp_servers": ["pool.ntp.org"]}}


class Node:
    """A node root whose /etc is rebuilt at each boot from the image's, as the tmpfs
    layer is; /var and the boot partition stay."""

    def __init__(self, tmp_path: Path, cfg: dict[str, Any] | str) -> None:
        self.paths = node(tmp_path, cfg)
        self.image_etc = tmp_path / "image-etc"
        shutil.copytree(self.paths.root / "etc", self.image_etc, symlinks=True)

    def boot(self, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, dict[str, Any]]:
        etc = self.paths.root / "etc"
        shutil.rmtree(etc)
        shutil.copytree(self.image_etc, etc, symlinks=True)
        rc = agent_cli.boot_command(self.paths)
        state = json.loads(self.paths.state_file.read_text())
        return rc, capsys.readouterr().out, state

    def tree(self) -> dict[str, tuple[int, bytes | str | None]]:
        """Every file under the root (not the records that say when a boot ran)."""
        out: dict[str, tuple[int, bytes | str | None]] = {}
        skip = {self.paths.state_file, replay.record_path(self.paths)}
        for dirpath, dirnames, filenames in os.walk(self.paths.root):
            for name in dirnames + filenames:
                p = Path(dirpath, name)
                if p in skip:
                    continue
                data = (os.readlink(p) if p.is_symlink()
                        else p.read_bytes() if p.is_file() else None)
                out[str(p.relative_to(self.paths.root))] = (p.lstat().st_mode, data)
        return out


def test_a_boot_with_nothing_changed_does_what_the_full_boot_did(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    n = Node(tmp_path, config(tmp_path))
    rc, first, state = n.boot(capsys)
    assert rc == 0 and "replayed" not in state, first
    full = n.tree()
    rec = replay.record_path(n.paths)
    # it holds the password's hash and the token, as the last good config does
    assert rec.stat().st_mode & 0o777 == 0o600
    assert b'"format": 1' in rec.read_bytes()

    rc, again, state = n.boot(capsys)
    assert rc == 0 and state["replayed"] is True, again
    assert "judging the config" not in again
    assert n.tree() == full
    # the same console lines, the same state record (but for when and how long)
    applied = [ln for ln in first.splitlines() if "applied config" in ln]
    assert applied and applied == [ln for ln in again.splitlines() if "applied config" in ln]
    assert state["hostname"] == "n1" and state["k3s_unit"] == "k3s.service"
    assert state["result"] == "applied" and state["errors"] == []
    # commands run at every boot, as k3OS runs them
    assert (tmp_path / "cmds").read_text() == "init\nboot\ninit\nboot\n"
    assert (n.paths.root / "etc/rancher/k3s/config.yaml").stat().st_mode & 0o777 == 0o600


def _edit_boot_config(n: Node) -> None:
    p = n.paths.boot_dir / "config.yaml"
    p.write_text(p.read_text().replace("n1", "n2"))


def _add_config_d(n: Node) -> None:
    (n.paths.boot_dir / "config.d").mkdir()
    (n.paths.boot_dir / "config.d/10-more.yaml").write_text("k3os: {labels: {c: d}}\n")


def _k3os_local(n: Node) -> None:
    p = n.paths.root / "var/lib/rancher/k3os/config.yaml"
    p.parent.mkdir(parents=True)
    p.write_text("k3os: {labels: {c: d}}\n")


def _cmdline(n: Node) -> None:
    n.paths.cmdline.write_text("ro k3os.token=other")


def _image(n: Node) -> None:  # an upgrade: another image
    p = n.paths.root / "usr/lib/os-release"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text('IMAGE_VERSION="2"\n')


def _image_accounts(n: Node) -> None:
    with (n.image_etc / "passwd").open("a") as f:
        f.write("extra:x:1500:1500::/home/extra:/bin/sh\n")


def _chosen_password(n: Node) -> None:  # osbuilder-save-password kept one
    (n.paths.state_dir / "local-password.json").write_text('{"hash": "$6$x$y"}\n')


def _hostname_state(n: Node) -> None:
    (n.paths.root / "var/lib/osbuilder/hostname").write_text("other\n")


def _user_data(n: Node) -> None:
    n.paths.user_data.write_text("hostname: n3\n")


@pytest.mark.parametrize("change", [
    _edit_boot_config, _add_config_d, _k3os_local, _cmdline, _image, _image_accounts,
    _chosen_password, _hostname_state, _user_data])
def test_any_changed_input_means_a_full_boot(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], change: Any) -> None:
    n = Node(tmp_path, {"hostname": "n1", "k3os": {"password": "pw"}})
    n.boot(capsys)
    change(n)
    rc, out, state = n.boot(capsys)
    assert "changed since the last boot: judging the config" in out, out
    assert "replayed" not in state and rc == 0
    # and that boot is kept in its turn
    rc, out, state = n.boot(capsys)
    assert state.get("replayed") is True, out


def test_the_facts_are_inputs(tmp_path: Path) -> None:
    """Another network interface (a USB adapter, another board with the same card) can
    match another `nodes:` entry."""
    paths = node(tmp_path, {"hostname": "n1"})
    sys_root = tmp_path / "sys-root"
    eth = sys_root / "sys/class/net/eth0"
    (eth / "device").mkdir(parents=True)
    (eth / "address").write_text("52:54:00:ab:cd:ef\n")
    before = replay.snapshot(paths, sys_root)
    assert before[("file", str(eth / "address"))] != replay.ABSENT
    (sys_root / "sys/class/net/eth1/device").mkdir(parents=True)
    after = replay.snapshot(paths, sys_root)
    assert before[("dir", str(sys_root / "sys/class/net"))] != \
        after[("dir", str(sys_root / "sys/class/net"))]
    (eth / "address").write_text("52:54:00:00:00:01\n")
    assert replay.snapshot(paths, sys_root)[("file", str(eth / "address"))] != \
        before[("file", str(eth / "address"))]


def test_a_refused_config_drops_the_record(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    n = Node(tmp_path, {"hostname": "n1", "k3os": {"password": "pw"}})
    n.boot(capsys)
    assert replay.record_path(n.paths).is_file()
    good = (n.paths.boot_dir / "config.yaml").read_text()
    (n.paths.boot_dir / "config.yaml").write_text("hostname: n2\nk3os: {labels: [red]}\n")
    rc, out, state = n.boot(capsys)
    assert rc == 1 and "config error at k3os.labels" in out
    assert not replay.record_path(n.paths).exists()
    (n.paths.boot_dir / "config.yaml").write_text(good)
    rc, out, state = n.boot(capsys)  # in full: there is no record
    assert rc == 0 and "replayed" not in state and "judging" not in out


def test_a_one_time_password_is_never_replayed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """first_login shows a new one at each boot until someone logs in."""
    from osbuilder.node import first_login

    shown: list[str] = []
    monkeypatch.setattr(first_login, "show_on_consoles", lambda root: shown.append)
    n = Node(tmp_path, {"hostname": "n1"})
    n.boot(capsys)
    n.boot(capsys)
    assert len(shown) == 2 and shown[0] != shown[1]
    assert not replay.record_path(n.paths).exists()


def _reads(paths: AgentPaths) -> set[str]:
    """Every file and folder a full boot reads, as Python's audit hooks see them (PEP 578:
    "open", "os.listdir", "os.scandir"), but for the comparisons of write_atomic (a file it
    then writes), what the boot reads after writing it, and the replay's own digests."""
    got: set[str] = set()
    written: set[str] = set()
    active = [True]

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if active[0] and event == "os.rename":  # write_atomic's os.replace
            written.add(os.path.abspath(args[1]))
        if not active[0] or event not in ("open", "os.listdir", "os.scandir"):
            return
        path = args[0]
        if not isinstance(path, (str, Path)):
            return
        if event == "open":
            mode, flags = args[1], args[2]
            if (mode is not None and any(c in mode for c in "wax+")) or (
                    mode is None and (flags & (os.O_WRONLY | os.O_RDWR | os.O_DIRECTORY))):
                return
        frame = sys._getframe(1)
        while frame is not None:
            if (frame.f_code.co_name == "_same"
                    or frame.f_globals.get("__name__") == replay.__name__):
                return
            frame = frame.f_back  # type: ignore[assignment]
        if os.path.abspath(path) not in written:
            got.add(os.path.abspath(path))

    sys.addaudithook(hook)  # cannot be removed: switched off below
    try:
        agent_cli.full_boot(paths)
    finally:
        active[0] = False
    return got


def test_the_inputs_are_everything_a_full_boot_reads(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The record is only as good as its inputs: a file the boot reads but the record does
    not name would be missed when it changes."""
    cfg = config(tmp_path)
    cfg["init_cmd"] = cfg["boot_cmd"] = []
    n = Node(tmp_path, cfg)
    n.boot(capsys)  # the first boot: judged by the validator, caches written
    (n.paths.boot_dir / "config.d").mkdir()
    (n.paths.boot_dir / "config.d/10-more.yaml").write_text("k3os: {labels: {c: d}}\n")
    n.paths.user_data.write_text("hostname: n3\n")
    reads = _reads(n.paths)
    named = {str(p) for _, p in replay.inputs(n.paths)}
    mine = {r for r in reads if r.startswith((str(tmp_path), "/sys/", "/proc/"))}
    assert (tmp_path / "boot/config.d/10-more.yaml").as_posix() in mine
    assert mine - named == set()


@pytest.mark.parametrize("commands, loaded", [
    ([], "loaded:"),
    # a command runs through run(): subprocess and logging, still no model
    (["true"], "loaded: logging subprocess"),
])
def test_a_replayed_boot_loads_neither_the_parser_nor_the_model(
        tmp_path: Path, commands: list[str], loaded: str) -> None:
    """What the replay saves: PyYAML, the config model, the appliers, the validator, and
    dataclasses (inspect, ast: 1.4 s of a boot under emulation) and logging (0.5 s) up to
    the readiness sent to systemd, and the status line after it none of those; measured in
    a process of its own, as the node runs `boot`."""
    paths = node(tmp_path, {"hostname": "n1", "k3os": {"password": "pw"},
                            "boot_cmd": commands})
    code = ("import sys\n"
            "before = set(sys.modules)\n"
            "from osbuilder.node import agent_cli, sd_notify\n"
            "ready = []  # what was loaded when systemd was told\n"
            "sd_notify.notify_ready = lambda *a: ready.append(set(sys.modules)) or False\n"
            + paths_code(paths) +
            "agent_cli.run_guarded('osbuilder-agent', lambda: agent_cli.boot_command(paths),\n"
            "                      False, log=False)\n"
            "print('loaded:', *sorted(m for m in ready[0] - before if m in (\n"
            "    'yaml', 'osbuilder.shared.nodeconfig.model', 'osbuilder.node.configure',\n"
            "    'dataclasses', 'inspect', 'logging', 'subprocess', 'jsonschema')))\n"
            # the status line after the readiness, beside the units that start then
            "print('status line:', *sorted(m for m in set(sys.modules) - before if m in (\n"
            "    'dataclasses', 'inspect', 'uuid', 'osbuilder.shared.efi_sig')))\n")
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True).stdout for _ in range(2)]
    assert "yaml" in runs[0]  # the first boot: in full
    assert json.loads(paths.state_file.read_text())["replayed"] is True, runs[1]
    *_, ready, status_line = runs[1].strip().splitlines()
    assert ready == loaded, runs[1]
    assert "osbuilder-agent: status slot=" in runs[1]
    assert status_line == "status line:", runs[1]


def test_the_agents_code_is_an_input(tmp_path: Path) -> None:
    """On a node the agent runs from agent-modules.zip: its table of contents (each
    module's CRC-32 and size) changes with any module, so another build runs in full."""
    import zipfile

    def build(content: bytes) -> Path:
        z = tmp_path / "agent-modules.zip"
        with zipfile.ZipFile(z, "w") as f:
            f.writestr("osbuilder/__init__.py", "")
            f.writestr("osbuilder/node/applier.py", content)
        return z

    one = replay.digest("zip", build(b"x = 1\n"))
    assert one == replay.digest("zip", build(b"x = 1\n"))
    assert one != replay.digest("zip", build(b"x = 2\n"))
    (tmp_path / "cut.zip").write_bytes(build(b"x = 1\n").read_bytes()[:-30])
    assert replay.digest("zip", tmp_path / "cut.zip").startswith("error")
    # run from a zip, the agent names it among its inputs
    z = tmp_path / "code.zip"
    with zipfile.PyZipFile(str(z), "w") as f:
        f.writepy(str(Path(replay.__file__).parents[1]))
    out = subprocess.run([sys.executable, "-I", "-c",
                          f"import sys; sys.path.insert(0, {str(z)!r}); "
                          "from osbuilder.node import replay; print(replay.code_archive())"],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == str(z)


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                    lambda c: st.lists(c, max_size=6) | st.dictionaries(st.text(max_size=6),
                                                                        c, max_size=6),
                    max_leaves=40)
# steps of the kinds a record has, with arguments of any shape
STEPS = st.lists(st.tuples(st.sampled_from([*replay.OPS, *replay.KINDS]),
                           st.lists(JSON, max_size=6)).map(lambda t: [t[0], *t[1]]),
                 max_size=6)


@settings(max_examples=300, deadline=None)
@given(JSON | STEPS, st.sampled_from(["inputs", "ops", "both"]))
def test_a_record_of_any_other_shape_is_refused(value: Any, where: str) -> None:
    """The record is a file on the data partition: read as hostile. Any shape but the
    one `keep` writes is None (a full boot), never an exception."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        paths = AgentPaths(state_dir=Path(d))
        good_input = ["file", "/etc/passwd", ["absent"]]
        rec: dict[str, Any] = {"format": 1, "inputs": [good_input], "ops": []}
        if where in ("inputs", "both"):
            rec["inputs"] = value
        if where in ("ops", "both"):
            rec["ops"] = value
        replay.record_path(paths).write_text(json.dumps(rec))
        got = replay.load(paths)
        if got is not None:
            entries, ops = got
            assert all(e[0] in replay.KINDS for e in entries)
            assert all(op[0] in replay.OPS for op in ops)


def test_an_input_is_read_without_blocking_or_without_end(tmp_path: Path) -> None:
    """A record names what the boot reads: one naming a FIFO, a device or a path with a
    NUL must not hold up or stop the boot."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert replay.digest("file", fifo).startswith("not a file")  # no writer: no wait
    assert replay.digest("file", Path("/dev/zero")).startswith("not a file")
    assert replay.digest("file", tmp_path) == "error 21"  # EISDIR
    assert replay.digest("file", Path("/x\0y")) == "error path"
    assert replay.digest("dir", Path("/x\0y")) == "error path"
    assert replay.digest("exists", Path("/x\0y")) == "no"
    assert replay.changed([["file", str(fifo), ["absent"]]]) == str(fifo)


def test_ops_are_checked_for_their_arguments() -> None:
    assert replay._valid_op(["write", "/x", "aGk=", 0o644, 0, 0])
    assert not replay._valid_op(["write", "/x", "aGk=", 0o644, 0])  # one short
    assert not replay._valid_op(["write", "/x", "aGk=", 0o17777, 0, 0])  # no such mode
    assert not replay._valid_op(["write", "/x", "aGk=", True, 0, 0])  # a bool is no mode
    assert not replay._valid_op(["commands", "init_cmd", [["sh", 1]], {}])
    assert not replay._valid_op(["activate", "n1", ["a"], 1, False])
    assert not replay._valid_op(["exec", "/bin/sh"])


def test_a_boot_config_in_yaml_survives_the_round_trip(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """write_files' binary content (base64 in the record) comes back byte for byte."""
    data = bytes(range(256))
    import base64

    cfg = {"k3os": {"password": "pw"}, "write_files": [
        {"path": "/etc/blob", "encoding": "b64", "content": base64.b64encode(data).decode()}]}
    n = Node(tmp_path, yaml.safe_dump(cfg))
    n.boot(capsys)
    _, out, state = n.boot(capsys)
    assert state.get("replayed") is True, out
    assert (n.paths.root / "etc/blob").read_bytes() == data
