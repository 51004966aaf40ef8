"""Users and groups a config may name (write_files owners): the node's own /etc/passwd and
/etc/group, or, on the workstation, the accounts every osbuilder image has."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from osbuilder.shared.errors import OsbError

# Debian's base-passwd (fixed ids), the systemd and OpenSSH system users of the base
# package set, and our default user (sysusers.d/osbuilder.conf). The integration build
# test checks that a built image has every one of them.
IMAGE_USERS = (
    "root", "daemon", "bin", "sys", "sync", "games", "man", "lp", "mail", "news", "uucp",
    "proxy", "www-data", "backup", "list", "irc", "_apt", "nobody", "systemd-network",
    "systemd-timesync", "systemd-resolve", "messagebus", "sshd", "osb", "rancher",
)
IMAGE_GROUPS = (
    "root", "daemon", "bin", "sys", "adm", "tty", "disk", "lp", "mail", "news", "uucp", "man",
    "proxy", "kmem", "dialout", "fax", "voice", "cdrom", "floppy", "tape", "sudo", "audio",
    "dip", "www-data", "backup", "operator", "list", "irc", "src", "shadow", "utmp", "video",
    "sasl", "plugdev", "staff", "games", "users", "nogroup", "systemd-journal",
    "systemd-network", "systemd-timesync", "systemd-resolve", "messagebus", "input", "kvm",
    "render", "clock", "_ssh", "osb", "rancher",
)


@dataclass(frozen=True)
class Accounts:
    """name -> (uid, primary gid) and name -> gid; ids are 0 where only names are known."""

    users: dict[str, tuple[int, int]]
    groups: dict[str, int]

    @classmethod
    def image(cls) -> Accounts:
        return cls({u: (0, 0) for u in IMAGE_USERS}, dict.fromkeys(IMAGE_GROUPS, 0))

    @classmethod
    def of_root(cls, root: Path) -> Accounts:
        users = {r[0]: (int(r[2]), int(r[3])) for r in _table(root, "passwd")
                 if len(r) > 3 and r[2].isdigit() and r[3].isdigit()}
        groups = {r[0]: int(r[2]) for r in _table(root, "group") if len(r) > 2 and r[2].isdigit()}
        return cls(users, groups)

    def lookup(self, owner: str) -> tuple[int, int]:
        """(uid, gid) of "user[:group]" (names or numbers). A user without a group gets
        its primary group; an unlisted numeric user without a group gets the group of the
        same number (user-private groups)."""
        user, _, group = owner.partition(":")
        if user.isdigit():
            uid = int(user)
            primary = next((g for u, g in self.users.values() if u == uid), uid)
        elif user in self.users:
            uid, primary = self.users[user]
        else:
            raise OsbError(f"owner {owner!r}: no user {user!r} in /etc/passwd")
        if not group:
            return uid, primary
        if group.isdigit():
            return uid, int(group)
        if group not in self.groups:
            raise OsbError(f"owner {owner!r}: no group {group!r} in /etc/group")
        return uid, self.groups[group]


def _table(root: Path, name: str) -> list[list[str]]:
    try:
        text = (root / "etc" / name).read_text(errors="replace")
    except OSError:
        return []
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]
