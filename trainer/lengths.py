"""How long a data set's rows are, in tokens or characters (the validator's and the
data preview's statistics)."""

from __future__ import annotations

import math
from collections.abc import Callable


def length_stats(lengths: list[int]) -> dict[str, float]:
    """count, min, max, mean, p50, p95 and total of some lengths (tokens, characters)."""
    ordered = sorted(lengths)

    def pct(q: float) -> float:
        return float(ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)])

    return {
        "count": float(len(ordered)),
        "min": float(ordered[0]),
        "max": float(ordered[-1]),
        "mean": round(sum(ordered) / len(ordered), 2),
        "p50": pct(0.5),
        "p95": pct(0.95),
        "total": float(sum(ordered)),
    }


def row_text(fmt: str, row: dict, chat: Callable[[list[dict]], str] | None = None) -> str:
    """The text a model sees for a row, for token-length statistics."""
    if fmt == "sft_messages":
        return chat(row["messages"]) if chat else "\n".join(m["content"] for m in row["messages"])
    if fmt == "sft_alpaca":
        return "\n".join(row.get(k) or "" for k in ("instruction", "input", "output"))
    if fmt == "preference":
        return row["prompt"] + max(row["chosen"], row["rejected"], key=len)
    if fmt == "prompts":
        return row["prompt"]
    return row["text"]


def tokenizer_counter(tokenizer_path: str) -> tuple[Callable[[str], int], Callable | None]:
    from transformers import AutoTokenizer  # heavy; only when statistics are asked for

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=True)["input_ids"])

    chat = None
    if getattr(tokenizer, "chat_template", None):

        def chat(messages: list[dict]) -> str:
            return tokenizer.apply_chat_template(messages, tokenize=False)

    return count, chat
