# ruff: noqa: RUF001 - Chinese labels use full-width punctuation on purpose
"""The built-in scenarios and algorithms, with the JSON Schema of each one's parameters.

The web process imports this module to fill its catalog, so it must stay importable
with the standard library alone: no torch, transformers or jsonschema here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trainer.parameters import (
    checkpoints,
    choices,
    llm_sequence,
    lora,
    object_schema,
    prop,
    sharding,
    start_from,
    training_loop,
)


@dataclass(frozen=True)
class ScenarioInfo:
    code: str
    task_type: str  # "llm" or "t2i"
    name: str
    name_zh: str


@dataclass(frozen=True)
class AlgorithmInfo:
    code: str
    scenario: str
    name: str
    name_zh: str
    description: str
    description_zh: str
    parameters_schema: dict[str, Any]
    model_kind: str  # "llm" or "t2i"
    # Data formats the algorithm reads (see trainer.datavalidation.FORMATS).
    data_formats: tuple[str, ...] = field(default=())


SCENARIOS: list[ScenarioInfo] = [
    ScenarioInfo("llm/pretrain", "llm", "Pre-training", "预训练"),
    ScenarioInfo("llm/sft", "llm", "LLM fine-tuning", "大语言模型微调"),
    ScenarioInfo("llm/reward_model", "llm", "Reward model", "奖励模型"),
    ScenarioInfo("llm/rl", "llm", "Reinforcement learning", "强化学习"),
    ScenarioInfo("t2i/finetune", "t2i", "Text-to-image fine-tuning", "文生图模型微调"),
]


def _llm(
    learning_rate: float, *extra: dict[str, Any], batch_size: int = 4, save_steps: int = 200
) -> dict[str, Any]:
    """``save_steps``: 0 by default for full training, whose checkpoints hold the
    optimiser's state of every weight (about three times the model); a user asks."""
    props: dict[str, Any] = {**training_loop(learning_rate=learning_rate, batch_size=batch_size)}
    props.update(llm_sequence())
    props.update(checkpoints(save_steps))
    props.update(sharding())
    for part in extra:
        props.update(part)
    return props


_PACKING = {
    "packing": prop(
        "boolean",
        True,
        "Pack sequences",
        "序列打包",
        "Pack several short examples into each sequence so no compute is spent on padding.",
        "将多条短样本拼入同一序列，避免在填充上浪费算力。",
    ),
}

_SFT_LOSS = {
    "assistant_only_loss": prop(
        "boolean",
        False,
        "Loss on answers only",
        "仅对回答计算损失",
        "Chat data: learn only the assistant turns; alpaca data always learns only the output.",
        "对话数据：只学习助手的回复；alpaca 格式的数据总是只学习 output 字段。",
    ),
}

_USE_LORA = {
    "use_lora": prop(
        "boolean",
        True,
        "Train a LoRA adapter",
        "训练 LoRA 适配器",
        "Train a LoRA adapter instead of all weights.",
        "只训练 LoRA 适配器而非全部权重。",
    ),
}

_DPO = {
    "beta": prop(
        "number",
        0.1,
        "Beta",
        "Beta",
        "Strength of the pull towards the reference model.",
        "向参考模型约束的强度。",
        exclusiveMinimum=0,
        maximum=10,
    ),
    "loss_type": prop(
        "string",
        "sigmoid",
        "Loss",
        "损失函数",
        "DPO loss variant.",
        "DPO 损失的变体。",
        **choices(
            {
                "sigmoid": ("Sigmoid (standard DPO)", "Sigmoid（标准 DPO）"),
                "ipo": ("IPO", "IPO"),
                "hinge": ("Hinge", "Hinge"),
            }
        ),
    ),
}

