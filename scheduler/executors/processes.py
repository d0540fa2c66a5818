"""The processes of local workers: whether a recorded one still lives (and is still the
one recorded, not a reused pid), collecting them, signalling their process groups."""

from __future__ import annotations

import os
from contextlib import suppress

import psutil


def alive(meta: dict) -> bool:
    """The supervisor still runs, and the pid was not reused by another process."""
    pid = meta["pid"]
    reap(pid)
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        created = process.create_time()
    except psutil.Error:
        return False
    expected = meta.get("create_time")
    return expected is None or abs(created - expected) < 1.0


def reap(pid: int) -> None:
    """Collect the exit status of a supervisor this process started, so it is no zombie."""
    with suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def group_alive(group: int) -> bool:
    reap(group)
    try:
        return psutil.Process(group).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def signal_group(group: int, signum: int) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signum)
