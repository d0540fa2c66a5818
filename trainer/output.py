"""Atomic output: everything is built in a hidden sibling folder, then renamed into place.

A reader that finds ``<output_dir>/manifest.json`` therefore finds a complete result;
a run that dies leaves at most the hidden ``.<name>.partial`` folder, which the next
run into the same place clears.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
PARAMETERS = "parameters.json"
METRICS = "metrics.json"
CHECKPOINTS = "_checkpoints"
FORMAT_VERSION = 1
BLOCK = 1 << 20


class OutputError(RuntimeError):
    pass


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n", "utf-8")


def staging_of(output_dir: str | Path) -> Path:
    """Where a run writes before its output is final: beside it, hidden. Deterministic,
    so every rank of a multi-process run, and the platform, agree on it."""
    final = Path(output_dir).absolute()
    return final.parent / f".{final.name}.partial"


class StagedOutput:
    """The staging folder of one run and the final rename into ``output_dir``."""

    def __init__(self, output_dir: str | Path, *, is_main: bool = True) -> None:
        self.final = Path(output_dir).absolute()
        self.staging = staging_of(self.final)
        self.is_main = is_main
        self.finished = False

    def prepare(self) -> Path:
        if self.final.exists() and any(self.final.iterdir()):
            raise OutputError(f"output folder {self.final} already exists and is not empty")
        if self.is_main:
            shutil.rmtree(self.staging, ignore_errors=True)  # left over from a dead run
            self.staging.mkdir(parents=True)
            (self.staging / CHECKPOINTS).mkdir()
        return self.staging

    @property
    def checkpoints(self) -> Path:
        return self.staging / CHECKPOINTS

    def finish(self, manifest: dict[str, Any]) -> Path:
        """Write the manifest last, then move the folder into place in one rename."""
        if not self.is_main:
            return self.final
        shutil.rmtree(self.checkpoints, ignore_errors=True)
        # each file read once: its checksum for the manifest, then flushed to disk
        found = sorted(p for p in self.staging.rglob("*") if p.is_file())
        files = [file_entry(self.staging, p) for p in found]
        write_json(
            self.staging / MANIFEST,
            {
                "format_version": FORMAT_VERSION,
                "completed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                **manifest,
                "files": files,
            },
        )
        _fsync(self.staging / MANIFEST)
        if self.final.exists():
            self.final.rmdir()  # empty (checked in prepare); rename cannot replace a full one
        os.rename(self.staging, self.final)
        self.finished = True
        return self.final

    def discard(self) -> None:
        """Remove what an unfinished run wrote, but for its checkpoints: a run stopped,
        expired or failed is resumed from them (a new run into the same place clears
        them, in ``prepare``)."""
        if not self.is_main or self.finished:
            return
        if not any(self.checkpoints.glob("checkpoint-*")):
            shutil.rmtree(self.staging, ignore_errors=True)
            return
        for child in self.staging.iterdir():
            if child == self.checkpoints:
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)


def file_entry(root: Path, path: Path) -> dict[str, Any]:
    """A file's line in the manifest: its path under ``root``, size and SHA-256 (what a
    download's checksums are compared with). Its contents are flushed to disk before the
    rename publishes them: a crash must not expose a manifest next to truncated weights."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(BLOCK):
            digest.update(block)
        os.fsync(handle.fileno())
    return {
        "path": path.relative_to(root).as_posix(),
        "bytes": path.stat().st_size,
        "sha256": digest.hexdigest(),
    }


def _fsync(path: Path) -> None:
    with path.open("rb") as handle:
        os.fsync(handle.fileno())
