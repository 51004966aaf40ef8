"""osbuilder.node.sd_notify against a real AF_UNIX datagram socket, as systemd's manager
listens for it. The protocol is sd_notify(3)'s (NOTES): one datagram with the state string
as payload to the socket $NOTIFY_SOCKET names; a first character "@" means Linux's
abstract namespace."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from osbuilder.node.sd_notify import notify_ready


def listener(address: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(address)
    s.settimeout(5)
    return s


def test_ready_reaches_a_socket_named_by_path(tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    with listener(path) as s:
        assert notify_ready({"NOTIFY_SOCKET": path}) is True
        assert s.recv(4096) == b"READY=1"


def test_ready_reaches_an_abstract_socket() -> None:
    name = f"osbuilder-test-notify-{os.getpid()}"
    with listener("\0" + name) as s:
        assert notify_ready({"NOTIFY_SOCKET": "@" + name}) is True
        assert s.recv(4096) == b"READY=1"


@pytest.mark.parametrize("value", [None, "", "relative/notify", "vsock:2:1234"])
def test_nothing_is_sent_without_a_unix_socket_to_send_to(value: str | None) -> None:
    """A run by hand or a test has no NOTIFY_SOCKET; other address kinds (sd_notify(3)
    also knows vsock) are never given to a system service."""
    assert notify_ready({} if value is None else {"NOTIFY_SOCKET": value}) is False


def test_a_socket_that_is_gone_is_an_oserror(tmp_path: Path) -> None:
    """The caller warns and goes on; systemd fails the unit when the agent exits."""
    with pytest.raises(OSError):
        notify_ready({"NOTIFY_SOCKET": str(tmp_path / "gone")})
