"""No traceback from any command-line path: every subcommand of `osbuilder` and
`osbuilder-agent`, given bad arguments, ends with one clear line and its documented exit
code (osbuilder.shared.errors.ExitCode). Run as a user would (subprocesses); the agent's
subcommands are only ever given arguments its parser refuses, so nothing acts on this host.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from osbuilder.host.cli import build_parser as host_parser
from osbuilder.node.agent_cli import build_parser as agent_parser
from osbuilder.shared.errors import EXIT_CODES, ExitCode

AGENT = [sys.executable, "-c", "import sys; from osbuilder.node.agent_cli import main; "
                               "sys.exit(main())"]
HOST = [sys.executable, "-m", "osbuilder"]


def run(argv: list[str], *args: str, env: dict[str, str] | None = None,
        stdin: str = "") -> subprocess.CompletedProcess[str]:
    r = subprocess.run([*argv, *args], capture_output=True, text=True, timeout=120,
                       env=env, input=stdin)
    assert "Traceback" not in r.stderr + r.stdout, r.stderr
    assert r.returncode in [int(c) for c in EXIT_CODES]
    return r


def subcommands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
                ) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every leaf subcommand (keys init, publish ami, ...) with its parser."""
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                if sub.prog.endswith(name):  # aliases point at the same parser
                    out += subcommands(sub, (*prefix, name)) or [((*prefix, name), sub)]
    return out


HOST_COMMANDS = subcommands(host_parser())
AGENT_COMMANDS = subcommands(agent_parser())


def test_every_subcommand_is_walked() -> None:
    assert {" ".join(c) for c, _ in HOST_COMMANDS} == {
        "build", "show-config", "keys init", "keys check", "run", "flash", "publish ami",
        "serve-pxe", "boards", "show-board", "validate-board", "validate-config", "schema"}
    assert {" ".join(c) for c, _ in AGENT_COMMANDS} == {
        "boot", "online", "run-cmd", "status", "validate-config", "upgrade", "rollback",
        "mark-good", "health-gate", "grow-data", "save-password", "install", "migrate-k3os",
        "bootloader", "controller", "watch-node", "config"}


@pytest.mark.parametrize(("argv", "command"),
                         [(HOST, c) for c, _ in HOST_COMMANDS]
                         + [(AGENT, c) for c, _ in AGENT_COMMANDS],
                         ids=lambda x: x if isinstance(x, str) else " ".join(x)
                         if isinstance(x, tuple) else "")
def test_unknown_option_is_a_usage_error(argv: list[str], command: tuple[str, ...]) -> None:
    r = run(argv, *command, "--no-such-option")
    assert r.returncode == ExitCode.USAGE
    # a command with required arguments names those first, else the unknown option
    assert ("error: unrecognized arguments: --no-such-option" in r.stderr
            or "error: the following arguments are required" in r.stderr), r.stderr


@pytest.mark.parametrize("command", [c for c, p in HOST_COMMANDS if any(
    a.required or (not a.option_strings and a.nargs is None) for a in p._actions
    if a.dest not in ("help", "verbose"))], ids=" ".join)
def test_missing_arguments_are_a_usage_error(command: tuple[str, ...]) -> None:
    r = run(HOST, *command)
    assert r.returncode == ExitCode.USAGE and "the following arguments are required" in r.stderr


@pytest.mark.parametrize("args", [
    ("flash", "NOPE.img", "/dev/null"), ("run", "NOPE.img"), ("validate-config", "NOPE.yaml"),
    ("validate-board", "NOPE.yaml"), ("show-board", "NOPE.yaml"), ("serve-pxe", "NOPE"),
    ("publish", "ami", "--region", "r", "--bucket", "b", "NOPE.img"), ("keys", "check", "NOPE"),
    ("keys", "init", "NOPE/ca.cert.pem/x", "--ca-dir", "NOPE"),
    ("build", "--config", "NOPE.yaml"), ("show-config", "--keys", "NOPE"),
], ids=" ".join)
def test_missing_files_are_bad_input(args: tuple[str, ...], tmp_path: Path) -> None:
    r = run(HOST, *(a.replace("NOPE", str(tmp_path / "nope")) for a in args))
    assert r.returncode == ExitCode.BAD_INPUT, r.stderr
    assert r.stderr.startswith("osbuilder: error: ") and "nope" in r.stderr
    assert len(r.stderr.strip().splitlines()) <= 3


