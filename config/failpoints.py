"""Failpoints: named places on the launch path (and in a merge) where the fault benchmark
(benchmarks/faults.py) makes the worker die or pause, to show what the platform
does when a worker dies exactly there. The idea is FreeBSD's fail(9) and etcd's
gofail, kept to what the benchmark needs.

Off unless JINGTIAO_FAILPOINTS is true; then each point costs one failed rename.
A point is armed by a file `<data root>/failpoints/<name>` holding its action:

    kill            SIGKILL this process's group: the whole Celery worker, its
                    pool included, as an OOM kill or a lost node would
    sleep SECONDS   pause here (a launch that is slow at this step)

The file is claimed by renaming it, so an arming fires once, in whichever
process gets there first.
"""

from __future__ import annotations

import logging
import os
import signal
import time

from django.conf import settings

logger = logging.getLogger(__name__)

#: Where they are: before the first worker is spawned; after a worker's supervisor
#: is spawned and before its record is written; after every record is written and
#: before the launch is confirmed (its LAUNCH event); once a merge's or an
#: evaluation's trainer process runs (finetune/services/modelwork.py).
POINTS = (
    "launch.before_spawn",
    "launch.after_spawn",
    "launch.after_record",
    "modelwork.after_spawn",
)


def failpoint(name: str) -> None:
    if not settings.JINGTIAO_FAILPOINTS:
        return
    folder = settings.DATA_ROOT / "failpoints"
    claimed = folder / f".{name}.{os.getpid()}"
    try:
        os.rename(folder / name, claimed)
    except FileNotFoundError:
        return
    action = claimed.read_text().split()
    claimed.unlink()
    logger.warning("failpoint %s fires: %s", name, " ".join(action))
    if action[:1] == ["kill"]:
        os.killpg(os.getpgid(0), signal.SIGKILL)
    elif action[:1] == ["sleep"] and len(action) == 2:
        time.sleep(float(action[1]))
