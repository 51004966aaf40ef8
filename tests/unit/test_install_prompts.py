"""The console installer, fed answers on stdin as a user would type them."""

from __future__ import annotations

import io

from osbuilder.node.install.disks import Disk
from osbuilder.node.install.prompts import Answers, ask, confirm

DISKS = [Disk("/dev/vda", 20 * 10**9, "QEMU HARDDISK", (), ()),
         Disk("/dev/sda", 64 * 10**9, "USB stick", ("/dev/sda1 on /run/osbuilder/medium",),
              ("/dev/sda1",))]


def run_ask(typed: str) -> tuple[Answers | None, str]:
    out = io.StringIO()
    return ask(io.StringIO(typed), out, DISKS), out.getvalue()


def test_server_with_password() -> None:
    answers, shown = run_ask("1\npw1\npw1\n\n\ny\n")
    assert answers == Answers("/dev/vda", "pw1", None, None)
    assert "1) /dev/vda  20.0 GB  QEMU HARDDISK" in shown
    assert "2) /dev/sda  64.0 GB  USB stick  (in use)" in shown
    assert answers.config() == {"k3os": {"install": {"device": "/dev/vda"},
                                         "password": "pw1"}}


def test_agent_asks_again_on_bad_answers() -> None:
    typed = ("9\nvda\n/dev/vda\n"          # out of range, unknown name, then a path
             "a\nb\nc\nc\n"                 # passwords differ, then match
             "3\n2\n"                       # no such role, then agent
             "http://x:6443\nhttps://10.0.0.1:6443\n\nK10tok\n"
             "yes\n")
    answers, shown = run_ask(typed)
    assert answers == Answers("/dev/vda", "c", "https://10.0.0.1:6443", "K10tok")
    assert shown.count("please answer a number from 1 to 2") == 2
    assert "the passwords differ" in shown and "please answer 1 or 2" in shown
    assert "must start with https://" in shown and "needs the server's token" in shown
    assert answers.config()["k3os"]["server_url"] == "https://10.0.0.1:6443"


def test_no_password_server_token_and_decline() -> None:
    answers, _ = run_ask("2\n\n1\nsecret-token\nn\n")
    assert answers is None
    answers, _ = run_ask("2\n\n1\nsecret-token\ny\n")
    assert answers == Answers("/dev/sda", None, None, "secret-token")
    assert "password" not in answers.config()["k3os"]


def test_input_ending_installs_nothing() -> None:
    answers, shown = run_ask("1\npw\n")
    assert answers is None
    assert "input ended: nothing installed" in shown


def test_no_disks() -> None:
    out = io.StringIO()
    assert ask(io.StringIO("1\n"), out, []) is None
    assert "No disk found" in out.getvalue()


def test_confirm() -> None:
    out = io.StringIO()
    assert confirm(io.StringIO("y\n"), out, "/dev/vda")
    assert "erase /dev/vda and install? [y/N]" in out.getvalue()
    assert not confirm(io.StringIO("\n"), io.StringIO(), "/dev/vda")
    assert not confirm(io.StringIO(""), io.StringIO(), "/dev/vda")
