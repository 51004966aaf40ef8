"""The login prompt waits for less: logins open before the network is up (SSH sessions
still end before it at shutdown), sysinit.target no longer waits for systemd-resolved and
systemd-timesyncd, and the units the prompt does not need get a small CPU share at startup.

The unit below is Debian trixie's systemd-user-sessions.service (systemd 257, read from
/usr/lib/systemd/system in the qemu-amd64 image built here). Every getty is ordered after
it (units/getty@.service.in, serial-getty@.service.in: After=systemd-user-sessions.service).
Upstream added network.target to its After= in commit 8c85680 for systemd issue 2390, so
that logind's session scopes, ordered after it (src/login/logind-session.c,
session_start_scope), stop before the network: stop order is the inverse of start order
(systemd.unit(5), Before=/After=). A node has no pam_systemd, so no session scopes; its
osbuilder-ssh-sessions.service ends SSH sessions at shutdown instead, as Debian's
openssh-server README.Debian advises for systems without it (its example
ssh-session-cleanup.service). OpenSSH 9.8 moved sessions into sshd-session, which
setproctitle()s itself "sshd-session: user@pts/N" (or "user@notty"), its privileged
monitor "sshd-session: user [priv]", the listener "sshd: /usr/sbin/sshd -D [listener] ..."
(openssh-portable sshd-session.c and sshd.c); tests/e2e/test_agent_qemu_amd64.py checks
the real sshd's names through a real session.

systemd-resolved.service and systemd-timesyncd.service below are excerpts of trixie's (the
same image): their [Unit] order lines as shipped, and ExecStart=; their Before=sysinit.target
is what the copies drop. time-set.target: timesyncd
sets the clock forward to its saved time before it (systemd-timesyncd.service(8)), so the
units that speak TLS order themselves after it. StartupCPUWeight= applies while the
system starts up, CPUWeight= (default 100) afterwards (systemd.resource-control(5)); an
empty assignment resets a setting (systemd.unit(5)), here through systemctl set-property.
"""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from osbuilder.host.stages.units import (
    BACKGROUND_AT_STARTUP,
    DROPIN,
    ORDER_OVERRIDES,
    SHARE_RESET,
    STARTUP_WEIGHT,
    USER_SESSIONS,
    override_note,
    without_order,
    write_order_overrides,
    write_startup_weights,
)
from tests.helpers.shipped_units import UNITS_DIR, unit_keys

TRIXIE_UNIT = """\
#  SPDX-License-Identifier: LGPL-2.1-or-later
#
#  This file is part of systemd.

[Unit]
Description=Permit User Sessions
Documentation=man:systemd-user-sessions.service(8)
After=remote-fs.target nss-user-lookup.target network.target home.mount

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/lib/systemd/systemd-user-sessions start
ExecStop=/usr/lib/systemd/systemd-user-sessions stop
"""
TRIXIE_RESOLVED_UNIT = """\
[Unit]
Description=Network Name Resolution
DefaultDependencies=no
After=systemd-sysctl.service systemd-sysusers.service
Before=sysinit.target network.target nss-lookup.target shutdown.target initrd-switch-root.target
Conflicts=shutdown.target initrd-switch-root.target
Wants=nss-lookup.target

[Service]
ExecStart=!!/usr/lib/systemd/systemd-resolved
"""
TRIXIE_TIMESYNCD_UNIT = """\
[Unit]
Description=Network Time Synchronization
DefaultDependencies=no
After=systemd-sysusers.service
Before=time-set.target sysinit.target shutdown.target
Conflicts=shutdown.target
Wants=time-set.target

[Service]
ExecStart=!!/usr/lib/systemd/systemd-timesyncd
"""


def without_network_order(unit: str) -> str | None:
    return without_order(unit, "After", "network.target")


def test_debian_unit_loses_network_target_and_nothing_else() -> None:
    out = without_network_order(TRIXIE_UNIT)
    assert out == TRIXIE_UNIT.replace(
        "After=remote-fs.target nss-user-lookup.target network.target home.mount",
        "After=remote-fs.target nss-user-lookup.target home.mount")


def test_an_after_line_naming_only_network_target_goes() -> None:
    assert without_network_order("[Unit]\nAfter=network.target\nAfter=a.target\n") \
        == "[Unit]\nAfter=a.target\n"
    assert without_network_order("[Unit]\nAfter = network.target b.service") \
        == "[Unit]\nAfter=b.service\n"


