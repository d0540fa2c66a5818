# ruff: noqa: RUF001 - Chinese labels use full-width punctuation on purpose
"""Parameter presets of the create form (参数预设): sensible values per algorithm and
base model, for people who do not know what a learning rate should be.

Standard library only (the web process builds the form from it). A preset sets how
long and how fast a job learns, and how much it holds per device: the epochs or
steps, the learning rate and its warm-up, evaluation and early stopping, the batch
size with its gradient accumulation, checkpointing and the LoRA rank. What depends
on the data or the cluster (sequence length, rewards, sharding, precision, seed) is
left as the user set it.

The values follow common practice for each method, by the base model's size:

    size       parameters     batch x accumulation   LoRA rank   checkpointing
    small      < 1 B          8 x 2                  8           off
    medium     1 B - 15 B     2 x 8                  16          on
    large      >= 15 B        1 x 16                 16          on

Pairs (reward model, DPO) hold two sequences per example: half the batch, twice the
accumulation. GRPO keeps its batch (it must divide by the completions per prompt).
Learning rates per algorithm and size are in `LEARNING_RATES`; an image model or a
base model of unknown size gets the algorithm's own defaults.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trainer.memory import trains_lora

#: algorithm -> learning rate for small, medium and large models; "<code>/lora" when
#: the algorithm trains either all weights or a LoRA adapter (use_lora).
LEARNING_RATES: dict[str, tuple[float, float, float]] = {
    "pretrain": (1e-4, 5e-5, 2e-5),
    "sft_full": (2e-5, 1e-5, 5e-6),
    "sft_lora": (2e-4, 2e-4, 1e-4),
    "reward_model": (1e-5, 5e-6, 2e-6),
    "dpo": (1e-6, 5e-7, 5e-7),
    "dpo/lora": (5e-6, 5e-6, 2e-6),
    "grpo": (1e-6, 1e-6, 5e-7),
    "grpo/lora": (1e-5, 1e-5, 5e-6),
}
SIZES = ("small", "medium", "large")
BATCH = {"small": (8, 2), "medium": (2, 8), "large": (1, 16)}
LORA_RANK = {"small": 8, "medium": 16, "large": 16}
PAIRED = {"reward_model", "dpo"}
#: What a quick try runs: enough steps to see the loss move and one evaluation.
QUICK_STEPS = 20


@dataclass(frozen=True)
class Preset:
    code: str
    name: str
    name_zh: str
    description: str
    description_zh: str
    values: dict[str, Any]


def size_of(parameters: int | None) -> str | None:
    if parameters is None:
        return None
    if parameters < 1_000_000_000:
        return "small"
    return "medium" if parameters < 15_000_000_000 else "large"


def _recommended(code: str, props: dict[str, Any], size: str | None, lora: bool) -> dict:
    """The algorithm's defaults for how long and how fast, fitted to the model's size."""
    values = {
        name: props[name]["default"]
        for name in (
            "epochs",
            "max_steps",
            "learning_rate",
            "warmup_ratio",
            "eval_strategy",
            "eval_steps",
            "logging_steps",
            "early_stopping_patience",
            "batch_size",
            "gradient_accumulation_steps",
            "gradient_checkpointing",
            "lora_rank",
            "lora_alpha",
        )
        if name in props
    }
    if size is None:
        return values
    rates = LEARNING_RATES.get(f"{code}/lora" if lora else code) or LEARNING_RATES.get(code)
    if rates:
        values["learning_rate"] = rates[SIZES.index(size)]
    if code != "grpo":
        batch, accumulation = BATCH[size]
        if code in PAIRED:
            batch, accumulation = max(1, batch // 2), accumulation * 2
        values.update(batch_size=batch, gradient_accumulation_steps=accumulation)
    values["gradient_checkpointing"] = size != "small"
    if lora:
        values.update(lora_rank=LORA_RANK[size], lora_alpha=2 * LORA_RANK[size])
    return values


def presets(code: str, schema: dict[str, Any], parameters: int | None) -> list[Preset]:
    """The presets of algorithm `code` (its parameters `schema`) on a base model of
    `parameters` weights (None: unknown, or not a language model)."""
    props = schema.get("properties") or {}
    if not props:
        return []
    size = size_of(parameters)
    lora = trains_lora(code, {name: prop.get("default") for name, prop in props.items()})
    base = _recommended(code, props, size, lora)
    quick = {
        **base,
        "max_steps": QUICK_STEPS,
        "eval_strategy": "steps",
        "eval_steps": QUICK_STEPS // 2,
        "logging_steps": 1,
        "early_stopping_patience": 0,
    }
    epochs = props.get("epochs", {}).get("default", 3)
    thorough = {
        **base,
        "epochs": max(5, 2 * epochs) if code.startswith("t2i") else max(5, epochs),
        "max_steps": 0,
        "warmup_ratio": 0.05,
        "eval_strategy": "epoch",
        "early_stopping_patience": 2,
    }
    if "learning_rate" in base:
        thorough["learning_rate"] = base["learning_rate"] / 2
    found = [
        Preset(
            "recommended",
            "Recommended",
            "推荐",
            "The usual values of this algorithm for a base model of this size.",
            "该算法在这一规模的基础模型上的常用取值。",
            base,
        ),
        Preset(
            "quick",
            "Quick try",
            "快速试跑",
            f"{QUICK_STEPS} steps with an evaluation halfway and a loss on every step: checks "
            "the data, the settings and the resources in minutes, before a long run.",
            f"只训练 {QUICK_STEPS} 步，中途评估一次，每步记录损失：在长时间训练前用几分钟检查数据、"
            "参数和资源。",
            quick,
        ),
        Preset(
            "thorough",
            "Thorough",
            "充分训练",
            "More epochs at half the learning rate, stopping early once the validation loss "
            "stops improving (with a validation set).",
            "更多训练轮数、学习率减半，验证损失不再下降时提前停止（需选择验证数据）。",
            thorough,
        ),
    ]
    return [
        Preset(p.code, p.name, p.name_zh, p.description, p.description_zh, _within(props, p.values))
        for p in found
    ]


def _within(props: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """Only the schema's own parameters, each inside its bounds."""
    kept = {}
    for name, value in values.items():
        prop = props.get(name)
        if prop is None:
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if "minimum" in prop:
                value = max(prop["minimum"], value)
            if "maximum" in prop:
                value = min(prop["maximum"], value)
        kept[name] = value
    return kept
