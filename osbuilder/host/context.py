"""The one object every build stage reads and writes."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

from osbuilder.host.boards import Board
from osbuilder.host.k3s_release import K3sArtifact
from osbuilder.host.progress import Progress
from osbuilder.host.settings import BuildOptions
from osbuilder.host.trust_plan import TrustPlan
from osbuilder.shared.layout import DiskLayout
from osbuilder.shared.verity import Verity


@dataclass
class Artifact:
    kind: str
    path: Path
    sha256: str = ""  # set when the build moved it into the output folder


@dataclass
class BuildContext:
    """State that flows through the stages; each stage fills in what later ones need."""

    board: Board
    options: BuildOptions
    work: Path  # private temp dir; moved into out_dir only when the build succeeded
    progress: Progress
    cleanup: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    rootfs_tar: Path | None = None
    kernel_version: str | None = None
    k3s: K3sArtifact | None = None
    squashfs: Path | None = None  # the root slot's content (with verity: + hash tree)
    trust: TrustPlan = field(default_factory=TrustPlan)
    verity: Verity | None = None
    ukis: dict[str, Path] = field(default_factory=dict)  # slot -> signed UKI
    signed_loader: Path | None = None  # systemd-boot signed with the db key
    root_key: str | None = None  # the root's inputs (stages/root_cache.py); None: uncached
    root_cached: bool = False  # the root came from the cache: ROOT_STAGES are skipped
    layout: DiskLayout | None = None
    disk_image: Path | None = None
    artifacts: list[Artifact] = field(default_factory=list)

    @property
    def rootfs(self) -> Path:
        return self.work / "rootfs"

    @property
    def esp(self) -> Path:
        return self.work / "esp"

    @property
    def basename(self) -> str:
        return f"osbuilder-{self.board.name}-{self.options.version}"

    @property
    def env(self) -> dict[str, str]:
        """Environment for tools that honour reproducible-builds conventions."""
        return {"SOURCE_DATE_EPOCH": str(self.options.source_date_epoch), "LC_ALL": "C.UTF-8",
                "TZ": "UTC"}
