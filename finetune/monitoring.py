"""What the monitoring tab draws (F7.1): training curves over steps and each
worker's resources over time, for a time range, thinned to what a chart shows.

The tab asks `/jobs/<id>/metrics/?range=` every few seconds while the job runs.
Each answer is read with a bounded number of rows whatever the job's length:
beyond `MAX_POINTS` rows a series keeps every n-th row (numbered by the database,
not in Python), and evaluation points, which are few and matter, are all kept.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.db.models import F, Q, QuerySet, Window
from django.db.models.functions import RowNumber
from django.urls import reverse
from django.utils import timezone
from django.utils.timesince import timeuntil
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from finetune import reports
from finetune.forms.parameters import localized, value_label
from finetune.models import Job, JobStatus, MetricPoint, ResourceSample
from finetune.storage import job_output, resolve
from scheduler.planning.expected import Progress, reported_end
from trainer.algorithms.t2i import SAMPLES
from trainer.output import staging_of

MAX_POINTS = 1500  # per series and answer: more than a chart's width in pixels
POLL_SECONDS = 5  # how often an open tab asks again while the job runs

#: The time-range choices: key -> (label, length; None for the whole run).
RANGES: dict[str, tuple[Any, timedelta | None]] = {
    "15m": (_("Last 15 minutes"), timedelta(minutes=15)),
    "1h": (_("Last hour"), timedelta(hours=1)),
    "6h": (_("Last 6 hours"), timedelta(hours=6)),
    "24h": (_("Last 24 hours"), timedelta(hours=24)),
    "7d": (_("Last 7 days"), timedelta(days=7)),
    "all": (_("Whole run"), None),
}
DEFAULT_RANGE = "all"

TRAINING_FIELDS = ("loss", "eval_loss", "test_loss", "learning_rate", "tokens_per_second")
RESOURCE_FIELDS = tuple(reports.RESOURCE_FIELDS)


class BadRange(ValueError):
    pass


@dataclass(frozen=True)
class TimeSpan:
    start: datetime | None
    end: datetime


def window(job: Job, key: str, now: datetime | None = None) -> TimeSpan:
    """The range ends now while the job runs, else where the job ended."""
    if key not in RANGES:
        raise BadRange(
            _("The time range must be one of: %(choices)s.") % {"choices": ", ".join(RANGES)}
        )
    now = now or timezone.now()
    end = now if job.status == JobStatus.RUNNING or not job.finished_at else job.finished_at
    length = RANGES[key][1]
    return TimeSpan(end - length if length else None, end)


def _in_window(queryset: QuerySet, span: TimeSpan) -> QuerySet:
    queryset = queryset.filter(time__lte=span.end)
    return queryset.filter(time__gte=span.start) if span.start else queryset


def _thinned(queryset: QuerySet, fields: tuple[str, ...], order: tuple[str, ...]) -> list[tuple]:
    """The rows in `order`; every n-th of each worker's when there are too many."""
    count = queryset.count()
    if count > MAX_POINTS:
        stride = math.ceil(count / MAX_POINTS)
        queryset = queryset.annotate(
            number=Window(RowNumber(), partition_by=[F("worker")], order_by=[F(o) for o in order])
        ).annotate(phase=F("number") % stride)
        queryset = queryset.filter(phase=0)
    return list(queryset.order_by(*order).values_list(*fields))


def training(job: Job, span: TimeSpan) -> dict[str, list]:
    """Loss, validation and test loss, learning rate and throughput, by step.

    Aligned columns (one x, one array per field, None where a point lacks it),
    which is the form the chart library draws.
    """
    points = _in_window(MetricPoint.objects.filter(job=job, step__isnull=False), span)
    evaluated = Q(eval_loss__isnull=False) | Q(test_loss__isnull=False)
    fields = ("step", *TRAINING_FIELDS)
    rows = _thinned(points.exclude(evaluated), fields, ("step", "time"))
    rows += list(points.filter(evaluated).order_by("step", "time").values_list(*fields))
    merged: dict[int, list] = {}
    for step, *values in sorted(rows, key=lambda row: row[0]):
        held = merged.setdefault(step, [None] * len(values))
        for index, value in enumerate(values):
            if value is not None:
                held[index] = value
    series: dict[str, list] = {"step": list(merged)}
    for index, name in enumerate(TRAINING_FIELDS):
        series[name] = [values[index] for values in merged.values()]
    return series


