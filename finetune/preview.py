"""What a data set holds, shown on its page: its first rows and the lengths of its rows.

Read from its files as the trainer reads them (trainer.datavalidation), with bounded
work whatever the data set's size: the first PREVIEW_ROWS well-formed rows are shown,
each text cut at PREVIEW_CHARS, and the lengths are counted over at most STATS_ROWS rows
and STATS_CHARS characters (the page says when it counted fewer than the data set holds).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from finetune.models import Dataset
from finetune.storage import resolve
from trainer import datavalidation
from trainer.jsonl import read_rows
from trainer.lengths import length_stats, row_text

PREVIEW_ROWS = 5
PREVIEW_CHARS = 600
STATS_ROWS = 2000
STATS_CHARS = 8_000_000  # and no more text than this, however long the rows

ROLES = {
    "system": pgettext_lazy("chat role", "System"),
    "user": pgettext_lazy("chat role", "User"),
    "assistant": pgettext_lazy("chat role", "Assistant"),
    "tool": pgettext_lazy("chat role", "Tool"),
}
FIELDS = {
    "text": _("Text"),
    "instruction": _("Instruction"),
    "input": _("Input"),
    "output": _("Output"),
    "prompt": _("Prompt"),
    "chosen": _("Chosen answer"),
    "rejected": _("Rejected answer"),
}
SHOWN = {
    "pretrain": ("text",),
    "sft_alpaca": ("instruction", "input", "output"),
    "preference": ("prompt", "chosen", "rejected"),
    "prompts": ("prompt",),
}


@dataclass
class Sample:
    """One row as the page shows it: chat turns, labelled fields, or an image."""

    turns: list[tuple[str, str]] = field(default_factory=list)  # (role's label, text)
    fields: list[tuple[str, str]] = field(default_factory=list)  # (field's label, text)
    image: str = ""  # a file name in the data set's folder
    caption: str = ""


@dataclass
class Preview:
    samples: list[Sample]
    lengths: dict[str, float] | None  # characters per row: count, min, p50, p95, max, mean
    counted: int  # rows whose length was counted
    complete: bool  # every row was counted


def _cut(value: object) -> str:
    text = value if isinstance(value, str) else ""
    return text if len(text) <= PREVIEW_CHARS else text[:PREVIEW_CHARS] + "…"


def _sample(fmt: str, row: dict) -> Sample:
    if fmt == "sft_messages":
        return Sample(
            turns=[
                (str(ROLES.get(turn.get("role"), turn.get("role"))), _cut(turn.get("content")))
                for turn in row["messages"]
                if isinstance(turn, dict)
            ]
        )
    if fmt == "t2i":
        return Sample(image=str(row["file_name"]), caption=_cut(row.get("text")))
    return Sample(
        fields=[(str(FIELDS[name]), _cut(row.get(name))) for name in SHOWN[fmt] if row.get(name)]
    )


def _length(fmt: str, row: dict) -> int:
    if fmt == "t2i":
        return len(row.get("text") or "")
    return len(row_text(fmt, row))


def preview(dataset: Dataset) -> Preview:
    """The data set's first rows and its rows' lengths in characters (bounded work)."""
    scenario = dataset.scenario.code
    files = datavalidation.data_files(resolve(dataset.location), scenario)
    formats = datavalidation.formats_for(scenario)
    samples: list[Sample] = []
    lengths: list[int] = []
    counted, complete = 0, True
    for _file, _line, row, error in read_rows(files):
        if error is not None or not isinstance(row, dict):
            continue
        fmt = dataset.format if dataset.format in formats else None
        fmt = fmt or datavalidation.detect_format(formats, row)
        if datavalidation.check_row(fmt, row):
            continue  # a bad row: the validation report lists it
        if len(samples) < PREVIEW_ROWS:
            samples.append(_sample(fmt, row))
        if len(lengths) == STATS_ROWS or counted > STATS_CHARS:
            complete = False
            break
        lengths.append(_length(fmt, row))
        counted += lengths[-1]
    return Preview(samples, _stats(lengths), len(lengths), complete)


def _stats(lengths: list[int]) -> dict[str, float] | None:
    if not lengths:
        return None
    found = length_stats(lengths)
    shown = {name: int(found[name]) for name in ("min", "p50", "p95", "max")}
    return {**shown, "mean": round(found["mean"])}


def image_file(dataset: Dataset, name: str) -> Path | None:
    """A text-to-image data set's image by its name in metadata.jsonl, if it is one:
    inside the data set's folder, with an image's suffix."""
    if not dataset.scenario.code.startswith("t2i/"):
        return None
    folder = resolve(dataset.location)
    if folder.is_file():
        folder = folder.parent
    folder = folder.resolve()
    try:
        file = (folder / name).resolve()
    except (OSError, ValueError):
        return None
    if not file.is_relative_to(folder) or not file.is_file():
        return None
    if file.suffix.lower() not in datavalidation.IMAGE_SUFFIXES:
        return None
    return file
