"""Merging a LoRA version into its base model, as a new version of the same repo.

A member who may change the repo asks (``request_export``); the request is a row
(`ModelExport`), carried out by a worker of the ``inference`` queue (``run_export``),
which runs ``python -m trainer export`` in a process of its own -- the merge loads
the whole base model, and its memory goes back to the system when that process ends --
and follows the progress it prints. The merged model is written into
``<repo>/export-<id>`` (staged, then renamed into place, like a training run's output)
and becomes the repo's next version, ``derived_from`` the first.

Nothing is lost or done twice: a request whose message was lost, or whose worker died
(no sign of life for SILENT_SECONDS), is taken up again by the sweep, at most
MAX_ATTEMPTS times; a worker only carries out a request it claimed in one conditional
update; the trainer process dies with the worker that started it.
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
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Max, Q
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from config.celery import enqueue
from finetune.models import ModelExport, ModelRepo, ModelVersion
from finetune.storage import resolve
from finetune.texts import Said, say, split
from trainer.output import staging_of

logger = logging.getLogger(__name__)
S = ModelExport.Status
SILENT_SECONDS = 120
BEAT_SECONDS = 10
MAX_ATTEMPTS = 3
MERGEABLE = ("llm", "t2i")


def base_model_of(version: ModelVersion) -> tuple[str, Path] | None:
    """(name, folder) of the base model the version was trained from, where known: the
    job's catalogue entry, else what the trainer wrote into the manifest."""
    job = version.job
    if job is not None and job.pretrained_model_id is not None:
        model = job.pretrained_model
        return model.name, resolve(model.location)
    named = version.manifest.get("base_model")
    if isinstance(named, str) and named:
        return Path(named).name, resolve(named)
    return None


def export_refusal(version: ModelVersion) -> Said | None:
    """Why the version cannot be merged into its base, or None."""
    manifest = version.manifest or {}
    if not (manifest.get("artifacts") or {}).get("adapter"):
        return say(gettext_noop("This version is a full model: there is no LoRA to merge."))
    if manifest.get("model_kind") not in MERGEABLE:
        return say(gettext_noop("Models of this kind cannot be merged."))
    if not resolve(version.location).is_dir():
        return say(
            gettext_noop("The files of this version are no longer at %(path)s."),
            path=version.location,
        )
    base = base_model_of(version)
    if base is None:
        return say(gettext_noop("It is not known which base model this version was trained on."))
    name, folder = base
    if not folder.is_dir():
        return say(
            gettext_noop(
                "Its base model %(name)s is no longer at %(path)s: an operator must put it "
                "back before it can be merged."
            ),
            name=name,
            path=str(folder),
        )
    return None


def request_export(user, version: ModelVersion) -> ModelExport:
    """Ask for the version to be merged (the caller checked that ``user`` may change its
    repo). Refused with the reason where it cannot be; one export per version at a time."""
    refusal = export_refusal(version)
    if refusal is not None:
        raise ValidationError(refusal.render())
    try:
        with transaction.atomic():
            export = ModelExport.objects.create(source=version, requested_by=user)
    except IntegrityError:
        raise ValidationError(_("An export of this version is already under way.")) from None
    transaction.on_commit(lambda: _enqueue(export.pk))
    return export


def _enqueue(export_id: int) -> None:
    from finetune.tasks import export_version

    enqueue(export_version, export_id)


def output_location(export: ModelExport) -> str:
    return f"{export.source.repo.location.rstrip('/')}/export-{export.pk}"


def _claim(export_id: int, now) -> bool:
    """Take the request: one waiting, or one whose worker fell silent."""
    silent = now - timedelta(seconds=SILENT_SECONDS)
    return bool(
        ModelExport.objects.filter(pk=export_id)
        .filter(Q(status=S.PENDING) | Q(status=S.RUNNING, beat_at__lt=silent))
        .update(status=S.RUNNING, beat_at=now, attempts=F("attempts") + 1)
    )


def _fail(export_id: int, reason: Said, detail: str = "") -> None:
    text, _said = split(reason)
    ModelExport.objects.filter(pk=export_id, status=S.RUNNING).update(
        status=S.FAILED, error=text, error_said=_said, detail=detail[-4000:],
        finished_at=timezone.now(),
    )  # fmt: skip


