"""GRPO rewards: rules on the completion text, or a reward model trained on the platform."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

RewardFunc = Callable[..., list[float]]


def completion_text(completion: Any) -> str:
    """The generated text of one completion, chat-shaped or plain."""
    if isinstance(completion, list):
        return "".join(m.get("content") or "" for m in completion if isinstance(m, dict))
    return str(completion)


def _normalise(text: str) -> str:
    return " ".join(text.strip().lower().rstrip(".!。").split())


def exact_match_reward(
    completions: list[Any], answer: list[str] | None = None, **_: Any
) -> list[float]:
    """1 when the completion is the row's answer (case and spacing aside), else 0."""
    answers = answer or [""] * len(completions)
    return [
        float(bool(a) and _normalise(completion_text(c)) == _normalise(a))
        for c, a in zip(completions, answers, strict=True)
    ]


def regex_reward(pattern: str) -> RewardFunc:
    compiled = re.compile(pattern)

    def reward(completions: list[Any], **_: Any) -> list[float]:
        return [float(compiled.search(completion_text(c)) is not None) for c in completions]

    reward.__name__ = "regex_reward"
    return reward


def length_reward(target: int) -> RewardFunc:
    """1 at exactly ``target`` characters, falling linearly to 0 at 0 or 2 x target."""

    def reward(completions: list[Any], **_: Any) -> list[float]:
        return [max(0.0, 1.0 - abs(len(completion_text(c)) - target) / target) for c in completions]

    reward.__name__ = "length_reward"
    return reward


def reward_model_folder(path: str) -> Path:
    """The model folder of a reward_model job's output, or ``path`` itself."""
    folder = Path(path)
    manifest = folder / "manifest.json"
    if manifest.is_file():
        data = json.loads(manifest.read_text(encoding="utf-8"))
        if data.get("algorithm") != "reward_model":
            raise ValueError(f"{path} is the output of {data.get('algorithm')}, not a reward model")
        return folder / data["artifacts"]["model"]
    return folder


def build_rewards(params: dict[str, Any]) -> tuple[list[Any], list[Any] | None]:
    """Reward functions for GRPOTrainer and, for a reward model, its tokenizer."""
    kind = params["reward_kind"]
    if kind == "exact_match":
        return [exact_match_reward], None
    if kind == "regex":
        if not params["reward_pattern"]:
            raise ValueError("reward_kind regex needs reward_pattern")
        try:
            return [regex_reward(params["reward_pattern"])], None
        except re.error as exc:
            raise ValueError(f"reward_pattern is not a valid regex: {exc}") from None
    if kind == "length":
        return [length_reward(params["reward_target_length"])], None
    if not params["reward_model_path"]:
        raise ValueError("reward_kind reward_model needs reward_model_path")
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = reward_model_folder(params["reward_model_path"])
    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=1)
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return [model], [tokenizer]