def test_nothing_to_change_gives_none() -> None:
    assert without_network_order("[Unit]\nAfter=remote-fs.target\n") is None
    # a name that only starts like it, or another key, is not the order
    assert without_network_order("[Unit]\nAfter=network.target.wants\n") is None
    assert without_network_order("[Unit]\nWants=network.target\n") is None
    assert without_network_order("") is None


@given(st.lists(st.sampled_from(["[Unit]", "After=", "Before=", "Wants=", "network.target",
                                 "sysinit.target", " ", "a.target", "#", "=", "\n", "\t"]),
                max_size=40).map("".join),
       st.sampled_from([(key, target) for _, key, target in ORDER_OVERRIDES]))
def test_any_unit_text_keeps_every_line_but_the_order(text: str, order: tuple[str, str]) -> None:
    key, target = order

    def is_the_order(line: str) -> bool:
        k, sep, value = line.partition("=")
        return bool(sep) and k.strip() == key and target in value.split()

    out = without_order(text, key, target)
    if out is None:
        assert not any(is_the_order(line) for line in text.splitlines())
        return
    assert not any(is_the_order(line) for line in out.splitlines())
    # every other line is kept, in order
    kept = [line for line in text.splitlines() if not is_the_order(line)]
    assert [line for line in out.splitlines() if line in kept] == kept


def test_override_is_written_to_etc_from_the_package_unit(tmp_path: Path) -> None:
    (tmp_path / "usr/lib/systemd/system").mkdir(parents=True)
    (tmp_path / "etc/systemd/system").mkdir(parents=True)
    (tmp_path / "usr/lib/systemd/system" / USER_SESSIONS).write_text(TRIXIE_UNIT)
    write_order_overrides(tmp_path)
    text = (tmp_path / "etc/systemd/system" / USER_SESSIONS).read_text()
    assert text.startswith(override_note("After", "network.target") + "\n")
    assert "\nAfter=remote-fs.target nss-user-lookup.target home.mount\n" in text
    assert "ExecStart=/usr/lib/systemd/systemd-user-sessions start\n" in text
    # the package's file itself is left as it was
    assert (tmp_path / "usr/lib/systemd/system" / USER_SESSIONS).read_text() == TRIXIE_UNIT


def test_no_override_without_the_unit_or_without_the_order(tmp_path: Path) -> None:
    (tmp_path / "etc/systemd/system").mkdir(parents=True)
    write_order_overrides(tmp_path)
    (tmp_path / "lib/systemd/system").mkdir(parents=True)
    (tmp_path / "lib/systemd/system" / USER_SESSIONS).write_text("[Unit]\nAfter=a.target\n")
    write_order_overrides(tmp_path)
    assert not (tmp_path / "etc/systemd/system" / USER_SESSIONS).exists()


def test_resolved_and_timesyncd_lose_sysinit_target_and_nothing_else(tmp_path: Path) -> None:
    assert ("systemd-resolved.service", "Before", "sysinit.target") in ORDER_OVERRIDES
    assert ("systemd-timesyncd.service", "Before", "sysinit.target") in ORDER_OVERRIDES
    (tmp_path / "lib/systemd/system").mkdir(parents=True)  # usrmerge's other spelling
    (tmp_path / "etc/systemd/system").mkdir(parents=True)
    for name, text in (("systemd-resolved.service", TRIXIE_RESOLVED_UNIT),
                       ("systemd-timesyncd.service", TRIXIE_TIMESYNCD_UNIT)):
        (tmp_path / "lib/systemd/system" / name).write_text(text)
    write_order_overrides(tmp_path)
    resolved = (tmp_path / "etc/systemd/system/systemd-resolved.service").read_text()
    assert resolved == override_note("Before", "sysinit.target") + "\n" + \
        TRIXIE_RESOLVED_UNIT.replace("Before=sysinit.target network.target",
                                     "Before=network.target")
    timesyncd = (tmp_path / "etc/systemd/system/systemd-timesyncd.service").read_text()
    # still before time-set.target, which the TLS units wait for
    assert "\nBefore=time-set.target shutdown.target\n" in timesyncd
    assert "sysinit.target" not in timesyncd.replace(override_note("Before", "sysinit.target"), "")


