"""`k3s_args` as k3OS takes them (an argv handed to k3s unchanged: `--flag=value`, the split
form `--flag`, `value`, short flags such as `-t`, a leading `server` or `agent`), turned into
k3s config-file settings, each flag checked against the flags of the embedded k3s
(k3s_flags.json beside this file, with where it came from). A flag k3s does not know, or one
its role does not take, is refused with the item's key path."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from typing import Any

from osbuilder.shared.errors import ConfigError
from osbuilder.shared.package_data import read_beside

FLAGS_FILE = "k3s_flags.json"
ROLES = ("server", "agent")
# values k3s's boolean flags take in `--flag=value` form (urfave/cli's strconv.ParseBool)
TRUE = ("1", "t", "T", "TRUE", "true", "True")
FALSE = ("0", "f", "F", "FALSE", "false", "False")


@dataclass(frozen=True)
class Flag:
    name: str
    value: bool  # takes a value (else a boolean)
    repeatable: bool  # a StringSlice: values accumulate (a YAML list in config.yaml)
    roles: tuple[str, ...]


@cache
def flags() -> dict[str, Flag]:
    """Every name a flag answers to (long and short) -> the flag."""
    data = json.loads(read_beside(__spec__, FLAGS_FILE))
    out: dict[str, Flag] = {}
    for f in data["flags"]:
        flag = Flag(f["name"], f["value"], f["repeatable"], tuple(f["roles"]))
        for name in (f["name"], *f["aliases"]):
            out[name] = flag
    return out


def split_role(args: tuple[str, ...]) -> tuple[str | None, tuple[str, ...]]:
    """k3OS: a leading `server` or `agent` chooses the role."""
    if args and args[0] in ROLES:
        return args[0], args[1:]
    return None, args


def to_config(args: tuple[str, ...], role: str, key: str = "k3os.k3s_args",
              offset: int = 0) -> dict[str, Any]:
    """k3s config-file settings from an argv of flags; `offset` is the index of args[0]
    in the user's list (after a leading role word)."""
    known = flags()
    out: dict[str, Any] = {}
    i = 0
    while i < len(args):
        where = f"{key}[{i + offset}]"
        item = args[i]
        if not item.startswith("-") or item in ("-", "--"):
            raise ConfigError(where, f"{item!r} is not a flag: k3s {role} takes no other "
                                     "words (a leading `server` or `agent` picks the role)")
        name, eq, value = item.lstrip("-").partition("=")
        flag = known.get(name)
        if flag is None:
            hint = " (a flag and its value are two items, or one as --flag=value)" \
                if " " in item else ""
            raise ConfigError(where, f"{item.split('=')[0]!r} is not a flag of k3s {role}{hint}")
        if role not in flag.roles:
            raise ConfigError(where, f"--{flag.name} is a flag of k3s "
                                     f"{' and '.join(flag.roles)}, not of k3s {role}")
        if flag.value:
            if not eq:
                if i + 1 >= len(args):
                    raise ConfigError(where, f"--{flag.name} needs a value (the next item, "
                                             "or --flag=value)")
                i += 1
                value = args[i]
            val: Any = value
        elif eq:
            if value not in TRUE + FALSE:
                raise ConfigError(where, f"--{flag.name} is on or off: {value!r} is neither "
                                         "(true or false)")
            val = value in TRUE
        else:
            val = True
        if flag.repeatable:
            out.setdefault(flag.name, []).append(val)
        else:
            out[flag.name] = val  # as on k3s's command line: the last one wins
        i += 1
    return out
