"""What the build records in the image for `osbuilder-agent install`: the board's A/B
partition sizes and the boot entry of slot A, so the node lays out a disk exactly as a
built disk image (the board file and its schemas stay on the build host)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from osbuilder.shared.errors import OsbError
from osbuilder.shared.layout import DiskLayout, ab_layout_of

PATH = "usr/share/osbuilder/install.json"


@dataclass(frozen=True)
class InstallPlan:
    board: str
    version: str  # image version (entry title)
    kernel_version: str
    efi_arch: str  # x64, aa64: systemd-boot's file name
    boot_mib: int
    root_mib: int
    data_mib: int  # the data partition grows to fill the disk on first boot
    root_part_type: str
    kernel_options: str  # slot A's entry, as in a built disk image

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def load(cls, root: Path = Path("/")) -> InstallPlan:
        path = root / PATH
        try:
            data = json.loads(path.read_text())
            return cls(**data)
        except FileNotFoundError as exc:
            raise OsbError(f"{path} missing: this image's board cannot be installed from a "
                           "live system (systemd-boot boards only)") from exc
        except (ValueError, TypeError) as exc:
            raise OsbError(f"{path}: not an install plan of this osbuilder version: {exc}"
                           ) from exc

    @property
    def min_disk_mib(self) -> int:
        return self.layout("size-check").total_mib

    def layout(self, seed: str) -> DiskLayout:
        return ab_layout_of(self.boot_mib, self.root_mib, self.data_mib, self.root_part_type,
                            seed)
