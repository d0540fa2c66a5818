"""Row-level checks of a data set before it is used for training.

The web process calls ``validate`` when a data set is uploaded, so this module needs
only the standard library; transformers is imported only when a tokenizer is given.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# The data formats, keyed by name; each names the fields a row must hold.
FORMATS: dict[str, tuple[str, ...]] = {
    "pretrain": ("text",),
    "sft_messages": ("messages",),
    "sft_alpaca": ("instruction", "output"),
    "preference": ("prompt", "chosen", "rejected"),
    "prompts": ("prompt",),
    "t2i": ("file_name", "text"),
}
SCENARIO_FORMATS: dict[str, tuple[str, ...]] = {
    "llm/pretrain": ("pretrain",),
    "llm/sft": ("sft_messages", "sft_alpaca"),
    "llm/reward_model": ("preference",),
    "llm/rl": ("preference", "prompts"),
    "t2i/finetune": ("t2i",),
}
ROLES = ("system", "user", "assistant", "tool")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")
METADATA_FILE = "metadata.jsonl"
DEFAULT_MAX_PROBLEMS = 200


@dataclass
class Problem:
    row: int | None  # 1-based line number in its file; None for whole-file problems
    field: str | None
    problem: str
    file: str | None = None

    def __str__(self) -> str:
        where = [f"row {self.row}" if self.row is not None else "data set"]
        if self.field:
            where.append(f"field {self.field!r}")
        prefix = f"{self.file}: " if self.file else ""
        return f"{prefix}{', '.join(where)}: {self.problem}"


@dataclass
class ValidationReport:
    scenario: str
    path: str
    format: str | None = None
    files: list[str] = field(default_factory=list)
    rows: int = 0
    valid_rows: int = 0
    problem_count: int = 0
    problems: list[Problem] = field(default_factory=list)
    token_lengths: dict[str, float] | None = None
    images: int | None = None

    @property
    def ok(self) -> bool:
        return self.problem_count == 0 and self.valid_rows > 0

    def add(self, problem: Problem, max_problems: int) -> None:
        self.problem_count += 1
        if len(self.problems) < max_problems:
            self.problems.append(problem)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        data["problems_truncated"] = self.problem_count > len(self.problems)
        return data

    def summary(self) -> str:
        status = "ok" if self.ok else f"{self.problem_count} problem(s)"
        return (
            f"{self.scenario} data at {self.path}: format {self.format or 'unknown'}, "
            f"{self.rows} rows, {self.valid_rows} valid, {status}"
        )


def formats_for(scenario: str, algorithm: str | None = None) -> tuple[str, ...]:
    """The formats a data set of this scenario (and algorithm, when known) may have."""
    if scenario not in SCENARIO_FORMATS:
        known = ", ".join(SCENARIO_FORMATS)
        raise ValueError(f"unknown scenario {scenario!r}; known: {known}")
    if algorithm:
        from trainer.catalog import get_algorithm

        info = get_algorithm(algorithm)
        if info.scenario != scenario:
            raise ValueError(f"algorithm {algorithm!r} belongs to {info.scenario}, not {scenario}")
        return info.data_formats
    return SCENARIO_FORMATS[scenario]


def data_files(path: str | Path, scenario: str) -> list[Path]:
    """The JSONL files of a data set: the file itself, every *.jsonl of a folder, or a
    text-to-image folder's metadata.jsonl."""
    path = Path(path)
    if scenario.startswith("t2i/"):
        if path.is_file() and path.name == METADATA_FILE:
            return [path]
        return [path / METADATA_FILE] if (path / METADATA_FILE).is_file() else []
    if path.is_dir():
        return sorted(p for p in path.glob("*.jsonl") if p.is_file())
    return [path] if path.is_file() else []


def read_rows(files: list[Path]) -> Iterator[tuple[Path, int, Any | None, str | None]]:
    """Yield (file, line number, parsed row or None, JSON error or None), skipping blank lines."""
    for file in files:
        with file.open("r", encoding="utf-8", errors="replace") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    yield file, number, json.loads(line), None
                except json.JSONDecodeError as exc:
                    yield file, number, None, f"invalid JSON: {exc.msg} at column {exc.colno}"


def _type_name(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number"
    )


def _text(row: dict, name: str, problems: list[tuple[str, str]], required: bool = True) -> None:
    if name not in row:
        if required:
            problems.append((name, "missing field"))
        return
    value = row[name]
    if not isinstance(value, str):
        problems.append((name, f"must be a string, got {_type_name(value)}"))
    elif required and not value.strip():
        problems.append((name, "empty text"))


def _check_messages(row: dict, problems: list[tuple[str, str]]) -> None:
    messages = row.get("messages")
    if not isinstance(messages, list):
        problems.append(("messages", f"must be an array, got {_type_name(messages)}"))
        return
    if not messages:
        problems.append(("messages", "empty conversation"))
        return
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            problems.append((where, f"must be an object, got {_type_name(message)}"))
            continue
        role = message.get("role")
        if role not in ROLES:
            problems.append((f"{where}.role", f"must be one of {', '.join(ROLES)}, got {role!r}"))
        sub: list[tuple[str, str]] = []
        _text(message, "content", sub)
        problems.extend((f"{where}.{name}", text) for name, text in sub)
    if not any(isinstance(m, dict) and m.get("role") == "assistant" for m in messages):
        problems.append(("messages", "no assistant message to learn from"))


