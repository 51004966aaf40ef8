"""Stage sbom: the image's manifest as an SPDX 2.3 document (JSON), with the build's
inputs and outputs and their sha256: `<image>.spdx.json` beside the image.

SPDX 2.3 (spdx.github.io/spdx-spec/v2.3): one package for the image, which CONTAINS one
package per Debian package (purl `pkg:deb/debian/<name>@<version>?arch=<arch>`) and k3s;
each output file (disk image, bundle, signed UKIs, ...) is GENERATED_FROM each input
file (board file, rootfs tarball, k3s binary, config, public certificates). Times come
from SOURCE_DATE_EPOCH and names, not paths, identify files: same inputs, same bytes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from osbuilder import __version__
from osbuilder.host.context import Artifact, BuildContext
from osbuilder.host.download import sha256_file
from osbuilder.host.stages.seal import MANIFEST


@dataclass(frozen=True)
class FileEntry:
    role: str  # what the file is to the build, e.g. "board file", "disk image"
    name: str
    sha256: str


def spdx_id(kind: str, name: str) -> str:
    return f"SPDXRef-{kind}-" + re.sub(r"[^A-Za-z0-9.-]", "-", name)


def document(manifest: dict[str, Any], inputs: list[FileEntry], outputs: list[FileEntry],
             epoch: int) -> dict[str, Any]:
    name = manifest["image"]["name"]
    suite = manifest.get("suite", "")
    image_id = "SPDXRef-Image"
    packages: list[dict[str, Any]] = [{
        "SPDXID": image_id, "name": name, "versionInfo": manifest["image"]["version"],
        "supplier": "NOASSERTION", "downloadLocation": "NOASSERTION",
        "filesAnalyzed": False, "primaryPackagePurpose": "OPERATING-SYSTEM",
        "comment": f"board {manifest['board']}, {manifest['arch']}, kernel "
                   f"{manifest['kernel']}, osbuilder {manifest['osbuilder']['version']} "
                   f"(git {manifest['osbuilder']['git_revision']})",
    }]
    for p in manifest["packages"]:
        packages.append({
            "SPDXID": spdx_id("deb", f"{p['name']}-{p['arch']}"), "name": p["name"],
            "versionInfo": p["version"], "supplier": "Organization: Debian",
            "downloadLocation": "NOASSERTION", "filesAnalyzed": False,
            "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
                              "referenceLocator": f"pkg:deb/debian/{p['name']}@{p['version']}"
                                                  f"?arch={p['arch']}&distro={suite}"}],
        })
    k3s = manifest["k3s"]
    packages.append({
        "SPDXID": "SPDXRef-k3s", "name": "k3s", "versionInfo": k3s["version"],
        "supplier": "Organization: K3s project", "filesAnalyzed": False,
        "downloadLocation": "https://github.com/k3s-io/k3s/releases",
        "checksums": [{"algorithm": "SHA256", "checksumValue": k3s["sha256"]}],
    })
    files = []
    rels = [{"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES",
             "relatedSpdxElement": image_id}]
    rels += [{"spdxElementId": image_id, "relationshipType": "CONTAINS",
              "relatedSpdxElement": p["SPDXID"]} for p in packages[1:]]
    for kind, entries in (("Input", inputs), ("Output", outputs)):
        for e in entries:
            files.append({"SPDXID": spdx_id(kind, e.name), "fileName": f"./{e.name}",
                          "checksums": [{"algorithm": "SHA256", "checksumValue": e.sha256}],
                          "comment": f"build {kind.lower()}: {e.role}"})
    for o in outputs:
        rels.append({"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES",
                     "relatedSpdxElement": spdx_id("Output", o.name)})
        rels += [{"spdxElementId": spdx_id("Output", o.name),
                  "relationshipType": "GENERATED_FROM",
                  "relatedSpdxElement": spdx_id("Input", i.name)} for i in inputs]
    created = datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    digest = "-".join(o.sha256[:12] for o in outputs)
    return {
        "spdxVersion": "SPDX-2.3", "dataLicense": "CC0-1.0", "SPDXID": "SPDXRef-DOCUMENT",
        "name": name, "documentNamespace": f"https://osbuilder.io/spdx/{name}/{digest}",
        "creationInfo": {"created": created, "creators": [f"Tool: osbuilder-{__version__}"]},
        "packages": packages, "files": files, "relationships": rels,
    }


def build_inputs(ctx: BuildContext) -> list[FileEntry]:
    o = ctx.options
    found: list[tuple[str, Path | None]] = [
        ("board file", ctx.board.source), ("rootfs tarball", ctx.rootfs_tar),
        ("node config", o.config), ("update keyring (CA certificate)", o.keyring),
        ("bundle signing certificate", o.sign_cert)]
    keys = ctx.trust.secure_boot
    if keys is not None:
        found += [("Secure Boot db certificate", keys.db_cert),
                  ("PCR policy public key", keys.pcr_pub),
                  *((f"Secure Boot {a.stem} enrollment", a) for a in keys.auth_files)]
    entries = [FileEntry(role, p.name, sha256_file(p)) for role, p in found if p is not None]
    if ctx.k3s is not None:
        entries.append(FileEntry("k3s binary", f"k3s-{ctx.k3s.version}", ctx.k3s.sha256))
    return entries


def write_sbom(ctx: BuildContext) -> None:
    for art in ctx.artifacts:
        art.sha256 = art.sha256 or sha256_file(art.path)
    outputs = [FileEntry(a.kind, a.path.name, a.sha256) for a in ctx.artifacts]
    outputs += [FileEntry(f"signed UKI of slot {s}", p.name, sha256_file(p))
                for s, p in sorted(ctx.ukis.items())]
    manifest = json.loads((ctx.rootfs / MANIFEST).read_text())
    doc = document(manifest, build_inputs(ctx), outputs, ctx.options.source_date_epoch)
    out = ctx.work / f"{ctx.basename}.spdx.json"
    out.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    ctx.artifacts.append(Artifact("sbom", out))
    ctx.progress.say(f"    {out.name}: {len(doc['packages'])} packages, "
                     f"{len(doc['files'])} files")