def _rates(times: list[float], totals: list[int | None]) -> list[float | None]:
    """Bytes per second between samples of a cumulative counter (None at a reset)."""
    rates: list[float | None] = [None]
    for index in range(1, len(times)):
        before, after = totals[index - 1], totals[index]
        elapsed = times[index] - times[index - 1]
        if before is None or after is None or after < before or elapsed <= 0:
            rates.append(None)
        else:
            rates.append((after - before) / elapsed)
    return rates[: len(times)]


def resources(job: Job, span: TimeSpan) -> dict[str, dict[str, list]]:
    """Per worker: its label, time (seconds since the epoch) and each resource, with
    network traffic as rates."""
    samples = _in_window(ResourceSample.objects.filter(job=job), span)
    rows = _thinned(samples, ("worker", "time", *RESOURCE_FIELDS), ("time",))
    workers: dict[str, dict[str, list]] = {}
    for worker, when, *values in rows:
        series = workers.setdefault(worker, {"time": [], **{name: [] for name in RESOURCE_FIELDS}})
        series["time"].append(when.timestamp())
        for name, value in zip(RESOURCE_FIELDS, values, strict=True):
            series[name].append(value)
    for name, series in workers.items():
        series["label"] = worker_label(name)
        series["net_rx_per_s"] = _rates(series["time"], series.pop("net_rx_bytes"))
        series["net_tx_per_s"] = _rates(series["time"], series.pop("net_tx_bytes"))
    return dict(sorted(workers.items(), key=lambda item: _worker_order(item[0])))


# Worker names as the executors set them: "local-<job>-<rank>" on this machine, the
# pod's name "jingtiao-job-<job>-<rank>-<suffix>" on Kubernetes; a node of several
# processes adds each one's local rank (its device): "local-7-1:3".
_RANK_IN_NAME = re.compile(r"-(\d+)(?:-[a-z0-9]{5})?(?::(\d+))?$")


def _rank_of(name: str) -> tuple[int, int | None] | None:
    found = _RANK_IN_NAME.search(name)
    if not found:
        return None
    device = found.group(2)
    return int(found.group(1)), int(device) if device is not None else None


def _worker_order(name: str) -> tuple[int, int, str]:
    rank = _rank_of(name)
    if rank is None:
        return (-1, -1, name)
    return (rank[0], -1 if rank[1] is None else rank[1], name)


def worker_label(name: str) -> str:
    """ "worker 0" (or "worker 0 · device 3") when the name tells the rank, else the name."""
    rank = _rank_of(name)
    if rank is None:
        return name
    if rank[1] is None:
        return gettext("worker %(rank)s") % {"rank": rank[0]}
    return gettext("worker %(rank)s · device %(device)s") % {"rank": rank[0], "device": rank[1]}


def progress_text(job: Job, now: datetime | None = None) -> str:
    """ "45%", and while the job runs and the trainer expects an end, the time left --
    with a warning, early, where that end is past the job's duration (issue 19, item 7)."""
    if job.progress is None:
        return ""
    shown = f"{job.progress * 100:.0f}%"
    now = now or timezone.now()
    if will_expire(job, now):
        shown = gettext("%(progress)s · expected to end after its duration: it will expire") % {
            "progress": shown
        }
    if job.status != JobStatus.RUNNING or not job.eta_at or job.eta_at <= now:
        return shown
    if job.eta_at - now < timedelta(minutes=1):
        return gettext("%(progress)s · under a minute left") % {"progress": shown}
    left = timeuntil(job.eta_at, now)
    return gettext("%(progress)s · %(left)s left") % {"progress": shown, "left": left}


def will_expire(job: Job, now: datetime) -> bool:
    """Whether a running job says it will end after its deadline, where expiry stops it
    (the planner's reading of its reports, scheduler/planning/expected.py)."""
    deadline = job.deadline
    if job.status != JobStatus.RUNNING or deadline is None:
        return False
    end = reported_end(Progress(job.started_at, job.eta_at, job.progress), now)
    return end is not None and end > deadline


def chart_labels() -> dict[str, str]:
    """Every word the charts show, in the page's language (static/js/monitoring.js)."""
    return {
        "step": gettext("Step"),
        "time": gettext("Time"),
        "loss": gettext("Training loss"),
        "eval_loss": gettext("Validation loss"),
        "test_loss": gettext("Test loss"),
        "learning_rate": gettext("Learning rate"),
        "tokens_per_second": gettext("Tokens/s"),
        "received": gettext("received"),
        "sent": gettext("sent"),
        "live": gettext("Live: updated at %(time)s"),
        "ended": gettext("%(status)s: these are the job's last figures."),
        "failed": gettext("The figures could not be loaded: %(error)s"),
        "sample_step": gettext("Step %(step)s"),
        "sample_final": gettext("The saved adapter"),
    }


