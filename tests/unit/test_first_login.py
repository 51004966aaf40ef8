"""A way in for a node whose config gives none: a one-time password shown on the console
(not on stdout), stored hashed, expired so the first login picks a new one, which is kept
across reboots; a config password or SSH keys take precedence."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from osbuilder.node import first_login
from osbuilder.node.paths import AgentPaths
from osbuilder.shared.nodeconfig.appliers import users
from osbuilder.shared.nodeconfig.model import parse
from tests.unit.test_apply_fs import make_root, mode
from tests.unit.test_apply_users import FACTS, shadow

IMAGE_SHADOW = "root:*:19700:0:99999:7:::\nosb:!:19700:0:99999:7:::\n"
OTP = re.compile(r"one-time password for user osb:  ([a-z2-9]{4}(?:-[a-z2-9]{4}){3})\n")


@pytest.fixture
def ph() -> Any:
    return pytest.importorskip("passlib.hash", reason="python3-passlib not installed here")


@pytest.fixture
def node(tmp_path: Path) -> AgentPaths:
    root = make_root(tmp_path / "root")
    return AgentPaths(root=root, state_dir=root / "var/lib/osbuilder")


def boot(paths: AgentPaths, cfg_data: dict[str, Any], new: bool = True
         ) -> tuple[str | None, list[str]]:
    """What `osbuilder-agent boot` does: apply (users), then first_login.ensure."""
    cfg = parse(cfg_data)
    users.apply(cfg, FACTS, paths.root)
    shown: list[str] = []
    return first_login.ensure(paths, cfg, shown.append, new=new), shown


def test_no_way_in_gets_a_one_time_password(node: AgentPaths, ph: Any,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    note, shown = boot(node, {"hostname": "x"})
    [text] = shown
    m = OTP.search(text)
    assert m, text
    password = m.group(1)
    assert note == "osb: a one-time password was shown on the local console"
    assert password not in (note or "") and capsys.readouterr() == ("", "")  # not stdout
    f = shadow(node.root)["osb"]
    assert ph.sha512_crypt.verify(password, f[1]) and f[2] == "0"  # expired: must change
    record = node.state_dir / "local-password.json"
    assert mode(record) == 0o600 and password not in record.read_text()
    # the next boot shows a new one, and the old one stops working
    _, [again] = boot(node, {"hostname": "x"})
    second = OTP.search(again)
    assert second and second.group(1) != password
    assert not ph.sha512_crypt.verify(password, shadow(node.root)["osb"][1])
    # `online` applying the config again keeps this boot's password and shows nothing
    before = shadow(node.root)["osb"][1]
    assert boot(node, {"hostname": "x"}, new=False) == (None, [])
    assert shadow(node.root)["osb"][1] == before and shadow(node.root)["osb"][2] == "0"


def test_the_password_chosen_at_first_login_is_kept(node: AgentPaths, ph: Any) -> None:
    boot(node, {})
    cfg = parse({})
    assert first_login.save(node, cfg) is None  # not changed yet (still expired)
    chosen = ph.sha512_crypt.using(rounds=5000).hash("my own password")
    text = (node.root / "etc/shadow").read_text()
    (node.root / "etc/shadow").write_text(re.sub(r"^osb:[^:]*:0:", f"osb:{chosen}:20100:",
                                                 text, flags=re.M))  # what passwd writes
    assert first_login.save(node, cfg) == "osb: kept the password chosen on this node"
    (node.root / "etc/shadow").write_text(IMAGE_SHADOW)  # reboot: /etc is the image's again
    note, shown = boot(node, {})  # the chosen password put back
    assert shown == [] and note == "osb: the password chosen at the first login"
    assert shadow(node.root)["osb"][1:3] == [chosen, "19700"]
    # SSH keys added later: the console password stays
    assert boot(node, {"ssh_authorized_keys": ["ssh-ed25519 AAAA x"]})[1] == []
    assert shadow(node.root)["osb"][1] == chosen


def test_a_password_that_arrives_later_is_not_expired(node: AgentPaths, ph: Any) -> None:
    """A diskless PXE node: `boot` finds no password and shows a one-time one (expired);
    `online` then applies the config_url config, which sets a password: logging in with
    it must not demand a new one (tests/e2e/test_pxe_qemu_amd64.py logs in with it)."""
    boot(node, {})
    assert shadow(node.root)["osb"][2] == "0"
    assert boot(node, {"k3os": {"password": "from-config-url"}}, new=False) == (None, [])
    f = shadow(node.root)["osb"]
    assert ph.sha512_crypt.verify("from-config-url", f[1]) and f[2] == ""


def test_a_config_password_or_keys_means_no_one_time_password(node: AgentPaths) -> None:
    assert boot(node, {"ssh_authorized_keys": ["ssh-ed25519 AAAA x"]}) == (None, [])
    assert shadow(node.root)["osb"][1] == "!"  # locked: keys only
    crypt = "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiB" \
            "FdcbYEdFCoEOfaS35inz1"
    assert boot(node, {"k3os": {"password": crypt}}) == (None, [])
    assert shadow(node.root)["osb"][1] == crypt
    assert not (node.state_dir / "local-password.json").exists()


def test_console_devices_are_the_kernels_active_consoles(tmp_path: Path) -> None:
    assert first_login.console_devices(tmp_path) == [tmp_path / "dev/console"]
    (tmp_path / "sys/class/tty/console").mkdir(parents=True)
    (tmp_path / "sys/class/tty/console/active").write_text("tty0 ttyS0\n")
    assert first_login.console_devices(tmp_path) == [tmp_path / "dev/tty0",
                                                     tmp_path / "dev/ttyS0"]
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev/ttyS0").write_text("")
    first_login.show_on_consoles(tmp_path)("a\nb\n")  # tty0 is absent: skipped
    assert (tmp_path / "dev/ttyS0").read_bytes() == b"a\r\nb\r\n"
