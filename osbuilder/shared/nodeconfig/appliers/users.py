"""The password of the login users in /etc/shadow (root's too when root_login is set), and
their home directories. The users come from sysusers at build time: `osb`, and `rancher`,
the user k3OS configs are written for (rancher/k3os libexec/k3os/bootstrap setup_users):
both get the same password and SSH keys."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from osbuilder.shared import sha_crypt
from osbuilder.shared.errors import OsbError
from osbuilder.shared.file_writes import ensure_dir, lookup_ids, read_json, remove, write_atomic
from osbuilder.shared.nodeconfig.accounts import Accounts
from osbuilder.shared.nodeconfig.facts import Facts
from osbuilder.shared.nodeconfig.model import NodeConfig

USER = "osb"
LOGIN_USERS = (USER, "rancher")  # the image may lack rancher (built before it existed)
LOCKED = "!"
ROOT_LOCKED = "!*"
# /etc is rebuilt every boot, so the hash is kept on /var (data) next to a SHA-256
# fingerprint of the configured password: an unchanged password is neither hashed nor
# verified again (each costs seconds on a Pi or under emulation). The fingerprint adds
# no exposure: the plain text is in config.yaml on the FAT boot partition anyway.
HASH_CACHE = Path("var/lib/osbuilder/osb-password.json")
# crypt(5) (libxcrypt): "Hashed passphrases are always entirely printable ASCII, and do not
# contain any whitespace or the characters ':', ';', '*', '!', or '\'" (delimiters and
# markers in passwd(5) and shadow(5)). A crypt string with anything else is no hash, and a
# ':', a newline or a NUL in it would break /etc/shadow.
NOT_IN_HASHES = frozenset(":;*!\\")


def fingerprint(password: str) -> str:
    return hashlib.sha256(password.encode()).hexdigest()


def password_hash(password: str | None, current: str | None,
                  cached: dict[str, str] | None = None) -> str:
    """The shadow field for `password`: crypt strings as given, plain text hashed with
    sha512-crypt, but a cached or current hash kept when it matches (idempotence)."""
    if password is None:
        return LOCKED
    if password.startswith("$"):
        if not all("!" <= c <= "~" and c not in NOT_IN_HASHES for c in password):
            raise OsbError("k3os.password: a crypt string cannot contain blanks, control "
                           "or non-ASCII characters, or any of : ; * ! \\ (crypt(5))")
        return password
    if cached and cached.get("fingerprint") == fingerprint(password):
        return cached["hash"]
    with _password_field():
        if current and sha_crypt.verify(password, current):
            return current
        return sha_crypt.hash_password(password)


def check_password(cfg: NodeConfig) -> None:
    """Raise now what `apply` would raise later: a bad crypt string, or a plain-text
    password that cannot be hashed (a NUL in it)."""
    if cfg.password is not None and cfg.password.startswith("$"):
        password_hash(cfg.password, None)
    elif cfg.password is not None:
        with _password_field():
            sha_crypt.check(cfg.password)


@contextmanager
def _password_field() -> Iterator[None]:
    """sha_crypt's errors, naming the config field they came from."""
    try:
        yield
    except OsbError as e:
        raise OsbError(f"k3os.password: {e}") from e


def _fields(text: str) -> dict[str, list[str]]:
    return {f[0]: f for f in (line.split(":") for line in text.splitlines()) if len(f) > 1}


def set_shadow(text: str, hashes: dict[str, str], expired: bool = False) -> str:
    """Replace only the password field of these users' lines; other lines stay as they are.
    expired: last change on day 0, so that login demands a new password (shadow(5): "The
    value 0 has a special meaning"), as for the one-time password (node/first_login.py)."""
    last_change = "0" if expired else ""
    out: list[str] = []
    done: set[str] = set()
    for line in text.splitlines():
        f = line.split(":")
        if f[0] in hashes and len(f) > 1:
            f[1] = hashes[f[0]]
            if len(f) > 2 and (expired or f[2] == "0"):
                # not expired, a line that was (this boot's one-time password) is no
                # longer: a config applied later (`online`: config_url, cloud user-data)
                # set a password, or first_login put back the one chosen at the first
                # login. An empty field turns password aging off (shadow(5)).
                f[2] = last_change
            done.add(f[0])
            line = ":".join(f)
        out.append(line)
    out += [f"{u}:{h}:{last_change}:0:99999:7:::" for u, h in hashes.items() if u not in done]
    return "\n".join(out) + "\n"


def write_shadow(root: Path, hashes: dict[str, str], expired: bool = False) -> None:
    """set_shadow on the root's /etc/shadow: root's and the shadow group's only."""
    shadow = root / "etc/shadow"
    text = shadow.read_text() if shadow.exists() else ""
    try:
        _, shadow_gid = lookup_ids(root, "root:shadow")
    except OsbError:
        shadow_gid = 0  # no shadow group in this image: root-only is still safe
    write_atomic(shadow, set_shadow(text, hashes, expired), 0o640, 0, shadow_gid)


def login_users(root: Path) -> list[str]:
    """The login users this image has; osb always (an image without it is broken)."""
    accounts = Accounts.of_root(root)
    if USER not in accounts.users:
        raise OsbError(f"the image has no user {USER!r} (made by sysusers at build time)")
    return [u for u in LOGIN_USERS if u in accounts.users]


def ensure_home(root: Path, user: str = USER) -> tuple[int, int]:
    """Make /home/<user> (persistent /home may be empty on a first boot); its uid, gid."""
    uid, gid = lookup_ids(root, user)
    ensure_dir(root / "home", 0o755)
    ensure_dir(root / "home" / user, 0o750, uid, gid)
    return uid, gid


def check(cfg: NodeConfig, accounts: Accounts) -> None:
    """A crypt string must fit /etc/shadow; plain text must be one libcrypt can hash."""
    check_password(cfg)

def apply(cfg: NodeConfig, facts: Facts, root: Path) -> None:
    shadow = root / "etc/shadow"
    text = shadow.read_text() if shadow.exists() else ""
    cache = root / HASH_CACHE
    current = _fields(text).get(USER, ["", ""])[1]
    osb = password_hash(cfg.password, current, read_json(cache))
    if cfg.password is not None and osb.startswith("$"):
        record = {"fingerprint": fingerprint(cfg.password), "hash": osb}
        write_atomic(cache, json.dumps(record, sort_keys=True) + "\n", 0o600)
    else:
        remove(cache)
    hashes = {"root": osb if cfg.root_login else ROOT_LOCKED}
    hashes.update(dict.fromkeys(login_users(root), osb))
    write_shadow(root, hashes)
    for user in login_users(root):
        ensure_home(root, user)
