"""Evaluating a model version on a data set of its scenario, beside its base model.

A member who may change the repo asks (``request_evaluation``) with a data set they may
use; a worker of the ``export`` queue (the long model work) runs ``python -m trainer
evaluate`` (trainer/evaluate.py) in a process of its own, following its progress
(services/modelwork.py); the figures are kept on the row and shown on the version's page,
the sample images in ``<repo>/evaluations/<id>/``.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from config.celery import enqueue
from finetune import access, storage
from finetune.models import Dataset, ModelEvaluation, ModelVersion
from finetune.services import modelwork
from finetune.services.exports import base_model_of
from finetune.services.versions import files_gone
from finetune.storage import resolve
from finetune.texts import Said, say
from trainer.output import staging_of

logger = logging.getLogger(__name__)
ROWS = 200  # rows read at most: enough for a stable mean, quick on a CPU
IMAGE = re.compile(r"^sample-\d+-(version|base)\.png$")


def usable_datasets(user, version: ModelVersion):
    """The data sets of the version's scenario in its project that ``user`` may use."""
    repo = version.repo
    found = Dataset.objects.filter(project_id=repo.project_id, scenario_id=repo.scenario_id)
    return access.restrict(found, user).order_by("name")


def refusal(version: ModelVersion) -> Said | None:
    """Why the version cannot be evaluated, or None."""
    manifest = version.manifest or {}
    if manifest.get("model_kind") not in ("llm", "t2i"):
        return say(gettext_noop("Versions of this kind cannot be evaluated here."))
    if gone := files_gone(version):
        return gone
    if manifest.get("algorithm") == "reward_model":
        return None  # a reward model is measured alone
    base = base_model_of(version)
    if base is None or not base[1].is_dir():
        return say(
            gettext_noop(
                "Its base model %(name)s is not on the data volume: an evaluation measures "
                "the version beside it."
            ),
            name=base[0] if base else "?",
        )
    return None


def request_evaluation(user, version: ModelVersion, dataset: Dataset | None) -> ModelEvaluation:
    """Queue an evaluation (the caller checked that ``user`` may change the repo)."""
    why = refusal(version)
    if why is not None:
        raise ValidationError(why.render())
    if dataset is None or not usable_datasets(user, version).filter(pk=dataset.pk).exists():
        raise ValidationError(_("Choose a data set of this scenario that you may use."))
    if not storage.is_within(dataset.location, storage.readable_areas(version.repo.project_id)):
        raise ValidationError(_("The files of this data set lie outside the project's folders."))
    with transaction.atomic():
        evaluation = ModelEvaluation.objects.create(
            version=version, dataset=dataset, dataset_name=dataset.name, requested_by=user
        )
    transaction.on_commit(lambda: _enqueue(evaluation.pk))
    return evaluation


def _enqueue(evaluation_id: int) -> None:
    from finetune.tasks import evaluate_version

    enqueue(evaluate_version, evaluation_id)


def output_location(evaluation: ModelEvaluation) -> str:
    return f"{evaluation.version.repo.location.rstrip('/')}/evaluations/{evaluation.pk}"


def run_evaluation(evaluation_id: int) -> bool:
    """Carry out one evaluation request; True if this call finished it (either way)."""
    attempt = modelwork.claim(ModelEvaluation, evaluation_id)
    if attempt is None:
        return False
    evaluation = ModelEvaluation.objects.select_related(
        "version__repo", "version__job__pretrained_model", "dataset__scenario"
    ).get(pk=evaluation_id)
    version, dataset = evaluation.version, evaluation.dataset
    why = refusal(version)
    if why is None and dataset is None:
        why = say(gettext_noop("Its data set was deleted."))
    if why is not None:
        modelwork.fail(ModelEvaluation, evaluation_id, attempt, why)
        return True
    base = base_model_of(version)
    target = resolve(output_location(evaluation))
    arguments = [
        "evaluate",
        "--source", str(resolve(version.location)),
        "--base", str(base[1]) if base else "",
        "--data", str(resolve(dataset.location)),
        "--scenario", dataset.scenario.code,
        "--output", str(target),
        "--rows", str(ROWS),
    ]  # fmt: skip
    if not (target / "results.json").is_file():  # else a worker died after writing them
        limit = settings.JINGTIAO_EXPORT_TIME_LIMIT_SECONDS
        status, detail = modelwork.run_trainer(
            ModelEvaluation, evaluation_id, attempt, arguments, limit
        )
        if status != 0:
            shutil.rmtree(staging_of(target), ignore_errors=True)
            reason = (
                modelwork.timed_out(limit)
                if status == modelwork.TIMED_OUT
                else say(gettext_noop("The evaluation failed."))
            )
            modelwork.fail(ModelEvaluation, evaluation_id, attempt, reason, detail)
            return True
    try:
        results = json.loads((target / "results.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        results = {}
    modelwork.succeed(ModelEvaluation, evaluation_id, attempt, results=results)
    return True


def image_of(evaluation: ModelEvaluation, name: str) -> Path | None:
    """A sample image of the evaluation, by the name its results give it."""
    if not IMAGE.match(name):
        return None
    path = resolve(output_location(evaluation)) / name
    return path if path.is_file() else None


def sweep(now=None) -> list[int]:
    """Take up again the evaluations nobody carries out (modelwork.sweep)."""
    return modelwork.sweep(ModelEvaluation, output_location, _enqueue, now)
