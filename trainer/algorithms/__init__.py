"""Algorithm code -> training function; modules import lazily, they pull in torch."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from trainer.context import RunContext, TrainResult

_ENTRY_POINTS = {
    "pretrain": ("trainer.algorithms.sft", "train_pretrain"),
    "sft_lora": ("trainer.algorithms.sft", "train_sft_lora"),
    "sft_full": ("trainer.algorithms.sft", "train_sft_full"),
    "reward_model": ("trainer.algorithms.preference", "train_reward_model"),
    "dpo": ("trainer.algorithms.preference", "train_dpo"),
    "grpo": ("trainer.algorithms.grpo", "train_grpo"),
    "t2i_lora": ("trainer.algorithms.t2i", "train_t2i_lora"),
}


def entry_point(code: str) -> Callable[[RunContext], TrainResult]:
    module, name = _ENTRY_POINTS[code]
    return getattr(importlib.import_module(module), name)
