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
import shutil
import signal
import subprocess
import sys
import threading
from collections import deque
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext_noop

from config import failpoints
from finetune.models.data import ModelWork
from finetune.storage import resolve
from finetune.texts import Said, duration, say, split
from trainer.output import staging_of

logger = logging.getLogger(__name__)
S = ModelWork.Status
SILENT_SECONDS = settings.JINGTIAO_MODEL_WORK_SILENT_SECONDS
BEAT_SECONDS = 10
MAX_ATTEMPTS = 3
TIMED_OUT = -9  # what run_trainer answers for a run it killed at its time limit


def claim(model: type[ModelWork], pk: int) -> int | None:
    """Take the request (waiting, or its worker silent): the attempt it now is, which
    every later update of this worker names, so that a worker taken over by another
    writes nothing more; None if another has it or it is over. One taken more than
    MAX_ATTEMPTS times is failed instead."""
    now = timezone.now()
    silent = now - timedelta(seconds=SILENT_SECONDS)
    taken = (
        model.objects.filter(pk=pk)
        .filter(Q(status=S.PENDING) | Q(status=S.RUNNING, beat_at__lt=silent))
        .update(status=S.RUNNING, beat_at=now, attempts=F("attempts") + 1)
    )
    if not taken:
        return None
    attempt = model.objects.filter(pk=pk).values_list("attempts", flat=True).get()
    if attempt > MAX_ATTEMPTS:
        reason = say(
            gettext_noop("The worker carrying this out stopped %(count)d times; it was given up."),
            count=MAX_ATTEMPTS,
        )
        fail(model, pk, attempt, reason)
        return None
    return attempt


def fail(model: type[ModelWork], pk: int, attempt: int, reason: Said, detail: str = "") -> None:
    text, said = split(reason)
    model.objects.filter(pk=pk, status=S.RUNNING, attempts=attempt).update(
        status=S.FAILED, error=text, error_said=said, detail=detail[-4000:],
        finished_at=timezone.now(),
    )  # fmt: skip


def lost(model: type[ModelWork], now=None) -> list[int]:
    """The requests nobody carries out: waiting untaken, or taken by a silent worker.
    Each is named at most once every SILENT_SECONDS (a waiting one is stamped), so that
    messages do not pile up behind a busy worker."""
    now = now or timezone.now()
    silent = now - timedelta(seconds=SILENT_SECONDS)
    waiting = Q(status=S.PENDING, created_at__lt=silent) & (
        Q(beat_at__isnull=True) | Q(beat_at__lt=silent)
    )
    found = list(
        model.objects.filter(waiting | Q(status=S.RUNNING, beat_at__lt=silent)).values_list(
            "pk", flat=True
        )
    )
    model.objects.filter(pk__in=found, status=S.PENDING).update(beat_at=now)
    return found


def ended_lately(model: type[ModelWork], now=None):
    """The requests failed in the last hour: what their trainer staged is not wanted."""
    now = now or timezone.now()
    recent = now - timedelta(hours=1)
    related = [f.name for f in model._meta.get_fields() if f.name in ("source", "version")]
    return model.objects.filter(status=S.FAILED, finished_at__gte=recent).select_related(
        *(f"{name}__repo" for name in related)
    )


def sweep(model: type[ModelWork], location_of, enqueue, now=None) -> list[int]:
    """Clear what the requests given up lately left half-written (``location_of(row)``:
    where their trainer writes), and ask again (``enqueue(pk)``) for those nobody
    carries out; the latter's ids."""
    for row in ended_lately(model, now):
        shutil.rmtree(staging_of(resolve(location_of(row))), ignore_errors=True)
    found = lost(model, now)
    for pk in found:
        logger.info("%s %s is asked for again", model._meta.model_name, pk)
        enqueue(pk)
    return found


def _die_with_parent() -> None:
    """In the trainer process: end when the worker that started it ends."""
    with contextlib.suppress(AttributeError, OSError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def run_trainer(
    model: type[ModelWork], pk: int, attempt: int, arguments: list[str], time_limit: float
) -> tuple[int, str]:
    """Run ``python -m trainer <arguments>``; (exit status, its last words on a failure).
    A run past ``time_limit`` seconds is killed: status TIMED_OUT."""
    process = subprocess.Popen(
        [sys.executable, "-m", "trainer", *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_die_with_parent,
    )
    ran_out = threading.Event()

    def too_long() -> None:
        ran_out.set()
        process.kill()

    watchdog = threading.Timer(time_limit, too_long)
    watchdog.daemon = True
    watchdog.start()
    stop = threading.Event()
    beat = threading.Thread(target=_beat, args=(model, pk, attempt, stop), daemon=True)
    beat.start()
    failpoints.failpoint("modelwork.after_spawn")  # benchmarks/faults.py kills the worker here
    errors: deque[str] = deque(maxlen=50)
    drain = threading.Thread(target=lambda: errors.extend(process.stderr), daemon=True)
    drain.start()
    mine = model.objects.filter(pk=pk, status=S.RUNNING, attempts=attempt)
    last = ""
    try:
        for line in process.stdout:
            last = line.strip() or last
            try:
                said = json.loads(last)
            except ValueError:
                continue
            if isinstance(said, dict) and isinstance(said.get("progress"), int | float):
                progress = min(max(float(said["progress"]), 0.0), 1.0)
                mine.update(progress=progress, beat_at=timezone.now())
        process.wait()
    except BaseException:
        process.kill()
        process.wait()
        raise
    finally:
        watchdog.cancel()
        stop.set()
        beat.join()
        drain.join(timeout=5)
    if ran_out.is_set():
        return TIMED_OUT, f"killed after {time_limit:.0f} s"
    if process.returncode == 0:
        return 0, ""
    try:
        said = json.loads(last)
        words = said.get("error") if isinstance(said, dict) else None
    except ValueError:
        words = None
    detail = words or "".join(errors) or f"exit status {process.returncode}"
    logger.warning("%s %s failed: %s", model._meta.model_name, pk, detail)
    return process.returncode or 1, detail


def timed_out(time_limit: float) -> Said:
    return say(
        gettext_noop("It ran past its time limit of %(span)s and was stopped."),
        span=duration(timedelta(seconds=time_limit)),
    )


def _beat(model: type[ModelWork], pk: int, attempt: int, stop: threading.Event) -> None:
    """Tell the sweep that this request's worker lives, while its trainer runs; a failed
    stamp (the database away a moment) is tried again at the next beat."""
    try:
        while not stop.wait(BEAT_SECONDS):
            try:
                model.objects.filter(pk=pk, status=S.RUNNING, attempts=attempt).update(
                    beat_at=timezone.now()
                )
            except DatabaseError:
                logger.warning("%s %s: no beat this time", model._meta.model_name, pk)
                connection.close()
    finally:
        connection.close()


def succeed(model: type[ModelWork], pk: int, attempt: int, **fields) -> bool:
    """Mark the request done (with ``fields``), if it is still this worker's."""
    return bool(
        model.objects.filter(pk=pk, status=S.RUNNING, attempts=attempt).update(
            status=S.SUCCEEDED, progress=1.0, finished_at=timezone.now(), **fields
        )
    )
