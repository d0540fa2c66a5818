"""Will a draft job fit its devices (F1.17, beside the queue prediction).

The estimate itself is the trainer's (trainer/memory.py, a documented formula checked
against measured peaks); this module feeds it a draft's model, algorithm, parameters
and node specs, words its answer in the page's language, and refuses at creation a
job that fits none of what it asked for.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

from finetune.storage import resolve
from finetune.texts import in_page_language
from scheduler.models import DeviceType, NodeSpec
from trainer import memory
from trainer.parameters import SHARDING

#: What the trainer image can run (DeepSpeed is one of its dependencies); FSDP2 shards
#: only on accelerators (trainer/sharding.py).
DEVICE_STRATEGIES = ("ddp", "zero2", "fsdp2", "zero3", "zero3_offload")
CPU_STRATEGIES = ("ddp", "zero2", "zero3", "zero3_offload")


@dataclass(frozen=True)
class SpecMemory:
    spec: NodeSpec
    fit: memory.Fit

    @property
    def fits(self) -> bool:
        return self.fit.fits

    @property
    def summary(self) -> str:
        """ "≈ 61.2 GiB of 80 GiB per device (ZeRO-3)" in the page's language."""
        found = self.fit.estimate
        values = {"estimate": f"{found.gib:.1f}", "sharding": sharding_label(found.sharding)}
        if self.fit.capacity is None:
            return _("≈ %(estimate)s GiB per device (%(sharding)s)") % values
        values["capacity"] = f"{self.fit.capacity / memory.GIB:g}"
        if self.spec.device_type == DeviceType.NONE:
            return _("≈ %(estimate)s GiB of %(capacity)s GiB per process (%(sharding)s)") % values
        return _("≈ %(estimate)s GiB of %(capacity)s GiB per device (%(sharding)s)") % values

    @property
    def remedies(self) -> list[str]:
        return [remedy_text(code) for code in self.fit.remedies]


def sharding_label(code: str) -> str:
    """The strategy's short name in the page's language."""
    name, name_zh, _what, _what_zh = SHARDING.get(code, (code, code, "", ""))
    return in_page_language(name, name_zh)


def remedy_text(code: str) -> str:
    kind, _sep, value = code.partition(":")
    if kind == "sharding":
        return _("sharding %(name)s") % {"name": sharding_label(value)}
    if kind == "lora":
        return _("a LoRA algorithm")
    if kind == "checkpointing":
        return _("gradient checkpointing on")
    if kind == "nodes":
        return _("%(count)s nodes") % {"count": value}
    if kind == "sequence":
        return _("a max sequence length of %(length)s") % {"length": value}
    if kind == "batch":
        return _("a batch size of 1 per device")
    return code


@functools.lru_cache(maxsize=64)
def _shape(folder: str, stamp: int) -> memory.ModelShape | None:
    try:
        return memory.read_shape(folder)
    except memory.ShapeError:
        return None


def model_shape(location: str) -> memory.ModelShape | None:
    """The base model's shape, read once per change of its config.json."""
    folder = Path(resolve(location))
    try:
        stamp = (folder / "config.json").stat().st_mtime_ns
    except OSError:
        return None
    return _shape(str(folder), stamp)


@dataclass(frozen=True)
class _Draft:
    algorithm: str
    parameters: dict[str, Any]
    base_model: str


def for_specs(
    algorithm,
    pretrained_model,
    parameters: dict[str, Any],
    specs: Sequence[NodeSpec],
    node_count: int,
) -> list[SpecMemory]:
    """The estimate of a draft on each spec; empty where there is none to make (an
    image model, a folder without a language model's config)."""
    if algorithm is None or pretrained_model is None or not node_count:
        return []
    if algorithm.scenario.task_type != "llm":
        return []
    shape = model_shape(pretrained_model.location)
    if shape is None:
        return []
    schema = algorithm.parameters_schema.get("properties") or {}
    values = {name: prop.get("default") for name, prop in schema.items()}
    values.update({k: v for k, v in (parameters or {}).items() if v is not None})
    draft = _Draft(algorithm.code, values, "")
    found = []
    for spec in specs:
        per_node = spec.processes_per_node
        kind = "cpu" if spec.device_type == DeviceType.NONE else "cuda"
        work = memory.workload(
            draft,
            world_size=per_node * node_count,
            processes_per_node=per_node,
            device_kind=kind,
            shape=shape,
        )
        gib = spec.memory_per_process_gib
        capacity = int(gib * memory.GIB) if gib else None
        available = CPU_STRATEGIES if kind == "cpu" else DEVICE_STRATEGIES
        found.append(SpecMemory(spec, memory.fit(work, capacity, available=available)))
    return found


def check(draft) -> None:
    """Refuse a job that does not fit one of its node specs, saying what would; and
    FSDP2 on a CPU spec of several processes, where it would not shard (accelerate
    applies FSDP to accelerator processes only: trainer/sharding.py)."""
    chosen = (draft.parameters or {}).get("sharding", "auto")
    if chosen not in ("auto", *CPU_STRATEGIES):  # FSDP2: accelerators only
        for spec in draft.node_specs:
            if (
                spec.device_type == DeviceType.NONE
                and spec.processes_per_node * draft.node_count > 1
            ):
                raise ValidationError(
                    {
                        "sharding": [
                            _(
                                "FSDP2 shards only on accelerators; on the CPU spec “%(spec)s” "
                                "choose ZeRO-2 or ZeRO-3."
                            )
                            % {"spec": spec.name}
                        ]
                    }
                )
    for item in for_specs(
        draft.algorithm,
        draft.pretrained_model,
        draft.parameters,
        draft.node_specs,
        draft.node_count,
    ):
        if item.fits:
            continue
        message = _("It does not fit on “%(spec)s”: %(estimate)s.") % {
            "spec": item.spec.name,
            "estimate": item.summary,
        }
        if item.remedies:
            message += " " + _("It would fit with: %(remedies)s.") % {
                "remedies": _("; ").join(item.remedies)
            }
        raise ValidationError({"node_specs": [message]})
