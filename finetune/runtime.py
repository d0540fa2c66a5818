"""How long will a draft job train (预计运行时长, on the create page beside the queue
prediction and the memory estimate).

Two sources, the first that answers:

1. **Jobs like it that ran here**: the latest succeeded jobs of the same algorithm,
   base model, node spec and node count. Each one's reported steps give its seconds
   per step (between its first and last reported training step), which is divided by
   the sequences each process took per step (batch size x gradient accumulation) to
   compare with the draft's; the time before its first step and after its last
   (loading, saving) is added as it was. The median of those jobs is the answer.
2. **The compute it needs**, for a language model on a device whose peak is known:
   6 x parameters x tokens FLOPs for full training (4 x for LoRA, whose frozen
   weights need no gradients; x 4/3 with gradient checkpointing, which runs each
   layer's forward twice), at `MFU` of the devices' bf16 peak.

The steps of the draft: `max_steps` when set, else epochs x the optimiser steps of
one epoch, from the training set's rows (or, for packed sequences, its bytes at
`BYTES_PER_TOKEN` into `max_length`-token sequences) over batch size x gradient
accumulation x processes. Everything is an estimate and is worded as one; what it
does not know (no such job yet and a device of unknown peak, a CPU) it does not say.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from django.db.models import Max, Min

from finetune import memory as fit
from finetune.models import Dataset, Job, JobStatus, MetricPoint
from scheduler.models import DeviceType, NodeSpec
from trainer.memory import trains_lora

#: How many of the latest similar jobs the estimate reads.
SIMILAR_JOBS = 5
#: A model's share of its devices' peak that training reaches (model FLOPs utilisation).
MFU = 0.35
#: Bytes of training text per token, for packed data sets (English ~4, Chinese ~3).
BYTES_PER_TOKEN = 3.5
#: bf16 dense peak per device in TFLOPS, by a part of the device model's name.
PEAK_TFLOPS = {
    "MLU590": 314.0,
    "MLU580": 256.0,
    "MLU370": 96.0,
    "H200": 989.0,
    "H100": 989.0,
    "H800": 989.0,
    "H20": 148.0,
    "A100": 312.0,
    "A800": 312.0,
    "L40": 181.0,
    "4090": 165.0,
    "V100": 125.0,
}
#: Algorithms that pack their texts into full-length sequences (when `packing` is on,
#: for those that have the switch).
PACKED = {"pretrain"}


@dataclass(frozen=True)
class RunTime:
    spec: NodeSpec
    seconds: float
    steps: int
    #: "history": from `similar` jobs that ran here; "compute": from the FLOPs needed.
    basis: str
    similar: int = 0
    #: the run would take longer than the duration asked for: it would expire
    outlasts: bool = False

    @property
    def duration(self) -> timedelta:
        return timedelta(seconds=round(self.seconds))

    @property
    def mfu_percent(self) -> int:
        return round(MFU * 100)


def _value(parameters: dict[str, Any], schema: dict[str, Any], name: str, default: Any) -> Any:
    found = parameters.get(name)
    if found is None:
        found = (schema.get("properties") or {}).get(name, {}).get("default", default)
    return found


def _per_step(parameters: dict[str, Any], schema: dict[str, Any]) -> int:
    batch = int(_value(parameters, schema, "batch_size", 1) or 1)
    return batch * int(_value(parameters, schema, "gradient_accumulation_steps", 1) or 1)


def _packed(algorithm, parameters: dict[str, Any]) -> bool:
    schema = algorithm.parameters_schema
    return algorithm.code in PACKED or bool(_value(parameters, schema, "packing", False))


def sequences(algorithm, parameters: dict[str, Any], dataset: Dataset) -> int | None:
    """The training sequences of one epoch: its rows, or its packed sequences; None
    while the data set has not been counted (not validated yet)."""
    if _packed(algorithm, parameters) and dataset.size_bytes:
        length = int(_value(parameters, algorithm.parameters_schema, "max_length", 1024))
        return max(1, math.ceil(dataset.size_bytes / BYTES_PER_TOKEN / length))
    return dataset.record_count or None


def planned_steps(
    algorithm, parameters: dict[str, Any], dataset: Dataset, processes: int
) -> int | None:
    """The optimiser steps the draft would run; None where its data is not counted."""
    schema = algorithm.parameters_schema
    steps = int(_value(parameters, schema, "max_steps", 0) or 0)
    if steps > 0:
        return steps
    found = sequences(algorithm, parameters, dataset)
    if found is None:
        return None
    epochs = int(_value(parameters, schema, "epochs", 1) or 1)
    per_epoch = math.ceil(found / (_per_step(parameters, schema) * processes))
    return max(1, epochs * per_epoch)


@dataclass(frozen=True)
class _Run:
    seconds_per_sequence: float  # per process and optimiser step, per sequence
    overhead: float  # before the first reported step and after the last


def _measured(job: Job, first, last) -> _Run | None:
    """What `job` took per sequence, from its first and last (time, step) reported."""
    if not (job.started_at and job.finished_at) or last[1] <= first[1]:
        return None
    per_step = (last[0] - first[0]).total_seconds() / (last[1] - first[1])
    if per_step <= 0:
        return None
    before = (first[0] - job.started_at).total_seconds() - first[1] * per_step
    after = (job.finished_at - last[0]).total_seconds()
    sequences_per_step = _per_step(job.parameters, job.algorithm.parameters_schema)
    return _Run(per_step / sequences_per_step, max(0.0, before) + max(0.0, after))


def _from_history(algorithm, model, spec: NodeSpec, node_count: int) -> list[_Run]:
    """The latest similar jobs' runs: two queries, however many jobs."""
    similar = list(
        Job.objects.filter(
            status=JobStatus.SUCCEEDED,
            algorithm=algorithm,
            pretrained_model=model,
            spec_in_use=spec,
            node_count=node_count,
            started_at__isnull=False,
            finished_at__isnull=False,
        )
        .select_related("algorithm")
        .order_by("-finished_at")[:SIMILAR_JOBS]
    )
    if not similar:
        return []
    # training steps grow with time: the first and last step are the first and last report
    spans = (
        MetricPoint.objects.filter(job__in=similar, step__isnull=False, loss__isnull=False)
        .values("job")
        .annotate(t0=Min("time"), t1=Max("time"), s0=Min("step"), s1=Max("step"))
    )
    by_job = {row["job"]: ((row["t0"], row["s0"]), (row["t1"], row["s1"])) for row in spans}
    runs = (_measured(job, *by_job[job.pk]) for job in similar if job.pk in by_job)
    return [run for run in runs if run is not None]


