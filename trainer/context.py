"""What the runner hands to an algorithm, and what the algorithm hands back."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainer.devices import DeviceInfo, DistributedInfo
from trainer.spec import JobSpec


@dataclass
class RunContext:
    spec: JobSpec
    device: DeviceInfo
    dist: DistributedInfo
    staging: Path  # where the algorithm saves its artifacts
    checkpoints: Path  # scratch space for intermediate checkpoints, removed before publishing
    reporter: Any  # trainer.reporting.Reporter or NullReporter
    # Extra transformers callbacks (tests use this to make a run fail mid-way).
    extra_callbacks: list[Any] = field(default_factory=list)
    # What sharding "auto" came to, decided once per run (trainer/algorithms/common.py).
    resolved_sharding: str | None = None
    # This process's memory peak over the training loop, in bytes, once it has ended.
    training_peak: int | None = None
    # The model a trained adapter applies to, where it is not the spec's base model (a
    # run that started from a full model version: trainer/algorithms/common.py).
    adapter_base: str | None = None

    @property
    def params(self) -> dict[str, Any]:
        return self.spec.parameters


@dataclass
class TrainResult:
    artifacts: dict[str, str]  # role ("adapter", "model", "merged", "tokenizer", ...) -> folder
    metrics: dict[str, Any]  # summary for the manifest
    history: list[dict[str, Any]] = field(default_factory=list)
    base_model: str | None = None  # what the adapter applies to, if not the spec's
