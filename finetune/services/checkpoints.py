"""A job's checkpoints, resuming from one, and how long they are kept.

A run that saves checkpoints (its ``save_steps`` parameter) writes them into its staging
folder, ``<repo>/.job-<id>.partial/_checkpoints/checkpoint-<step>`` (trainer/output.py):
the whole training state, which transformers resumes from. A successful run publishes
its model and drops them; a run stopped, expired or failed leaves them, and a clone of
the job may go on from one ("resume from step N"): same algorithm, base model, data and
training parameters, the step count and the loss curve going on where they stopped.

They are kept JINGTIAO_CHECKPOINT_RETENTION_DAYS after the job ended (``sweep``), and
removed with the job.
"""

from __future__ import annotations

import logging
import re
import shutil
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext as _

from finetune.models import Job, JobStatus, MetricPoint, ModelRepo
from finetune.storage import job_output, resolve
from trainer.catalog import get_algorithm
from trainer.output import CHECKPOINTS, staging_of
from trainer.spec import SpecError, resolve_parameters

logger = logging.getLogger(__name__)
RESUMABLE = (JobStatus.STOPPED, JobStatus.EXPIRED, JobStatus.FAILED)
# Parameters a resumed run may change: how long it goes on and how often it reports,
# evaluates and saves. Everything else shapes the weights, the optimiser or the data
# order, which the checkpoint holds.
MAY_CHANGE = frozenset(
    {"epochs", "max_steps", "save_steps", "logging_steps", "eval_steps", "eval_strategy",
     "early_stopping_patience"}
)  # fmt: skip
STAGING = re.compile(r"^\.job-(\d+)\.partial$")
# A folder of a job that is not in the database is left this long (its job may be being
# created, or torn down) before it is taken for an orphan.
ORPHAN_SECONDS = 3600


@dataclass(frozen=True)
class Checkpoint:
    step: int
    path: Path
    saved_at: float  # seconds since the epoch


def folder_of(job: Job) -> Path:
    return staging_of(resolve(job_output(job.model_repo.location, job.pk))) / CHECKPOINTS


def checkpoints_of(job: Job) -> list[Checkpoint]:
    """The job's complete checkpoints, by step (transformers writes trainer_state.json
    last: a folder without it was cut short)."""
    found = []
    folder = folder_of(job)
    if not folder.is_dir():
        return []
    for path in folder.glob("checkpoint-*"):
        step = path.name.removeprefix("checkpoint-")
        state = path / "trainer_state.json"
        if step.isdigit() and state.is_file():
            found.append(Checkpoint(int(step), path, state.stat().st_mtime))
    return sorted(found, key=lambda c: c.step)


def can_resume(job: Job) -> bool:
    """Whether the job's algorithm saves checkpoints to resume from."""
    try:
        info = get_algorithm(job.algorithm.code)
    except KeyError:
        return False
    return "save_steps" in info.parameters_schema.get("properties", {})


def resumable_checkpoints(job: Job) -> list[Checkpoint]:
    if job.status not in RESUMABLE or not can_resume(job):
        return []
    return checkpoints_of(job)


def resume_errors(source: Job | None, step: int, draft) -> dict[str, list[str]]:
    """Why a draft cannot resume ``source`` from ``step``: by field, empty if it can."""
    if source is None:
        return {"__all__": [_("Only a clone of a job can resume it.")]}
    if source.status not in RESUMABLE:
        return {"__all__": [_("Only a stopped, expired or failed job can be resumed.")]}
    if step not in {c.step for c in resumable_checkpoints(source)}:
        return {
            "__all__": [
                _("Job %(id)s has no checkpoint at step %(step)d (any more).")
                % {"id": source.pk, "step": step}
            ]
        }
    errors: dict[str, list[str]] = {}
    same = _("To resume the job, keep its %(what)s.")
    for name, what in (
        ("algorithm", _("algorithm")),
        ("pretrained_model", _("base model")),
        ("train_dataset", _("training data")),
    ):
        if getattr(draft, name) != getattr(source, name):
            errors.setdefault(name, []).append(same % {"what": what})
    specs = [spec.pk for spec in source.ordered_node_specs()]
    if draft.node_count != source.node_count or [s.pk for s in draft.node_specs] != specs:
        # a sharded checkpoint loads only at its own world size, and the data position
        # is counted in its batches
        errors.setdefault("node_specs", []).append(
            _("To resume the job, keep its node specs and node count.")
        )
    wanted, had = _resolved(draft), _resolved(source)
    changed = sorted(
        name
        for name in set(wanted) | set(had)
        if name not in MAY_CHANGE and wanted.get(name) != had.get(name)
    )
    if changed:
        errors.setdefault("__all__", []).append(
            _(
                "To resume the job, keep its training parameters; these changed: %(names)s. "
                "Only how long it trains and how often it reports, evaluates and saves may "
                "change."
            )
            % {"names": ", ".join(changed)}
        )
    return errors


def _resolved(uses) -> dict:
    """A job's or a draft's parameters with the defaults filled in, as its run reads them."""
    try:
        return resolve_parameters(get_algorithm(uses.algorithm.code), uses.parameters)
    except (KeyError, SpecError):
        return dict(uses.parameters)


def carry_history(source: Job, job: Job, step: int) -> int:
    """The source's metrics up to ``step`` become the resumed job's first: one curve."""
    copied = [
        f.attname for f in MetricPoint._meta.concrete_fields if f.attname not in ("id", "job_id")
    ]
    points = [
        MetricPoint(job=job, **{name: getattr(p, name) for name in copied})
        for p in MetricPoint.objects.filter(job=source, step__lte=step)
    ]
    MetricPoint.objects.bulk_create(points, batch_size=1000)
    return len(points)


def resume_path(job: Job) -> str | None:
    """The checkpoint a resumed job's trainer goes on from; None for a fresh start."""
    if not job.resume_from_step:
        return None
    if job.cloned_from is None:
        return ""  # the job it resumes was deleted, and its checkpoints with it
    for checkpoint in checkpoints_of(job.cloned_from):
        if checkpoint.step == job.resume_from_step:
            return str(checkpoint.path)
    return ""  # asked for, and gone


def sweep(now=None) -> int:
    """Remove the checkpoints kept past their time: of jobs ended longer ago than the
    retention, of jobs that succeeded (their model is published), of jobs deleted."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.JINGTIAO_CHECKPOINT_RETENTION_DAYS)
    removed = 0
    for location in ModelRepo.objects.values_list("location", flat=True):
        root = resolve(location)
        if not root.is_dir():
            continue
        folders = {
            int(m.group(1)): root / m.group(0)
            for p in root.iterdir()
            if (m := STAGING.match(p.name))
        }
        if not folders:
            continue
        jobs = {
            j.pk: j for j in Job.objects.filter(pk__in=folders).only("pk", "status", "finished_at")
        }
        for job_id, folder in folders.items():
            job = jobs.get(job_id)
            if job is None:
                old = time.time() - folder.stat().st_mtime > ORPHAN_SECONDS
            elif job.status in RESUMABLE:
                old = job.finished_at is not None and job.finished_at < cutoff
            else:
                old = job.status == JobStatus.SUCCEEDED
            if old:
                logger.info("removing the checkpoints of job %s at %s", job_id, folder)
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
    return removed
