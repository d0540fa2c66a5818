"""The platform side of the trainer's reports (docs/trainer.md "Report protocol").

`parse` turns a posted body into rows or says, in words, what is wrong with it;
`store` keeps a batch once per (job, worker, seq), so a batch re-sent after a
lost acknowledgement changes nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import Q

from finetune.models import Job, JobStatus, MetricPoint, ReportBatch, ResourceSample

MAX_ITEMS = 5000
_METRIC_NUMBERS = (
    "epoch",
    "loss",
    "eval_loss",
    "test_loss",
    "learning_rate",
    "tokens_per_second",
    "progress",
    "eta_seconds",
)
RESOURCE_FLOATS = ("cpu_percent", "device_util")
RESOURCE_INTEGERS = ("memory_bytes", "device_memory_bytes", "net_rx_bytes", "net_tx_bytes")


class ReportRefused(ValueError):
    """The body cannot be stored; the message says why (sent back with a 400)."""


@dataclass
class Batch:
    worker: str
    seq: int
    metrics: list[MetricPoint]
    resources: list[ResourceSample]


def token_matches(job: Job, token: str) -> bool:
    if not job.report_token_hash or not token:
        return False
    digest = hashlib.sha256(token.encode()).hexdigest()
    return hmac.compare_digest(digest, job.report_token_hash)


def _number(item: dict, name: str, where: str, *, integer: bool = False):
    value = item.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ReportRefused(f"{where}.{name} must be a number, not {type(value).__name__}")
    if not math.isfinite(value):
        return None  # a diverged loss is reported as missing, not as an error
    if integer:
        if value < 0:
            raise ReportRefused(f"{where}.{name} must not be negative")
        return int(value)
    return float(value)


def _time(item: dict, where: str) -> datetime:
    value = _number(item, "time", where)
    if value is None:
        raise ReportRefused(f"{where}.time is required (seconds since the epoch)")
    try:
        return datetime.fromtimestamp(value, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise ReportRefused(f"{where}.time is out of range") from None


def _items(body: dict, name: str) -> list[dict]:
    items = body.get(name, [])
    if not isinstance(items, list):
        raise ReportRefused(f"{name} must be a list")
    if len(items) > MAX_ITEMS:
        raise ReportRefused(f"{name} holds {len(items)} items; at most {MAX_ITEMS} a batch")
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise ReportRefused(f"{name}[{index}] must be an object")
    return items


def parse(job: Job, raw: bytes) -> Batch:
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportRefused(f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ReportRefused("the body must be a JSON object")
    if body.get("job_id") != job.pk:
        raise ReportRefused(f"job_id must be {job.pk}, the job of this address")
    worker, seq = body.get("worker"), body.get("seq")
    if not isinstance(worker, str) or not 0 < len(worker) <= 128:
        raise ReportRefused("worker must be a name of 1 to 128 characters")
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
        raise ReportRefused("seq must be a whole number from 1")
    metrics = []
    for index, item in enumerate(_items(body, "metrics")):
        where = f"metrics[{index}]"
        metrics.append(
            MetricPoint(
                job=job,
                worker=worker,
                time=_time(item, where),
                step=_number(item, "step", where, integer=True),
                **{name: _number(item, name, where) for name in _METRIC_NUMBERS},
            )
        )
    resources = []
    for index, item in enumerate(_items(body, "resources")):
        where = f"resources[{index}]"
        sample_worker = item.get("worker", worker)
        if not isinstance(sample_worker, str) or not 0 < len(sample_worker) <= 128:
            raise ReportRefused(f"{where}.worker must be a name of 1 to 128 characters")
        resources.append(
            ResourceSample(
                job=job,
                worker=sample_worker,
                time=_time(item, where),
                **{name: _number(item, name, where) for name in RESOURCE_FLOATS},
                **{name: _number(item, name, where, integer=True) for name in RESOURCE_INTEGERS},
            )
        )
    return Batch(worker, seq, metrics, resources)


def latest_progress(batch: Batch) -> tuple[float, datetime | None] | None:
    """The newest progress in the batch and the end it implies, if it reports any."""
    points = [point for point in batch.metrics if point.progress is not None]
    if not points:
        return None
    newest = max(points, key=lambda point: point.time)
    progress = min(1.0, max(0.0, newest.progress))
    if newest.eta_seconds is None or newest.eta_seconds < 0:
        return progress, None
    try:
        return progress, newest.time + timedelta(seconds=newest.eta_seconds)
    except OverflowError:
        return progress, None


def store(job: Job, batch: Batch) -> bool:
    """Keep the batch; False if this (job, worker, seq) was already stored.

    The job's own progress and expected end follow the batch's newest point, unless
    a newer one was stored first (batches may arrive out of order after a retry).
    """
    try:
        with transaction.atomic():
            ReportBatch.objects.create(job=job, worker=batch.worker, seq=batch.seq)
            MetricPoint.objects.bulk_create(batch.metrics)
            ResourceSample.objects.bulk_create(batch.resources)
            if found := latest_progress(batch):
                progress, eta_at = found
                Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING).filter(
                    Q(progress__isnull=True) | Q(progress__lte=progress)
                ).update(progress=progress, eta_at=eta_at)
    except IntegrityError:
        return False
    return True
