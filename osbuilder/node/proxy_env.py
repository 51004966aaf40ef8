"""The proxy the config names (k3os.environment, written to /etc/environment by the
environment applier) for the agent's own downloads: config_url, SSH keys, manifests,
air-gap images and upgrade bundles. `requests` reads it from the process environment."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

PROXY_VARS = ("http_proxy", "https_proxy", "no_proxy", "all_proxy")


def load(path: Path = Path("/etc/environment")) -> list[str]:
    """Set the proxy variables of `path` that this process does not have; their names."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    done = []
    for line in text.splitlines():
        name, sep, value = line.removeprefix("export ").partition("=")
        name = name.strip()
        if not sep or name.lower() not in PROXY_VARS or name in os.environ:
            continue
        try:
            words = shlex.split(value)
        except ValueError:
            continue
        if len(words) == 1:
            os.environ[name] = words[0]
            done.append(name)
    return done
