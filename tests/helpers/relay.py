"""stdin/stdout <-> 127.0.0.1:PORT, for QEMU's `guestfwd=...-cmd:` (spawned once per guest
connection). A `tcp:` chardev target serves only the first connection; bundle downloads
and retries need many."""

from __future__ import annotations

import os
import selectors
import socket
import sys
from pathlib import Path

HERE = Path(__file__).resolve()


def guestfwd(guest: str, port: int) -> str:
    """A guestfwd rule: guest address:port → this relay → the host's 127.0.0.1:port."""
    return f"tcp:{guest}-cmd:{sys.executable} {HERE} {port}"


def main(port: int) -> None:
    conn = socket.create_connection(("127.0.0.1", port))
    sel = selectors.DefaultSelector()
    sel.register(0, selectors.EVENT_READ, "in")
    sel.register(conn, selectors.EVENT_READ, "sock")
    while True:
        for key, _ in sel.select():
            if key.data == "in":
                data = os.read(0, 65536)
                if not data:
                    conn.shutdown(socket.SHUT_WR)
                    sel.unregister(0)
                    continue
                conn.sendall(data)
            else:
                data = conn.recv(65536)
                if not data:
                    return
                os.write(1, data)


if __name__ == "__main__":
    main(int(sys.argv[1]))
