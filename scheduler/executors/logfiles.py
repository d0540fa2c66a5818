"""Reading a worker's log file a page at a time (F7.2).

The local backend's workers write their logs into the job's folder; the
Kubernetes backend copies each pod's log there before the pods are removed.
Either way a log may be large (a chatty job for a week): it is read by byte
offset, one page at a time, and downloaded in blocks, never whole.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from scheduler.executors.base import LogChunk

PAGE_BYTES = 256 * 1024
BLOCK_BYTES = 64 * 1024


def log_path(folder: Path, rank: int) -> Path:
    return folder / f"worker-{rank}.log"


@dataclass(frozen=True)
class Page:
    data: bytes
    offset: int  # where `data` starts in the file
    end: int  # the offset after `data`: the cursor of the next page
    size: int  # the file's size when read
    skipped: bool  # lines before `offset` were left out (a tail of a longer log)


def read_page(path: Path, offset: int | None, *, page_bytes: int = PAGE_BYTES) -> Page:
    """Whole lines from `offset`, at most `page_bytes` of them; None reads the tail.

    A page ends at its last newline when the file goes on, so no line and no UTF-8
    character is cut in two; a line longer than a page comes in page-sized pieces.
    """
    if not path.is_file():
        return Page(b"", offset or 0, offset or 0, 0, False)
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        skipped = offset is None and size > page_bytes
        if offset is None:
            offset = max(0, size - page_bytes)
        offset = min(max(0, offset), size)
        handle.seek(offset)
        data = handle.read(page_bytes)
    if skipped and b"\n" in data[:-1]:
        cut = data.index(b"\n") + 1  # start at a whole line
        data, offset = data[cut:], offset + cut
    if len(data) == page_bytes and b"\n" in data:
        data = data[: data.rindex(b"\n") + 1]
    return Page(data, offset, offset + len(data), size, skipped)


def read_pages(
    folder: Path, ended: Mapping[int, bool], since: str | None, *, tail: bool
) -> list[LogChunk]:
    """A page of each rank's log in `folder` from the cursor `since` ({rank: offset}),
    or its last page with `tail`; `ended` says which ranks write no more."""
    cursor = {} if tail or not since else json.loads(since)
    chunks = []
    for rank, done in sorted(ended.items()):
        path = log_path(folder, rank)
        held = cursor.get(str(rank), 0)
        if not isinstance(held, int):  # a live pod's cursor (a time): it read to the end
            held = path.stat().st_size if path.is_file() else 0
        page = read_page(path, None if tail else held)
        cursor[str(rank)] = page.end
        chunks.append(
            LogChunk(
                worker=rank,
                text=page.data.decode("utf-8", "replace"),
                next_since=json.dumps(cursor, sort_keys=True),
                complete=done and page.end >= page.size,
                skipped=page.skipped,
            )
        )
    return chunks


def blocks(path: Path, block_bytes: int = BLOCK_BYTES) -> Iterator[bytes]:
    """The whole file in blocks, for a download."""
    with open(path, "rb") as handle:
        while block := handle.read(block_bytes):
            yield block
