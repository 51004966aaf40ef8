"""U-Boot A/B: a boot script that keeps the A/B state in an env file on the boot
partition (Pi 3/4/Zero 2 W with Debian's U-Boot, Jetson Nano with L4T's QSPI U-Boot).

The script does not rely on where a board's U-Boot keeps its own environment (flash,
eMMC, FAT, nowhere): it imports `osbuilder.env` from the partition it was loaded from.
State, in RAUC's uboot-scheme names plus two of ours:
  BOOT_ORDER "A B"      slots in the order they are tried
  BOOT_x_OK 1           slot x passed its health gate: booted without counting
  BOOT_x_LEFT n         otherwise boots left; the script counts one down before it boots x
  BOOT_x_VERSION v      the OS version in slot x, for `osbuilder-agent status`
A slot on trial costs one FAT write per boot; a known-good slot none (SD-card wear). The
node's slot chooser (osbuilder.bootloaders.uboot.chooser, RAUC's custom backend) edits the same
file; it has U-Boot's binary layout (uboot_env.py), so fw_printenv reads it too.

Boot partition (OSB_BOOT, the first FAT partition):
  u-boot.bin, boot.scr, osbuilder.env       (+ the Pi firmware and config.txt, raspi.py)
  osbuilder-redund.env                       its copy, for a torn write (uboot_env.py)
  osbuilder-args.txt                         your kernel arguments (OSB_ARGS=...)
  osb/<slot>/vmlinuz, initrd.img, <dtbs>     one folder per slot
  osb/<slot>/verity.txt                      the slot root's dm-verity hash (OSB_VERITY=...)
Debian's U-Boot checks no signature: this boot partition (boot.scr, kernels, the hashes)
is trusted as it is; verity detects a changed root, not a changed boot partition.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from osbuilder.bootloaders.uboot.build import raspi
from osbuilder.bootloaders.uboot.env_file import (
    ENV_COPY,
    ENV_FILE,
    ENV_FILES,
    ENV_SIZE,
    ENV_VARS,
    env_blob,
    initial_env,
)
from osbuilder.host.context import BuildContext
from osbuilder.host.kernel_args import kernel_args
from osbuilder.shared.arches import Arch, arch_facts
from osbuilder.shared.errors import OsbError
from osbuilder.shared.layout import BOOT_TRIES, SLOT_DIR, SLOTS, root_device
from osbuilder.shared.run import run
from osbuilder.shared.verity import VERITY_FILE, VERITY_ROOT

UBOOT_FILE = "u-boot.bin"
ARGS_FILE = "osbuilder-args.txt"
ARGS_TEXT = """\
# osbuilder: extra kernel arguments for both slots, appended to osbuilder's own. Uncomment
# and edit the OSB_ARGS line (one line; the last console= gets the boot messages), e.g.
#OSB_ARGS=console=ttyAMA0,115200 cgroup_enable=memory
"""


BOOT_SCRIPT = """\
# osbuilder A/B boot; state in {env} on this partition (osbuilder/bootloaders/uboot.py)
setenv osb_part ${{devtype}} ${{devnum}}:${{distro_bootpart}}
setenv BOOT_ORDER "A B"
setenv BOOT_A_OK 0
setenv BOOT_B_OK 0
setenv BOOT_A_LEFT {tries}
setenv BOOT_B_LEFT 0
setenv BOOT_A_VERSION
setenv BOOT_B_VERSION
# the state: the file, else (a write of it cut short: bad CRC) its copy
setenv osb_state
for f in {env} {copy}; do
  if test -z "${{osb_state}}" && load ${{osb_part}} ${{kernel_addr_r}} ${{f}}; then
    env import -c ${{kernel_addr_r}} {size:#x} && setenv osb_state ${{f}}
  fi
done
if test "${{osb_state}}" = "{copy}"; then
  echo "osbuilder: {env} unreadable, state from {copy}"
fi
# your own kernel arguments: OSB_ARGS=... in {args}, a text file any laptop can edit
setenv OSB_ARGS
if load ${{osb_part}} ${{kernel_addr_r}} {args}; then
  env import -t ${{kernel_addr_r}} ${{filesize}} OSB_ARGS
fi
setenv osb_slot
setenv osb_changed
for s in ${{BOOT_ORDER}}; do
  if test "x${{osb_slot}}" = "x"; then
{slot_choices}  fi
done
if test "x${{osb_slot}}" = "x"; then
  # every slot used up its tries: start over rather than stop a headless board
  echo "osbuilder: no slot has tries left, resetting the counters"
  setenv BOOT_A_LEFT {tries}
  setenv BOOT_B_LEFT {tries}
  setenv osb_slot a
  setenv osb_changed 1
fi
if test -n "${{osb_changed}}"; then
  env export -c -s {size:#x} ${{kernel_addr_r}} {env_vars}
  fatwrite ${{osb_part}} ${{kernel_addr_r}} {env} {size:#x}
  fatwrite ${{osb_part}} ${{kernel_addr_r}} {copy} {size:#x}
fi
echo "osbuilder: booting slot ${{osb_slot}} (A left ${{BOOT_A_LEFT}}, B left ${{BOOT_B_LEFT}})"
if test "${{osb_slot}}" = "a"; then setenv osb_root {root_a}; else setenv osb_root {root_b}; fi
# the slot's dm-verity root hash ({slots}/<slot>/{verity}, staged with the slot): the
# initramfs opens the root through it, and a root that does not match reboots (panic=)
# into the next try; a slot without one mounts its root as it is
setenv OSB_VERITY
if load ${{osb_part}} ${{kernel_addr_r}} {slots}/${{osb_slot}}/{verity}; then
  env import -t ${{kernel_addr_r}} ${{filesize}} OSB_VERITY
fi
if test -n "${{OSB_VERITY}}"; then
  setenv osb_rootargs "root={verity_root} osb.verity_data=${{osb_root}} ${{OSB_VERITY}} panic=10"
else
  setenv osb_rootargs "root=${{osb_root}}"
fi
setenv bootargs "{cmdline} ${{OSB_ARGS}}"
echo "osbuilder: kernel arguments ${{bootargs}}"
{kernel_addr}load ${{osb_part}} ${{osb_kernel_addr}} {slots}/${{osb_slot}}/vmlinuz
load ${{osb_part}} ${{ramdisk_addr_r}} {slots}/${{osb_slot}}/initrd.img
setenv osb_initrd_size ${{filesize}}
# the slot's own device tree: the one U-Boot names for this board (Pi: fdtfile), else the
# board file's first; else the one the firmware handed over (QEMU: fdt_addr, and QEMU's
# U-Boot has no fdt_addr_r to load a file to), else U-Boot's own
setenv osb_fdt
setenv osb_dtb {slots}/${{osb_slot}}/${{fdtfile}}
setenv osb_default_dtb {slots}/${{osb_slot}}/{default_dtb}
if test -n "${{fdt_addr_r}}"; then
  if test -n "${{fdtfile}}" && load ${{osb_part}} ${{fdt_addr_r}} ${{osb_dtb}}; then
    setenv osb_fdt ${{fdt_addr_r}}
  elif test -n "{default_dtb}" && load ${{osb_part}} ${{fdt_addr_r}} ${{osb_default_dtb}}; then
    setenv osb_fdt ${{fdt_addr_r}}
  fi
fi
if test -z "${{osb_fdt}}" && test -n "${{fdt_addr}}"; then
  setenv osb_fdt ${{fdt_addr}}
fi
if test -z "${{osb_fdt}}"; then
  setenv osb_fdt ${{fdtcontroladdr}}
fi
{boot_cmd} ${{osb_kernel_addr}} ${{ramdisk_addr_r}}:${{osb_initrd_size}} ${{osb_fdt}}
# back here only when the slot's kernel did not load or start: reset rather than fall
# through to the board's other boot targets, so the try counted above moves the next
# boot on to the other slot once this one's tries are gone
echo "osbuilder: slot ${{osb_slot}} did not start, resetting"
reset
"""

# one per slot inside the BOOT_ORDER loop: a known-good slot boots as it is, a slot on trial
# only with a try left, which is counted down first
SLOT_CHOICE = """\
    if test "${{s}}" = "{S}"; then
      if test "${{BOOT_{S}_OK}}" = "1"; then
        setenv osb_slot {s}
      elif test ${{BOOT_{S}_LEFT}} -gt 0; then
        setexpr BOOT_{S}_LEFT ${{BOOT_{S}_LEFT}} - 1
        setenv osb_slot {s}
        setenv osb_changed 1
      fi
    fi
"""

# where the script loads the kernel (osb_kernel_addr), per kernel image format
KERNEL_ABOVE_INITRD = """\
# the kernel goes 96 MiB above the initrd, 2 MiB aligned: Debian's arm64 Image (38-52 MB)
# does not fit at some boards' kernel_addr_r (Pi: 0x80000, below the script and the fdt)
setexpr osb_kernel_addr ${ramdisk_addr_r} / 0x200000
setexpr osb_kernel_addr ${osb_kernel_addr} * 0x200000
setexpr osb_kernel_addr ${osb_kernel_addr} + 0x6000000
"""
KERNEL_AT_ADDR_R = """\
# an ARMv7 zImage must lie in RAM's first 128 MiB: its decompressor takes the start of RAM
# from its own address rounded down to 128 MiB, and memory below that (the initrd) is lost.
# kernel_addr_r is there (Pi 0x80000, QEMU 0x40400000); the zImage (6 MB) fits below the
# script, the fdt and the initrd, and moves itself out of the decompressed kernel's way
setenv osb_kernel_addr ${kernel_addr_r}
"""
# where the kernel goes, by U-Boot's command for its image format (the arch table's)
KERNEL_PLACEMENT = {"booti": KERNEL_ABOVE_INITRD, "bootz": KERNEL_AT_ADDR_R}


def uboot_arch(arch: str) -> Arch:
    facts = arch_facts(arch)
    if facts.uboot_mkimage is None or facts.kernel_boot is None:
        raise OsbError(f"bootloader u-boot is for arm64 and armhf, not {arch}")
    return facts


def boot_script(cmdline: str, arch: str = "arm64", tries: int = BOOT_TRIES,
                roots: tuple[str, str] = (root_device("mbr", "a"), root_device("mbr", "b")),
                default_dtb: str = "") -> str:
    """The script source; `cmdline` may use ${osb_slot} (a or b), ${osb_root} (the
    slot's root device, from `roots`) and ${osb_rootargs} (root= and, when the slot has a
    verity.txt, its dm-verity options)."""
    boot_cmd = uboot_arch(arch).kernel_boot
    assert boot_cmd is not None  # uboot_arch
    return BOOT_SCRIPT.format(env=ENV_FILE, copy=ENV_COPY, args=ARGS_FILE, size=ENV_SIZE,
                              tries=tries, cmdline=cmdline,
                              root_a=roots[0], root_b=roots[1], slots=SLOT_DIR,
                              env_vars=" ".join(ENV_VARS), default_dtb=default_dtb,
                              boot_cmd=boot_cmd, kernel_addr=KERNEL_PLACEMENT[boot_cmd],
                              verity=VERITY_FILE, verity_root=VERITY_ROOT,
                              slot_choices="".join(SLOT_CHOICE.format(s=x, S=x.upper())
                                                   for x in SLOTS))


def compile_script(source: str, dest: Path, arch: str = "arm64", epoch: int = 0) -> None:
    """boot.scr as U-Boot loads it: the script wrapped in a legacy image header, whose
    time stamp is `epoch` (reproducible builds)."""
    src = dest.with_suffix(".cmd")
    src.write_text(source)
    run(["mkimage", "-A", str(uboot_arch(arch).uboot_mkimage), "-O", "linux", "-T", "script",
         "-C", "none", "-n", "osbuilder A/B", "-d", src, dest],
        env={"SOURCE_DATE_EPOCH": str(epoch)})
    src.unlink()


def kernel_cmdline(ctx: BuildContext) -> str:
    b = ctx.board
    return " ".join([
        "${osb_rootargs}", "rootfstype=squashfs", "ro", "osb.slot=${osb_slot}",
        "rauc.slot=${osb_slot}", *(f"console={c}" for c in b.kernel.console), *kernel_args(ctx),
    ])


def stage_slot_files(ctx: BuildContext, dest: Path) -> None:
    """A slot's kernel, initrd and the board's device trees, as boot.scr loads them."""
    dest.mkdir(parents=True, exist_ok=True)
    kver = ctx.kernel_version
    shutil.copyfile(ctx.rootfs / f"boot/vmlinuz-{kver}", dest / "vmlinuz")
    shutil.copyfile(ctx.rootfs / f"boot/initrd.img-{kver}", dest / "initrd.img")
    for dtb in ctx.board.dtbs:
        src = ctx.rootfs / f"usr/lib/linux-image-{kver}" / dtb
        if not src.is_file():
            raise OsbError(f"{ctx.board.source}: at dtbs: {dtb} is not in the kernel package "
                           f"{ctx.board.kernel.package} ({kver}): expected under "
                           f"/usr/lib/linux-image-{kver}/")
        (dest / dtb).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest / dtb)


def stage_u_boot(ctx: BuildContext) -> dict[str, str]:
    """Copy the board's U-Boot binaries; returns config.txt filter -> file name ("all" for
    the default). None to copy where U-Boot lives in the board's flash (Jetson)."""
    b = ctx.board
    names: dict[str, str] = {}
    wanted = [("all", "binary", b.uboot_binary, UBOOT_FILE)] if b.uboot_binary else []
    wanted += [(f, f"models.{f}", path, f"u-boot-{f}.bin") for f, path in b.uboot_models]
    for flt, field, path, name in wanted:
        assert path is not None
        src = ctx.rootfs / path
        if not src.is_file():
            raise OsbError(f"{b.source}: at uboot.{field}: {path} is not in the rootfs "
                           "(add its package, e.g. u-boot-rpi, to the board)")
        shutil.copyfile(src, ctx.esp / name)
        names[flt] = name
    return names


def stage_boot_files(ctx: BuildContext, slot: str = "a") -> None:
    b = ctx.board
    try:
        uboot_arch(b.arch)
    except OsbError as exc:
        raise OsbError(f"{b.source}: {exc}") from exc
    esp = ctx.esp
    binaries = stage_u_boot(ctx)
    if b.raspi is not None:
        raspi.stage_firmware(ctx, kernels=binaries)
    compile_script(boot_script(kernel_cmdline(ctx), b.arch,
                               roots=(root_device(b.partition_table, "a"),
                                      root_device(b.partition_table, "b")),
                               default_dtb=b.dtbs[0] if b.dtbs else ""),
                   esp / "boot.scr", b.arch, ctx.options.source_date_epoch)
    state = env_blob(initial_env(slot, ctx.options.version))
    for name in ENV_FILES:
        (esp / name).write_bytes(state)
    (esp / ARGS_FILE).write_text(ARGS_TEXT)
    stage_slot_files(ctx, esp / SLOT_DIR / slot)
    if ctx.verity is not None:
        (esp / SLOT_DIR / slot / VERITY_FILE).write_text(ctx.verity.env_text())
