"""Row-level checks of a data set before it is used for training.

The web process calls ``validate`` when a data set is uploaded, so this module needs
only the standard library; transformers is imported only when a tokenizer is given.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from trainer import fingerprint
from trainer.jsonl import Meter, file_rows
from trainer.lengths import length_stats, row_text, tokenizer_counter
from trainer.words import Text, gettext_noop, say

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
    problem: str  # in English
    file: str | None = None
    #: the problem's message id and parameters, for the platform to say it in the
    #: reader's language (trainer/words.py); None where it is only English
    said: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.problem, Text):
            self.said = self.problem.data()
            self.problem = str.__str__(self.problem)

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
    #: per candidate format, where the data set may have one of several: the report's
    #: format, rows, problems and verdict as that format makes them
    by_format: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: what the files were and what each came to (trainer/fingerprint.py): kept by the
    #: platform to validate only what changed; not part of ``to_dict``
    fingerprint: dict[str, Any] = field(default_factory=dict, repr=False)

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
        del data["fingerprint"]
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


def _type_name(value: Any) -> str:
    names = {
        dict: gettext_noop("object"),
        list: gettext_noop("array"),
        str: gettext_noop("string"),
        bool: gettext_noop("boolean"),
        type(None): gettext_noop("null"),
    }
    return say(names.get(type(value), gettext_noop("number")))


def _text(row: dict, name: str, problems: list[tuple[str, str]], required: bool = True) -> None:
    if name not in row:
        if required:
            problems.append((name, say(gettext_noop("missing field"))))
        return
    value = row[name]
    if not isinstance(value, str):
        problems.append(
            (name, say(gettext_noop("must be a string, got %(type)s"), type=_type_name(value)))
        )
    elif required and not value.strip():
        problems.append((name, say(gettext_noop("empty text"))))
    elif not _is_text(value):
        problems.append(
            (name, say(gettext_noop("holds an unpaired surrogate escape (like \\udc80), not text")))
        )


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
        problems.append(
            (
                "messages",
                say(gettext_noop("must be an array, got %(type)s"), type=_type_name(messages)),
            )
        )
        return
    if not messages:
        problems.append(("messages", say(gettext_noop("empty conversation"))))
        return
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            got = _type_name(message)
            problems.append((where, say(gettext_noop("must be an object, got %(type)s"), type=got)))
            continue
        role = message.get("role")
        if role not in ROLES:
            problems.append(
                (
                    f"{where}.role",
                    say(
                        gettext_noop("must be one of %(roles)s, got %(role)s"),
                        roles=", ".join(ROLES),
                        role=repr(role),
                    ),
                )
            )
        sub: list[tuple[str, str]] = []
        _text(message, "content", sub)
        problems.extend((f"{where}.{name}", text) for name, text in sub)
    if not any(isinstance(m, dict) and m.get("role") == "assistant" for m in messages):
        problems.append(("messages", say(gettext_noop("no assistant message to learn from"))))


def check_row(fmt: str, row: Any) -> list[tuple[str, str]]:
    """The (field, problem) pairs of one parsed row in the given format."""
    if not isinstance(row, dict):
        return [
            ("", say(gettext_noop("row must be a JSON object, got %(type)s"), type=_type_name(row)))
        ]
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
        return say(gettext_noop("file_name must not contain a NUL character"))
    if not _is_text(name):
        return say(
            gettext_noop(
                "file_name holds an unpaired surrogate escape (like \\udc80), not a file name"
            )
        )
    try:
        image = (folder / name).resolve()
    except (OSError, ValueError) as exc:
        return say(gettext_noop("file_name cannot be used as a path: %(error)s"), error=str(exc))
    if folder.resolve() not in image.parents:
        return say(gettext_noop("file_name must stay inside the data folder"))
    if not image.is_file():
        return say(gettext_noop("image file not found: %(name)s"), name=name)
    if image.suffix.lower() not in IMAGE_SUFFIXES:
        return say(
            gettext_noop("not an image file type (%(suffixes)s): %(name)s"),
            suffixes=", ".join(IMAGE_SUFFIXES),
            name=name,
        )
    try:
        from PIL import Image  # optional: the web process may not have Pillow
    except ImportError:
        return None
    try:
        with Image.open(image) as handle:
            handle.verify()
    except Exception as exc:
        return say(gettext_noop("unreadable image %(name)s: %(error)s"), name=name, error=str(exc))
    return None


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

    def data(self) -> dict[str, Any]:
        """What a file's rows came to, kept with the fingerprint (without the lengths:
        a run with a tokenizer reads every file again)."""
        return {
            "votes": self.votes,
            "valid_rows": self.valid_rows,
            "problem_count": self.problem_count,
            "problems": [asdict(problem) for problem in self.problems],
            "seen": sorted(self.seen),
        }

    def absorb(self, data: dict[str, Any], max_problems: int, named: bool) -> None:
        """Add one file's tally; ``named``: problems say their file (several files)."""
        self.votes += data["votes"]
        self.valid_rows += data["valid_rows"]
        self.problem_count += data["problem_count"]
        self.seen.update(data["seen"])
        for problem in data["problems"][: max(max_problems - len(self.problems), 0)]:
            self.problems.append(Problem(**{**problem, "file": problem["file"] if named else None}))


