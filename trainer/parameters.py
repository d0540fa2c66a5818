# ruff: noqa: RUF001 - Chinese labels use full-width punctuation on purpose
"""Building blocks of the algorithms' parameter schemas (standard library only).

The platform renders its job form from these schemas, so every property carries an
English and a Chinese title and description, a default that works, and bounds.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]


def prop(
    kind: str,
    default: Any,
    title: str,
    title_zh: str,
    description: str,
    description_zh: str,
    **constraints: Any,
) -> Schema:
    """One property of a parameters schema; ``constraints`` are JSON Schema keywords."""
    return {
        "type": kind,
        "default": default,
        "title": title,
        "title_zh": title_zh,
        "description": description,
        "description_zh": description_zh,
        **constraints,
    }


def choices(labels: dict[str, tuple[str, str]]) -> Schema:
    """`enum` and its labels in both languages (`x-enum-labels`: value -> [English,
    Chinese]), for a choice the form and the job's page show in words."""
    return {"enum": list(labels), "x-enum-labels": {k: list(v) for k, v in labels.items()}}


#: What the create form shows first (基础参数): how long and how fast, and what the
#: algorithm cannot do without; every other property is marked `x-advanced` and folds
#: under 高级参数 with its default.
BASIC = frozenset(
    {
        "epochs",
        "max_steps",
        "learning_rate",
        "batch_size",
        "max_length",
        "use_lora",
        "lora_rank",
        "beta",
        "num_generations",
        "reward_kind",
        "reward_pattern",
        "reward_target_length",
        "reward_model_path",
        "resolution",
        "validation_prompt",
    }
)


def object_schema(title: str, properties: dict[str, Schema]) -> Schema:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "title": title,
        "properties": {
            name: prop if name in BASIC else {**prop, "x-advanced": True}
            for name, prop in properties.items()
        },
        "additionalProperties": False,
    }


