"""Row-level checks of a data set before it is used for training.

The web process calls ``validate`` when a data set is uploaded, so this module needs
only the standard library; transformers is imported only when a tokenizer is given.
"""

from __future__ import annotations

import codecs
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
        """The report as JSON-safe data: every string valid UTF-8 (a lone surrogate from a
        file name or a row is written as its escape, which any database stores)."""
        data = asdict(self)
        data["ok"] = self.ok
        data["problems_truncated"] = self.problem_count > len(self.problems)
        return _printable(data)

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
    text-to-image folder's metadata.jsonl. A file of a folder that is a link to
    somewhere outside the folder is not one of them (`validate` reports those)."""
    return _files(Path(path), scenario)[0]


def _files(path: Path, scenario: str) -> tuple[list[Path], list[Path]]:
    """The data files of `path`, and those of its folder that link outside it."""
    if scenario.startswith("t2i/"):
        if path.is_file() and path.name == METADATA_FILE:
            return [path], []
        found = [path / METADATA_FILE] if (path / METADATA_FILE).is_file() else []
    elif path.is_dir():
        found = sorted(p for p in path.glob("*.jsonl") if p.is_file())
    else:
        return ([path] if path.is_file() else []), []
    folder = path.resolve()
    inside = [p for p in found if p.resolve().is_relative_to(folder)]
    return inside, [p for p in found if p not in inside]


#: Deeper rows than this are refused before the JSON parser's own recursion limit.
MAX_DEPTH = 100


def read_rows(files: list[Path]) -> Iterator[tuple[Path, int | None, Any | None, str | None]]:
    """Yield (file, line number, parsed row or None, error or None), skipping blank lines.

    A file must be UTF-8 (a byte-order mark is accepted); a UTF-16 file yields one
    whole-file error (line number None) and no rows.
    """
    for file in files:
        yield from _file_rows(file)


def _file_rows(file: Path) -> Iterator[tuple[Path, int | None, Any | None, str | None]]:
    with file.open("rb") as handle:
        wide = _wide_encoding(handle.read(4096))
        if wide:
            yield file, None, None, f"the file is {wide} text, not UTF-8: save it as UTF-8"
            return
        handle.seek(0)
        looks_like_csv = None
        for number, raw in _lines(handle):
            if number == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8) :]
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield (
                    file,
                    number,
                    None,
                    (
                        f"the file is not UTF-8: byte 0x{raw[exc.start]:02x} at byte "
                        f"{exc.start + 1} of this line cannot be read (save the file as UTF-8, "
                        "not GBK or Latin-1)"
                    ),
                )
                continue
            if not line.strip():
                continue
            if looks_like_csv is None:
                looks_like_csv = _looks_like_csv(file, line)
                if looks_like_csv:
                    yield (
                        file,
                        None,
                        None,
                        (
                            "the file looks like CSV, not JSON Lines: every line must be one JSON "
                            'object, e.g. {"text": "..."}'
                        ),
                    )
            try:
                yield file, number, _parse(line), None
            except json.JSONDecodeError as exc:
                yield file, number, None, _json_error(line, exc)
            except _TooDeep:
                yield file, number, None, f"the row is nested more than {MAX_DEPTH} levels deep"
            except ValueError:  # a number of thousands of digits, past Python's int limit
                yield file, number, None, "invalid JSON: a number has too many digits"


def _lines(handle) -> Iterator[tuple[int, bytes]]:
    """Numbered lines of a binary file, ended by \\n, \\r\\n or a lone \\r, as text mode
    reads them (and JSON strings never hold a raw line break)."""
    number = 0
    for raw in handle:
        parts = raw.rstrip(b"\n").rstrip(b"\r").split(b"\r") if b"\r" in raw else [raw]
        for part in parts:
            number += 1
            yield number, part


class _TooDeep(Exception):
    pass


def _parse(line: str) -> Any:
    # Brackets outside strings bound the depth; only a deep-looking line pays for it.
    if line.count("[") + line.count("{") > MAX_DEPTH and _depth(line) > MAX_DEPTH:
        raise _TooDeep
    try:
        return json.loads(line.rstrip("\r\n"))
    except RecursionError:
        raise _TooDeep from None


def _depth(line: str) -> int:
    depth = deepest = 0
    in_string = escaped = False
    for char in line:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _json_error(line: str, exc: json.JSONDecodeError) -> str:
    """Where the row broke: for a string left open that is the end of the line."""
    if exc.msg.startswith("Unterminated string"):
        end = len(line.rstrip("\r\n"))
        return f"invalid JSON: a string opened at column {exc.colno} is not closed by column {end}"
    return f"invalid JSON: {exc.msg.removesuffix(' at')} at column {exc.colno}"


def _wide_encoding(head: bytes) -> str | None:
    """UTF-16 or UTF-32, told by a byte-order mark or by the NUL bytes of ASCII text."""
    for bom, name in (
        (codecs.BOM_UTF32_LE, "UTF-32"),
        (codecs.BOM_UTF32_BE, "UTF-32"),
        (codecs.BOM_UTF16_LE, "UTF-16"),
        (codecs.BOM_UTF16_BE, "UTF-16"),
    ):
        if head.startswith(bom):
            return name
    if len(head) >= 4 and head.count(0) * 3 >= len(head):
        return "UTF-16"
    return None


def _looks_like_csv(file: Path, first_line: str) -> bool:
    text = first_line.lstrip()
    if text.startswith(("{", "[")):
        return False
    return file.suffix.lower() in (".csv", ".tsv") or "," in text or "\t" in text


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
    elif not _is_text(value):
        problems.append((name, "holds an unpaired surrogate escape (like \\udc80), not text"))


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _printable(value: Any) -> Any:
    if isinstance(value, str):
        return value if _is_text(value) else value.encode("utf-8", "backslashreplace").decode()
    if isinstance(value, dict):
        return {_printable(key): _printable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_printable(item) for item in value]
    return value


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
    if "\x00" in name:
        return "file_name must not contain a NUL character"
    if not _is_text(name):
        return "file_name holds an unpaired surrogate escape (like \\udc80), not a file name"
    try:
        image = (folder / name).resolve()
    except (OSError, ValueError) as exc:
        return f"file_name cannot be used as a path: {exc}"
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


@dataclass
class _Tally:
    """What rows of one candidate format came to; the report takes the best tally."""

    fmt: str | None = None
    votes: int = 0  # rows whose fields name this format
    valid_rows: int = 0
    problem_count: int = 0
    problems: list[Problem] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)

    def add(self, problem: Problem, max_problems: int) -> None:
        self.problem_count += 1
        if len(self.problems) < max_problems:
            self.problems.append(problem)


def validate(
    scenario: str,
    path: str,
    tokenizer_path: str | None = None,
    max_problems: int = DEFAULT_MAX_PROBLEMS,
    algorithm: str | None = None,
) -> ValidationReport:
    """Check every row of the data set at ``path`` for ``scenario``.

    For llm/rl, ``algorithm`` (dpo or grpo) fixes the format. Without it a data set
    has one format, the one the fields of most rows name, and every row is reported
    against it: one bad first row cannot decide the format of the whole file. SFT data
    may mix chat and alpaca rows; each row is checked against the format its fields name.
    """
    formats = formats_for(scenario, algorithm)
    report = ValidationReport(scenario=scenario, path=str(path))
    files, links = _files(Path(path), scenario)
    report.files = [str(f) for f in files]
    escaping = [
        Problem(None, None, f"{link.name} links to a file outside the data folder; it is not read")
        for link in links
    ]
    if not files:
        for problem in escaping:
            report.add(problem, max_problems)
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
    one_format = len(formats) > 1 and "sft_messages" not in formats
    # None: each row's own format (sft may mix); else one tally per candidate format.
    tallies = {fmt: _Tally(fmt) for fmt in formats} if one_format else {None: _Tally()}
    common = _Tally()  # problems every candidate shares: unreadable lines, whole files
    for problem in escaping:
        common.add(problem, max_problems)
    multi = len(files) > 1
    for file, number, row, error in read_rows(files):
        where = file.name if multi else None
        if number is None:
            common.add(Problem(None, None, error, where), max_problems)
            continue
        report.rows += 1
        if error:
            common.add(Problem(number, None, error, where), max_problems)
            continue
        detected = detect_format(formats, row)
        if detected in tallies:
            tallies[detected].votes += 1
        for candidate, tally in tallies.items():
            fmt = candidate or detected
            problems = check_row(fmt, row)
            if fmt == "t2i" and not problems:
                image_problem = _check_image(file.parent, row)
                if image_problem:
                    problems.append(("file_name", image_problem))
            for name, text in problems:
                tally.add(Problem(number, name or None, text, where), max_problems)
            if problems:
                continue
            tally.seen.add(fmt)
            tally.valid_rows += 1
            if counter:
                text = row["text"] if fmt == "t2i" else row_text(fmt, row, chat)
                tally.lengths.append(counter(text))
    best = max(tallies.values(), key=lambda t: (t.votes, t.valid_rows, -t.problem_count))
    report.valid_rows = best.valid_rows
    for problem in sorted(
        [*common.problems, *best.problems], key=lambda p: (p.file or "", p.row or 0)
    ):
        report.add(problem, max_problems)
    report.problem_count = common.problem_count + best.problem_count
    if len(best.seen) == 1:
        report.format = next(iter(best.seen))
    elif best.seen:
        report.format = "+".join(sorted(best.seen))
    if scenario.startswith("t2i/"):
        report.images = report.valid_rows
    if best.lengths:
        report.token_lengths = length_stats(best.lengths)
    if report.rows == 0 and common.problem_count == 0:
        report.add(Problem(None, None, "the data set has no rows"), max_problems)
    return report