def test_agent_bad_input_and_version(tmp_path: Path) -> None:
    r = run(AGENT, "validate-config", str(tmp_path / "nope.yaml"))
    assert r.returncode == ExitCode.BAD_INPUT and "cannot read it" in r.stderr
    r = run(AGENT, "--version")
    assert r.returncode == 0 and r.stdout.startswith("osbuilder-agent 0.")
    r = run(AGENT, "bootloader", "frobnicate", "a")  # RAUC's backend, a bad operation
    assert r.returncode == ExitCode.USAGE and "usage: get-primary |" in r.stderr
    r = run(AGENT, "stauts")
    assert r.returncode == ExitCode.USAGE and "did you mean 'status'?" in r.stderr
    cfg = tmp_path / "open.yaml"
    cfg.write_text("hostname: a\n")
    r = run(AGENT, "validate", str(cfg), "-v")  # the old name, and -v after the command
    assert r.returncode == 0 and "warning" in r.stderr and "no SSH keys" in r.stderr


def test_the_issues_reproducers(tmp_path: Path) -> None:
    env = dict(os.environ, SOURCE_DATE_EPOCH="yesterday")
    r = run(HOST, "show-config", env=env)
    assert r.returncode == ExitCode.BAD_INPUT
    assert "SOURCE_DATE_EPOCH='yesterday': expected seconds since 1970" in r.stderr
    r = run(HOST, "serve-pxe", str(tmp_path), "--port", "80000")
    assert r.returncode == ExitCode.USAGE
    keys = tmp_path / "keys.pem"
    keys.write_text("x")
    r = run(HOST, "keys", "init", str(keys))
    assert r.returncode == ExitCode.BAD_INPUT and "is not a folder" in r.stderr
    img = tmp_path / "osbuilder-ec2-amd64-1.0.0.img"
    img.write_bytes(b"\0" * 4096)
    (tmp_path / "osbuilder-ec2-amd64-1.0.0.ami.json").write_text(json.dumps({
        "board": "ec2-amd64", "version": "1.0.0", "architecture": "x86_64",
        "boot_mode": "uefi", "image": img.name, "size_bytes": 4096}))
    env = dict(os.environ, AWS_PROFILE="osb-test-no-such-profile",
               AWS_CONFIG_FILE=str(tmp_path / "none"),
               AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"))
    r = run(HOST, "publish", "ami", "--region", "eu-west-1", "--bucket", "b", str(img),
            env=env)
    assert r.returncode == ExitCode.BAD_INPUT
    assert "osb-test-no-such-profile" in r.stderr and "could not be found" in r.stderr


def test_conventions_version_did_you_mean_and_flags_anywhere() -> None:
    r = run(HOST, "--version")
    assert r.returncode == 0 and r.stdout.startswith("osbuilder 0.")
    r = run(HOST, "buidl")
    assert r.returncode == ExitCode.USAGE and "did you mean 'build'?" in r.stderr
    r = run(HOST, "show-board", "qemu-amd46")
    assert r.returncode == ExitCode.BAD_INPUT and "did you mean 'qemu-amd64'?" in r.stderr
    r = run(HOST, "build", "--format", "imgg")
    assert r.returncode == ExitCode.USAGE and "did you mean 'img'?" in r.stderr
    r = run(HOST, "validate-board", "qemu-amd64", "-v")
    assert r.returncode == 0 and r.stdout.startswith("qemu-amd64: ok (qemu-amd64, amd64")
    for argv in (HOST, AGENT):
        r = run(argv, "--help")
        assert "exit codes:" in r.stdout and "130 interrupted" in " ".join(r.stdout.split())


def wait_until_reading_stdin(pid: int, timeout: float = 60) -> None:
    """Block until the process sits in read(2) on its stdin pipe: a fixed sleep raced a slow
    start under load (the signal came before Python was reading). /proc/PID/syscall holds the
    syscall number, then its arguments (x86_64: read is 0; /dev/stdin is reopened as a new fd)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        fields = Path(f"/proc/{pid}/syscall").read_text().split()
        if fields[0] == "0" and os.readlink(f"/proc/{pid}/fd/{int(fields[1], 16)}").startswith(
                "pipe:"):
            return
        time.sleep(0.05)
    raise AssertionError(f"process {pid} never read its stdin within {timeout} s")


def test_interrupt_is_one_line_and_130() -> None:
    """Ctrl-C while a command waits (here for its config on a pipe)."""
    # a run started in the background (`cmd &`) inherits SIGINT ignored, and Python then
    # installs no handler: give the child the default, as a terminal's Ctrl-C finds it
    proc = subprocess.Popen([*HOST, "validate-config", "/dev/stdin"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    wait_until_reading_stdin(proc.pid)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == ExitCode.INTERRUPTED
    assert err == "osbuilder: interrupted\n"
