"""Where the agent reads and writes on a node; tests point these at a temp dir."""

from __future__ import annotations

from pathlib import Path

from osbuilder.shared.nodeconfig.judged import BUILD_VERDICT


class AgentPaths:
    """Not a dataclass: `dataclasses` imports inspect and ast, 1.4 s of the 4.4 s a later
    boot's agent spent importing under emulation (`-X importtime`, docs/benchmarks.md),
    and a replayed boot (osbuilder.node.replay) needs no other dataclass."""

    def __init__(
        self,
        root: Path = Path("/"),
        cmdline: Path = Path("/proc/cmdline"),
        boot_dir: Path = Path("/boot/efi"),  # the boot partition: config.yaml, config.d/
        image_default: Path = Path("/usr/share/osbuilder/config.default.yaml"),
        user_data: Path = Path("/var/lib/cloud/instance/user-data.txt"),
        # cloud-init's metadata summary (world-readable part): the EC2 key pair's public key
        instance_data: Path = Path("/run/cloud-init/instance-data.json"),
        state_dir: Path = Path("/var/lib/osbuilder"),
        # bundles are big: straight on the data partition, not through the /var overlay
        download_dir: Path = Path("/data/osbuilder/upgrade"),
        bootloader_file: Path = Path("/usr/share/osbuilder/bootloader"),
    ) -> None:
        self.root = root
        self.cmdline = cmdline
        self.boot_dir = boot_dir
        self.image_default = image_default
        self.user_data = user_data
        self.instance_data = instance_data
        self.state_dir = state_dir
        self.download_dir = download_dir
        self.bootloader_file = bootloader_file

    def __repr__(self) -> str:
        return f"AgentPaths({vars(self)})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AgentPaths) and vars(self) == vars(other)

    __hash__ = None  # type: ignore[assignment]  # mutable, as a plain class is

    @property
    def state_file(self) -> Path:
        return self.state_dir / "agent-state.json"

    @property
    def last_good(self) -> Path:
        return self.state_dir / "last-good-config.json"

    @property
    def build_verdict(self) -> Path:
        """The build's verdict on the config it put on the boot partition."""
        return self.boot_dir / BUILD_VERDICT

    @property
    def config_url_cache(self) -> Path:
        return self.state_dir / "config-url.yaml"

    @property
    def upgrade_record(self) -> Path:
        return self.state_dir / "upgrade.json"

    # Markers in /run that `boot` leaves for the later units with work to do (their
    # ConditionPathExists=): each unit started is a Python start, seconds of CPU at boot
    # on a Pi or under emulation.
    @property
    def online_marker(self) -> Path:
        return self.root / "run/osbuilder/online"

    @property
    def run_cmd_marker(self) -> Path:
        return self.root / "run/osbuilder/run-cmd"
