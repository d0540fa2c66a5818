"""OpenAI's fine-tuning files (JSONL in its chat or preference format) as data sets.

A chat row ``{"messages": [...]}`` is already the platform's ``sft_messages``; a
preference row ``{"input": {"messages": [...]}, "preferred_output": [...],
"non_preferred_output": [...]}`` becomes ``{"prompt", "chosen", "rejected"}``, the
conversation before the last turn written into the prompt, role by role. Rows are
converted as they are read, one line at a time, so a file of gigabytes never sits in
memory; what cannot be converted is refused with its line number.
"""

from __future__ import annotations

import itertools
import json
import tempfile
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.files import File
from django.db import IntegrityError
from django.template.defaultfilters import filesizeformat
from django.utils.translation import gettext as _

from accounts.models import Access, Project
from finetune.models import Dataset, Scenario
from finetune.services.data import create_dataset

CHAT, PREFERENCE = "chat", "preference"
#: the platform's scenario of each kind of file
SCENARIOS = {CHAT: "llm/sft", PREFERENCE: "llm/rl"}
MESSAGE_FIELDS = ("role", "content")
MAX_NAME = 128
NAME_TRIES = 3  # uploads of one name at once
MAX_LINE_BYTES = 16 * 2**20  # one row: a long conversation, not a whole file


class FileRefused(ValueError):
    """A file that is not a fine-tuning file in either of OpenAI's formats."""


def kind_of(row: dict) -> str | None:
    if "messages" in row:
        return CHAT
    if "preferred_output" in row or "non_preferred_output" in row:
        return PREFERENCE
    return None


def _messages(value, line: int, where: str) -> list[dict]:
    if not isinstance(value, list) or not all(isinstance(m, dict) for m in value):
        raise FileRefused(
            _("Line %(line)d: %(where)s must be a list of messages.")
            % {"line": line, "where": where}
        )
    # the platform's rows keep the role and the text (a weight or a tool call is OpenAI's)
    return [{key: m[key] for key in MESSAGE_FIELDS if key in m} for m in value]


def _text(message: dict) -> str:
    content = message.get("content")
    if isinstance(content, list):  # content parts: their text, in order
        return "".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return content if isinstance(content, str) else ""


def convert(row: dict, kind: str, line: int) -> dict:
    if kind == CHAT:
        return {"messages": _messages(row.get("messages"), line, "messages")}
    prompt = row.get("input")
    if not isinstance(prompt, dict):
        raise FileRefused(_("Line %(line)d: “input” must be an object.") % {"line": line})
    turns = _messages(prompt.get("messages"), line, "input.messages")
    chosen = _messages(row.get("preferred_output"), line, "preferred_output")
    rejected = _messages(row.get("non_preferred_output"), line, "non_preferred_output")
    if not turns or not chosen or not rejected:
        raise FileRefused(
            _("Line %(line)d: a preference row needs input messages and both outputs.")
            % {"line": line}
        )
    context = [f"{m.get('role', '')}: {_text(m)}" for m in turns[:-1]]
    return {
        "prompt": "\n\n".join([*context, _text(turns[-1])]),
        "chosen": _text(chosen[0]),
        "rejected": _text(rejected[0]),
    }


def converted(upload) -> tuple[str, Path]:
    """The upload's rows in the platform's format, in a temporary file; the file's kind."""
    kind = None
    # closed by the `with` below; kept past it (delete=False) for the data set to take
    handle = tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False, encoding="utf-8")  # noqa: SIM115
    path = Path(handle.name)
    try:
        with handle:
            pending: list[bytes] = []  # the line being read, in pieces (no copy per chunk)
            pending_bytes = 0
            line = 0
            for chunk in itertools.chain(upload.chunks(), [b"\n"]):
                *ended, rest = chunk.split(b"\n")
                if ended:
                    ended[0] = b"".join([*pending, ended[0]])
                    pending, pending_bytes = [], 0
                pending.append(rest)
                pending_bytes += len(rest)
                for raw in ended:
                    line += 1
                    if not raw.strip():
                        continue
                    try:
                        row = json.loads(raw)
                    except (ValueError, UnicodeDecodeError, RecursionError):
                        raise FileRefused(
                            _("Line %(line)d is not JSON.") % {"line": line}
                        ) from None
                    found = kind_of(row) if isinstance(row, dict) else None
                    if found is None:
                        raise FileRefused(
                            _(
                                "Line %(line)d is neither a chat row (“messages”) nor a "
                                "preference row (“input”, “preferred_output”, "
                                "“non_preferred_output”)."
                            )
                            % {"line": line}
                        )
                    if kind is not None and found != kind:
                        raise FileRefused(
                            _("Line %(line)d: chat and preference rows cannot be mixed.")
                            % {"line": line}
                        )
                    kind = found
                    handle.write(json.dumps(convert(row, kind, line), ensure_ascii=False) + "\n")
                if pending_bytes > MAX_LINE_BYTES:  # a line without end: refused, not held
                    raise FileRefused(
                        _("Line %(line)d is longer than %(size)s.")
                        % {"line": line + 1, "size": filesizeformat(MAX_LINE_BYTES)}
                    )
        if kind is None:
            raise FileRefused(_("The file holds no rows."))
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return kind, path


def _free_name(project: Project, filename: str) -> str:
    stem = (Path(filename or "").stem or "openai-file")[: MAX_NAME - 8]
    taken = set(
        Dataset.objects.filter(project=project, name__startswith=stem).values_list(
            "name", flat=True
        )
    )
    if stem not in taken:
        return stem
    number = 2
    while f"{stem}-{number}" in taken:
        number += 1
    return f"{stem}-{number}"


def create_file(user, project: Project, upload) -> Dataset:
    """POST /v1/files: the upload as a data set of the scenario of its rows, validated
    by a worker like any other (its status is the file's)."""
    try:
        kind, path = converted(upload)
    except FileRefused as exc:
        raise ValidationError({"file": [str(exc)]}) from exc
    scenario = Scenario.objects.get(code=SCENARIOS[kind])
    try:
        for attempt in itertools.count(1):
            with path.open("rb") as handle:
                try:
                    return create_dataset(
                        user,
                        project,
                        name=_free_name(project, upload.name),
                        scenario=scenario,
                        level=Access.NONE,
                        upload=File(handle, name="data.jsonl"),
                    )
                except IntegrityError:
                    # another upload of the same name took it meanwhile: the next free one
                    if attempt == NAME_TRIES:
                        raise
    finally:
        path.unlink(missing_ok=True)
