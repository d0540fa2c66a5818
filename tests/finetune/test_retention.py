"""Old metrics are thinned to one point per worker and window; recent ones stay."""

from datetime import timedelta

import pytest
from django.utils import timezone

from finetune.models import MetricPoint, ResourceSample
from finetune.retention import downsample
from tests import factories

pytestmark = pytest.mark.django_db


def test_old_points_are_thinned_and_recent_and_evaluation_points_kept(project, alice, settings):
    settings.JINGTIAO_METRICS_FULL_RESOLUTION_HOURS = 24
    settings.JINGTIAO_METRICS_DOWNSAMPLE_SECONDS = 60
    job = factories.job(project, alice)
    now = timezone.now().replace(second=0, microsecond=0)
    old = now - timedelta(hours=30)
    for worker in ("rank0", "rank1"):
        for n in range(12):  # every 10 s for two minutes
            ResourceSample.objects.create(
                job=job, worker=worker, time=old + timedelta(seconds=10 * n), cpu_percent=n
            )
            ResourceSample.objects.create(
                job=job, worker=worker, time=now - timedelta(seconds=10 * n), cpu_percent=n
            )
    for step in range(12):
        MetricPoint.objects.create(
            job=job, worker="rank0", time=old + timedelta(seconds=10 * step), step=step, loss=1.0
        )
    MetricPoint.objects.create(
        job=job, worker="rank0", time=old + timedelta(seconds=15), step=99, eval_loss=0.9
    )

    thinned = downsample(now)

    assert (thinned.resource_samples, thinned.metric_points) == (20, 10)
    kept_old = ResourceSample.objects.filter(time__lt=now - timedelta(hours=24))
    assert sorted(kept_old.values_list("worker", "cpu_percent")) == [
        ("rank0", 0.0),
        ("rank0", 6.0),
        ("rank1", 0.0),
        ("rank1", 6.0),
    ]
    assert ResourceSample.objects.filter(time__gte=now - timedelta(hours=1)).count() == 24
    steps = sorted(MetricPoint.objects.values_list("step", flat=True))
    assert steps == [0, 6, 99]  # the first of each minute, and the evaluation point
    assert downsample(now) == type(thinned)(0, 0)  # repeating changes nothing