def _file_result(
    file: Path,
    formats: tuple[str, ...],
    keys: list[str | None],
    max_problems: int,
    counter: Callable[[str], int] | None,
    chat: Callable | None,
    meter: Meter,
) -> tuple[dict[str, Any], dict[str | None, list[int]]]:
    """One data file read and checked against each candidate format of ``keys`` (None:
    each row's own format): its row count, the SHA-256 of what was read, the problems
    every candidate shares and one tally per candidate; and the token lengths per
    candidate, where a tokenizer counts them."""
    tallies = {key: _Tally(key) for key in keys}
    common = _Tally()  # unreadable lines, whole-file problems
    rows = 0
    for _file, number, row, error in file_rows(file, meter):
        if number is None:
            common.add(Problem(None, None, error, file.name), max_problems)
            continue
        rows += 1
        if error:
            common.add(Problem(number, None, error, file.name), max_problems)
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
                tally.add(Problem(number, name or None, text, file.name), max_problems)
            if problems:
                continue
            tally.seen.add(fmt)
            tally.valid_rows += 1
            if counter:
                text = row["text"] if fmt == "t2i" else row_text(fmt, row, chat)
                tally.lengths.append(counter(text))
    result = {
        "rows": rows,
        "common": common.data(),
        "tallies": {key or "": tally.data() for key, tally in tallies.items()},
    }
    return result, {key: tally.lengths for key, tally in tallies.items()}


