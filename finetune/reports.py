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
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from finetune.models import Job, JobStatus, MetricPoint, ReportBatch, ResourceSample
from trainer import reporting

MAX_ITEMS = 5000
#: Whole numbers the columns hold (PositiveIntegerField, BigIntegerField).
MAX_STEP = MAX_SEQ = 2**31 - 1
MAX_BYTES = 2**63 - 1
#: How far a worker's clock may run ahead of the platform's, or behind the job's start.
CLOCK_SKEW = timedelta(minutes=5)
#: A worker's name: what pods (DNS names) and local workers are called; nothing that
#: a page would have to escape, no control characters.
WORKER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}")


@dataclass(frozen=True)
class Bound:
    low: float
    high: float
    integer: bool = False
    #: A diverged loss (NaN, inf) is kept as "missing"; any other field refuses it.
    non_finite_is_missing: bool = False


_LOSS = Bound(-math.inf, math.inf, non_finite_is_missing=True)
#: The bounds of what the trainer reports (trainer/reporting.py holds the names: a field
#: added there without a bound here fails at import, not in a worker's report).
_METRIC_BOUNDS: dict[str, Bound] = {
    "step": Bound(0, MAX_STEP, integer=True),
    "epoch": Bound(0, 1e6),
    "loss": _LOSS,
    "eval_loss": _LOSS,
    "test_loss": _LOSS,
    "learning_rate": Bound(0, 100),
    "tokens_per_second": Bound(0, 1e12),
    "progress": Bound(0, 1),
    "eta_seconds": Bound(0, 10 * 365 * 86400),
}
_RESOURCE_BOUNDS: dict[str, Bound] = {
    # A process on many cores reports over 100 %: 100 per core, up to 4,096 cores.
    "cpu_percent": Bound(0, 100 * 4096),
    "device_util": Bound(0, 100),
    "memory_bytes": Bound(0, MAX_BYTES, integer=True),
    "device_memory_bytes": Bound(0, MAX_BYTES, integer=True),
    "net_rx_bytes": Bound(0, MAX_BYTES, integer=True),
    "net_tx_bytes": Bound(0, MAX_BYTES, integer=True),
}
#: Each report's own fields, besides the time and the worker every item carries.
_CARRIED = ("time", "worker")
METRIC_FIELDS = {
    name: _METRIC_BOUNDS[name] for name in reporting.METRIC_FIELDS if name not in _CARRIED
}
RESOURCE_FIELDS = {
    name: _RESOURCE_BOUNDS[name] for name in reporting.RESOURCE_FIELDS if name not in _CARRIED
}


class ReportRefused(ValueError):
    """The body cannot be stored; the message says why (sent back with a 400)."""


@dataclass
class Batch:
    worker: str
    seq: int
    metrics: list[MetricPoint]
    resources: list[ResourceSample]


def hash_token(token: str) -> str:
    """What the platform keeps of a job's report token (and the launches' key): its
    SHA-256, never the token."""
    return hashlib.sha256(token.encode()).hexdigest()


def token_matches(job: Job, token: str) -> bool:
    if not job.report_token_hash or not token:
        return False
    return hmac.compare_digest(hash_token(token), job.report_token_hash)


def _number(item: dict, name: str, where: str, bound: Bound) -> int | float | None:
    value = item.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ReportRefused(f"{where}.{name} must be a number, not {type(value).__name__}")
    if isinstance(value, int) and abs(value) > 2**1023:
        raise ReportRefused(f"{where}.{name} is too large for a number")
    if isinstance(value, float) and not math.isfinite(value):
        if bound.non_finite_is_missing:
            return None
        raise ReportRefused(f"{where}.{name} must be a finite number")
    if bound.integer and isinstance(value, float) and not value.is_integer():
        raise ReportRefused(f"{where}.{name} must be a whole number, not {value}")
    if not bound.low <= value <= bound.high:
        raise ReportRefused(f"{where}.{name} must be from {bound.low:g} to {bound.high:g}")
    return int(value) if bound.integer else float(value)


def _time(item: dict, where: str, earliest: datetime, latest: datetime) -> datetime:
    value = _number(item, "time", where, Bound(0, 1e11))
    if value is None:
        raise ReportRefused(f"{where}.time is required (seconds since the epoch)")
    when = datetime.fromtimestamp(value, tz=UTC)
    if not earliest <= when <= latest:
        raise ReportRefused(
            f"{where}.time must lie within the job's run, from {earliest.isoformat()} "
            f"to {latest.isoformat()} (is the worker's clock right?)"
        )
    return when


def _worker(value, where: str) -> str:
    if not isinstance(value, str) or not WORKER_NAME.fullmatch(value):
        raise ReportRefused(
            f"{where} must be a name of 1 to 128 letters, digits and . _ : @ -, "
            "starting with a letter or digit"
        )
    return value


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


def _window(job: Job) -> tuple[datetime, datetime]:
    started = job.started_at or timezone.now()
    return started - CLOCK_SKEW, timezone.now() + CLOCK_SKEW


def parse(job: Job, raw: bytes) -> Batch:
    """The batch in `raw`, every value within what a trainer sends, or ReportRefused."""
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportRefused(f"the body is not JSON: {exc}") from None
    except RecursionError:
        raise ReportRefused("the body is nested too deeply") from None
    except ValueError:  # an integer of thousands of digits, past Python's limit
        raise ReportRefused("the body holds a number with too many digits") from None
    if not isinstance(body, dict):
        raise ReportRefused("the body must be a JSON object")
    if body.get("job_id") != job.pk or isinstance(body.get("job_id"), bool):
        raise ReportRefused(f"job_id must be {job.pk}, the job of this address")
    worker = _worker(body.get("worker"), "worker")
    seq = body.get("seq")
    if isinstance(seq, bool) or not isinstance(seq, int) or not 1 <= seq <= MAX_SEQ:
        raise ReportRefused(f"seq must be a whole number from 1 to {MAX_SEQ}")
    earliest, latest = _window(job)
    metrics = []
    for index, item in enumerate(_items(body, "metrics")):
        where = f"metrics[{index}]"
        metrics.append(
            MetricPoint(
                job=job,
                worker=worker,
                time=_time(item, where, earliest, latest),
                **{name: _number(item, name, where, b) for name, b in METRIC_FIELDS.items()},
            )
        )
    resources = []
    for index, item in enumerate(_items(body, "resources")):
        where = f"resources[{index}]"
        resources.append(
            ResourceSample(
                job=job,
                worker=_worker(item.get("worker", worker), f"{where}.worker"),
                time=_time(item, where, earliest, latest),
                **{name: _number(item, name, where, b) for name, b in RESOURCE_FIELDS.items()},
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
