"""Tell systemd a Type=notify unit is ready, by sd_notify(3)'s protocol and without
libsystemd: one datagram, `READY=1`, to the AF_UNIX socket $NOTIFY_SOCKET names (a leading
"@" names Linux's abstract namespace); the kernel adds the sender's credentials, which
systemd checks against the unit's main process (NotifyAccess=main).

`osbuilder-agent boot` sends it once the config is applied: what waits for the unit starts
then, while the agent finishes what nothing waits for (the console's status line).
"""

from __future__ import annotations

import os
from collections.abc import Mapping


def notify_ready(environ: Mapping[str, str] = os.environ) -> bool:
    """True when the message was sent; False when no systemd unit asked for it (a run
    by hand, a test). OSError when the socket refused it: systemd then fails the unit
    when the process exits (its "protocol" result), as it would a crash."""
    address = environ.get("NOTIFY_SOCKET", "")
    if not address.startswith(("/", "@")):
        return False
    import socket  # here: only a run under systemd pays for the import

    target = "\0" + address[1:] if address.startswith("@") else address
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
        s.sendto(b"READY=1", target)
    return True