def peak_flops(spec: NodeSpec) -> float | None:
    if spec.device_type == DeviceType.NONE:
        return None
    name = (spec.device_model or "").upper()
    found = next((tflops for part, tflops in PEAK_TFLOPS.items() if part in name), None)
    return found * 1e12 if found else None


def _from_compute(algorithm, model, parameters, dataset, spec, node_count, steps) -> float | None:
    peak = peak_flops(spec)
    if peak is None or algorithm.scenario.task_type != "llm":
        return None
    shape = fit.model_shape(model.location)
    if shape is None:
        return None
    schema = algorithm.parameters_schema
    length = int(_value(parameters, schema, "max_length", 1024))
    if not _packed(algorithm, parameters) and dataset.record_count and dataset.size_bytes:
        length = min(length, math.ceil(dataset.size_bytes / dataset.record_count / BYTES_PER_TOKEN))
    processes = spec.processes_per_node * node_count
    tokens = steps * _per_step(parameters, schema) * processes * length
    lora = trains_lora(algorithm.code, {"use_lora": _value(parameters, schema, "use_lora", False)})
    factor = (4 if lora else 6) * (
        4 / 3 if _value(parameters, schema, "gradient_checkpointing", False) else 1
    )
    return factor * shape.parameters * tokens / (peak * MFU * processes)


def for_specs(
    algorithm,
    model,
    parameters: dict[str, Any],
    dataset: Dataset | None,
    specs: Sequence[NodeSpec],
    node_count: int,
    duration: timedelta | None = None,
) -> list[RunTime]:
    """The draft's run time on each of its specs, where one can be told, and whether
    it would outlast `duration`."""
    if algorithm is None or model is None or dataset is None or not node_count:
        return []
    found = []
    for spec in specs:
        processes = spec.processes_per_node * node_count
        steps = planned_steps(algorithm, parameters, dataset, processes)
        if steps is None:
            continue
        runs = _from_history(algorithm, model, spec, node_count)
        if runs:
            per_sequence = statistics.median(run.seconds_per_sequence for run in runs)
            overhead = statistics.median(run.overhead for run in runs)
            seconds = steps * _per_step(parameters, algorithm.parameters_schema) * per_sequence
            found.append(RunTime(spec, seconds + overhead, steps, "history", len(runs)))
            continue
        seconds = _from_compute(algorithm, model, parameters, dataset, spec, node_count, steps)
        if seconds is not None:
            found.append(RunTime(spec, seconds, steps, "compute"))
    if duration is None:
        return found
    limit = duration.total_seconds()
    return [replace(item, outlasts=item.seconds > limit) for item in found]
