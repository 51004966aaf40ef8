"""The build stages, in order, and the output formats: the table of contents of a build
(osbuilder.host.pipeline runs them). A stage is `stage(ctx) -> None`; it never calls
another stage."""

from __future__ import annotations

from collections.abc import Callable

from osbuilder.host.context import BuildContext
from osbuilder.host.formats import ami
from osbuilder.host.formats.img import write_img
from osbuilder.host.formats.iso import write_iso
from osbuilder.host.formats.pxe import write_pxe
from osbuilder.host.formats.qcow2 import write_qcow2
from osbuilder.host.stages.assemble import assemble
from osbuilder.host.stages.boot_partition import stage_boot_partition
from osbuilder.host.stages.initramfs import build_initramfs
from osbuilder.host.stages.k3s_binary import fetch_k3s, install_k3s
from osbuilder.host.stages.node_package import install_node_package
from osbuilder.host.stages.overlay import apply_overlays
from osbuilder.host.stages.record_install_plan import write_install_plan
from osbuilder.host.stages.root_cache import restore_root, store_root
from osbuilder.host.stages.rootfs import build_rootfs
from osbuilder.host.stages.sbom import write_sbom
from osbuilder.host.stages.seal import seal
from osbuilder.host.stages.squash import squash
from osbuilder.host.stages.trust_files import install_trust_files
from osbuilder.host.stages.uki import build_ukis
from osbuilder.host.stages.units import apply_presets
from osbuilder.host.stages.update_bundle import install_keyring, write_bundle
from osbuilder.host.stages.verity import verity

Stage = Callable[[BuildContext], None]

STAGES: list[tuple[str, Stage]] = [
    ("k3s-fetch", fetch_k3s),  # first: a missing k3s should fail before minutes of work
    ("root-cache", restore_root),  # a root cached for the same inputs: skip ROOT_STAGES
    ("rootfs", build_rootfs),
    ("overlay", apply_overlays),
    ("k3s", install_k3s),
    ("node-package", install_node_package),
    ("units", apply_presets),
    ("update-keyring", install_keyring),
    ("trust-files", install_trust_files),
    ("initramfs", build_initramfs),
    ("seal", seal),
    ("install-plan", write_install_plan),
    ("squash", squash),
    ("root-store", store_root),  # before verity, which appends its hash tree to the squashfs
    ("verity", verity),  # the slot image: squashfs + hash tree, and its root hash
    ("uki", build_ukis),  # signed UKIs (their command line names the root hash)
    ("bootloader", stage_boot_partition),
    ("assemble", assemble),
    ("bundle", write_bundle),
]
# after the formats: the SBOM lists every output with its sha256
FINAL_STAGES: list[tuple[str, Stage]] = [("sbom", write_sbom)]
# The stages that only make the root squashfs (and the files later stages copy out of it):
# skipped when root-cache found the root built from the same inputs.
ROOT_STAGES = frozenset({"rootfs", "overlay", "k3s", "node-package", "units", "update-keyring",
                         "trust-files", "initramfs", "seal", "install-plan", "squash"})
# one stage per format of osbuilder.host.formats.FORMATS (which boards can have which)
FORMAT_STAGES: dict[str, Stage] = {"img": write_img, "qcow2": write_qcow2,
                                   "ami": ami.write_ami, "iso": write_iso, "pxe": write_pxe}

