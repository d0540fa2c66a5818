"""Will a job fit: its peak memory per device, estimated before it queues.

Standard library only: the web process shows the estimate on the create page and
refuses a job that cannot fit; the trainer uses the same numbers for sharding "auto".

The formula (docs/trainer.md, "Memory estimate"), per device, for a model of P
parameters, L layers, hidden size H, MLP size I, A attention heads, vocabulary V,
trained on B sequences of S tokens per device by N processes:

    weights      P * w                     w = 2 bytes when loaded in bf16, else 4
    gradients    T * w                     T = trained parameters (P, or LoRA's); twice
                                           that under DDP of several ranks (its buckets)
    optimiser    T * o                     AdamW's two moments: o = 2 * w; DeepSpeed's
                                           ZeRO keeps an fp32 master copy, two fp32
                                           moments and an fp32 gradient partition: o = 16
    reference    P * w                     a frozen copy (DPO without LoRA, GRPO with KL)
    activations  B*S*H*a * L               each layer's input, kept by checkpointing,
                 + B*S*(8H + 4I)*a         plus one layer recomputed (all L without it);
                                           no S x S attention scores: SDPA's fused kernels
                                           keep none, on devices and CPUs alike
    logits       B*S*V * (a + 8)           the logits, and their fp32 copy and gradient
    buckets      7.6 * H^2 bytes           DeepSpeed's reduce and prefetch buckets
    (all of the above, plus 10 % for what the allocators keep)
    runtime      a constant per device     CUDA/CNRT context and allocator reserve; on a
                                           CPU the interpreter, torch and its libraries

a is 2 bytes under bf16/fp16 mixed precision, else 4. Sharding divides by N what it
shards: ZeRO-2 the gradients and optimiser state; ZeRO-3 and FSDP2 the weights too
(plus two layers gathered at a time); ZeRO-3 with offload moves weights and optimiser
state to host memory, leaving the gathered layers. Activations are never sharded:
every process works on its own batch. The estimate was checked against measured peaks
(benchmarks/distributed.py prints the worst error).
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

GIB = 2**30
#: What a process holds besides its tensors, by device kind (see the docstring).
RUNTIME_BYTES = {"cpu": int(0.5 * GIB), "cuda": int(1.0 * GIB), "mlu": int(1.0 * GIB)}
#: Tensors do not pack perfectly: the caching allocators keep blocks they freed.
FRAGMENTATION = 1.10
#: The order "auto" tries strategies in: the least sharding that fits, for speed.
LEAST_SHARDING_FIRST = ("ddp", "zero2", "fsdp2", "zero3", "zero3_offload")
LORA_ALGORITHMS = {"sft_lora", "t2i_lora"}  # always LoRA; DPO and GRPO say so in use_lora


def trains_lora(algorithm: str, parameters: dict[str, Any]) -> bool:
    """Whether a run of `algorithm` trains a LoRA adapter rather than every weight."""
    return algorithm in LORA_ALGORITHMS or bool(parameters.get("use_lora"))


class ShapeError(ValueError):
    """The model's folder does not say enough to estimate its memory."""


