"""Issue 14, item 2: the worker keeps the create page's forecast warm after a change.

An admission pass that leaves the state as it found it shares its forecasts; a web
process then answers drafts from them without planning. Where the state moved on since,
what was shared is ignored and the process plans the state it sees.
"""

from datetime import timedelta

import pytest
from django.core.cache import cache

from finetune import states
from finetune.models import Job, JobStatus, Priority
from scheduler import admission, prediction, snapshot
from scheduler.models import Node
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_process(monkeypatch):
    """Every test starts as a web process that has planned nothing yet."""
    monkeypatch.setattr(prediction, "_forecast", None)
    cache.delete(prediction.FORECAST_CACHE_KEY)


def _draft(project, priority=Priority.NORMAL):
    return prediction.predict_draft(
        project=project,
        priority=priority,
        node_count=1,
        specs=[factories.node_spec()],
        duration=timedelta(hours=1),
    )


def _queued(project, creator, **fields) -> Job:
    job = factories.job(project, creator, **fields)
    Job.objects.filter(pk=job.pk).update(queued_at=job.created_at)
    return Job.objects.get(pk=job.pk)


def _no_planning(monkeypatch):
    def refuse(now):
        raise AssertionError("the web process planned by itself")

    monkeypatch.setattr(snapshot, "take", refuse)


def test_a_pass_that_starts_nothing_shares_its_forecast_and_drafts_plan_nothing(
    project, alice, monkeypatch
):
    Node.objects.create(
        name="mlu-a", cpu_millis=64000, memory_mib=512 * 1024, device_type="mlu", device_count=1
    )
    running = _queued(project, alice)
    admission.admit()  # starts it: the state it planned is gone, nothing is shared
    assert cache.get(prediction.FORECAST_CACHE_KEY) is None
    _queued(project, alice)
    admission.admit()  # the second waits: this pass leaves the state as it found it
    assert cache.get(prediction.FORECAST_CACHE_KEY) is not None

    _no_planning(monkeypatch)
    answer = _draft(project)
    running.refresh_from_db()
    # behind the running job and the one waiting for it
    assert answer.start == running.started_at + 2 * running.duration
    assert answer.position == 2


def test_a_change_the_worker_has_not_seen_is_planned_by_the_web_process(project, alice):
    Node.objects.create(
        name="mlu-a", cpu_millis=64000, memory_mib=512 * 1024, device_type="mlu", device_count=1
    )
    running = _queued(project, alice)
    admission.admit()
    waiting = _queued(project, alice)
    admission.admit()
    shared = cache.get(prediction.FORECAST_CACHE_KEY)
    assert shared is not None
    before = _draft(project)
    assert before.position == 2

    # the waiting job is stopped; no pass has run since
    states.transition(waiting, JobStatus.STOPPED, reason="bench")
    after = _draft(project)
    running.refresh_from_db()
    assert after.position == 1
    assert after.start == running.started_at + running.duration
    # and it shares what it planned, for the other processes
    assert cache.get(prediction.FORECAST_CACHE_KEY)[0] != shared[0]


def _whole_plan(job: Job) -> prediction.Prediction:
    """The job's prediction from the state read and planned again."""
    state = snapshot.take(prediction.timezone.now())
    mine = next(queued for queued in state.queue if queued.job_id == job.pk)
    return prediction._predict_in(state, mine)


def _same(found: prediction.Prediction, planned: prediction.Prediction) -> None:
    assert (found.position, found.start, found.spec_id) == (
        planned.position,
        planned.start,
        planned.spec_id,
    )
    assert found.expected_start == planned.expected_start


def _two_waiting(project, alice) -> Job:
    """A node taken by a running job, one job waiting: a pass shares its forecasts."""
    Node.objects.create(
        name="mlu-a", cpu_millis=64000, memory_mib=512 * 1024, device_type="mlu", device_count=1
    )
    running = _queued(project, alice)
    admission.admit()
    _queued(project, alice)
    admission.admit()
    assert cache.get(prediction.FORECAST_CACHE_KEY) is not None
    return running


def test_a_job_created_after_the_shared_forecast_is_placed_over_it_without_planning(
    project, alice, monkeypatch
):
    """The create's answer (API, detail page) before the worker's next pass: the state is
    the forecast's plus this job, so it is placed over the forecast, the answer the
    whole plan gives."""
    _two_waiting(project, alice)
    created = _queued(project, alice)
    with monkeypatch.context() as patched:
        _no_planning(patched)
        found = prediction.predict_job(created)
    assert found.position == 2
    _same(found, _whole_plan(created))


@pytest.mark.parametrize("change", ["another job", "a stop", "a deletion"])
def test_a_job_created_after_another_change_is_planned_afresh(project, alice, change):
    _two_waiting(project, alice)
    waiting = Job.objects.filter(status=JobStatus.QUEUED).get()
    if change == "another job":
        _queued(project, alice)  # queued ahead of it, after the forecast
    elif change == "a stop":
        states.transition(waiting, JobStatus.STOPPED, reason="test")
    else:  # its events go with it: only the count of planned jobs tells
        waiting.delete()
    created = _queued(project, alice)
    found = prediction.predict_job(created)
    assert found.position == (3 if change == "another job" else 1)
    _same(found, _whole_plan(created))


def test_a_job_committed_while_the_state_was_read_is_not_placed_twice(project, alice, monkeypatch):
    """The version is read before the state it labels: a job committed between the two
    is in the planned state though newer than the version; it is planned, not placed a
    second time over a state that holds it already."""
    _two_waiting(project, alice)
    version = prediction.state_version()
    created = _queued(project, alice)
    prediction.share_forecasts(
        prediction._forecasts_of(version, snapshot.take(prediction.timezone.now()))
    )
    found = prediction.predict_job(created)
    assert found.position == 2
    _same(found, _whole_plan(created))
