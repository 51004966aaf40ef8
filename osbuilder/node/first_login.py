"""A way in for a node whose config gives none (the quick-start image has no config).

At boot, after the config was applied:
- the config sets a password: it is in force (the users applier); nothing here;
- else the password `osb` chose at a first login is put back (/etc is rebuilt every boot;
  the chosen hash is kept on /var, 0600);
- else, if the config has no SSH keys either, a new one-time password: random, shown
  once on the local consoles (written to the tty devices, never to stdout, so the
  journal never holds it), stored only as a sha512-crypt hash, and expired (shadow's
  last-change day 0, as `chage -d 0` sets it) so the first login must choose a new one.
  A reboot before anyone logged in shows a new one; the old one no longer works.
`save` (osbuilder-save-password.service, started by a path unit when /etc/shadow
changes) keeps the password chosen at that login.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from osbuilder.node.paths import AgentPaths
from osbuilder.shared import boot_journal
from osbuilder.shared.file_writes import read_json, write_json
from osbuilder.shared.login_access import has_way_in
from osbuilder.shared.nodeconfig.appliers.users import USER, password_hash, write_shadow
from osbuilder.shared.nodeconfig.model import NodeConfig

RECORD = "local-password.json"
# no 0/O, 1/l/I: read off a console and typed; 16 of 31 symbols: 79 bits
ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
GROUPS, GROUP_LEN = 4, 4

Show = Callable[[str], None]


def record_path(paths: AgentPaths) -> Path:
    return paths.state_dir / RECORD  # on /var: data, kept across boots and upgrades


def new_password() -> str:
    import secrets  # only when a password is made, not at every boot

    return "-".join("".join(secrets.choice(ALPHABET) for _ in range(GROUP_LEN))
                    for _ in range(GROUPS))


def crypt(password: str) -> str:
    return password_hash(password, None)


def shadow_fields(text: str, user: str) -> list[str] | None:
    for line in text.splitlines():
        f = line.split(":")
        if f[0] == user and len(f) > 2:
            return f
    return None


def console_devices(root: Path) -> list[Path]:
    """The kernel's active consoles (console= on the command line), as tty devices."""
    try:
        names = (root / "sys/class/tty/console/active").read_text().split()
    except OSError:
        names = []
    return [root / "dev" / n for n in names] or [root / "dev/console"]


def show_on_consoles(root: Path) -> Show:
    def show(text: str) -> None:
        for dev in console_devices(root):
            try:
                with dev.open("w") as tty:
                    tty.write(text.replace("\n", "\r\n"))
            except OSError:
                pass  # a console that is not there (no monitor, no UART)
    return show


def ensure(paths: AgentPaths, cfg: NodeConfig, show: Show | None = None, new: bool = True
           ) -> str | None:
    """Give the node a way in if its config gives none; a line for the journal (never
    the password), or None when there was nothing to do. new=False (`online`, which may
    apply the config again): keep this boot's one-time password rather than show another."""
    if cfg.password:
        return None
    rec = read_json(record_path(paths))
    if isinstance(rec, dict) and isinstance(rec.get("hash"), str) and not rec.get("one_time"):
        write_shadow(paths.root, {USER: rec["hash"]})
        return f"{USER}: the password chosen at the first login"
    if has_way_in(cfg):
        return None
    if not new and isinstance(rec, dict) and isinstance(rec.get("hash"), str):
        write_shadow(paths.root, {USER: rec["hash"]}, expired=True)
        return None
    boot_journal.void("a new one-time password")  # shown once: the next boot makes another
    password = new_password()
    pw_hash = crypt(password)
    write_json(record_path(paths), {"hash": pw_hash, "one_time": True}, 0o600)
    write_shadow(paths.root, {USER: pw_hash}, expired=True)
    (show or show_on_consoles(paths.root))(
        "\nosbuilder: the node config sets no password and no SSH keys, so here is a\n"
        f"osbuilder: one-time password for user {USER}:  {password}\n"
        "osbuilder: log in on this console with it and choose your own (asked at once);\n"
        "osbuilder: it is shown only now, a reboot makes a new one. To configure access\n"
        "osbuilder: instead, put k3os.password or ssh_authorized_keys in config.yaml.\n\n")
    return f"{USER}: a one-time password was shown on the local console"


def save(paths: AgentPaths, cfg: NodeConfig) -> str | None:
    """Keep osb's password when it was changed on the node (the forced change at the
    first login, or passwd later) and the config sets none; a line, or None."""
    rec = read_json(record_path(paths))
    if cfg.password or not isinstance(rec, dict):
        return None
    try:
        f = shadow_fields((paths.root / "etc/shadow").read_text(), USER)
    except OSError:
        return None
    if f is None or not f[1].startswith("$") or f[1] == rec.get("hash") or f[2] == "0":
        return None
    write_json(record_path(paths), {"hash": f[1], "one_time": False}, 0o600)
    return f"{USER}: kept the password chosen on this node"