def validate(
    scenario: str,
    path: str,
    tokenizer_path: str | None = None,
    max_problems: int = DEFAULT_MAX_PROBLEMS,
    algorithm: str | None = None,
    *,
    previous: dict[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ValidationReport:
    """Check every row of the data set at ``path`` for ``scenario``.

    For llm/rl, ``algorithm`` (dpo or grpo) fixes the format. Without it a data set
    has one format, the one the fields of most rows name, and every row is reported
    against it: one bad first row cannot decide the format of the whole file. SFT data
    may mix chat and alpaca rows; each row is checked against the format its fields name.
    Where a data set may have one of several formats, the report also says what each
    of them would make of it (``by_format``, read by ``report_for``).

    ``previous``: the ``fingerprint`` of an earlier report of the same data set; the
    files it saw unchanged are not read again. ``progress(bytes read, bytes to read)``
    is called every half second or so while files are read.
    """
    formats = formats_for(scenario, algorithm)
    report = ValidationReport(scenario=scenario, path=str(path))
    root = Path(path)
    files, links = _files(root, scenario)
    report.files = [str(f) for f in files]
    escaping = [
        Problem(
            None,
            None,
            say(
                gettext_noop("%(name)s links to a file outside the data folder; it is not read"),
                name=link.name,
            ),
        )
        for link in links
    ]
    if not files:
        for problem in escaping:
            report.add(problem, max_problems)
        expected = (
            say(gettext_noop("a folder with %(file)s"), file=METADATA_FILE)
            if scenario.startswith("t2i/")
            else say(gettext_noop("a .jsonl file or a folder of .jsonl files"))
        )
        problem = Problem(
            None,
            None,
            say(
                gettext_noop("no data found at %(path)s: expected %(expected)s"),
                path=str(path),
                expected=expected,
            ),
        )
        report.add(problem, max_problems)
        images = scenario.startswith("t2i/")
        report.fingerprint = {
            "formats": list(formats),
            **fingerprint.stats(root, [], images=images),
        }
        return report
    counter = chat = None
    if tokenizer_path:
        counter, chat = tokenizer_counter(tokenizer_path)
        previous = None  # the lengths are not kept: every file is read
    one_format = len(formats) > 1 and "sft_messages" not in formats
    # None: each row's own format (sft may mix); else one tally per candidate format.
    keys: list[str | None] = list(formats) if one_format else [None]
    images = scenario.startswith("t2i/")
    now = fingerprint.stats(root, files, images=images)
    kept = (previous or {}).get("files", {}) if _same_reading(previous, formats, now) else {}
    meter = Meter(sum(stat[0] for stat in now["files"].values()), progress)
    results: dict[str, dict[str, Any]] = {}
    lengths: dict[str | None, list[int]] = {key: [] for key in keys}
    for file in files:
        name = fingerprint.name_of(root, file)
        entry = kept.get(name)
        stat = now["files"][name]
        if entry is not None and entry.get("stat") != stat:
            # changed on the clock, perhaps not in content (a copy, a touch)
            same = entry.get("sha256") and fingerprint.sha256_of(file, meter) == entry["sha256"]
            entry = {**entry, "stat": stat} if same else None
        elif entry is not None:
            meter.advance(stat[0])
        if entry is None:
            result, found = _file_result(file, formats, keys, max_problems, counter, chat, meter)
            entry = {"stat": stat, "sha256": meter.digest.hexdigest(), "result": result}
            for key in keys:
                lengths[key] += found[key]
        results[name] = entry
    report.fingerprint = {"formats": list(formats), **now, "files": results}
    best = _merge(
        report, [entry["result"] for entry in results.values()], keys, escaping, max_problems
    )
    if lengths.get(best):
        report.token_lengths = length_stats(lengths[best])
    return report


def _same_reading(previous: dict[str, Any] | None, formats, now: dict[str, Any]) -> bool:
    """Whether an earlier fingerprint's results can stand: read for the same formats,
    at the same place and, for images, with every other file as it is now."""
    return (
        bool(previous)
        and previous.get("formats") == list(formats)
        and previous.get("root") == now["root"]
        and previous.get("others") == now.get("others")
    )


def _merge(
    report: ValidationReport,
    results: list[dict[str, Any]],
    keys: list[str | None],
    escaping: list[Problem],
    max_problems: int,
) -> str | None:
    """The report of the whole data set from what each of its files came to; returns
    the key of the tally it took (the format; None where each row has its own)."""
    named = len(results) > 1
    common = _Tally()
    for problem in escaping:
        common.add(problem, max_problems)
    tallies = {key: _Tally(key) for key in keys}
    for result in results:
        report.rows += result["rows"]
        common.absorb(result["common"], max_problems, named)
        for key in keys:
            tallies[key].absorb(result["tallies"][key or ""], max_problems, named)
    best = max(tallies.values(), key=lambda t: (t.votes, t.valid_rows, -t.problem_count))
    if report.rows == 0 and common.problem_count == 0:
        common.add(Problem(None, None, say(gettext_noop("the data set has no rows"))), max_problems)
    _take(report, common, best, max_problems)
    if report.scenario.startswith("t2i/"):
        report.images = report.valid_rows
    if len(keys) > 1:
        for key, tally in tallies.items():
            other = ValidationReport(scenario=report.scenario, path=report.path)
            _take(other, common, tally, max_problems)
            report.by_format[str(key)] = {
                name: value
                for name, value in other.to_dict().items()
                if name in ("format", "valid_rows", "problem_count", "problems", "ok")
            } | {"problems_truncated": other.problem_count > len(other.problems)}
    return best.fmt


def _take(report: ValidationReport, common: _Tally, tally: _Tally, max_problems: int) -> None:
    report.valid_rows = tally.valid_rows
    for problem in sorted(
        [*common.problems, *tally.problems], key=lambda p: (p.file or "", p.row or 0)
    ):
        report.add(problem, max_problems)
    report.problem_count = common.problem_count + tally.problem_count
    if len(tally.seen) == 1:
        report.format = next(iter(tally.seen))
    elif tally.seen:
        report.format = "+".join(sorted(tally.seen))


def report_for(report: dict[str, Any], formats: tuple[str, ...]) -> dict[str, Any] | None:
    """A kept report (``to_dict``) as validating for an algorithm that reads only
    ``formats`` would have made it; None where the report cannot tell."""
    if tuple(formats) == SCENARIO_FORMATS.get(report.get("scenario", "")):
        return report
    if len(formats) == 1 and formats[0] in (report.get("by_format") or {}):
        return {**report, **report["by_format"][formats[0]]}
    return None
