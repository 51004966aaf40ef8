"""Tell the running system about the config `boot` applied: the kernel's hostname, the
units that read what the appliers wrote, the later work. The same step after a full boot
(osbuilder.node.configure) and after a replayed one (osbuilder.node.replay)."""

from __future__ import annotations

from pathlib import Path

ONLINE_UNIT = "osbuilder-online.service"


def start(root: Path, hostname: str, units: list[str], cloud_init: bool, online: bool
          ) -> None:
    """Only on a real node (root == /); units: restarted (they read their files before
    the agent wrote them); cloud_init: start cloud-init.target; online: start `online`,
    which has work to do. k3s is not started here: osbuilder-boot.service queues both of
    its units, and the one the k3s applier enabled runs (their conditions)."""
    if str(root) != "/":
        return
    try:
        with open("/proc/sys/kernel/hostname", "w") as f:
            f.write(hostname)
    except OSError:
        pass
    if not (units or cloud_init or online):
        return
    from osbuilder.shared.run import run  # subprocess: only when there is a unit to start

    if cloud_init:
        # the image ships cloud-init off, so its generator did not pull it in: start it now
        # (its local stage runs before the network, as on a cloud board)
        run(["systemctl", "start", "--no-block", "cloud-init.target"], check=False)
    if units:
        run(["systemctl", "restart", "--no-block", *units], check=False)
    if online:
        # started here, not enabled (its unit says why); queued while k3s's job still
        # waits for `boot`, so k3s, ordered after it, waits for it too
        run(["systemctl", "start", "--no-block", ONLINE_UNIT], check=False)
