"""监控 (F7.1): the monitoring tab's data, the job's progress and its time ranges."""

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import override

from accounts.models import Access
from finetune import monitoring
from finetune.models import Job, JobStatus, MetricPoint, ResourceSample
from finetune.states import transition
from tests import factories
from tests.finetune.conftest import REPORT_TOKEN as TOKEN

pytestmark = pytest.mark.django_db


def _at(seconds_ago: float) -> datetime:
    return timezone.now() - timedelta(seconds=seconds_ago)


def _points(job, steps, *, worker="rank0", start=600.0, **values):
    MetricPoint.objects.bulk_create(
        MetricPoint(job=job, worker=worker, time=_at(start - step), step=step, **values)
        for step in steps
    )


def _metrics(client, job, **query):
    return client.get(reverse("finetune:job_metrics", args=[job.pk]), query)


def test_training_curves_are_aligned_by_step_with_evaluation_merged_in(running):
    _points(running, [1, 2, 3], loss=2.0, learning_rate=1e-4, tokens_per_second=900.0)
    MetricPoint.objects.create(job=running, worker="rank0", time=_at(1), step=3, eval_loss=1.5)
    MetricPoint.objects.create(job=running, worker="rank0", time=_at(1), step=3, test_loss=1.6)

    series = monitoring.training(running, monitoring.window(running, "all"))

    assert series["step"] == [1, 2, 3]
    assert series["loss"] == [2.0, 2.0, 2.0]
    assert series["eval_loss"] == [None, None, 1.5] and series["test_loss"] == [None, None, 1.6]
    assert series["tokens_per_second"] == [900.0] * 3


def test_a_long_run_is_thinned_in_the_database_but_keeps_every_evaluation(
    running, monkeypatch, django_assert_max_num_queries
):
    monkeypatch.setattr(monitoring, "MAX_POINTS", 100)
    _points(running, range(1, 1001), start=5000, loss=1.0)
    _points(running, range(50, 1001, 50), start=4000, eval_loss=0.5)

    with django_assert_max_num_queries(3):
        series = monitoring.training(running, monitoring.window(running, "all"))

    assert 90 <= len(series["step"]) <= 130
    pairs = zip(series["step"], series["eval_loss"], strict=True)
    kept_evaluations = [step for step, value in pairs if value is not None]
    assert kept_evaluations == list(range(50, 1001, 50))
    assert series["step"] == sorted(series["step"])


def test_resources_come_per_worker_with_network_as_a_rate(running):
    for worker, offset in (("local-7-10", 0), ("local-7-2", 0)):
        ResourceSample.objects.bulk_create(
            ResourceSample(
                job=running,
                worker=worker,
                time=datetime.fromtimestamp(1_800_000_000 + 10 * i + offset, UTC),
                cpu_percent=100.0 + i,
                memory_bytes=2**30,
                net_rx_bytes=[1000, 2000, 500][i],  # the counter restarted at the third
                net_tx_bytes=10 * i,
            )
            for i in range(3)
        )
    span = monitoring.TimeSpan(None, datetime.fromtimestamp(1_900_000_000, UTC))

    found = monitoring.resources(running, span)

    assert list(found) == ["local-7-2", "local-7-10"]  # by rank, not by spelling
    assert found["local-7-10"]["label"] == "worker 10"
    rank0 = found["local-7-2"]
    assert rank0["cpu_percent"] == [100.0, 101.0, 102.0]
    assert rank0["net_rx_per_s"] == [None, 100.0, None]
    assert rank0["net_tx_per_s"] == [None, 1.0, 1.0]
    assert rank0["time"][1] - rank0["time"][0] == 10


@pytest.mark.parametrize(
    "name, label",
    [
        ("local-12-3", "worker 3"),
        ("jingtiao-job-12-1-x7k2p", "worker 1"),
        # one process per device: the node's worker and the process's local rank
        ("local-12-1:3", "worker 1 · device 3"),
        ("jingtiao-job-12-0-x7k2p:7", "worker 0 · device 7"),
        ("my-laptop", "my-laptop"),
    ],
)
def test_a_worker_is_named_by_its_rank_where_its_name_tells_it(name, label):
    assert monitoring.worker_label(name) == label


def test_a_time_range_ends_now_while_running_and_at_the_end_once_ended(running):
    _points(running, [1], start=7200, loss=3.0)  # two hours ago
    _points(running, [2], start=60, loss=2.0)

    assert monitoring.training(running, monitoring.window(running, "1h"))["step"] == [2]
    assert monitoring.training(running, monitoring.window(running, "all"))["step"] == [1, 2]
    transition(running, JobStatus.SUCCEEDED)
    Job.objects.filter(pk=running.pk).update(finished_at=_at(3600 + 1800))
    running.refresh_from_db()
    # the last hour of the run, not of the clock
    assert monitoring.training(running, monitoring.window(running, "1h"))["step"] == [1]


