"""Which malloc the training process runs on: jemalloc where the system has it.

glibc's malloc keeps the buffers a training step frees in its heap, and the heap
fragments: on the LLaMA-Factory benchmark (docs/trainer.md, "Memory") the process held
~150 MiB more than the step needed. jemalloc reuses and returns them, with no speed
change that could be measured there; PyTorch's own CPU launcher
(``torch.backends.xeon.run_cpu``) preloads such an allocator for the same reason. A
malloc can only be chosen before the process starts, so ``python -m trainer run``
starts itself again, once, with jemalloc preloaded.

jemalloc keeps the pages it frees for reuse (its decay is off, which PyTorch's CPU
launcher does in effect): handing them back made every step fault them in again, ~10%
slower, for ~20 MiB less peak. ``JINGTIAO_MALLOC=system`` keeps glibc's malloc; a process that
already preloads a library (``LD_PRELOAD``) is left as it is, and a ``MALLOC_CONF`` of
one's own is kept.
"""

from __future__ import annotations

import ctypes.util
import os
import sys
from collections.abc import Mapping
from pathlib import Path

SETTING = "JINGTIAO_MALLOC"
CHOICES = ("jemalloc", "system")
KEEP_FREED_PAGES = "dirty_decay_ms:-1,muzzy_decay_ms:-1"


def jemalloc_environment(env: Mapping[str, str]) -> dict[str, str] | None:
    """``env`` with jemalloc preloaded, for a trainer started with ``env``; None to keep
    the malloc it has (chosen so, another library preloaded, or no jemalloc installed)."""
    choice = env.get(SETTING, "jemalloc")
    if choice not in CHOICES:
        raise ValueError(f"{SETTING}={choice!r}: expected one of {', '.join(CHOICES)}")
    library = ctypes.util.find_library("jemalloc")
    if choice == "system" or env.get("LD_PRELOAD") or not library:
        return None
    return {"MALLOC_CONF": KEEP_FREED_PAGES, **env, "LD_PRELOAD": library}


def restart_with_jemalloc() -> None:
    """Replace this process by the same command on jemalloc; returns when it stays as is."""
    env = jemalloc_environment(os.environ)
    if env:
        os.execve(sys.executable, sys.orig_argv, env)


def current_allocator() -> str:
    """The malloc this process runs on: "jemalloc" or "system"."""
    maps = Path("/proc/self/maps")
    return "jemalloc" if maps.exists() and "libjemalloc.so" in maps.read_text() else "system"