def training_loop(
    *, learning_rate: float, epochs: int = 3, batch_size: int = 4
) -> dict[str, Schema]:
    """What every algorithm shares: how long, how fast, how often to evaluate."""
    return {
        "epochs": prop(
            "integer",
            epochs,
            "Epochs",
            "训练轮数",
            "Passes over the training data (ignored when max_steps is set).",
            "遍历训练数据的次数（设置了最大步数时忽略）。",
            minimum=1,
            maximum=1000,
        ),
        "max_steps": prop(
            "integer",
            0,
            "Max steps",
            "最大步数",
            "Stop after this many optimiser steps; 0 lets the epochs decide.",
            "训练到该优化步数后停止；0 表示按训练轮数。",
            minimum=0,
            maximum=10_000_000,
        ),
        "learning_rate": prop(
            "number",
            learning_rate,
            "Learning rate",
            "学习率",
            "Peak learning rate of the optimiser.",
            "优化器的峰值学习率。",
            exclusiveMinimum=0,
            maximum=1,
        ),
        "lr_scheduler": prop(
            "string",
            "cosine",
            "LR schedule",
            "学习率调度",
            "How the learning rate changes after warm-up.",
            "预热之后学习率的变化方式。",
            **choices(
                {
                    "linear": ("Linear decay", "线性衰减"),
                    "cosine": ("Cosine decay", "余弦衰减"),
                    "constant": ("Constant", "恒定"),
                    "constant_with_warmup": ("Constant after warm-up", "预热后恒定"),
                }
            ),
        ),
        "warmup_ratio": prop(
            "number",
            0.03,
            "Warm-up ratio",
            "预热比例",
            "Fraction of the steps over which the learning rate rises from 0.",
            "学习率从 0 升至峰值所占训练步数的比例。",
            minimum=0,
            maximum=0.5,
        ),
        "weight_decay": prop(
            "number",
            0.0,
            "Weight decay",
            "权重衰减",
            "AdamW weight decay.",
            "AdamW 权重衰减系数。",
            minimum=0,
            maximum=1,
        ),
        "batch_size": prop(
            "integer",
            batch_size,
            "Batch size per device",
            "单设备批大小",
            "Examples per device per forward pass.",
            "每个设备每次前向计算的样本数。",
            minimum=1,
            maximum=1024,
        ),
        "gradient_accumulation_steps": prop(
            "integer",
            1,
            "Gradient accumulation",
            "梯度累积步数",
            "Forward passes summed into one optimiser step.",
            "累积多少次前向计算的梯度后更新一次参数。",
            minimum=1,
            maximum=1024,
        ),
        "max_grad_norm": prop(
            "number",
            1.0,
            "Gradient clipping",
            "梯度裁剪",
            "Clip the gradient norm to this value; 0 disables clipping.",
            "将梯度范数裁剪到该值；0 表示不裁剪。",
            minimum=0,
            maximum=1000,
        ),
        "seed": prop(
            "integer",
            42,
            "Random seed",
            "随机种子",
            "Seed for reproducible runs.",
            "用于复现的随机种子。",
            minimum=0,
            maximum=2**31 - 1,
        ),
        "precision": prop(
            "string",
            "auto",
            "Precision",
            "计算精度",
            "auto: bf16 on devices that support it, else fp32.",
            "自动：设备支持时使用 bf16，否则使用 fp32。",
            **choices(
                {
                    "auto": ("Automatic", "自动"),
                    "fp32": ("FP32", "FP32"),
                    "bf16": ("BF16", "BF16"),
                    "fp16": ("FP16", "FP16"),
                }
            ),
        ),
        "eval_strategy": prop(
            "string",
            "epoch",
            "Evaluate every",
            "评估时机",
            "Evaluate the validation and test sets after every epoch or every N steps.",
            "每个训练轮次结束后或每 N 步评估验证集和测试集。",
            **choices({"epoch": ("Every epoch", "每轮"), "steps": ("Every N steps", "每 N 步")}),
        ),
        "eval_steps": prop(
            "integer",
            100,
            "Evaluation interval (steps)",
            "评估间隔（步）",
            "N when evaluating every N steps.",
            "按步评估时的步数间隔 N。",
            minimum=1,
            maximum=1_000_000,
        ),
        "early_stopping_patience": prop(
            "integer",
            0,
            "Early stopping patience",
            "早停耐心值",
            "Stop after this many evaluations without a better validation score; 0 disables.",
            "验证指标连续这么多次评估没有改善时停止训练；0 表示不早停。",
            minimum=0,
            maximum=1000,
        ),
        "logging_steps": prop(
            "integer",
            10,
            "Log every (steps)",
            "日志间隔（步）",
            "How often the training loss is logged and reported.",
            "每隔多少步记录并上报训练损失。",
            minimum=1,
            maximum=100_000,
        ),
    }


def checkpoints(every: int = 200) -> dict[str, Schema]:
    """Saving the whole training state now and then, so that a run can be resumed."""
    return {
        "save_steps": prop(
            "integer",
            every,
            "Checkpoint every (steps)",
            "检查点间隔（步）",
            "Save the whole training state (weights, optimiser, learning-rate schedule, data "
            "position) every N steps, so that a job stopped, expired or failed can be resumed "
            "from there; the last two are kept. 0: none.",
            "每 N 步保存完整训练状态（权重、优化器、学习率调度、数据位置），任务停止、到期或"
            "失败后可从该处恢复；保留最近两个。0 表示不保存。",
            minimum=0,
            maximum=1_000_000,
        ),
    }


def start_from(scenario: str) -> dict[str, Schema]:
    """A trained version to go on from, instead of the bare base model."""
    return {
        "start_from": prop(
            "string",
            "",
            "Start from a trained version",
            "从已训练版本继续",
            "Go on training a model version of this project instead of the bare base model "
            "(trained from the same base model): a LoRA version is trained further by a LoRA "
            "algorithm (its own rank and targets kept) and merged into the base first by a "
            "full one; a full version is the model trained on. Empty: the base model.",
            "在本项目的某个模型版本（须基于同一基础模型训练）上继续训练，而非从基础模型开始："
            "LoRA 版本由 LoRA 算法继续训练（沿用其秩与目标模块），由全参数算法先合并进基础模型"
            "再训练；完整模型版本则直接在其上训练。留空表示从基础模型开始。",
            maxLength=4096,
            # the platform offers the versions its user may view, never a path
            **{"x-model-version": {"scenario": scenario}},
        ),
    }


