import itertools

import pytest

from finetune import states
from finetune.models import Job, JobEvent, JobStatus
from tests import factories

pytestmark = pytest.mark.django_db

ALLOWED = set(states.TRANSITIONS)
ALL_PAIRS = list(itertools.permutations(JobStatus.values, 2))
REFUSED = [pair for pair in ALL_PAIRS if pair not in ALLOWED]


def test_the_table_is_the_one_of_the_design():
    assert {
        ("queued", "running"),
        ("queued", "stopped"),
        ("queued", "failed"),
        ("running", "succeeded"),
        ("running", "failed"),
        ("running", "stopped"),
        ("running", "expired"),
        ("running", "queued"),
    } == ALLOWED


@pytest.mark.parametrize(("source", "target"), sorted(ALLOWED))
def test_each_allowed_transition_changes_the_row_and_writes_an_event(
    project, alice, source, target
):
    job = factories.job(project, alice, status=source)
    assert states.transition(job, target, actor=alice, reason="because") is True
    stored = Job.objects.get(pk=job.pk)
    assert stored.status == target == job.status
    event = JobEvent.objects.get(job=job, kind=JobEvent.Kind.STATUS)
    assert (event.from_status, event.to_status, event.actor, event.message) == (
        source,
        target,
        alice,
        "because",
    )
    if target == JobStatus.RUNNING:
        assert stored.started_at is not None
    elif target == JobStatus.QUEUED:
        assert stored.started_at is None and stored.placement == []
    else:
        assert stored.finished_at is not None


@pytest.mark.parametrize(("source", "target"), REFUSED)
def test_each_refused_transition_raises_and_changes_nothing(project, alice, source, target):
    job = factories.job(project, alice, status=source)
    with pytest.raises(states.TransitionError, match=f"Job {job.pk} is"):
        states.transition(job, target)
    assert Job.objects.get(pk=job.pk).status == source
    assert not JobEvent.objects.filter(job=job).exists()


@pytest.mark.parametrize(("source", "target"), sorted(ALLOWED))
def test_repeating_a_transition_is_a_harmless_no_op(project, alice, source, target):
    job = factories.job(project, alice, status=source)
    assert states.transition(job, target) is True
    assert states.transition(job, target) is False
    assert JobEvent.objects.filter(job=job).count() == 1


def test_a_stale_copy_cannot_overwrite_a_newer_state(project, alice):
    job = factories.job(project, alice, status=JobStatus.RUNNING)
    stale = Job.objects.get(pk=job.pk)
    states.transition(job, JobStatus.SUCCEEDED)
    # The stale copy still believes the job runs; stopping it now must not
    # turn a success into a stop.
    with pytest.raises(states.TransitionError, match="Succeeded"):
        states.transition(stale, JobStatus.STOPPED)
    assert Job.objects.get(pk=job.pk).status == JobStatus.SUCCEEDED


def test_a_stale_copy_that_reaches_the_same_state_is_a_no_op(project, alice):
    job = factories.job(project, alice, status=JobStatus.RUNNING)
    stale = Job.objects.get(pk=job.pk)
    states.transition(job, JobStatus.STOPPED)
    assert states.transition(stale, JobStatus.STOPPED) is False
    assert JobEvent.objects.filter(job=job).count() == 1


def test_a_stale_copy_of_a_requeued_job_can_still_admit_it(project, alice):
    job = factories.job(project, alice, status=JobStatus.RUNNING)
    stale = Job.objects.get(pk=job.pk)
    states.transition(job, JobStatus.QUEUED, reason="unschedulable")
    states.transition(job, JobStatus.RUNNING)
    assert states.transition(stale, JobStatus.SUCCEEDED) is True
    assert Job.objects.get(pk=job.pk).status == JobStatus.SUCCEEDED


def test_extra_changes_are_written_with_the_status(project, alice):
    job = factories.job(project, alice)
    spec = factories.node_spec()
    placement = [{"rank": 0, "node": "node-1"}]
    states.transition(job, "running", changes={"placement": placement, "spec_in_use": spec})
    stored = Job.objects.get(pk=job.pk)
    assert stored.placement == placement
    assert stored.spec_in_use == spec


def test_requeue_keeps_the_place_in_the_queue(project, alice):
    job = factories.job(project, alice, status=JobStatus.RUNNING)
    queued_at = job.created_at
    Job.objects.filter(pk=job.pk).update(queued_at=queued_at)
    states.transition(job, JobStatus.QUEUED)
    assert Job.objects.get(pk=job.pk).queued_at == queued_at
