"""The console installer: plain questions when no install.device is configured.

Reads answers line by line from a text stream (the console; tests feed stdin), asks again
on a bad answer, and returns None when the input ends or the user declines.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from typing import Any, TextIO

from osbuilder.node.install.disks import Disk


@dataclass(frozen=True)
class Answers:
    device: str
    password: str | None
    server_url: str | None  # None: a k3s server
    token: str | None

    def config(self) -> dict[str, Any]:
        """The k3os: block these answers set (merged over the live config)."""
        block: dict[str, Any] = {"install": {"device": self.device}}
        if self.password:
            block["password"] = self.password
        if self.server_url:
            block["server_url"] = self.server_url
        if self.token:
            block["token"] = self.token
        return {"k3os": block}


class Ended(Exception):
    """The input ended (EOF) before every question was answered."""


class Console:
    def __init__(self, inp: TextIO, out: TextIO) -> None:
        self.inp, self.out = inp, out

    def ask(self, prompt: str, secret: bool = False) -> str:
        if secret and self.inp.isatty():
            return getpass.getpass(prompt, stream=self.out)
        self.out.write(prompt)
        self.out.flush()
        line = self.inp.readline()
        if not line:
            raise Ended
        return line.strip()

    def say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()


def choose_disk(c: Console, disks: list[Disk]) -> str:
    c.say("Disks:")
    for i, d in enumerate(disks, 1):
        c.say(f"  {i}) {d.describe()}" + ("  (in use)" if d.mounted else ""))
    while True:
        a = c.ask(f"Install to which disk? [1-{len(disks)}]: ")
        if a.isdigit() and 1 <= int(a) <= len(disks):
            return disks[int(a) - 1].path
        if a in [d.path for d in disks]:
            return a
        c.say(f"  please answer a number from 1 to {len(disks)}")


def choose_password(c: Console) -> str | None:
    while True:
        pw = c.ask("Password for user osb (empty: SSH keys only): ", secret=True)
        if not pw:
            return None
        if c.ask("Repeat the password: ", secret=True) == pw:
            return pw
        c.say("  the passwords differ, again")


def choose_role(c: Console) -> tuple[str | None, str | None]:
    """(server_url, token): (None, token or None) for a server."""
    while True:
        a = c.ask("Run k3s as (1) server or (2) agent joining a server? [1]: ") or "1"
        if a in ("1", "server", "2", "agent"):
            break
        c.say("  please answer 1 or 2")
    if a in ("1", "server"):
        token = c.ask("Cluster token (empty: k3s makes one): ")
        return None, token or None
    while True:
        url = c.ask("Server URL (https://host:6443): ")
        if url.startswith("https://") and len(url) > len("https://"):
            break
        c.say("  the URL must start with https://")
    while True:
        token = c.ask("Cluster token: ")
        if token:
            return url, token
        c.say("  an agent needs the server's token")


def ask(inp: TextIO, out: TextIO, disks: list[Disk]) -> Answers | None:
    """All questions in order; None if the input ended or the user did not confirm."""
    c = Console(inp, out)
    c.say("osbuilder installer: installs this system onto a disk, erasing the disk.")
    if not disks:
        c.say("No disk found to install to.")
        return None
    try:
        device = choose_disk(c, disks)
        password = choose_password(c)
        server_url, token = choose_role(c)
        ok = c.ask(f"Erase {device} and install? [y/N]: ").lower() in ("y", "yes")
    except Ended:
        c.say("\ninput ended: nothing installed")
        return None
    if not ok:
        c.say("nothing installed")
        return None
    return Answers(device, password, server_url, token)


def confirm(inp: TextIO, out: TextIO, device: str) -> bool:
    """install.silent off: one question before a configured disk is erased."""
    c = Console(inp, out)
    try:
        return c.ask(f"osbuilder: erase {device} and install? [y/N]: ").lower() in ("y", "yes")
    except Ended:
        return False
