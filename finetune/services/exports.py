"""Merging a LoRA version into its base model, as a new version of the same repo.

A member who may change the repo asks (``request_export``); the request is a row
(`ModelExport`), carried out by a worker of the ``inference`` queue (``run_export``),
which runs ``python -m trainer export`` in a process of its own -- the merge loads
the whole base model, and its memory goes back to the system when that process ends --
and follows the progress it prints. The merged model is written into
``<repo>/export-<id>`` (staged, then renamed into place, like a training run's output)
and becomes the repo's next version, ``derived_from`` the first.

Nothing is lost or done twice (services/modelwork.py): a request whose message was lost,
or whose worker died, is taken up again by the sweep, a few times at most; a worker only
carries out a request it claimed; the trainer process dies with the worker that started it.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from config.celery import enqueue
from finetune.models import ModelExport, ModelVersion
from finetune.services import modelwork
from finetune.services.versions import add_version, files_gone, read_manifest
from finetune.storage import resolve
from finetune.texts import Said, say
from trainer.output import staging_of

logger = logging.getLogger(__name__)
MERGEABLE = ("llm", "t2i")


def base_model_of(version: ModelVersion) -> tuple[str, Path] | None:
    """(name, folder) of the model the version's adapter applies to, where known: what
    the trainer wrote into the manifest (a LoRA trained on a full version applies to that
    one), named as the job's base model where it is that one; the job's base model where
    the manifest names none or a folder no longer there (a data volume mounted elsewhere)."""
    job = version.job
    named = (version.manifest or {}).get("base_model")
    written = resolve(named) if isinstance(named, str) and named else None
    if job is not None and job.pretrained_model_id is not None:
        model = job.pretrained_model
        folder = resolve(model.location)
        if written is None or not written.is_dir() or written.resolve() == folder.resolve():
            return model.name, folder
    if written is None:
        return None
    return written.name, written


def export_refusal(version: ModelVersion) -> Said | None:
    """Why the version cannot be merged into its base, or None."""
    manifest = version.manifest or {}
    if not (manifest.get("artifacts") or {}).get("adapter"):
        return say(gettext_noop("This version is a full model: there is no LoRA to merge."))
    if manifest.get("model_kind") not in MERGEABLE:
        return say(gettext_noop("Models of this kind cannot be merged."))
    if gone := files_gone(version):
        return gone
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


def run_export(export_id: int) -> bool:
    """Carry out one export request; True if this call finished it (either way)."""
    attempt = modelwork.claim(ModelExport, export_id)
    if attempt is None:
        return False
    related = ("source__repo", "source__job__pretrained_model")
    export = ModelExport.objects.select_related(*related).get(pk=export_id)
    refusal = export_refusal(export.source)
    if refusal is not None:  # the base model went away since it was asked for
        modelwork.fail(ModelExport, export_id, attempt, refusal)
        return True
    _name, base = base_model_of(export.source)  # type: ignore[misc]
    location = output_location(export)
    target = resolve(location)
    if (target / "manifest.json").is_file():  # a worker died after the merge, before the row
        status, detail = 0, ""
    else:
        arguments = ["export", "--source", str(resolve(export.source.location)),
                     "--base", str(base), "--output", str(target)]  # fmt: skip
        limit = settings.JINGTIAO_EXPORT_TIME_LIMIT_SECONDS
        status, detail = modelwork.run_trainer(ModelExport, export_id, attempt, arguments, limit)
    if status != 0:
        shutil.rmtree(staging_of(target), ignore_errors=True)  # a killed merge leaves it
        reason = (
            modelwork.timed_out(settings.JINGTIAO_EXPORT_TIME_LIMIT_SECONDS)
            if status == modelwork.TIMED_OUT
            else say(gettext_noop("The merge failed."))
        )
        modelwork.fail(ModelExport, export_id, attempt, reason, detail)
        return True
    _publish(export, attempt, location, target)
    return True


def _publish(export: ModelExport, attempt: int, location: str, target: Path) -> None:
    """The merged model becomes the repo's next version, and the export says so."""
    source = export.source
    with transaction.atomic():
        mine = ModelExport.objects.select_for_update().filter(
            pk=export.pk, status="running", attempts=attempt
        )
        if not mine:
            return  # another worker took it over meanwhile
        version = add_version(
            source.repo_id,
            location,
            read_manifest(target),
            job=source.job,
            metrics=source.metrics,
            derived_from=source,
        )
        modelwork.succeed(ModelExport, export.pk, attempt, result=version)


def sweep(now=None) -> list[int]:
    """Take up again the exports nobody carries out (modelwork.sweep)."""
    return modelwork.sweep(ModelExport, output_location, _enqueue, now)