@dataclass(frozen=True)
class ModelShape:
    parameters: int
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    vocab: int

    @property
    def layer_parameters(self) -> int:
        return max(1, (self.parameters - 2 * self.vocab * self.hidden) // max(1, self.layers))


@dataclass(frozen=True)
class Workload:
    """What a job asks of each device, from its model and parameters."""

    shape: ModelShape
    lora: bool
    lora_rank: int
    reference: bool
    weight_bytes: int
    activation_bytes: int
    batch: int
    sequence: int
    checkpointing: bool
    world_size: int
    processes_per_node: int = 1
    device_kind: str = "cuda"
    sharding: str = "ddp"


@dataclass(frozen=True)
class Estimate:
    total: int  # bytes per device
    parts: dict[str, int] = field(default_factory=dict)
    sharding: str = "ddp"

    @property
    def gib(self) -> float:
        return self.total / GIB

    def fits(self, capacity: int) -> bool:
        return self.total <= capacity


def read_shape(model_dir: str | Path) -> ModelShape:
    """The shape of a Hugging Face causal LM from its config.json, with the parameter
    count read from its safetensors headers (exact), else worked out from the config."""
    folder = Path(model_dir)
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ShapeError(f"cannot read {folder / 'config.json'}: {exc}") from None
    text = config.get("text_config") or config  # multimodal models nest the LLM's
    try:
        hidden = int(text["hidden_size"])
        layers = int(text["num_hidden_layers"])
        heads = int(text["num_attention_heads"])
        vocab = int(text["vocab_size"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ShapeError(f"config.json lacks {exc} of a transformer language model") from None
    intermediate = int(text.get("intermediate_size") or 4 * hidden)
    kv_heads = int(text.get("num_key_value_heads") or heads)
    counted = _safetensors_parameters(folder)
    if not counted:
        head_dim = int(text.get("head_dim") or hidden // heads)
        attention = 2 * hidden * heads * head_dim + 2 * hidden * kv_heads * head_dim
        per_layer = attention + 3 * hidden * intermediate + 2 * hidden
        embeddings = vocab * hidden * (1 if text.get("tie_word_embeddings", True) else 2)
        counted = layers * per_layer + embeddings + hidden
    return ModelShape(counted, layers, hidden, intermediate, heads, kv_heads, vocab)


def _safetensors_parameters(folder: Path) -> int:
    """Elements in every tensor of the folder's safetensors files (headers only)."""
    total = 0
    for path in sorted(folder.glob("*.safetensors")):
        try:
            with open(path, "rb") as handle:
                (size,) = struct.unpack("<Q", handle.read(8))
                if size > 100 * 2**20:
                    return 0
                header = json.loads(handle.read(size))
        except (OSError, ValueError, struct.error):
            return 0
        for name, tensor in header.items():
            if name == "__metadata__":
                continue
            count = 1
            for dim in tensor.get("shape", ()):
                count *= int(dim)
            total += count
    return total


def lora_parameters(shape: ModelShape, rank: int) -> int:
    """LoRA's trained parameters over every linear layer ("all-linear", an upper bound):
    r * (inputs + outputs) of q, k, v, o, gate, up and down in each layer."""
    head_dim = shape.hidden // max(1, shape.heads)
    kv = shape.kv_heads * head_dim
    sides = 9 * shape.hidden + 2 * kv + 3 * shape.intermediate
    return rank * sides * shape.layers


def estimate(work: Workload) -> Estimate:
    """Peak bytes per device of one training process (the formula above)."""
    shape, n, w, a = work.shape, max(1, work.world_size), work.weight_bytes, work.activation_bytes
    strategy = work.sharding if n > 1 else "ddp"
    deepspeed = strategy.startswith("zero")
    trained = lora_parameters(shape, work.lora_rank) if work.lora else shape.parameters
    weights = shape.parameters * w
    gradients = trained * w
    # DeepSpeed's ZeRO optimiser always keeps an fp32 master copy of its partition beside
    # AdamW's two fp32 moments, and an fp32 partition of the averaged gradients.
    optimiser = trained * (16 if deepspeed else 2 * w)
    reference = shape.parameters * w if work.reference else 0
    gathered = 2 * shape.layer_parameters * w
    if strategy == "ddp" and n > 1:
        gradients *= 2  # DDP's reducer keeps its buckets beside the gradients
    elif strategy == "zero2":
        gradients, optimiser = gradients // n, optimiser // n
    elif strategy in ("zero3", "fsdp2"):
        weights, gradients, optimiser = weights // n, gradients // n, optimiser // n
        reference //= n
        weights += gathered
    elif strategy == "zero3_offload":
        weights, optimiser, reference = gathered, 0, 0
        gradients //= n
    b, s, h = work.batch, work.sequence, shape.hidden
    layer = b * s * (8 * h + 4 * shape.intermediate) * a
    kept = b * s * h * a * shape.layers + layer if work.checkpointing else layer * shape.layers
    logits = b * s * shape.vocab * (a + 8)
    parts = {
        "weights": weights,
        "gradients": gradients,
        "optimiser": optimiser,
        "reference": reference,
        "activations": kept,
        "logits": logits,
    }
    if deepspeed:
        # its reduce and prefetch buckets (hidden² elements each, as transformers sizes
        # them), double-buffered
        parts["buckets"] = int(2 * 1.9 * h * h * 4)
    tensors = int(sum(parts.values()) * FRAGMENTATION)
    runtime = RUNTIME_BYTES.get(work.device_kind, RUNTIME_BYTES["cuda"])
    parts["runtime"] = runtime
    return Estimate(tensors + runtime, parts, strategy)


def choose_sharding(
    work: Workload, *, capacity: int | None, available: tuple[str, ...] = LEAST_SHARDING_FIRST
) -> str:
    """Sharding "auto": the least sharding that fits `capacity` bytes per device (of those
    `available` here), the most there is when none fits; ddp for one process or where
    the capacity is not known."""
    candidates = [name for name in LEAST_SHARDING_FIRST if name in available] or ["ddp"]
    if work.world_size <= 1:
        return "ddp"
    if capacity is None:
        return "ddp"
    for name in candidates:
        if estimate(replace(work, sharding=name)).fits(capacity):
            return name
    return candidates[-1]


@dataclass(frozen=True)
class Fit:
    """The estimate of a job on a spec, and when it does not fit, what would."""

    estimate: Estimate
    capacity: int | None  # bytes per device; None: the spec does not say
    remedies: tuple[str, ...] = ()  # codes: sharding:<name>, lora, nodes:<n>, sequence:<n>, ...

    @property
    def fits(self) -> bool:
        return self.capacity is None or self.estimate.fits(self.capacity)


def fit(
    work: Workload, capacity: int | None, *, available: tuple[str, ...], max_nodes: int = 64
) -> Fit:
    """The estimate at the job's sharding (auto: what auto would choose) and, when it
    exceeds `capacity`, each single change that would make it fit."""
    chosen = work.sharding
    if chosen == "auto":
        chosen = choose_sharding(work, capacity=capacity, available=available)
    work = replace(work, sharding=chosen)
    found = estimate(work)
    if capacity is None or found.fits(capacity):
        return Fit(found, capacity)
    remedies: list[str] = []
    if work.world_size > 1:
        for name in LEAST_SHARDING_FIRST:
            bigger = replace(work, sharding=name)
            if name in available and name != chosen and estimate(bigger).fits(capacity):
                remedies.append(f"sharding:{name}")
                break
    if not work.lora and estimate(replace(work, lora=True, reference=False)).fits(capacity):
        remedies.append("lora")
    if not work.checkpointing and estimate(replace(work, checkpointing=True)).fits(capacity):
        remedies.append("checkpointing")
    per_node = max(1, work.processes_per_node)
    sharding_for_nodes = chosen if chosen != "ddp" else _most_sharding(available)
    if sharding_for_nodes != "ddp":
        for nodes in (2, 4, 8, 16, 32, 64):
            if nodes > max_nodes or nodes * per_node <= work.world_size:
                continue
            bigger = replace(work, world_size=nodes * per_node, sharding=sharding_for_nodes)
            if estimate(bigger).fits(capacity):
                remedies.append(f"nodes:{nodes}")
                break
    sequence = work.sequence
    while sequence > 256:
        sequence //= 2
        if estimate(replace(work, sequence=sequence)).fits(capacity):
            remedies.append(f"sequence:{sequence}")
            break
    if work.batch > 1 and estimate(replace(work, batch=1)).fits(capacity):
        remedies.append("batch:1")
    return Fit(found, capacity, tuple(remedies))


def _most_sharding(available: tuple[str, ...]) -> str:
    for name in ("zero3", "fsdp2"):
        if name in available:
            return name
    return "ddp"


def workload(
    spec: Any,
    *,
    world_size: int,
    processes_per_node: int = 1,
    device_kind: str = "cuda",
    shape: ModelShape | None = None,
) -> Workload:
    """The workload of a trainer spec (trainer/spec.py JobSpec, or anything with its
    algorithm, parameters and base_model)."""
    p = spec.parameters
    algorithm = spec.algorithm
    lora = trains_lora(algorithm, p)
    reference = not lora and (
        algorithm == "dpo" or (algorithm == "grpo" and float(p.get("beta") or 0) > 0)
    )
    precision = p.get("precision", "auto")
    mixed = precision in ("bf16", "fp16") or (precision == "auto" and device_kind != "cpu")
    sequence = int(p.get("max_length") or 1024)
    batch = int(p.get("batch_size") or 1)
    if algorithm == "grpo":
        sequence += int(p.get("max_completion_length") or 0)
    if algorithm in ("dpo", "reward_model"):
        batch *= 2  # chosen and rejected go through the model together
    return Workload(
        shape=shape or read_shape(spec.base_model),
        lora=lora,
        lora_rank=int(p.get("lora_rank") or 8),
        reference=reference,
        weight_bytes=2 if precision == "bf16" else 4,
        activation_bytes=2 if mixed else 4,
        batch=batch,
        sequence=sequence,
        checkpointing=bool(p.get("gradient_checkpointing", True)),
        world_size=world_size,
        processes_per_node=processes_per_node,
        device_kind=device_kind,
        sharding=p.get("sharding", "auto") or "auto",
    )


def device_capacity(device_kind: str, dist: Any) -> int | None:
    """Bytes one process may use here: its device's memory, or on a CPU its share of
    the memory this machine (or container) has."""
    if device_kind in ("cuda", "mlu"):
        import torch

        backend = getattr(torch, device_kind)
        return int(backend.get_device_properties(dist.local_rank).total_memory)
    import psutil  # the trainer's; this module stays importable without it

    processes = int(os.environ.get("LOCAL_WORLD_SIZE") or 1)
    return int(psutil.virtual_memory().total // max(1, processes))


def reset_peak(device_kind: str, local_rank: int = 0) -> None:
    """Start measuring the peak afresh (on a CPU: Linux's peak resident size, VmHWM)."""
    if device_kind in ("cuda", "mlu"):
        import torch

        getattr(torch, device_kind).reset_peak_memory_stats(local_rank)
        return
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")  # resets VmHWM to the current resident size
    except OSError:
        pass  # not Linux: the peak is then the process's whole life's


def measured_peak(device_kind: str, local_rank: int = 0) -> int:
    """This process's peak since `reset_peak` (or its start), measured as the estimate
    counts it: on a CPU its peak resident size, on a device what its caching allocator
    reserved at most plus the runtime's context."""
    if device_kind in ("cuda", "mlu"):
        import torch

        backend = getattr(torch, device_kind)
        return int(backend.max_memory_reserved(local_rank)) + RUNTIME_BYTES[device_kind]
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # KiB on Linux


def describe(found: Estimate) -> str:
    """ "3.2 GiB per device (weights 1.1, gradients 1.1, ...)" for the log."""
    shown = ", ".join(f"{name} {value / GIB:.2f}" for name, value in found.parts.items() if value)
    return f"{found.gib:.2f} GiB per device at {found.sharding} ({shown} GiB)"
