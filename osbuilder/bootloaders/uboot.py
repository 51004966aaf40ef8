"""U-Boot A/B: a boot script that keeps RAUC's `uboot` scheme in an env file on the boot
partition (Pi 2/3/Zero 2 W with Debian's U-Boot, Jetson Nano with L4T's QSPI U-Boot).

The script does not rely on where a board's U-Boot keeps its own environment (flash,
eMMC, nowhere): it imports `uboot.env` from the partition it was loaded from, picks the
first slot of BOOT_ORDER with BOOT_<slot>_LEFT > 0, counts that try down, writes the
file back, and only then loads that slot's kernel. `uboot.env` has U-Boot's binary layout
(CRC32 + NUL-separated pairs), the one libubootenv's fw_setenv writes, so RAUC's own
`uboot` backend drives it on the node through /etc/fw_env.config.
"""

from __future__ import annotations

import zlib
from pathlib import Path

from osbuilder.errors import OsbError
from osbuilder.run import run

ENV_FILE = "uboot.env"
ENV_SIZE = 0x4000
BOOT_TRIES = 3

BOOT_SCRIPT = """\
# osbuilder A/B boot (RAUC uboot scheme); state in {env} on this partition
setenv osb_part ${{devtype}} ${{devnum}}:${{distro_bootpart}}
setenv BOOT_ORDER "A B"
setenv BOOT_A_LEFT {tries}
setenv BOOT_B_LEFT 0
if load ${{osb_part}} ${{kernel_addr_r}} {env}; then
  env import -c ${{kernel_addr_r}} {size:#x}
fi
setenv osb_slot
for s in ${{BOOT_ORDER}}; do
  if test "x${{osb_slot}}" = "x"; then
    if test "${{s}}" = "A" && test ${{BOOT_A_LEFT}} -gt 0; then
      setexpr BOOT_A_LEFT ${{BOOT_A_LEFT}} - 1
      setenv osb_slot a
    fi
    if test "${{s}}" = "B" && test ${{BOOT_B_LEFT}} -gt 0; then
      setexpr BOOT_B_LEFT ${{BOOT_B_LEFT}} - 1
      setenv osb_slot b
    fi
  fi
done
if test "x${{osb_slot}}" = "x"; then
  # every slot used up its tries: start over rather than stop a headless board
  echo "osbuilder: no slot has tries left, resetting the counters"
  setenv BOOT_A_LEFT {tries}
  setenv BOOT_B_LEFT {tries}
  setenv osb_slot a
fi
env export -c -s {size:#x} ${{kernel_addr_r}} BOOT_ORDER BOOT_A_LEFT BOOT_B_LEFT
fatwrite ${{osb_part}} ${{kernel_addr_r}} {env} {size:#x}
echo "osbuilder: booting slot ${{osb_slot}} (A left ${{BOOT_A_LEFT}}, B left ${{BOOT_B_LEFT}})"
setenv bootargs "{cmdline}"
load ${{osb_part}} ${{kernel_addr_r}} osb/${{osb_slot}}/vmlinuz
load ${{osb_part}} ${{ramdisk_addr_r}} osb/${{osb_slot}}/initrd.img
setenv osb_initrd_size ${{filesize}}
load ${{osb_part}} ${{fdt_addr_r}} osb/${{osb_slot}}/{dtb} || setenv fdt_addr_r ${{fdtcontroladdr}}
booti ${{kernel_addr_r}} ${{ramdisk_addr_r}}:${{osb_initrd_size}} ${{fdt_addr_r}}
"""


def boot_script(cmdline: str, dtb: str, tries: int = BOOT_TRIES) -> str:
    """The script source; `cmdline` may use ${osb_slot} (a or b) for slot-specific parts."""
    return BOOT_SCRIPT.format(env=ENV_FILE, size=ENV_SIZE, tries=tries, cmdline=cmdline,
                              dtb=dtb)


def compile_script(source: str, dest: Path) -> None:
    """boot.scr as U-Boot loads it: the script wrapped in a legacy image header."""
    src = dest.with_suffix(".cmd")
    src.write_text(source)
    run(["mkimage", "-A", "arm64", "-O", "linux", "-T", "script", "-C", "none",
         "-n", "osbuilder A/B", "-d", src, dest])
    src.unlink()


def env_blob(variables: dict[str, str], size: int = ENV_SIZE) -> bytes:
    """U-Boot's binary environment: CRC32 (LE) of the data, then name=value NULs."""
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
