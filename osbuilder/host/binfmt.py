"""Foreign-architecture builds: qemu-user through binfmt_misc, set up by the build itself.

mmdebstrap runs the foreign rootfs's maintainer scripts, and osbuilder its chroot steps
(initramfs, byte-code), through qemu-user-static registered with the kernel's binfmt_misc
(flag F: the interpreter is opened at registration, so it works inside the chroot).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from osbuilder.shared.arches import arch_facts
from osbuilder.shared.errors import OsbError
from osbuilder.shared.run import output, run

BINFMT = Path("/proc/sys/fs/binfmt_misc")
CONF_DIR = Path("/usr/lib/binfmt.d")


def host_arch() -> str:
    return output(["dpkg", "--print-architecture"]).strip()


def ensure_binfmt(arch: str, binfmt: Path = BINFMT, conf_dir: Path = CONF_DIR) -> str | None:
    """Make `arch` binaries runnable here; returns what was done (None: nothing needed)."""
    if arch == host_arch():
        return None
    name = arch_facts(arch).qemu_user
    if shutil.which("arch-test") is None:  # mmdebstrap checks foreign arches with it
        raise OsbError(f"building for {arch} needs arch-test: apt-get install arch-test "
                       "(or `make deps`)")
    if not (binfmt / "register").exists():
        try:
            run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(binfmt)])
        except OsbError as exc:
            raise OsbError(f"building for {arch} needs binfmt_misc, and {binfmt} could not be "
                           f"mounted (in a container: mount it on the host, or run the "
                           f"container privileged): {exc}") from exc
    entry = binfmt / f"qemu-{name}"
    if entry.exists() and "enabled" in entry.read_text():
        return f"qemu-{name} already registered"
    conf = conf_dir / f"qemu-{name}.conf"
    if not conf.is_file():
        raise OsbError(f"building for {arch} needs qemu-user-static ({conf} missing): "
                       "apt-get install qemu-user-static (or `make deps`)")
    try:
        (binfmt / "register").write_text(conf.read_text().strip())
    except OSError as exc:
        raise OsbError(f"registering {conf} with {binfmt}/register failed: {exc.strerror} "
                       "(needs root, and a kernel with binfmt_misc)") from exc
    return f"registered qemu-{name} with binfmt_misc"
