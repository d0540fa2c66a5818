"""Which accelerator to train on, and this process's place in a distributed run."""

from __future__ import annotations

import ctypes
import importlib
import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class DeviceInfo:
    kind: str  # "mlu", "cuda" or "cpu"
    backend: str  # torch.distributed backend: "cncl", "nccl" or "gloo"
    count: int  # devices visible to this process


@dataclass(frozen=True)
class DistributedInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    node_rank: int = 0
    nnodes: int = 1
    master_addr: str | None = None
    master_port: int | None = None

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _mlu_count() -> int | None:
    """Number of MLUs when Cambricon's torch_mlu imports, else None."""
    try:
        importlib.import_module("torch_mlu")
    except Exception:
        return None
    import torch

    mlu = getattr(torch, "mlu", None)
    if mlu is None or not mlu.is_available():
        return None
    return int(mlu.device_count())


def detect_device() -> DeviceInfo:
    """MLU through torch_mlu with cncl, else CUDA with nccl, else CPU with gloo."""
    mlu = _mlu_count()
    if mlu:
        return DeviceInfo("mlu", "cncl", mlu)
    import torch

    if torch.cuda.is_available():
        return DeviceInfo("cuda", "nccl", torch.cuda.device_count())
    return DeviceInfo("cpu", "gloo", 1)


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    value = env.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from None


def distributed_from_env(env: Mapping[str, str] | None = None) -> DistributedInfo:
    """Rank information as torchrun / accelerate set it; one process when absent."""
    env = os.environ if env is None else env
    world_size = _int(env, "WORLD_SIZE", 1)
    rank = _int(env, "RANK", 0)
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"inconsistent RANK={rank} / WORLD_SIZE={world_size}")
    port = env.get("MASTER_PORT")
    return DistributedInfo(
        rank=rank,
        world_size=world_size,
        local_rank=_int(env, "LOCAL_RANK", 0),
        node_rank=_int(env, "NODE_RANK", _int(env, "GROUP_RANK", 0)),
        nnodes=_int(env, "NNODES", 1),
        master_addr=env.get("MASTER_ADDR") or None,
        master_port=int(port) if port else None,
    )


def physical_device(device: DeviceInfo, local_rank: int) -> int:
    """The index the driver tools (nvidia-smi, cnmon) know this process's device by: the
    LOCAL_RANK-th of the visible devices."""
    name = {"cuda": "CUDA_VISIBLE_DEVICES", "mlu": "CAMBRICON_VISIBLE_DEVICES"}.get(device.kind)
    visible = [part.strip() for part in os.environ.get(name or "", "").split(",") if part.strip()]
    if local_rank < len(visible) and visible[local_rank].isdigit():
        return int(visible[local_rank])
    return local_rank


def die_with_launcher() -> None:
    """Under torchrun, end this process if its launcher dies (PR_SET_PDEATHSIG): the
    platform's supervisor takes the launcher down with it, and no rank may train on,
    unwatched, after its node's launcher is gone."""
    if "TORCHELASTIC_RUN_ID" not in os.environ:
        return
    launcher = os.getppid()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
    except (AttributeError, OSError):
        return  # not Linux: the executors still find a trainer by its command line
    if os.getppid() != launcher:  # it died before the line above
        os._exit(1)


def supports_bf16(device: DeviceInfo) -> bool:
    import torch

    if device.kind == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    # MLU 370 and later train in bf16; on CPU, fp32 is both faster and safer.
    return device.kind == "mlu"
