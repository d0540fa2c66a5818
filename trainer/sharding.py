"""How a run of several processes spreads its model: the configs the trainer writes.

`ddp` keeps a full copy of everything on every device. DeepSpeed's ZeRO shards the
optimiser state and gradients (`zero2`), and the weights too (`zero3`), optionally
keeping weights and optimiser state in host memory (`zero3_offload`). `fsdp2` is
PyTorch's own fully sharded data parallel, per decoder layer. `auto` takes the least
sharding that the memory estimate says fits (trainer/memory.py).

The user never writes these configs: the trainer builds them from the job's
parameters, writes them beside its checkpoints (so the log can name the file), and
hands them to transformers' Trainer. Saving gathers the full weights on rank 0
(ZeRO-3: `stage3_gather_16bit_weights_on_model_save`; FSDP2: a full state dict), so
the published model is a plain Hugging Face checkpoint that loads without DeepSpeed.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("jingtiao.train")

STRATEGIES = ("ddp", "zero2", "zero3", "zero3_offload", "fsdp2")
DEEPSPEED = {"zero2", "zero3", "zero3_offload"}


class ShardingError(ValueError):
    """The strategy cannot run here; the message says why and what to choose instead."""


def deepspeed_config(strategy: str) -> dict[str, Any]:
    """A ZeRO config whose sizes transformers fills in from the training arguments."""
    stage = 2 if strategy == "zero2" else 3
    zero: dict[str, Any] = {
        "stage": stage,
        "overlap_comm": True,
        "contiguous_gradients": True,
        "reduce_bucket_size": "auto",
    }
    if stage == 3:
        zero.update(
            {
                "stage3_prefetch_bucket_size": "auto",
                "stage3_param_persistence_threshold": "auto",
                # One plain checkpoint on rank 0 when saving, not only ZeRO shards.
                "stage3_gather_16bit_weights_on_model_save": True,
            }
        )
    if strategy == "zero3_offload":
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
        zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    return {
        "zero_optimization": zero,
        "bf16": {"enabled": "auto"},
        "fp16": {"enabled": "auto"},
        "gradient_clipping": "auto",
        "gradient_accumulation_steps": "auto",
        "train_micro_batch_size_per_gpu": "auto",
        "train_batch_size": "auto",
        "wall_clock_breakdown": False,
    }


def fsdp_config(layer_classes: list[str], *, checkpointing: bool) -> dict[str, Any]:
    """FSDP2 over each decoder layer, with a full state dict gathered for saving."""
    return {
        "fsdp_version": 2,
        "transformer_layer_cls_to_wrap": layer_classes,
        "reshard_after_forward": True,
        "state_dict_type": "FULL_STATE_DICT",
        # FSDP checkpoints the wrapped layers itself; transformers refuses both at once.
        "activation_checkpointing": checkpointing,
        # Only rank 0 reads the weights; the others get their shards from it: a node of
        # eight processes holds one copy in host memory, not eight.
        "cpu_ram_efficient_loading": True,
    }


def layer_classes(base_model: str) -> list[str]:
    """The decoder layer classes of a Hugging Face model, which FSDP wraps one by one:
    its class's `_no_split_modules`, found from the config without loading a weight."""
    import transformers

    config = json.loads((Path(base_model) / "config.json").read_text(encoding="utf-8"))
    for architecture in config.get("architectures") or []:
        names = getattr(getattr(transformers, architecture, None), "_no_split_modules", None)
        if names:
            return list(names)
    raise ShardingError(
        f"fsdp2 does not know the layers of a {config.get('model_type')} model; choose zero3"
    )


def training_arguments(
    strategy: str,
    *,
    world_size: int,
    device_kind: str,
    backend: str,
    folder: Path,
    base_model: str,
    checkpointing: bool,
    is_main: bool,
) -> dict[str, Any]:
    """The TrainingArguments fields of a strategy (none for ddp). Rank 0 writes the config
    into `folder` for the record; every rank takes it as a dict, so no rank reads a file
    that rank 0 may not have written yet."""
    if strategy == "ddp" or world_size == 1:
        return {}
    if strategy in DEEPSPEED:
        check_deepspeed()
        import deepspeed

        # accelerate joins DeepSpeed's process group itself only on an accelerator; ZeRO-3
        # partitions the weights as they load, before that, so join it here, first.
        deepspeed.init_distributed(dist_backend=backend, auto_mpi_discovery=False)
        config = deepspeed_config(strategy)
        _record(folder / "deepspeed.json", config, strategy, is_main)
        return {"deepspeed": config}
    if strategy == "fsdp2":
        if device_kind == "cpu":
            raise ShardingError(
                "fsdp2 shards only on accelerators (GPU, MLU): on CPU processes accelerate "
                "would train unsharded; choose zero2 or zero3"
            )
        config = fsdp_config(layer_classes(base_model), checkpointing=checkpointing)
        _record(folder / "fsdp.json", config, strategy, is_main)
        # FSDP recomputes activations itself, per wrapped layer.
        return {
            "fsdp": "full_shard auto_wrap",
            "fsdp_config": config,
            "activation_checkpointing": False,
        }
    raise ShardingError(f"unknown sharding {strategy!r}; known: {', '.join(STRATEGIES)}")


def _record(path: Path, config: dict[str, Any], strategy: str, is_main: bool) -> None:
    if is_main:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(config, indent=2))
        log.info("sharding: %s, config written to %s", strategy, path)


def available(device_kind: str) -> tuple[str, ...]:
    """The strategies that can run on this kind of device with what is installed.
    FSDP2 needs an accelerator: accelerate applies FSDP to GPU and MLU processes only,
    and would train CPU processes unsharded without a word."""
    found = ["ddp"] if device_kind == "cpu" else ["ddp", "fsdp2"]
    if importlib.util.find_spec("deepspeed") is not None:
        found += ["zero2", "zero3", "zero3_offload"]
    return tuple(found)


def check_deepspeed() -> None:
    try:
        import deepspeed  # noqa: F401
    except ImportError:
        raise ShardingError(
            "DeepSpeed is not installed in the trainer's environment "
            "(pip install 'jingtiao[trainer]'); choose fsdp2 or ddp"
        ) from None
