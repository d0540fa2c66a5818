"""What a data set's files were when they were validated, to tell what changed since.

A fingerprint is read without opening a file: each data file's size and modification
time, and for a text-to-image folder one digest of every other file's name, size and
modification time (the images the rows name, among them). The validator keeps, per
data file, the SHA-256 of what it read and what the file's rows came to, so that
validating again reads only the files that changed; a file whose time changed but
whose content did not (copied, touched) is hashed, not parsed again.
"""

from __future__ import annotations

import gc
import hashlib
import os
from pathlib import Path
from typing import Any

from trainer.jsonl import Meter

BLOCK = 1 << 20


def name_of(root: Path, file: Path) -> str:
    """A data file's key: its path below the data set's folder (its name for a file)."""
    return file.name if file == root or not root.is_dir() else str(file.relative_to(root))


def file_stat(file: Path) -> list[int]:
    found = file.stat()
    return [found.st_size, found.st_mtime_ns]


def others_of(root: Path, data_files: list[Path]) -> list[Any] | None:
    """[count, bytes, digest] of every file under a folder but its data files: what
    a text-to-image data set's rows point at. None for a data set that is one file.
    One stat per file and no more (20,000 images: some tens of milliseconds)."""
    if not root.is_dir():
        return None
    skip = {str(file) for file in data_files}
    count = size = 0
    lines = []
    folders = [(str(root), "")]
    collecting = gc.isenabled()
    gc.disable()  # thousands of short-lived entries: no cycles among them to look for
    try:
        while folders:
            folder, prefix = folders.pop()
            try:
                with os.scandir(folder) as entries:
                    for entry in entries:
                        if entry.is_dir(follow_symlinks=False):
                            folders.append((entry.path, f"{prefix}{entry.name}/"))
                        elif entry.path not in skip:
                            found = entry.stat()
                            count, size = count + 1, size + found.st_size
                            lines.append(
                                f"{prefix}{entry.name}\0{found.st_size}\0{found.st_mtime_ns}\n"
                            )
            except OSError:
                continue  # went while we looked: a change the next look sees
    finally:
        if collecting:
            gc.enable()
    lines.sort()
    digest = hashlib.sha256("".join(lines).encode("utf-8", "surrogateescape"))
    return [count, size, digest.hexdigest()]


def stats(root: Path, data_files: list[Path], *, images: bool) -> dict[str, Any]:
    """The fingerprint's part read from the file system alone (no file is opened)."""
    found: dict[str, Any] = {
        "root": str(root),  # the same files elsewhere are another data set's
        "files": {name_of(root, f): file_stat(f) for f in data_files},
    }
    if images:
        found["others"] = others_of(root, data_files)
    return found


def unchanged(
    kept: dict[str, Any] | None, root: Path, data_files: list[Path], *, images: bool
) -> bool:
    """Whether the files are as the kept fingerprint saw them (sizes, times, names)."""
    if not kept or "files" not in kept:
        return False
    now = stats(root, data_files, images=images)
    then = {name: entry.get("stat") for name, entry in kept["files"].items()}
    return (
        now["files"] == then
        and now["root"] == kept.get("root")
        and now.get("others") == kept.get("others")
    )


def sha256_of(file: Path, meter: Meter | None = None) -> str:
    digest = hashlib.sha256()
    with file.open("rb") as handle:
        while block := handle.read(BLOCK):
            digest.update(block)
            if meter is not None:
                meter.advance(len(block))
    return digest.hexdigest()