def llm_sequence(max_length: int = 1024) -> dict[str, Schema]:
    return {
        "max_length": prop(
            "integer",
            max_length,
            "Max sequence length",
            "最大序列长度",
            "Tokens per sequence; longer examples are truncated.",
            "每条序列的最大词元数，超出部分截断。",
            minimum=16,
            maximum=131_072,
        ),
        "gradient_checkpointing": prop(
            "boolean",
            True,
            "Gradient checkpointing",
            "梯度检查点",
            "Keep only each layer's input and recompute its activations in the backward pass: "
            "far less memory for about a third more compute. Turn off for speed when memory "
            "is ample.",
            "只保留每层的输入，反向时重算该层激活：显存占用大幅降低，计算量约增加三分之一。"
            "显存充裕时可关闭以提速。",
        ),
    }


#: code -> (name, name in Chinese, what it does, what it does in Chinese)
SHARDING = {
    "auto": ("Automatic", "自动", "by the memory estimate", "按显存估算选择"),
    "ddp": ("DDP", "DDP", "a full copy on every device", "每个设备一份完整模型"),
    "zero2": ("ZeRO-2", "ZeRO-2", "gradients and optimiser state sharded", "切分梯度与优化器状态"),
    "zero3": ("ZeRO-3", "ZeRO-3", "weights sharded too", "同时切分权重"),
    "zero3_offload": (
        "ZeRO-3 + CPU offload",
        "ZeRO-3 + CPU 卸载",
        "weights and optimiser state in host memory",
        "权重与优化器状态放在主机内存",
    ),
    "fsdp2": ("FSDP2", "FSDP2", "PyTorch's fully sharded data parallel", "PyTorch 全切分数据并行"),
}


def sharding() -> dict[str, Schema]:
    """How a run of several processes spreads the model over its devices."""
    return {
        "sharding": prop(
            "string",
            "auto",
            "Sharding",
            "模型切分",
            "How the weights, gradients and optimiser state are spread over the devices. "
            "auto: plain data parallel when a full copy fits a device, else the least "
            "sharding that fits, by the memory estimate. A run of one process never shards.",
            "权重、梯度与优化器状态在各设备间的分布方式。自动：单设备放得下完整模型时用数据并行，"
            "否则按显存估算选择放得下的最轻切分。单进程任务不切分。",
            **choices(
                {
                    code: (f"{name}: {what}", f"{name_zh}：{what_zh}")
                    for code, (name, name_zh, what, what_zh) in SHARDING.items()
                }
            ),
        ),
    }


def lora(*, rank: int = 8, alpha: int = 16, merge: bool = True) -> dict[str, Schema]:
    props = {
        "lora_rank": prop(
            "integer",
            rank,
            "LoRA rank",
            "LoRA 秩",
            "Rank of the low-rank update matrices.",
            "低秩更新矩阵的秩。",
            minimum=1,
            maximum=1024,
        ),
        "lora_alpha": prop(
            "integer",
            alpha,
            "LoRA alpha",
            "LoRA 缩放系数",
            "Scale of the update is alpha / rank.",
            "更新按 缩放系数 ÷ 秩 缩放。",
            minimum=1,
            maximum=4096,
        ),
        "lora_dropout": prop(
            "number",
            0.05,
            "LoRA dropout",
            "LoRA 丢弃率",
            "Dropout on the LoRA input.",
            "LoRA 输入上的丢弃比例。",
            minimum=0,
            maximum=0.9,
        ),
        "lora_target_modules": prop(
            "string",
            "all-linear",
            "LoRA target modules",
            "LoRA 目标模块",
            "Comma-separated module names, or all-linear.",
            "逗号分隔的模块名，或 all-linear 表示全部线性层。",
            minLength=1,
            maxLength=500,
        ),
    }
    if merge:
        props["save_merged"] = prop(
            "boolean",
            False,
            "Also save merged weights",
            "同时保存合并权重",
            "Save the base model with the adapter merged in, next to the adapter.",
            "除适配器外，另存一份已合并适配器的完整模型。",
        )
    return props
