"""Reading a JSON Lines file row by row, as the validator and the trainers read it.

Only the standard library. Each line is read as bytes, so a file that is not UTF-8,
a CSV file or a row nested too deep is told apart from a row of bad JSON; a `Meter`
counts and hashes the bytes as they are read (the validator's progress and the
fingerprint of what it read, trainer/fingerprint.py).
"""

from __future__ import annotations

import codecs
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from trainer.words import gettext_noop, say


class Meter:
    """The bytes read so far, their SHA-256 per file, and a throttled progress report."""

    def __init__(
        self, total: int = 0, progress: Callable[[int, int], None] | None = None, every=0.5
    ) -> None:
        self.total, self.done = total, 0
        self._progress, self._every, self._last = progress, every, 0.0
        self.digest = hashlib.sha256()

    def start_file(self) -> None:
        self.digest = hashlib.sha256()

    def read(self, chunk: bytes) -> None:
        self.digest.update(chunk)
        self.advance(len(chunk))

    def advance(self, size: int) -> None:
        self.done += size
        if self._progress is not None:
            now = time.monotonic()
            if now - self._last >= self._every:
                self._last = now
                self._progress(self.done, self.total)


#: Deeper rows than this are refused before the JSON parser's own recursion limit.
MAX_DEPTH = 100


Row = tuple[Path, int | None, Any | None, str | None]


def read_rows(files: list[Path], meter: Meter | None = None) -> Iterator[Row]:
    """Yield (file, line number, parsed row or None, error or None), skipping blank lines.

    A file must be UTF-8 (a byte-order mark is accepted); a UTF-16 file yields one
    whole-file error (line number None) and no rows.
    """
    for file in files:
        yield from file_rows(file, meter)


def file_rows(file: Path, meter: Meter | None = None) -> Iterator[Row]:
    """The rows of one file; ``meter`` sees every byte read (its digest is the file's
    SHA-256 once the rows are all read)."""
    if meter is not None:
        meter.start_file()
    with file.open("rb") as handle:
        wide = _wide_encoding(handle.read(4096))
        if wide:
            yield (
                file,
                None,
                None,
                say(
                    gettext_noop("the file is %(encoding)s text, not UTF-8: save it as UTF-8"),
                    encoding=wide,
                ),
            )
            return
        handle.seek(0)
        looks_like_csv = None
        for number, raw in _lines(handle, meter):
            if number == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8) :]
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield (
                    file,
                    number,
                    None,
                    say(
                        gettext_noop(
                            "the file is not UTF-8: byte %(byte)s at byte %(position)s of this "
                            "line cannot be read (save the file as UTF-8, not GBK or Latin-1)"
                        ),
                        byte=f"0x{raw[exc.start]:02x}",
                        position=exc.start + 1,
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
                        say(
                            gettext_noop(
                                "the file looks like CSV, not JSON Lines: every line must be one "
                                'JSON object, e.g. {"text": "..."}'
                            )
                        ),
                    )
            try:
                yield file, number, _parse(line), None
            except json.JSONDecodeError as exc:
                yield file, number, None, _json_error(line, exc)
            except _TooDeep:
                deep = say(
                    gettext_noop("the row is nested more than %(depth)s levels deep"),
                    depth=MAX_DEPTH,
                )
                yield file, number, None, deep
            except ValueError:  # a number of thousands of digits, past Python's int limit
                yield (
                    file,
                    number,
                    None,
                    say(gettext_noop("invalid JSON: a number has too many digits")),
                )


def _lines(handle, meter: Meter | None = None) -> Iterator[tuple[int, bytes]]:
    """Numbered lines of a binary file, ended by \\n, \\r\\n or a lone \\r, as text mode
    reads them (and JSON strings never hold a raw line break)."""
    number = 0
    for raw in handle:
        if meter is not None:
            meter.read(raw)
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
        return say(
            gettext_noop(
                "invalid JSON: a string opened at column %(column)s is not closed by column %(end)s"
            ),
            column=exc.colno,
            end=end,
        )
    reason = exc.msg.removesuffix(" at")
    return say(
        gettext_noop("invalid JSON: %(reason)s at column %(column)s"),
        reason=JSON_ERRORS.get(reason, reason),
        column=exc.colno,
    )


#: What Python's json parser says of a line, as words to say in the reader's language.
JSON_ERRORS = {
    text: say(text)
    for text in (
        gettext_noop("Expecting value"),
        gettext_noop("Expecting property name enclosed in double quotes"),
        gettext_noop("Expecting ',' delimiter"),
        gettext_noop("Expecting ':' delimiter"),
        gettext_noop("Extra data"),
        gettext_noop("Invalid control character"),
        gettext_noop("Invalid \\escape"),
        gettext_noop("Invalid \\uXXXX escape"),
    )
}


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