def run_export(export_id: int) -> bool:
    """Carry out one export request; True if this call finished it (either way)."""
    if not _claim(export_id, timezone.now()):
        return False
    related = ("source__repo", "source__job__pretrained_model")
    export = ModelExport.objects.select_related(*related).get(pk=export_id)
    if export.attempts > MAX_ATTEMPTS:
        _fail(
            export_id,
            say(
                gettext_noop(
                    "The worker carrying out this export stopped %(count)d times; it was given up."
                ),
                count=MAX_ATTEMPTS,
            ),
        )
        return True
    refusal = export_refusal(export.source)
    if refusal is not None:  # the base model went away since it was asked for
        _fail(export_id, refusal)
        return True
    _name, base = base_model_of(export.source)  # type: ignore[misc]
    location = output_location(export)
    target = resolve(location)
    if (target / "manifest.json").is_file():  # a worker died after the merge, before the row
        status, detail = 0, ""
    else:
        status, detail = _merge(export_id, resolve(export.source.location), base, target)
    if status != 0:
        shutil.rmtree(staging_of(target), ignore_errors=True)  # a killed merge leaves it
        _fail(export_id, say(gettext_noop("The merge failed.")), detail)
        return True
    _publish(export, location, target)
    return True


def _die_with_parent() -> None:
    """In the trainer process: end when the worker that started it ends."""
    with contextlib.suppress(AttributeError, OSError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _merge(export_id: int, source: Path, base: Path, target: Path) -> tuple[int, str]:
    """Run the trainer's merge; (exit status, its last words where it failed)."""
    command = [sys.executable, "-m", "trainer", "export", "--source", str(source),
               "--base", str(base), "--output", str(target)]  # fmt: skip
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_die_with_parent,
    )
    stop = threading.Event()
    beat = threading.Thread(target=_beat, args=(export_id, stop), daemon=True)
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
                ModelExport.objects.filter(pk=export_id, status=S.RUNNING).update(
                    progress=min(max(float(said["progress"]), 0.0), 1.0), beat_at=timezone.now()
                )
        process.wait(timeout=settings.JINGTIAO_EXPORT_TIME_LIMIT_SECONDS)
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
    logger.warning("export %s failed: %s", export_id, detail)
    return process.returncode or 1, detail


def _beat(export_id: int, stop: threading.Event) -> None:
    """Tell the sweep that this export's worker lives, while the merge runs."""
    try:
        while not stop.wait(BEAT_SECONDS):
            ModelExport.objects.filter(pk=export_id, status=S.RUNNING).update(
                beat_at=timezone.now()
            )
    finally:
        connection.close()


def _publish(export: ModelExport, location: str, target: Path) -> None:
    """The merged model becomes the repo's next version, and the export says so."""
    try:
        manifest = json.loads((target / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        manifest = {}
    source = export.source
    with transaction.atomic():
        if not ModelExport.objects.select_for_update().filter(pk=export.pk, status=S.RUNNING):
            return
        ModelRepo.objects.select_for_update().filter(pk=source.repo_id).get()
        number = (
            ModelVersion.objects.filter(repo_id=source.repo_id).aggregate(Max("number"))[
                "number__max"
            ]
            or 0
        ) + 1
        version = ModelVersion.objects.create(
            repo_id=source.repo_id,
            number=number,
            location=location,
            job=source.job,
            manifest=manifest if isinstance(manifest, dict) else {},
            metrics=source.metrics,
            derived_from=source,
        )
        ModelExport.objects.filter(pk=export.pk).update(
            status=S.SUCCEEDED, progress=1.0, result=version, finished_at=timezone.now()
        )


def sweep(now=None) -> list[int]:
    """Take up again the exports nobody carries out: waiting with no worker having taken
    them for SILENT_SECONDS (a message lost with the broker), or under way with no sign
    of life for as long (a worker that died)."""
    now = now or timezone.now()
    silent = now - timedelta(seconds=SILENT_SECONDS)
    found = list(
        ModelExport.objects.filter(
            Q(status=S.PENDING, created_at__lt=silent) | Q(status=S.RUNNING, beat_at__lt=silent)
        ).values_list("pk", flat=True)
    )
    for export_id in found:
        logger.info("export %s is asked for again", export_id)
        _enqueue(export_id)
    return found