def test_units_that_speak_tls_wait_for_the_clock_set_forward() -> None:
    for name in ("k3s.service", "k3s-agent.service", "osbuilder-online.service"):
        assert "time-set.target" in " ".join(unit_keys(name)["After"]).split(), name


def test_background_units_get_a_small_share_at_startup_only(tmp_path: Path) -> None:
    assert {"systemd-resolved.service", "systemd-timesyncd.service",
            "systemd-networkd.service"} <= set(BACKGROUND_AT_STARTUP)
    # nothing the prompt waits for: the agent, udev, journald, the gettys
    assert not {u for u in BACKGROUND_AT_STARTUP
                if "udev" in u or "getty" in u or "journald" in u or "osbuilder" in u}
    assert 1 <= STARTUP_WEIGHT < 100
    units = tmp_path / "usr/lib/systemd/system"
    units.mkdir(parents=True)
    (units / "systemd-resolved.service").write_text(TRIXIE_RESOLVED_UNIT)
    assert write_startup_weights(tmp_path)  # SHARE_RESET written, for apply_presets to enable
    dropin = (units / "systemd-resolved.service.d" / DROPIN).read_text()
    assert f"\n[Service]\nStartupCPUWeight={STARTUP_WEIGHT}\n" in dropin
    assert "\nCPUWeight" not in dropin  # after startup: the default again
    # a unit the image does not have gets no drop-in (it would be an empty unit's)
    assert not (units / "systemd-logind.service.d").exists()
    # systemd 257 kept the startup weight after startup: SHARE_RESET, enabled, resets it
    # once the gettys are up, for the units the image has
    reset = (units / SHARE_RESET).read_text()
    assert "\nAfter=getty.target\n" in reset and "\nType=oneshot\n" in reset
    assert re.findall(r"^ExecStart=(.*)$", reset, re.M) == [
        "/usr/bin/systemctl set-property --runtime systemd-resolved.service StartupCPUWeight="]
    # enabled by `systemctl enable` (apply_presets) through its [Install] section; the
    # link it makes is read from the built image in test_build_qemu_amd64
    assert reset.endswith("\n[Install]\nWantedBy=multi-user.target\n")
    assert write_startup_weights(tmp_path)  # again (a cached stage rerun): no error
    assert (units / SHARE_RESET).read_text() == reset
    # none of the units: no reset unit (a oneshot without ExecStart= would not load)
    bare = tmp_path / "bare"
    assert not write_startup_weights(bare)
    assert not bare.exists()


def test_ssh_sessions_unit_ends_sessions_after_the_network_is_ordered() -> None:
    keys = unit_keys("osbuilder-ssh-sessions.service")
    assert keys["After"] == ["network.target"]
    assert keys["WantedBy"] == ["multi-user.target"] and keys["RemainAfterExit"] == ["yes"]
    assert "ExecStart" not in keys  # started at boot without a process
    kill, wait = keys["ExecStop"]
    # pkill's and pidwait's extended regexes here mean the same in Python's re
    m = re.fullmatch(r'-/usr/bin/pkill --full "(.+)"', kill)
    assert m, kill
    sessions = re.compile(m.group(1))
    m = re.fullmatch(r'-/usr/bin/pidwait --full "(.+)"', wait)
    assert m, wait
    monitors = re.compile(m.group(1))
    for title in ("sshd-session: osb@pts/0", "sshd-session: root@notty",
                  "sshd: osb@pts/1"):  # OpenSSH before 9.8
        assert sessions.search(title) and not monitors.search(title), title
    for title in ("sshd-session: osb [priv]", "sshd: osb [priv]"):
        assert monitors.search(title) and not sessions.search(title), title
    for other in ("sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups",
                  "sshd-session: unknown [net]", "sshd: [accepted]", "-bash", "sleep 600",
                  "/usr/sbin/sshd -D", "ssh osb@node", "/usr/bin/pidwait --full ^sshd: x .priv."):
        assert not sessions.search(other) and not monitors.search(other), other
    assert keys["TimeoutStopSec"] == ["15s"]  # a stuck monitor holds up a reboot this long


def test_ssh_sessions_unit_is_enabled_by_the_preset() -> None:
    preset = (UNITS_DIR.parent / "system-preset/80-osbuilder.preset").read_text()
    assert "\nenable osbuilder-ssh-sessions.service\n" in preset