def test_the_metrics_answer_is_json_for_the_charts(client, running, alice):
    _points(running, [1, 2], loss=2.0)
    client.force_login(alice)

    data = _metrics(client, running, range="6h").json()

    assert data["running"] is True and data["range"] == "6h"
    assert data["training"]["step"] == [1, 2]
    assert data["end"] - data["start"] == pytest.approx(6 * 3600)


def test_a_bad_range_is_refused_with_the_choices(client, running, alice):
    client.force_login(alice)
    response = _metrics(client, running, range="3 weeks")
    assert response.status_code == 400
    assert "15m, 1h, 6h, 24h, 7d, all" in response.json()["error"]


def test_only_those_who_may_view_the_job_see_its_metrics(client, project, alice, bob, charlie):
    job = factories.job(project, alice, level=Access.NONE)
    for user, status in ((charlie, 404), (bob, 404), (alice, 200)):
        client.force_login(user)
        assert _metrics(client, job).status_code == status


def test_reports_move_the_jobs_progress_and_expected_end_forward_only(client, running):
    def post(seq, progress, eta, when):
        body = {
            "job_id": running.pk,
            "worker": "rank0",
            "seq": seq,
            "metrics": [{"step": seq, "progress": progress, "eta_seconds": eta, "time": when}],
        }
        return client.post(
            reverse("job_report", args=[running.pk]),
            json.dumps(body),
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {TOKEN}",
        )

    now = time.time()
    assert post(2, 0.5, 120, now).status_code == 200
    assert post(1, 0.25, 300, now - 60).status_code == 200  # a late retry of an older batch
    running.refresh_from_db()
    assert running.progress == 0.5
    assert abs(running.eta_at.timestamp() - (now + 120)) < 1

    transition(running, JobStatus.SUCCEEDED)
    running.refresh_from_db()
    assert running.progress == 1.0 and running.eta_at is None


def test_a_requeued_job_starts_its_progress_afresh(running):
    Job.objects.filter(pk=running.pk).update(progress=0.7, eta_at=_at(-60))
    running.refresh_from_db()
    transition(running, JobStatus.QUEUED)
    running.refresh_from_db()
    assert running.progress is None and running.eta_at is None


def test_progress_reads_as_a_percentage_and_the_time_left(running):
    now = timezone.now()
    running.progress, running.eta_at = 0.456, now + timedelta(minutes=3, seconds=5)
    assert monitoring.progress_text(running, now) == "46% · 3\xa0minutes left"
    with override("zh-hans"):
        assert monitoring.progress_text(running, now) == "46% · 剩余 3\xa0分钟"
    running.eta_at = now + timedelta(seconds=20)
    assert monitoring.progress_text(running, now) == "46% · under a minute left"
    running.status = JobStatus.FAILED
    assert monitoring.progress_text(running, now) == "46%"


def test_a_job_expected_to_end_after_its_duration_says_it_will_expire(running):
    """Issue 19, item 7: said early, from the trainer's ETA or the pace of its progress."""
    now = timezone.now()
    running.started_at = now - timedelta(minutes=30)
    running.duration = timedelta(hours=1)
    running.progress, running.eta_at = 0.2, now + timedelta(hours=2)
    warned = "20% · expected to end after its duration: it will expire · 2\xa0hours left"
    assert monitoring.progress_text(running, now) == warned
    with override("zh-hans"):
        expire = "预计在使用时长结束后才完成，将会过期"  # noqa: RUF001
        assert expire in monitoring.progress_text(running, now)
    # no ETA: a fifth in half an hour is two hours more, past the hour it has
    running.eta_at = None
    assert monitoring.will_expire(running, now)
    running.progress = 0.8  # at this pace it ends in time
    assert not monitoring.will_expire(running, now)
    assert monitoring.progress_text(running, now) == "80%"


def test_the_list_and_the_detail_page_show_a_running_jobs_progress(client, running, alice):
    Job.objects.filter(pk=running.pk).update(progress=0.25, eta_at=_at(-630))
    client.force_login(alice)
    listing = client.get(reverse("finetune:job_list")).content.decode()
    detail = client.get(reverse("finetune:job_detail", args=[running.pk])).content.decode()
    for page in (listing, detail):
        assert 'value="0.2500"' in page and "25% · 10\xa0minutes left" in page


def test_a_queued_job_keeps_its_whole_duration_left(project, alice):
    """Issue 19, item 10: a queued job counted down 剩余时长 (1 hour, 59 minutes of 2)."""
    from finetune.templatetags.console import remaining

    job = factories.job(project, alice, duration=timedelta(hours=2))
    assert remaining(job) == "2\xa0hours"
    with override("zh-hans"):
        assert remaining(job) == "2\xa0小时"
