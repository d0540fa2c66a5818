"""Work on a model version carried out by a worker in a trainer process of its own: a
merge (services/exports.py), an evaluation (services/evaluations.py).

Each request is a row (a `ModelWork`). A worker carries out only a request it claimed in
one conditional update (``claim``): one waiting, or one whose worker fell silent for
SILENT_SECONDS; ``run_trainer`` runs ``python -m trainer <command>`` -- the model is loaded
there, and its memory goes back to the system when that process ends, which dies with the
worker that started it -- follows the progress it prints as JSON lines, and stamps the
row every BEAT_SECONDS meanwhile. ``lost`` names the requests nobody carries out (a
message lost with the broker, a worker that died), for the sweep to ask for again; the
claim gives up on one after MAX_ATTEMPTS.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import signal
import subprocess
import sys
import threading
from datetime import timedelta

from django.db import connection
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext_noop

from finetune.models.data import ModelWork
from finetune.texts import Said, say, split

logger = logging.getLogger(__name__)
S = ModelWork.Status
SILENT_SECONDS = 120
BEAT_SECONDS = 10
MAX_ATTEMPTS = 3


def claim(model: type[ModelWork], pk: int) -> bool:
    """Take the request (waiting, or its worker silent); False if another has it or it
    is over. One taken more than MAX_ATTEMPTS times is failed instead."""
    now = timezone.now()
    silent = now - timedelta(seconds=SILENT_SECONDS)
    taken = (
        model.objects.filter(pk=pk)
        .filter(Q(status=S.PENDING) | Q(status=S.RUNNING, beat_at__lt=silent))
        .update(status=S.RUNNING, beat_at=now, attempts=F("attempts") + 1)
    )
    if not taken:
        return False
    if model.objects.filter(pk=pk, attempts__gt=MAX_ATTEMPTS).exists():
        fail(
            model,
            pk,
            say(
                gettext_noop(
                    "The worker carrying this out stopped %(count)d times; it was given up."
                ),
                count=MAX_ATTEMPTS,
            ),
        )
        return False
    return True


def fail(model: type[ModelWork], pk: int, reason: Said, detail: str = "") -> None:
    text, said = split(reason)
    model.objects.filter(pk=pk, status=S.RUNNING).update(
        status=S.FAILED, error=text, error_said=said, detail=detail[-4000:],
        finished_at=timezone.now(),
    )  # fmt: skip


def lost(model: type[ModelWork], now=None) -> list[int]:
    """The requests nobody carries out: waiting untaken, or taken by a silent worker."""
    now = now or timezone.now()
    silent = now - timedelta(seconds=SILENT_SECONDS)
    return list(
        model.objects.filter(
            Q(status=S.PENDING, created_at__lt=silent) | Q(status=S.RUNNING, beat_at__lt=silent)
        ).values_list("pk", flat=True)
    )


def _die_with_parent() -> None:
    """In the trainer process: end when the worker that started it ends."""
    with contextlib.suppress(AttributeError, OSError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def run_trainer(
    model: type[ModelWork], pk: int, arguments: list[str], time_limit: float
) -> tuple[int, str]:
    """Run ``python -m trainer <arguments>``; (exit status, its last words on a failure)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "trainer", *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_die_with_parent,
    )
    stop = threading.Event()
    beat = threading.Thread(target=_beat, args=(model, pk, stop), daemon=True)
    beat.start()
    errors: list[str] = []
    drain = threading.Thread(target=lambda: errors.extend(process.stderr), daemon=True)
    drain.start()
    last = ""
    try:
        for line in process.stdout:
            last = line.strip() or last
            try:
                said = json.loads(last)
            except ValueError:
                continue
            if isinstance(said, dict) and isinstance(said.get("progress"), int | float):
                model.objects.filter(pk=pk, status=S.RUNNING).update(
                    progress=min(max(float(said["progress"]), 0.0), 1.0), beat_at=timezone.now()
                )
        process.wait(timeout=time_limit)
    except BaseException:
        process.kill()
        process.wait()
        raise
    finally:
        stop.set()
        beat.join()
        drain.join(timeout=5)
    if process.returncode == 0:
        return 0, ""
    try:
        said = json.loads(last)
        words = said.get("error") if isinstance(said, dict) else None
    except ValueError:
        words = None
    detail = words or "".join(errors[-20:]) or f"exit status {process.returncode}"
    logger.warning("%s %s failed: %s", model._meta.model_name, pk, detail)
    return process.returncode or 1, detail


def _beat(model: type[ModelWork], pk: int, stop: threading.Event) -> None:
    """Tell the sweep that this request's worker lives, while its trainer runs."""
    try:
        while not stop.wait(BEAT_SECONDS):
            model.objects.filter(pk=pk, status=S.RUNNING).update(beat_at=timezone.now())
    finally:
        connection.close()


def succeed(model: type[ModelWork], pk: int, **fields) -> bool:
    """Mark the request done (with ``fields``), if it is still this worker's."""
    return bool(
        model.objects.filter(pk=pk, status=S.RUNNING).update(
            status=S.SUCCEEDED, progress=1.0, finished_at=timezone.now(), **fields
        )
    )
