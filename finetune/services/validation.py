"""Data sets validated once, in a worker, and the verdict kept with a fingerprint.

Registering or uploading a data set asks for its validation (`request_validation`):
the data set shows "waiting to be validated", a worker of the `data` queue takes it
(`run_validation`, from finetune/tasks.py), unpacks an uploaded archive, reads every
row with the trainer's validator, shows its progress on the data set's page and
keeps the verdict with what the files were (trainer/fingerprint.py). A job uses the
kept verdict (`verdict`): it reads no row, only the files' sizes and times; where
they changed, the data set is validated again, and again only the files that
changed are read. A job whose data is still being validated waits in the queue
(Job.waiting_for_data) until the verdict, and fails with the report if it is bad
(finetune/services/jobs.py, `release_jobs_of`).

Each request counts one up on the row; a run writes only while its request is the
latest, so a file changed during a validation is judged by the run asked after it,
and a run taken twice (a worker lost mid-task, its message delivered again) is
harmless. `sweep` asks again for validations whose message was lost (a broker that
was down) or whose worker went silent.
"""

from __future__ import annotations

import logging
import time
import zipfile
import zlib
from dataclasses import dataclass, field
from datetime import timedelta

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from config.celery import enqueue
from finetune.models import Algorithm, Dataset
from finetune.storage import data_root, resolve
from trainer import datavalidation, fingerprint
from trainer.words import Text, gettext_noop, say

logger = logging.getLogger(__name__)
V = Dataset.Validation

#: How often a validation under way writes its progress (its sign of life).
BEAT_SECONDS = 2.0
#: A validation with no sign of life for this long is asked for again.
SILENT_SECONDS = 120
#: An uploaded archive waits for the worker under this name in the data set's folder.
ARCHIVE = "upload.zip"


def request_validation(dataset_id: int) -> None:
    """Validate the data set (again), in a worker; it waits to be validated meanwhile."""
    from finetune import tasks  # the task module imports this one

    with transaction.atomic():
        number = _next_request(dataset_id)
        transaction.on_commit(lambda: enqueue(tasks.validate_dataset, dataset_id, number))


def validate_now(dataset_id: int) -> bool:
    """Validate the data set in this process, as a worker would (the demo's seed)."""
    with transaction.atomic():
        number = _next_request(dataset_id)
    return run_validation(dataset_id, number)


def _next_request(dataset_id: int) -> int:
    Dataset.objects.filter(pk=dataset_id).update(
        validation_requests=F("validation_requests") + 1,
        validation_status=V.PENDING,
        validation_progress=None,
        validation_beat_at=None,
        updated_at=timezone.now(),
    )
    return Dataset.objects.values_list("validation_requests", flat=True).get(pk=dataset_id)


class Superseded(Exception):
    """A newer request took the data set over (or it was deleted) while this one ran."""


def run_validation(dataset_id: int, request: int) -> bool:
    """Carry out request number ``request``; False where it was no longer the latest."""
    claimed = Dataset.objects.filter(
        pk=dataset_id, validation_requests=request, validation_status__in=(V.PENDING, V.VALIDATING)
    ).update(validation_status=V.VALIDATING, validation_beat_at=timezone.now())
    if not claimed:
        return False
    dataset = Dataset.objects.select_related("scenario").get(pk=dataset_id)
    try:
        problem = unpack_upload(dataset)
        if problem:
            report = _failed(dataset, problem)
        else:
            report = datavalidation.validate(
                dataset.scenario.code,
                str(resolve(dataset.location)),
                previous=dataset.validation_fingerprint or None,
                progress=_progress(dataset_id, request),
            )
    except Superseded:
        return False
    except SoftTimeLimitExceeded:
        raise  # the task gives up (give_up)
    except Exception as exc:
        # a validator that breaks on some file: the data set says so, never stays "validating"
        logger.exception("data set %s: the validator failed", dataset_id)
        error = f"{type(exc).__name__}: {exc}"
        report = _failed(dataset, say(gettext_noop("the validator failed: %(error)s"), error=error))
    return record(dataset, request, report)


def _progress(dataset_id: int, request: int):
    """The validator's progress callback: the share read so far, on the row, every
    BEAT_SECONDS; raises Superseded once a newer request took over."""
    last = time.monotonic()

    def report(done: int, total: int) -> None:
        nonlocal last
        if time.monotonic() - last < BEAT_SECONDS:
            return
        last = time.monotonic()
        share = min(done / total, 0.99) if total else None
        written = Dataset.objects.filter(
            pk=dataset_id, validation_requests=request, validation_status=V.VALIDATING
        ).update(validation_progress=share, validation_beat_at=timezone.now())
        if not written:
            raise Superseded

    return report


