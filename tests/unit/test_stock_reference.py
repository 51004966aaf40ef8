"""The stock Debian references of `make bench` (tests/helpers/stock_debian.py): plain
minbase, and minbase with the services osbuilder's image starts before its login prompt.
The figures split by them are only as good as what each image holds."""

from __future__ import annotations

from pathlib import Path

from bench.boot_compare import figures
from bench.boots import Boot
from osbuilder.host.boards import load_board
from tests.helpers.stock_debian import (
    SERVICES,
    SERVICES_CUSTOMIZE,
    mmdebstrap_argv,
    root_spec,
)


def included(argv: list[str]) -> set[str]:
    return set(next(a for a in argv if a.startswith("--include=")).split("=", 1)[1].split(","))


def test_the_services_reference_adds_the_services_and_nothing_else() -> None:
    board = load_board("qemu-amd64")
    plain = mmdebstrap_argv(board, root_spec(board), Path("out.tar"))
    with_services = mmdebstrap_argv(board, root_spec(board), Path("out.tar"), services=True)
    assert included(plain) | set(SERVICES) == included(with_services)
    assert not included(plain) & set(SERVICES)
    hooks = [a for a in with_services if a.startswith("--customize-hook=")]
    n = len(SERVICES_CUSTOMIZE)
    assert [h for h in plain if h.startswith("--customize-hook=")] == hooks[:len(hooks) - n]
    added = "\n".join(hooks[-n:])
    # DHCP on the wired links by systemd-networkd, as osbuilder's nodes; each machine
    # makes its own sshd host keys at its first boot
    assert "Name=en* eth*" in added and "DHCP=yes" in added
    assert "enable systemd-networkd.service" in added and "ssh_host_*" in added


def test_figures_with_the_services_reference() -> None:
    runs = {"stock1": [Boot(30.0)], "stock2": [Boot(28.0)],
            "services1": [Boot(40.0), Boot(36.0)], "services2": [Boot(32.0)],
            "osb1": [Boot(45.0, 36.0)], "osb2": [Boot(40.0, 33.0)]}
    fig = figures(runs)
    assert fig["services_login_first_s"] == 36.0  # the best of the rounds
    assert fig["ratio_services_first"] == 1.2 and fig["ratio_login_first_vs_services"] == 1.25
    assert fig["ratio_login_second_vs_services"] == 1.25 and fig["ratio_login_first"] == 1.5
    del runs["services1"], runs["services2"]
    assert "services_login_first_s" not in figures(runs)
