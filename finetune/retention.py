"""Retention of reported metrics (issue 7, item 5).

Points younger than JINGTIAO_METRICS_FULL_RESOLUTION_HOURS stay as reported.
Older ones are thinned to one per worker and JINGTIAO_METRICS_DOWNSAMPLE_SECONDS
window (the first of each), which keeps a long run's charts drawable without
keeping every sample; evaluation points (validation or test loss) are always kept.
Safe to repeat: a window already thinned keeps its one point.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from finetune.models import MetricPoint, ResourceSample


@dataclass(frozen=True)
class Thinned:
    metric_points: int
    resource_samples: int


def _thin(queryset: models.QuerySet, seconds: int, batch: int = 1000) -> int:
    """Delete all but the first row of each (job, worker, window). The windows are
    worked out here rather than in SQL: the same code on PostgreSQL and SQLite."""
    deleted = 0
    seen: set[tuple[int, str, int]] = set()
    doomed: list[int] = []
    rows = queryset.order_by("job_id", "time", "pk").values_list("pk", "job_id", "worker", "time")
    for pk, job_id, worker, time in rows.iterator(chunk_size=5000):
        window = (job_id, worker, int(time.timestamp()) // seconds)
        if window in seen:
            doomed.append(pk)
        else:
            seen.add(window)
        if len(doomed) >= batch:
            deleted += queryset.model.objects.filter(pk__in=doomed).delete()[0]
            doomed = []
    if doomed:
        deleted += queryset.model.objects.filter(pk__in=doomed).delete()[0]
    return deleted


def downsample(now: datetime | None = None) -> Thinned:
    now = now or timezone.now()
    cutoff = now - timedelta(hours=settings.JINGTIAO_METRICS_FULL_RESOLUTION_HOURS)
    seconds = settings.JINGTIAO_METRICS_DOWNSAMPLE_SECONDS
    evaluation = Q(eval_loss__isnull=False) | Q(test_loss__isnull=False)
    metrics = MetricPoint.objects.filter(time__lt=cutoff).exclude(evaluation)
    samples = ResourceSample.objects.filter(time__lt=cutoff)
    return Thinned(_thin(metrics, seconds), _thin(samples, seconds))
