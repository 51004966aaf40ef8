"""~/.ssh/authorized_keys of the login users (osb, and rancher for k3OS configs) from
config: literal keys, plus keys of `github:USER`,
`gitlab:USER` and https URLs. Those are fetched by `fetch_remote_keys` when the network
is up and kept in a cache on /var, so `apply` never waits for the network and a node
that boots offline keeps the keys it fetched last time."""

from __future__ import annotations

import json
import re
from pathlib import Path

from osbuilder.shared.file_writes import HEADER, ensure_dir, write_atomic
from osbuilder.shared.nodeconfig.accounts import Accounts
from osbuilder.shared.nodeconfig.appliers.users import ensure_home, login_users
from osbuilder.shared.nodeconfig.facts import Facts
from osbuilder.shared.nodeconfig.model import NodeConfig

CACHE = "var/lib/osbuilder/ssh-keys-cache.json"
BASE_URLS = {"github": "https://github.com", "gitlab": "https://gitlab.com"}
USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# A key line, possibly after options: "[options ]type base64[ comment]".
KEY_LINE = re.compile(r"(^|\s)(ssh-|ecdsa-|sk-)\S+\s+[A-Za-z0-9+/]+={0,3}(\s|$)")


def is_remote(entry: str) -> bool:
    return entry.startswith(("github:", "gitlab:", "https://", "http://"))


def read_cache(root: Path) -> dict[str, list[str]]:
    try:
        data = json.loads((root / CACHE).read_text())
    except (FileNotFoundError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: [str(x) for x in v] for k, v in data.items() if isinstance(v, list)}


def _url(entry: str, base_urls: dict[str, str]) -> tuple[str | None, str]:
    """The URL to fetch, or None and why not."""
    if entry.startswith("https://"):
        return entry, ""
    if entry.startswith("http://"):
        # Anyone on the path could add a key: a login would be handed to them.
        return None, "keys are only fetched over https"
    site, _, user = entry.partition(":")
    if not USER_NAME.match(user):
        return None, f"{user!r} is not a valid {site} user name"
    return f"{base_urls[site].rstrip('/')}/{user}.keys", ""


def _fetch(url: str, timeout: float) -> list[str]:
    import requests  # here, not at the top: `boot` must not pay for it

    resp = requests.get(url, timeout=timeout)
    resp.raise_for_status()
    # Keep key lines only: a captive portal or an error page must not land in the file.
    return [line.strip() for line in resp.text.splitlines() if KEY_LINE.search(line.strip())]


def fetch_remote_keys(cfg: NodeConfig, root: Path, base_urls: dict[str, str] | None = None,
                      timeout: float = 10) -> list[str]:
    """Refresh the key cache for every remote entry; returns warnings, never raises for a
    failed fetch (the keys cached before are kept for that entry)."""
    bases = {**BASE_URLS, **(base_urls or {})}
    old = read_cache(root)
    new: dict[str, list[str]] = {}
    warnings: list[str] = []
    for i, entry in enumerate(cfg.ssh_authorized_keys):
        if not is_remote(entry) or entry in new:
            continue
        where = f"ssh_authorized_keys[{i}] ({entry})"
        url, problem = _url(entry, bases)
        if url is None:
            warnings.append(f"{where}: {problem}")
            continue
        try:
            new[entry] = _fetch(url, timeout)
        except (OSError, UnicodeDecodeError) as e:  # requests' errors are OSErrors
            warnings.append(f"{where}: fetching {url} failed, keeping cached keys: {e}")
            if entry in old:
                new[entry] = old[entry]
            continue
        if not new[entry]:
            warnings.append(f"{where}: {url} lists no SSH keys")
    # Entries no longer in the config are dropped, so removing one revokes its keys.
    data = json.dumps(new, indent=2, sort_keys=True) + "\n"
    write_atomic(root / CACHE, data, 0o644)
    return warnings


def authorized_keys(cfg: NodeConfig, root: Path) -> list[str]:
    """Literal and cached keys in config order, each once."""
    cache = read_cache(root)
    keys: list[str] = []
    for entry in cfg.ssh_authorized_keys:
        for key in cache.get(entry, []) if is_remote(entry) else entry.strip().splitlines():
            if key.strip() and key.strip() not in keys:
                keys.append(key.strip())
    return keys


def check(cfg: NodeConfig, accounts: Accounts) -> None:
    """Nothing to refuse: a remote key source that fails is a warning when fetched."""
    return None

def apply(cfg: NodeConfig, facts: Facts, root: Path) -> None:
    text = HEADER + "".join(k + "\n" for k in authorized_keys(cfg, root))
    for user in login_users(root):
        uid, gid = ensure_home(root, user)
        ssh = root / "home" / user / ".ssh"
        ensure_dir(ssh, 0o700, uid, gid)
        write_atomic(ssh / "authorized_keys", text, 0o600, uid, gid)
