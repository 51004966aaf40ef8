"""Loop-free inspection of a disk image file: partition table, file systems, files."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Part:
    name: str
    type: str
    start: int  # bytes
    size: int  # bytes


def partitions(image: Path) -> tuple[str, list[Part]]:
    table = json.loads(subprocess.run(["sfdisk", "--json", str(image)], check=True,
                                      capture_output=True, text=True).stdout)["partitiontable"]
    sector = table.get("sectorsize", 512)
    return table["label"], [
        Part(p.get("name", ""), p["type"].lower(), p["start"] * sector, p["size"] * sector)
        for p in table["partitions"]
    ]


def probe(image: Path, part: Part) -> dict[str, str]:
    """blkid -p at the partition's offset: TYPE, LABEL, … ({} when there is no fs)."""
    r = subprocess.run(["blkid", "-p", "-o", "export", "-O", str(part.start), str(image)],
                       capture_output=True, text=True)
    return dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)


def fat_files(image: Path, part: Part) -> list[str]:
    out = subprocess.run(["mdir", "-i", f"{image}@@{part.start}", "-/", "-b", "::/"],
                         check=True, capture_output=True, text=True).stdout
    return sorted(line.removeprefix("::/") for line in out.splitlines() if line.strip())


def fat_read(image: Path, part: Part, path: str) -> bytes:
    return subprocess.run(["mtype", "-i", f"{image}@@{part.start}", f"::/{path}"],
                          check=True, capture_output=True).stdout


def squash_list(image: Path, part: Part) -> set[str]:
    out = subprocess.run(["unsquashfs", "-o", str(part.start), "-lc", "-d", "", str(image)],
                         check=True, capture_output=True, text=True).stdout
    return {line.strip().lstrip("/") for line in out.splitlines() if line.strip()}


def squash_extract(image: Path, part: Part, path: str, workdir: Path) -> Path:
    """path unpacked from the squashfs under workdir (a link stays a link)."""
    dest = workdir / "unsquash"
    subprocess.run(["unsquashfs", "-o", str(part.start), "-f", "-q", "-d", str(dest),
                    str(image), path], check=True, capture_output=True)
    return dest / path


def squash_read(image: Path, part: Part, path: str, workdir: Path) -> bytes:
    return squash_extract(image, part, path, workdir).read_bytes()


def read_range(image: Path, part: Part) -> bytes:
    with image.open("rb") as f:
        f.seek(part.start)
        return f.read(part.size)


def fat_write(image: Path, part: Part, path: str, data: bytes, workdir: Path) -> None:
    """Put a file on a FAT partition of the image (as a user would from a laptop)."""
    src = workdir / Path(path).name
    src.write_bytes(data)
    subprocess.run(["mcopy", "-o", "-i", f"{image}@@{part.start}", str(src), f"::/{path}"],
                   check=True, capture_output=True)


def partition_bytes(image: Path, part: Part) -> Iterator[bytes]:
    """One partition's bytes, read from the image in chunks of 4 MiB."""
    with image.open("rb") as src:
        src.seek(part.start)
        remaining = part.size
        while remaining:
            chunk = src.read(min(remaining, 1 << 22))
            if not chunk:
                break
            yield chunk
            remaining -= len(chunk)


def extract(image: Path, part: Part, dest: Path) -> Path:
    """Copy one partition out of the image into its own file."""
    with dest.open("wb") as dst:
        for chunk in partition_bytes(image, part):
            dst.write(chunk)
    return dest


def ext4_fsck(image: Path, part: Part, workdir: Path) -> tuple[int, str]:
    """e2fsck a copy of an ext4 partition as the next boot would find it: replay the
    journal (what mounting does), then a full read-only check. (exit code, output)."""
    fs = extract(image, part, workdir / "fsck.ext4")
    try:
        subprocess.run(["e2fsck", "-E", "journal_only", "-y", str(fs)], capture_output=True)
        r = subprocess.run(["e2fsck", "-f", "-n", str(fs)], capture_output=True, text=True)
        return r.returncode, r.stdout + r.stderr
    finally:
        fs.unlink()


def fat_fsck(image: Path, part: Part, workdir: Path) -> list[str]:
    """fsck.fat -n on a copy of a FAT partition: the problems it finds in files (each a
    path line and the indented lines under it: a chain into free clusters, cross-linked
    or cut-short files). What a power cut leaves in the file system as a whole (dirty bit,
    the free-cluster count, clusters no file uses) is not listed: it loses nothing."""
    fs = extract(image, part, workdir / "fsck.fat")
    try:
        out = subprocess.run(["fsck.fat", "-n", str(fs)], capture_output=True,
                             text=True).stdout
    finally:
        fs.unlink()
    found, in_file = [], False
    for line in out.splitlines():
        # a path in the partition; not the summary line, which starts with the copy's path
        in_file = (line.startswith("/") and not line.startswith(f"{fs}:")) or (
            in_file and line.startswith(" "))
        if in_file:
            found.append(line)
    return found


def ext4_read(image: Path, part: Part, path: str, workdir: Path) -> bytes | None:
    """Read a file from an ext4 partition with debugfs (no mount); None if missing."""
    fs = extract(image, part, workdir / "part.ext4")
    out = workdir / "extracted"
    out.unlink(missing_ok=True)
    subprocess.run(["debugfs", "-R", f"dump {path} {out}", str(fs)], capture_output=True)
    fs.unlink()
    return out.read_bytes() if out.exists() else None


def newc_files(data: bytes) -> tuple[dict[str, bytes], int]:
    """Files in a newc cpio archive (name: content), and where the archive ends (no cpio
    on the host)."""
    files: dict[str, bytes] = {}
    pos = 0
    while pos + 110 <= len(data) and data[pos:pos + 6] == b"070701":
        fields = [int(data[pos + 6 + 8 * i:pos + 14 + 8 * i], 16) for i in range(13)]
        filesize, namesize = fields[6], fields[11]
        name = data[pos + 110:pos + 110 + namesize - 1].decode()
        pos = (pos + 110 + namesize + 3) & ~3
        if name == "TRAILER!!!":
            pos = (pos + filesize + 3) & ~3
            break
        files[name] = data[pos:pos + filesize]
        pos = (pos + filesize + 3) & ~3
    return files, pos


def initramfs_files(blob: bytes) -> dict[str, bytes]:
    """An initramfs-tools initrd's files: uncompressed early archives, then one zstd
    archive."""
    files: dict[str, bytes] = {}
    while blob.startswith(b"070701"):
        found, end = newc_files(blob)
        files |= found
        blob = blob[end:].lstrip(b"\0")
    main = subprocess.run(["zstd", "-dc"], input=blob, check=True, capture_output=True).stdout
    return files | newc_files(main)[0]
