"""Issue 14, items 3 and 4: the expected start beside the latest, and the planner's
reasons in the reader's language."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone, translation

from finetune.models import Job, JobNodeSpec, JobStatus, Priority
from scheduler import admission, prediction
from scheduler.models import Node
from scheduler.planning.expected import (
    Progress,
    expected_end,
    expected_inputs,
    typical_share,
)
from scheduler.planning.state import QueuedJob, RunningJob, SpecRequest
from tests import factories

NOW = timezone.now()
HOUR = timedelta(hours=1)


def test_a_running_job_is_expected_to_end_at_its_eta_within_now_and_its_deadline():
    deadline = NOW + 4 * HOUR
    started = NOW - HOUR
    assert expected_end(Progress(started, NOW + HOUR), deadline, NOW, 1.0) == NOW + HOUR
    # an ETA past the deadline: expiry stops it there; one already past: it ends now
    assert expected_end(Progress(started, NOW + 9 * HOUR), deadline, NOW, 1.0) == deadline
    assert expected_end(Progress(started, NOW - HOUR), deadline, NOW, 1.0) == NOW
    # no ETA: the pace of its progress so far (a quarter in an hour: three hours more)
    assert expected_end(Progress(started, None, 0.25), deadline, NOW, 1.0) == NOW + 3 * HOUR
    # nothing reported yet: the share of its duration jobs typically run
    assert expected_end(Progress(started, None, None), deadline, NOW, 0.5) == started + 2.5 * HOUR
    assert expected_end(None, deadline, NOW, 0.5) == deadline


def test_the_typical_share_is_the_median_of_enough_settled_jobs_else_the_whole_duration():
    assert typical_share([(HOUR, 2 * HOUR)] * 4) == 1.0  # too few to say
    runs = [(HOUR, 2 * HOUR)] * 3 + [(3 * HOUR, 2 * HOUR), (HOUR, 4 * HOUR)]
    assert typical_share(runs) == 0.5  # an overrun counts as the whole duration


def test_the_expected_inputs_shorten_running_and_queued_jobs_but_never_below_a_minute():
    spec = SpecRequest(1, 1000, 1, "mlu", 1)
    running = [RunningJob(1, spec, ("a",), NOW + 4 * HOUR)]
    queue = [
        QueuedJob(2, 1, 0, NOW, 1, (spec,), duration=4 * HOUR),
        QueuedJob(3, 1, 0, NOW, 1, (spec,), duration=timedelta(seconds=90)),
    ]
    ended, queued = expected_inputs(running, queue, {1: Progress(NOW, NOW + HOUR)}, NOW, 0.25)
    assert ended[0].deadline == NOW + HOUR
    assert [job.duration for job in queued] == [HOUR, timedelta(minutes=1)]


def _node(name: str, devices: int = 1) -> Node:
    return Node.objects.create(
        name=name, cpu_millis=64000, memory_mib=512 * 1024, device_type="mlu", device_count=devices
    )


def _queued(project, creator, **fields) -> Job:
    job = factories.job(project, creator, **fields)
    Job.objects.filter(pk=job.pk).update(queued_at=job.created_at)
    job.refresh_from_db()
    return job


@pytest.mark.django_db
def test_a_job_behind_one_that_reports_an_early_eta_expects_to_start_then(client, project, alice):
    _node("mlu-a")
    running = _queued(project, alice, duration=timedelta(hours=6))
    waiting = _queued(project, alice, name="waiting", duration=timedelta(hours=2))
    admission.admit()
    running.refresh_from_db()
    eta = timezone.now() + HOUR
    Job.objects.filter(pk=running.pk).update(progress=0.5, eta_at=eta)
    admission.admit()  # the pass leaves both starts for the list

    forecast = prediction.predict_job(waiting)
    assert forecast.start == running.started_at + running.duration
    assert abs(forecast.expected_start - eta) < timedelta(seconds=5)
    assert forecast.expects_earlier
    assert "expected to start" in forecast.message() and "at the latest" in forecast.message()
    assert forecast.message().endswith("(waiting for a running job on its nodes to end)")
    listed = prediction.queue_forecasts([waiting.pk])[waiting.pk]
    assert (listed.start, listed.expected_start) == (forecast.start, forecast.expected_start)
    assert listed.message() == forecast.message()

    client.force_login(alice)
    client.cookies["django_language"] = "zh-hans"
    with translation.override("zh-hans"):
        detail = client.get(reverse("finetune:job_detail", args=[waiting.pk])).content.decode()
        rows = client.get(reverse("finetune:job_list")).content.decode()
    assert "预计" in detail and "最晚" in detail and "等待其节点上 1 个运行中的任务结束" in detail
    assert "预计" in rows
    assert "expected" not in detail and "expected" not in rows

    draft = prediction.predict_draft(
        project=project,
        priority=Priority.LOW,
        node_count=1,
        specs=[factories.node_spec()],
        duration=HOUR,
    )
    # behind the waiting job: the bound is after both jobs' durations, the
    # expectation after the ETA and the waiting job's two hours (no history yet)
    assert draft.start == forecast.start + waiting.duration
    assert draft.message().endswith("(waiting for jobs queued ahead of it)")
    assert abs(draft.expected_start - (eta + waiting.duration)) < timedelta(seconds=5)


@pytest.mark.django_db
def test_history_shortens_what_queued_jobs_are_expected_to_hold(project, alice):
    _node("mlu-a")
    for _ in range(5):  # jobs that ran a quarter of their duration
        done = factories.job(project, alice, duration=timedelta(hours=4))
        started = timezone.now() - 2 * HOUR
        Job.objects.filter(pk=done.pk).update(
            status=JobStatus.SUCCEEDED, started_at=started, finished_at=started + HOUR
        )
    running = _queued(project, alice, duration=timedelta(hours=4))
    waiting = _queued(project, alice, duration=timedelta(hours=4))
    admission.admit()
    running.refresh_from_db()
    forecast = prediction.predict_job(waiting)
    assert forecast.start == running.started_at + running.duration
    # nothing reported yet: expected to run a quarter of its four hours
    expected = running.started_at + HOUR
    assert abs(forecast.expected_start - expected) < timedelta(seconds=1)


@pytest.mark.django_db
def test_why_a_job_can_never_run_is_said_in_the_readers_language(client, project, alice):
    _node("mlu-a", devices=4)
    big = factories.node_spec("mlu-16", devices=16)
    job = _queued(project, alice)
    # a spec changed by an operator after creation
    JobNodeSpec.objects.filter(job=job).update(spec=big)
    forecast = prediction.predict_job(job)
    assert forecast.reason_text == "no node in the shared pools has 16 MLU devices"
    with translation.override("zh-hans"):
        said = prediction.predict_job(job).message()
    assert said == "无法运行：共享资源池中没有节点有 16 个 MLU 设备"  # noqa: RUF001
    admission.admit()
    listed = prediction.queue_forecasts([job.pk])[job.pk]
    with translation.override("zh-hans"):
        assert listed.message() == said

    # the create form refuses such a draft with the same words
    client.force_login(alice)
    client.cookies["django_language"] = "zh-hans"
    with translation.override("zh-hans"):
        page = client.post(
            reverse("finetune:job_prediction"),
            {"node_specs": [big.pk], "node_count": "1", "priority": "20"},
        ).content.decode()
    assert "共享资源池中没有节点有 16 个 MLU 设备" in page
