"""Small, learnable sample data sets in every format the trainer reads.

Used by the tests, the benchmarks and the platform's ``seed_demo`` command. The rows
follow simple patterns (arithmetic, colours) so that a tiny model visibly learns them.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

KINDS = ("pretrain", "sft_messages", "sft_alpaca", "preference", "prompts", "t2i")

ANIMALS = ["cat", "dog", "bird", "fish", "horse", "rabbit", "fox", "bear"]
COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (40, 70, 220),
    "yellow": (230, 210, 40),
    "black": (20, 20, 20),
    "white": (240, 240, 240),
}
SHAPES = ["square", "circle", "stripe"]
CITIES_ZH = ["北京", "上海", "杭州", "成都", "西安", "广州"]
SYSTEM_PROMPT = "You are a helpful assistant."


def _sum_question(rng: random.Random) -> tuple[str, int]:
    a, b = rng.randint(0, 9), rng.randint(0, 9)
    return f"What is {a} plus {b}?", a + b


def _sentence(rng: random.Random) -> str:
    choice = rng.randrange(3)
    if choice == 0:
        return f"The {rng.choice(ANIMALS)} is {rng.choice(list(COLOURS))}."
    if choice == 1:
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        return f"{a} plus {b} is {a + b}."
    return f"{rng.choice(CITIES_ZH)}是一座美丽的城市。"


def corpus_lines(count: int = 400, seed: int = 0) -> Iterator[str]:
    """Text for training the tiny tokenizer: the vocabulary of every sample kind."""
    rng = random.Random(seed)
    yield SYSTEM_PROMPT
    yield "Add the two numbers. I do not know. Answer with a number."
    for _ in range(count):
        question, total = _sum_question(rng)
        yield f"{question} {_sentence(rng)} {_sentence(rng)} The answer is {total}."


def chat_lines(tokenizer, count: int = 100, seed: int = 2) -> list[str]:
    """Sample conversations rendered with the tokenizer's chat template."""
    rng = random.Random(seed)
    return [
        tokenizer.apply_chat_template(_row("sft_messages", rng)["messages"], tokenize=False)
        for _ in range(count)
    ]


def _row(kind: str, rng: random.Random) -> dict:
    question, total = _sum_question(rng)
    a, b = question.removeprefix("What is ").removesuffix("?").split(" plus ")
    if kind == "pretrain":
        return {"text": " ".join(_sentence(rng) for _ in range(rng.randint(3, 6)))}
    if kind == "sft_messages":
        return {
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": question},
                {"role": "assistant", "content": f"{a} plus {b} is {total}."},
            ]
        }
    if kind == "sft_alpaca":
        return {
            "instruction": "Add the two numbers.",
            "input": f"{a} and {b}",
            "output": str(total),
        }
    if kind == "preference":
        return {
            "prompt": question,
            "chosen": f"{a} plus {b} is {total}.",
            "rejected": "I do not know.",
        }
    if kind == "prompts":
        return {"prompt": f"{question} Answer with a number.", "answer": str(total)}
    raise ValueError(f"unknown sample kind {kind!r}; known: {', '.join(KINDS)}")


def _write_images(dest: Path, rows: int, rng: random.Random, size: int) -> None:
    from PIL import Image, ImageDraw

    dest.mkdir(parents=True, exist_ok=True)
    with (dest / "metadata.jsonl").open("w", encoding="utf-8") as metadata:
        for index in range(rows):
            colour, shape = rng.choice(list(COLOURS)), rng.choice(SHAPES)
            image = Image.new("RGB", (size, size), (128, 128, 128))
            draw = ImageDraw.Draw(image)
            box = (size // 4, size // 4, 3 * size // 4, 3 * size // 4)
            if shape == "square":
                draw.rectangle(box, fill=COLOURS[colour])
            elif shape == "circle":
                draw.ellipse(box, fill=COLOURS[colour])
            else:
                draw.rectangle((0, size // 3, size, 2 * size // 3), fill=COLOURS[colour])
            name = f"{index:05d}.png"
            image.save(dest / name)
            metadata.write(json.dumps({"file_name": name, "text": f"a {colour} {shape}"}) + "\n")


def write_sample_dataset(
    kind: str, dest: str | Path, rows: int = 64, *, seed: int = 0, image_size: int = 32
) -> Path:
    """Write ``rows`` sample rows of ``kind``; returns what was written.

    LLM kinds write one JSONL file at ``dest`` (a folder ``dest`` gets ``data.jsonl``);
    ``t2i`` writes PNG images and ``metadata.jsonl`` into the folder ``dest``.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown sample kind {kind!r}; known: {', '.join(KINDS)}")
    rng = random.Random(seed)
    dest = Path(dest)
    if kind == "t2i":
        _write_images(dest, rows, rng, image_size)
        return dest
    if dest.is_dir() or dest.suffix != ".jsonl":
        dest.mkdir(parents=True, exist_ok=True)
        dest = dest / "data.jsonl"
    dest.parent.mkdir(parents=True, exist_ok=True)
    with dest.open("w", encoding="utf-8") as handle:
        for _ in range(rows):
            handle.write(json.dumps(_row(kind, rng), ensure_ascii=False) + "\n")
    return dest