def record(dataset: Dataset, request: int, report: datavalidation.ValidationReport) -> bool:
    """Keep the verdict, if ``request`` is still the latest."""
    kept = report.fingerprint
    sizes = sum(entry["stat"][0] for entry in kept.get("files", {}).values())
    others = kept.get("others") or [0, 0, ""]
    fields = {
        "validation_report": report.to_dict(),
        "validation_status": V.VALID if report.ok else V.INVALID,
        "validation_fingerprint": kept,
        "validation_progress": 1.0,
        "validation_beat_at": None,
        "validated_at": timezone.now(),
        "record_count": report.valid_rows,
        "size_bytes": sizes + others[1],
        "updated_at": timezone.now(),
    }
    if report.format in Dataset.Format.values:
        fields["format"] = report.format
    return bool(Dataset.objects.filter(pk=dataset.pk, validation_requests=request).update(**fields))


def give_up(dataset_id: int, request: int) -> bool:
    """A validation past its time limit: the data set is judged invalid, and says why."""
    dataset = Dataset.objects.select_related("scenario").filter(pk=dataset_id).first()
    if dataset is None:
        return False
    limit = settings.JINGTIAO_VALIDATION_TIME_LIMIT_SECONDS
    problem = say(
        gettext_noop("the validation took longer than %(limit)s seconds and was given up"),
        limit=limit,
    )
    return record(dataset, request, _failed(dataset, problem))


def _failed(dataset: Dataset, problem: Text) -> datavalidation.ValidationReport:
    """A report of one problem with the whole data set, kept with the files as they
    are (a job does not ask again while they stay so)."""
    scenario, path = dataset.scenario.code, resolve(dataset.location)
    report = datavalidation.ValidationReport(scenario=scenario, path=str(path))
    report.add(datavalidation.Problem(None, None, problem), datavalidation.DEFAULT_MAX_PROBLEMS)
    files = datavalidation.data_files(path, scenario)
    found = fingerprint.stats(path, files, images=scenario.startswith("t2i/"))
    report.fingerprint = {
        **found,
        "files": {name: {"stat": stat} for name, stat in found["files"].items()},
    }
    return report


def unpack_upload(dataset: Dataset) -> Text | None:
    """Unpack the archive an upload left in the data set's folder (checked when it
    came: finetune/services/data.py), and point the data set at what it held; the
    problem where it cannot be unpacked."""
    folder = resolve(dataset.location)
    archive = folder / ARCHIVE
    if not archive.is_file():
        return None
    try:
        with zipfile.ZipFile(archive) as opened:
            opened.extractall(folder)
    except (*ZIP_ERRORS, OSError) as exc:
        return say(gettext_noop("the archive cannot be unpacked: %(error)s"), error=str(exc))
    archive.unlink()
    # An archive of one top folder is common (zip -r data.zip data/): use that folder.
    entries = list(folder.iterdir())
    if len(entries) == 1 and entries[0].is_dir():
        dataset.location = str(entries[0].relative_to(data_root()))
        Dataset.objects.filter(pk=dataset.pk).update(location=dataset.location)
    return None


#: What a broken, encrypted or unsupported archive raises while it is read. (zipfile
#: never writes more of a member than its header declares, so the declared sizes
#: bound the disk an archive takes.)
ZIP_ERRORS = (zipfile.BadZipFile, RuntimeError, NotImplementedError, EOFError, zlib.error)


@dataclass(frozen=True)
class Verdict:
    """What a job may make of a data set: "valid", "invalid" (with the report as the
    job's algorithm reads it) or "pending" (being validated)."""

    state: str
    report: dict = field(default_factory=dict)


def verdict(dataset: Dataset, algorithm: Algorithm) -> Verdict:
    """The kept verdict on ``dataset`` for a job of ``algorithm``, without reading a
    row: "pending" while it is validated, or where its files changed since (a new
    validation is then asked for)."""
    if dataset.being_validated:
        return Verdict("pending")
    scenario = dataset.scenario.code
    path = resolve(dataset.location)
    files = datavalidation.data_files(path, scenario)
    images = scenario.startswith("t2i/")
    if not fingerprint.unchanged(dataset.validation_fingerprint, path, files, images=images):
        request_validation(dataset.pk)
        return Verdict("pending")
    try:
        formats = datavalidation.formats_for(scenario, algorithm.code)
    except (ValueError, KeyError):  # an algorithm the trainer no longer knows
        formats = datavalidation.formats_for(scenario)
    report = datavalidation.report_for(dataset.validation_report, formats)
    if report is None:
        # formats the kept report does not speak for (no built-in algorithm has them)
        report = datavalidation.validate(scenario, str(path), algorithm=algorithm.code).to_dict()
    return Verdict("valid" if report.get("ok") else "invalid", report)


def sweep(now=None) -> list[int]:
    """Ask again for the validations that nobody carries out: waiting with no worker
    having taken them for SILENT_SECONDS (a message lost with the broker), or under
    way with no sign of life for as long (a worker that died)."""
    now = now or timezone.now()
    silent = now - timedelta(seconds=SILENT_SECONDS)
    lost = Dataset.objects.filter(
        Q(validation_status=V.PENDING, updated_at__lt=silent)
        | Q(validation_status=V.VALIDATING, validation_beat_at__lt=silent)
    ).values_list("pk", flat=True)
    found = list(lost)
    for dataset_id in found:
        logger.info("data set %s: its validation is asked for again", dataset_id)
        request_validation(dataset_id)
    return found