_GRPO = {
    "num_generations": prop(
        "integer",
        4,
        "Completions per prompt",
        "每个提示的生成数",
        "Completions sampled per prompt; their rewards are compared within the group.",
        "每个提示采样的回复数，组内比较奖励。",
        minimum=2,
        maximum=64,
    ),
    "max_completion_length": prop(
        "integer",
        128,
        "Max completion length",
        "最大生成长度",
        "Tokens generated per completion.",
        "每条回复最多生成的词元数。",
        minimum=1,
        maximum=32_768,
    ),
    "temperature": prop(
        "number",
        1.0,
        "Sampling temperature",
        "采样温度",
        "Temperature of the sampled completions.",
        "生成回复时的采样温度。",
        exclusiveMinimum=0,
        maximum=5,
    ),
    "beta": prop(
        "number",
        0.0,
        "KL coefficient",
        "KL 系数",
        "Weight of the KL penalty against the base model; 0 needs no reference model.",
        "相对基座模型的 KL 惩罚权重；0 表示不需要参考模型。",
        minimum=0,
        maximum=10,
    ),
    "reward_kind": prop(
        "string",
        "exact_match",
        "Reward",
        "奖励类型",
        "exact_match: the answer field; regex: the pattern matches; length: close to a target "
        "length; reward_model: a reward model trained on the platform.",
        "与答案完全一致：与 answer 字段一致；匹配正则：回复匹配正则表达式；"
        "接近目标长度：越接近目标长度得分越高；奖励模型打分：由平台上训练的奖励模型打分。",
        **choices(
            {
                "exact_match": ("Exact match with the answer", "与答案完全一致"),
                "regex": ("Matches the regex", "匹配正则"),
                "length": ("Close to the target length", "接近目标长度"),
                "reward_model": ("Scored by a reward model", "奖励模型打分"),
            }
        ),
    ),
    "reward_pattern": prop(
        "string",
        "",
        "Reward regex",
        "奖励正则",
        "Pattern for the regex reward.",
        "“匹配正则”奖励使用的正则表达式。",
        maxLength=1000,
        format="regex",
        **{"x-required-when": {"reward_kind": "regex"}},
    ),
    "reward_target_length": prop(
        "integer",
        64,
        "Target length (characters)",
        "目标长度（字符）",
        "Length that earns the full reward with the length rule.",
        "“接近目标长度”奖励中得满分的回复长度。",
        minimum=1,
        maximum=100_000,
    ),
    "reward_model_path": prop(
        "string",
        "",
        "Reward model",
        "奖励模型",
        "The reward model that scores completions, for the reward_model reward (to the "
        "trainer: the output folder of a reward_model job).",
        "“奖励模型打分”使用的奖励模型（对训练器而言：奖励模型任务的输出目录）。",
        maxLength=4096,
        # The platform offers the reward models its user may view instead of a path.
        **{
            "x-model-version": {"scenario": "llm/reward_model"},
            "x-required-when": {"reward_kind": "reward_model"},
        },
    ),
}

_T2I = {
    "resolution": prop(
        "integer",
        0,
        "Resolution",
        "分辨率",
        "Images are resized and cropped to this square size, in pixels; 0: the base "
        "model's own (512 for Stable Diffusion 1.5, 32 for the tiny demo model), which "
        "also suits the machine it is meant for.",
        "图像缩放并裁剪为该边长（像素）的正方形；0 表示使用基础模型自身的分辨率（Stable "
        "Diffusion 1.5 为 512，演示用的小模型为 32），它也适合该模型面向的机器。",
        minimum=0,
        maximum=2048,
        multipleOf=8,
        # how the job's page says the special value
        **{"x-value-labels": {"0": ["the base model's own", "基础模型自身"]}},
    ),
    "random_flip": prop(
        "boolean",
        True,
        "Random horizontal flip",
        "随机水平翻转",
        "Augment by mirroring images.",
        "通过水平翻转做数据增强。",
    ),
    "validation_prompt": prop(
        "string",
        "",
        "Sample prompt",
        "示例提示词",
        "When set, an image for this prompt is drawn at every evaluation point during "
        "training (shown on the job's monitoring tab) and by the saved adapter at its end, "
        "all from the same seed.",
        "设置后，训练中每个评估时机都用该提示词生成一张示例图片（显示在任务的监控页），"
        "训练结束时再用保存的适配器生成一张；均使用同一随机种子。",
        maxLength=1000,
    ),
}


def _t2i_params() -> dict[str, Any]:
    props: dict[str, Any] = {**training_loop(learning_rate=1e-4, epochs=10, batch_size=1)}
    props.update(lora(rank=4, alpha=4))
    # The attention projections of the UNet, as in diffusers' own LoRA training script.
    props["lora_target_modules"] = {
        **props["lora_target_modules"],
        "default": "to_k,to_q,to_v,to_out.0",
    }
    props.update(checkpoints())
    props.update(_T2I)
    return props


