"""Atomic output: everything is built in a hidden sibling folder, then renamed into place.

A reader that finds ``<output_dir>/manifest.json`` therefore finds a complete result;
a run that dies leaves at most the hidden ``.<name>.partial`` folder, which the next
run into the same place clears.
"""

from __future__ import annotations

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
        files = [
            {"path": str(p.relative_to(self.staging)), "bytes": p.stat().st_size}
            for p in sorted(self.staging.rglob("*"))
            if p.is_file()
        ]
        write_json(
            self.staging / MANIFEST,
            {
                "format_version": FORMAT_VERSION,
                "completed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                **manifest,
                "files": files,
            },
        )
        _fsync_tree(self.staging)
        if self.final.exists():
            self.final.rmdir()  # empty (checked in prepare); rename cannot replace a full one
        os.rename(self.staging, self.final)
        self.finished = True
        return self.final

    def discard(self) -> None:
        if self.is_main and not self.finished:
            shutil.rmtree(self.staging, ignore_errors=True)


def _fsync_tree(root: Path) -> None:
    """Flush file contents before the rename publishes them (a crash must not expose
    a manifest next to truncated weights)."""
    for path in root.rglob("*"):
        if path.is_file():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
