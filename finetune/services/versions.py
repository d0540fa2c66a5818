"""A model version's files and its download as one archive, streamed from disk.

The files are what lies in the version's folder, read from disk (not from its manifest,
which a user cannot check): regular files only -- a symbolic link could lead anywhere
on the shared volume, so it is neither listed nor sent. Their checksums are the ones the
trainer wrote into the manifest when it published them (trainer/output.py).

The archive is a zip of stored (not compressed: weights do not shrink) entries, written
as it is sent: each file is read in blocks of a megabyte and each block leaves before the
next is read, so a model of many gigabytes costs neither memory nor a temporary copy.
Its last entry, ``SHA256SUMS``, holds the SHA-256 of every file as it was read for this
download, in the layout ``sha256sum -c`` checks.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from django.db import transaction
from django.db.models import Max
from django.utils.text import slugify
from django.utils.translation import gettext_noop

from finetune.models import ModelRepo, ModelVersion
from finetune.signals import model_version_created
from finetune.storage import resolve
from finetune.texts import Said, say

BLOCK = 1 << 20
CHECKSUMS = "SHA256SUMS"
# zip entries above this size need the zip64 extension, which must be asked for when the
# size is not known up front; asked for from a margin below it
ZIP64_FROM = 1 << 31


@dataclass(frozen=True)
class VersionFile:
    path: str  # relative to the version's folder, with forward slashes
    size: int
    sha256: str | None  # from the manifest, where the trainer wrote one


def add_version(repo_id: int, location: str, manifest: dict, **fields) -> ModelVersion:
    """The repo's next version (a job's model, a merge): call inside a transaction; the
    repo's row is locked to serialise the numbers of concurrent additions."""
    ModelRepo.objects.select_for_update().filter(pk=repo_id).get()
    latest = ModelVersion.objects.filter(repo_id=repo_id).aggregate(Max("number"))
    version = ModelVersion.objects.create(
        repo_id=repo_id,
        number=(latest["number__max"] or 0) + 1,
        location=location,
        manifest=manifest if isinstance(manifest, dict) else {},
        **fields,
    )
    # announced once the caller's transaction commits: a job whose success is rolled
    # back announces no version
    transaction.on_commit(
        functools.partial(model_version_created.send, sender=ModelVersion, version_id=version.pk)
    )
    return version


def read_manifest(folder: Path) -> dict:
    """The manifest of a published folder, or {} where there is none to read."""
    try:
        found = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def files_gone(version: ModelVersion) -> Said | None:
    """Why nothing can be done with the version's files: they left the data volume."""
    if folder_of(version).is_dir():
        return None
    return say(
        gettext_noop("The files of this version are no longer at %(path)s."),
        path=version.location,
    )


def folder_of(version: ModelVersion) -> Path:
    return resolve(version.location)


def version_files(version: ModelVersion) -> list[VersionFile]:
    """The regular files of the version's folder, in path order; none if it is gone."""
    root = folder_of(version)
    if not root.is_dir():
        return []
    known = {
        entry.get("path"): entry.get("sha256")
        for entry in version.manifest.get("files") or []
        if isinstance(entry, dict)
    }
    found = []
    for top, dirs, files in os.walk(root):  # does not follow links to folders
        dirs.sort()
        for name in files:
            path = Path(top) / name
            if path.is_symlink() or not path.is_file():
                continue
            relative = path.relative_to(root).as_posix()
            found.append(VersionFile(relative, path.stat().st_size, known.get(relative)))
    found.sort(key=lambda f: f.path)
    return found


def file_of(version: ModelVersion, name: str) -> Path | None:
    """The file ``name`` of the version, if it is one of its listed files; else None."""
    for item in version_files(version):
        if item.path == name:
            return folder_of(version) / item.path
    return None


def archive_name(version: ModelVersion) -> str:
    """``<repo>-v<number>``: the archive's file name and the folder inside it."""
    stem = slugify(version.repo.name, allow_unicode=True) or f"repo-{version.repo_id}"
    return f"{stem}-v{version.number}"


class _Sink:
    """Where the zip writer puts its bytes; the generator takes them out after each write.
    It cannot seek, so the writer puts each entry's sizes and CRC after its data."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.chunks.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        out = b"".join(self.chunks)
        self.chunks.clear()
        return out


def stream_archive(version: ModelVersion) -> Iterator[bytes]:
    """The version's files as a zip, block by block, ending with their checksums."""
    root = folder_of(version)
    top = archive_name(version)
    sink = _Sink()
    sums: list[str] = []
    with zipfile.ZipFile(sink, mode="w", compression=zipfile.ZIP_STORED) as archive:
        for item in version_files(version):
            path = root / item.path
            try:
                source = path.open("rb")
            except OSError:
                continue  # removed since it was listed
            with source:
                info = zipfile.ZipInfo.from_file(path, f"{top}/{item.path}")
                info.compress_type = zipfile.ZIP_STORED
                digest = hashlib.sha256()
                with archive.open(info, "w", force_zip64=item.size >= ZIP64_FROM) as entry:
                    while block := source.read(BLOCK):
                        digest.update(block)
                        entry.write(block)
                        yield sink.take()
            sums.append(f"{digest.hexdigest()}  {item.path}\n")
            yield sink.take()
        archive.writestr(f"{top}/{CHECKSUMS}", "".join(sums))
    yield sink.take()
