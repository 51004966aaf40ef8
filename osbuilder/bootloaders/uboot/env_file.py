"""U-Boot's binary environment file, shared by the boot script (build side) and the node's
slot chooser: CRC32 (little endian) of the data, then NUL-terminated name=value pairs,
padded to a fixed size. libubootenv's fw_printenv reads the same layout. Kept free of
heavy imports: the node agent loads it.
"""

from __future__ import annotations

import zlib

from osbuilder.shared.errors import OsbError
from osbuilder.shared.layout import BOOT_TRIES

# not "uboot.env": Debian's rpi U-Boot loads that file as its whole environment (replacing
# its built-in bootcmd); the A/B state lives beside it in a file of the same binary layout
ENV_FILE = "osbuilder.env"
# a second copy, written after ENV_FILE: U-Boot's fatwrite rewrites a file in place, so a
# power cut during it can tear ENV_FILE (bad CRC); the copy then holds the state before
ENV_COPY = "osbuilder-redund.env"
# every writer (build, boot.scr, the node) writes them in this order
ENV_FILES = (ENV_FILE, ENV_COPY)
ENV_SIZE = 0x4000
# everything the boot script keeps (it writes only these back)
ENV_VARS = ("BOOT_ORDER", "BOOT_A_OK", "BOOT_B_OK", "BOOT_A_LEFT", "BOOT_B_LEFT",
            "BOOT_A_VERSION", "BOOT_B_VERSION")


def env_blob(variables: dict[str, str], size: int = ENV_SIZE) -> bytes:
    data = b"".join(f"{k}={v}".encode() + b"\0" for k, v in sorted(variables.items())) + b"\0"
    if len(data) > size - 4:
        raise OsbError(f"U-Boot environment of {len(data)} bytes does not fit {size} bytes")
    data = data.ljust(size - 4, b"\0")
    return zlib.crc32(data).to_bytes(4, "little") + data


def parse_env(blob: bytes) -> dict[str, str]:
    crc, data = int.from_bytes(blob[:4], "little"), blob[4:]
    if zlib.crc32(data) != crc:
        raise OsbError("U-Boot environment: bad CRC (torn write?)")
    out = {}
    for pair in data.split(b"\0"):
        if pair:
            k, _, v = pair.decode().partition("=")
            out[k] = v
    return out


def initial_env(slot: str, version: str, tries: int = BOOT_TRIES) -> dict[str, str]:
    """A fresh image: `slot` holds `version` and is known good, the other is empty."""
    other = "b" if slot == "a" else "a"
    s, o = slot.upper(), other.upper()
    return {"BOOT_ORDER": f"{s} {o}", f"BOOT_{s}_LEFT": str(tries), f"BOOT_{o}_LEFT": "0",
            f"BOOT_{s}_OK": "1", f"BOOT_{o}_OK": "0", f"BOOT_{s}_VERSION": version,
            f"BOOT_{o}_VERSION": ""}