def check_row(fmt: str, row: Any) -> list[tuple[str, str]]:
    """The (field, problem) pairs of one parsed row in the given format."""
    if not isinstance(row, dict):
        return [("", f"row must be a JSON object, got {_type_name(row)}")]
    problems: list[tuple[str, str]] = []
    if fmt == "sft_messages":
        _check_messages(row, problems)
    elif fmt == "sft_alpaca":
        _text(row, "instruction", problems)
        _text(row, "input", problems, required=False)
        _text(row, "output", problems)
    elif fmt == "prompts":
        _text(row, "prompt", problems)
        _text(row, "answer", problems, required=False)
    else:
        for name in FORMATS[fmt]:
            _text(row, name, problems)
    return problems


def detect_format(formats: tuple[str, ...], row: Any) -> str:
    """Pick the format of a row among the allowed ones by the fields it has."""
    if isinstance(row, dict):
        for fmt in formats:
            if all(name in row for name in FORMATS[fmt]):
                return fmt
        for fmt in formats:  # partly there: report against the closest format
            if any(name in row for name in FORMATS[fmt] if name != "prompt"):
                return fmt
    return formats[0]


def _check_image(folder: Path, row: dict) -> str | None:
    name = row.get("file_name")
    if not isinstance(name, str) or not name:
        return None  # already reported by check_row
    image = (folder / name).resolve()
    if folder.resolve() not in image.parents:
        return "file_name must stay inside the data folder"
    if not image.is_file():
        return f"image file not found: {name}"
    if image.suffix.lower() not in IMAGE_SUFFIXES:
        return f"not an image file type ({', '.join(IMAGE_SUFFIXES)}): {name}"
    try:
        from PIL import Image  # optional: the web process may not have Pillow
    except ImportError:
        return None
    try:
        with Image.open(image) as handle:
            handle.verify()
    except Exception as exc:
        return f"unreadable image {name}: {exc}"
    return None


def _token_stats(lengths: list[int]) -> dict[str, float]:
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


def _tokenizer_counter(tokenizer_path: str) -> tuple[Callable[[str], int], Callable | None]:
    from transformers import AutoTokenizer  # heavy; only when statistics are asked for

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=True)["input_ids"])

    chat = None
    if getattr(tokenizer, "chat_template", None):

        def chat(messages: list[dict]) -> str:
            return tokenizer.apply_chat_template(messages, tokenize=False)

    return count, chat


def validate(
    scenario: str,
    path: str,
    tokenizer_path: str | None = None,
    max_problems: int = DEFAULT_MAX_PROBLEMS,
    algorithm: str | None = None,
) -> ValidationReport:
    """Check every row of the data set at ``path`` for ``scenario``.

    For llm/rl, ``algorithm`` (dpo or grpo) fixes the format; without it the first
    row decides between preference pairs and prompts.
    """
    formats = formats_for(scenario, algorithm)
    report = ValidationReport(scenario=scenario, path=str(path))
    files = data_files(path, scenario)
    report.files = [str(f) for f in files]
    if not files:
        expected = (
            f"a folder with {METADATA_FILE}"
            if scenario.startswith("t2i/")
            else ("a .jsonl file or a folder of .jsonl files")
        )
        problem = Problem(None, None, f"no data found at {path}: expected {expected}")
        report.add(problem, max_problems)
        return report
    counter = chat = None
    if tokenizer_path:
        counter, chat = _tokenizer_counter(tokenizer_path)
    lengths: list[int] = []
    seen_formats: set[str] = set()
    multi = len(files) > 1
    for file, number, row, error in read_rows(files):
        report.rows += 1
        where = file.name if multi else None
        if error:
            report.add(Problem(number, None, error, where), max_problems)
            continue
        fmt = detect_format(formats, row)
        if len(formats) > 1 and "sft_messages" not in formats and seen_formats:
            fmt = next(iter(seen_formats))  # preference vs prompts: one data set, one format
        problems = check_row(fmt, row)
        if fmt == "t2i" and not problems:
            image_problem = _check_image(file.parent, row)
            if image_problem:
                problems.append(("file_name", image_problem))
        for name, text in problems:
            report.add(Problem(number, name or None, text, where), max_problems)
        if problems:
            continue
        seen_formats.add(fmt)
        report.valid_rows += 1
        if counter and fmt != "t2i":
            lengths.append(counter(row_text(fmt, row, chat)))
        elif counter:
            lengths.append(counter(row["text"]))
    if len(seen_formats) == 1:
        report.format = seen_formats.pop()
    elif seen_formats:
        report.format = "+".join(sorted(seen_formats))
    if scenario.startswith("t2i/"):
        report.images = report.valid_rows
    if lengths:
        report.token_lengths = _token_stats(lengths)
    if report.rows == 0:
        report.add(Problem(None, None, "the data set has no rows"), max_problems)
    return report