ALGORITHMS: list[AlgorithmInfo] = [
    AlgorithmInfo(
        code="pretrain",
        scenario="llm/pretrain",
        name="Continued pre-training",
        name_zh="继续预训练",
        description="Causal language modelling on raw text, packed into full-length sequences.",
        description_zh="在原始文本上做因果语言建模，文本拼接为满长度序列。",
        parameters_schema=object_schema(
            "Continued pre-training", _llm(5e-5, start_from("llm/pretrain"), save_steps=0)
        ),
        model_kind="llm",
        data_formats=("pretrain",),
    ),
    AlgorithmInfo(
        code="sft_lora",
        scenario="llm/sft",
        name="Supervised fine-tuning (LoRA)",
        name_zh="监督微调（LoRA）",
        description="Fine-tune a LoRA adapter on chat messages or alpaca instructions.",
        description_zh="在对话消息或 alpaca 指令数据上训练 LoRA 适配器。",
        parameters_schema=object_schema(
            "SFT (LoRA)", _llm(2e-4, lora(), _PACKING, _SFT_LOSS, start_from("llm/sft"))
        ),
        model_kind="llm",
        data_formats=("sft_messages", "sft_alpaca"),
    ),
    AlgorithmInfo(
        code="sft_full",
        scenario="llm/sft",
        name="Supervised fine-tuning (full)",
        name_zh="监督微调（全参数）",
        description="Fine-tune all weights on chat messages or alpaca instructions.",
        description_zh="在对话消息或 alpaca 指令数据上训练全部权重。",
        parameters_schema=object_schema(
            "SFT (full)", _llm(2e-5, _PACKING, _SFT_LOSS, start_from("llm/sft"), save_steps=0)
        ),
        model_kind="llm",
        data_formats=("sft_messages", "sft_alpaca"),
    ),
    AlgorithmInfo(
        code="reward_model",
        scenario="llm/reward_model",
        name="Reward model",
        name_zh="奖励模型训练",
        description="Train a scalar reward head on preference pairs (prompt, chosen, rejected).",
        description_zh="在偏好对（prompt、chosen、rejected）上训练输出标量奖励的模型。",
        parameters_schema=object_schema("Reward model", _llm(1e-5, save_steps=0)),
        model_kind="llm",
        data_formats=("preference",),
    ),
    AlgorithmInfo(
        code="dpo",
        scenario="llm/rl",
        name="Direct preference optimisation (DPO)",
        name_zh="直接偏好优化（DPO）",
        description="Align the model with preference pairs, without a separate reward model.",
        description_zh="用偏好对直接对齐模型，无需单独的奖励模型。",
        parameters_schema=object_schema(
            "DPO", _llm(5e-6, _DPO, _USE_LORA, lora(), start_from("llm/sft"))
        ),
        model_kind="llm",
        data_formats=("preference",),
    ),
    AlgorithmInfo(
        code="grpo",
        scenario="llm/rl",
        name="Group relative policy optimisation (GRPO)",
        name_zh="组相对策略优化（GRPO）",
        description="Reinforcement learning from prompts, rewarded by a rule or a reward model.",
        description_zh="基于提示的强化学习，奖励来自规则或奖励模型。",
        parameters_schema=object_schema(
            "GRPO", _llm(1e-6, _GRPO, _USE_LORA, lora(), start_from("llm/sft"))
        ),
        model_kind="llm",
        data_formats=("prompts",),
    ),
    AlgorithmInfo(
        code="t2i_lora",
        scenario="t2i/finetune",
        name="Text-to-image LoRA",
        name_zh="文生图 LoRA 微调",
        description="Train a LoRA adapter on the UNet of a diffusion pipeline from captioned "
        "images.",
        description_zh="用带描述的图片训练扩散模型 UNet 的 LoRA 适配器。",
        parameters_schema=object_schema("Text-to-image LoRA", _t2i_params()),
        model_kind="t2i",
        data_formats=("t2i",),
    ),
]

_BY_CODE = {algorithm.code: algorithm for algorithm in ALGORITHMS}


def get_algorithm(code: str) -> AlgorithmInfo:
    """The algorithm with this code; KeyError names the known ones."""
    try:
        return _BY_CODE[code]
    except KeyError:
        raise KeyError(f"unknown algorithm {code!r}; known: {', '.join(_BY_CODE)}") from None


def get_scenario(code: str) -> ScenarioInfo:
    for scenario in SCENARIOS:
        if scenario.code == code:
            return scenario
    raise KeyError(f"unknown scenario {code!r}; known: {', '.join(s.code for s in SCENARIOS)}")


def algorithms_for(scenario: str) -> list[AlgorithmInfo]:
    return [algorithm for algorithm in ALGORITHMS if algorithm.scenario == scenario]