def snapshot(job: Job, key: str) -> dict[str, Any]:
    """Everything the monitoring tab draws for one range."""
    span = window(job, key)
    return {
        "status": job.status,
        "status_label": str(job.get_status_display()),
        "running": job.status == JobStatus.RUNNING,
        "progress": job.progress,
        "progress_text": progress_text(job),
        "eta": job.eta_at.timestamp() if job.eta_at and job.status == JobStatus.RUNNING else None,
        "range": key,
        "start": span.start.timestamp() if span.start else None,
        "end": span.end.timestamp(),
        "training": training(job, span),
        "resources": resources(job, span),
        "samples": samples(job),
    }


#: How many jobs one comparison draws: one colour each, still readable.
MAX_COMPARED = 8


def compared_parameters(jobs: list[Job]) -> list[tuple[str, list[Any]]]:
    """The training parameters whose values differ among `jobs`, by their title in the
    page's language, each job's value as its page shows it (— where it has none)."""
    rows: dict[str, tuple[str, list[Any]]] = {}
    for index, job in enumerate(jobs):
        props = (job.algorithm.parameters_schema or {}).get("properties") or {}
        for name, value in job.parameters.items():
            prop = props.get(name, {})
            title = localized(prop, "title") or name
            held = rows.setdefault(name, (title, ["—"] * len(jobs)))
            held[1][index] = value_label(prop, value) if prop else value
    return [(title, values) for title, values in rows.values() if len(set(map(str, values))) > 1]


def comparison(jobs: list[Job]) -> dict[str, Any]:
    """The loss curves of `jobs` over their whole runs, by step (the comparison page)."""
    compared = []
    for job in jobs:
        series = training(job, window(job, "all"))
        evaluated = [value for value in series["eval_loss"] if value is not None]
        losses = [value for value in series["loss"] if value is not None]
        compared.append(
            {
                "id": job.pk,
                "label": f"{job.name} (#{job.pk})",
                "running": job.status == JobStatus.RUNNING,
                "step": series["step"],
                "loss": series["loss"],
                "eval_loss": series["eval_loss"],
                "last_loss": losses[-1] if losses else None,
                "best_eval_loss": min(evaluated) if evaluated else None,
            }
        )
    return {"jobs": compared, "running": any(one["running"] for one in compared)}


#: How many sample images the monitoring tab shows: the first, the last and evenly
#: between (a long run evaluates hundreds of times).
MAX_SAMPLES = 24
_SAMPLE_NAME = re.compile(r"step-(\d{6,9})\.png|sample\.png")


def _samples_folder(job: Job) -> Path | None:
    """The job's samples: in its staging folder while it trains, in its output once
    the output is final (trainer/output.py)."""
    output = resolve(job_output(job.model_repo.location, job.pk))
    for folder in (output / SAMPLES, staging_of(output) / SAMPLES):
        if folder.is_dir():
            return folder
    return None


def sample_file(job: Job, name: str) -> Path | None:
    """One sample image of the job, by its name alone: nothing else of the folder."""
    if job.scenario.task_type != "t2i" or not _SAMPLE_NAME.fullmatch(name):
        return None
    folder = _samples_folder(job)
    found = folder / name if folder else None
    return found if found is not None and found.is_file() else None


def samples(job: Job) -> list[dict[str, Any]]:
    """The sample images drawn from the validation prompt, by step (None: the saved
    adapter's, at the end), at most `MAX_SAMPLES`."""
    folder = _samples_folder(job) if job.scenario.task_type == "t2i" else None
    if folder is None:
        return []
    found = []
    with os.scandir(folder) as entries:
        for entry in entries:
            matched = _SAMPLE_NAME.fullmatch(entry.name)
            if matched and entry.is_file():
                found.append((int(matched.group(1)) if matched.group(1) else None, entry.name))
    during = sorted(item for item in found if item[0] is not None)
    if len(during) > MAX_SAMPLES:
        last = len(during) - 1
        picks = sorted({round(i * last / (MAX_SAMPLES - 1)) for i in range(MAX_SAMPLES)})
        during = [during[i] for i in picks]
    final = [item for item in found if item[0] is None]
    return [
        {"step": step, "url": reverse("finetune:job_sample", args=[job.pk, name])}
        for step, name in during + final
    ]
