"""Checks and quoting of user values that end up inside generated files. Each error
names the config key, since that is what the user has to fix."""

from __future__ import annotations

import re

from osbuilder.shared.errors import OsbError

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def one_line(value: str, key: str) -> str:
    # A newline would smuggle a second setting into the file that the config does not show.
    if "\n" in value or "\r" in value:
        raise OsbError(f"{key}: must be a single line")
    return value


def server_list(values: tuple[str, ...], key: str) -> str:
    """Space-separated list for a systemd setting; a blank or space would split a name."""
    for i, v in enumerate(values):
        if not v or any(c.isspace() for c in v):
            raise OsbError(f"{key}[{i}]: {v!r} is not a host name or address")
    return " ".join(values)


def ip_address(value: str, key: str) -> str:
    # imported here: only a config with static addresses needs it, and every boot pays
    # for each import under emulation
    import ipaddress

    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise OsbError(f"{key}: {value!r} is not an IP address") from None


def ip_interface(value: str, key: str) -> str:
    """An address with its prefix length, as networkd's Address= wants."""
    if "/" not in value:
        raise OsbError(f"{key}: {value!r} needs a prefix length, e.g. 192.168.1.10/24")
    import ipaddress

    try:
        return str(ipaddress.ip_interface(value))
    except ValueError:
        raise OsbError(f"{key}: {value!r} is not an address in CIDR form") from None


def env_line(name: str, value: str, key: str) -> str:
    """NAME='value' that systemd's EnvironmentFile= and /bin/sh both read back verbatim."""
    if not ENV_NAME.match(name):
        raise OsbError(f"{key}.{name}: not a valid environment variable name")
    one_line(value, f"{key}.{name}")
    if "'" not in value:
        return f"{name}='{value}'\n"
    # Inside double quotes both systemd and sh honour these backslash escapes.
    escaped = re.sub(r'([\\"$`])', r"\\\1", value)
    return f'{name}="{escaped}"\n'
