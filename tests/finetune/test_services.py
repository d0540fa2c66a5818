"""The operations the pages call: events, the state machine, signals on commit, refusals."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from accounts.models import Access
from finetune.models import Job, JobEvent, JobStatus
from finetune.services import jobs as services
from finetune.states import transition
from finetune.views.drafts import outlook_for
from scheduler.public import predict_draft
from tests import factories
from tests.finetune import pages_support as support

pytestmark = pytest.mark.django_db


def _draft(project, alice, **fields) -> services.JobDraft:
    algorithm = support.catalog()
    support.node()  # somewhere the job can run, or creation is refused (F1.17)
    values = {
        "name": "draft",
        "scenario": algorithm.scenario,
        "algorithm": algorithm,
        "pretrained_model": factories.pretrained_model(),
        "train_dataset": support.good_dataset(project, alice),
        "model_repo": factories.model_repo(project, alice),
        "node_specs": [factories.node_spec()],
        "duration": timedelta(hours=3),
    }
    values.update(fields)
    return services.JobDraft(**values)


def test_creating_a_job_queues_it_and_announces_it_after_commit(
    project, alice, signals, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        job = services.create_job(alice, project, _draft(project, alice, access=Access.READ_ONLY))
    assert job.status == JobStatus.QUEUED and job.queued_at is not None
    assert job.events.get().kind == JobEvent.Kind.CREATED
    assert job.access == Access.READ_ONLY
    assert signals == [(job.pk, "created")]


def test_nothing_is_announced_when_the_transaction_rolls_back(project, alice, signals):
    services.create_job(alice, project, _draft(project, alice))
    assert signals == []  # the test's transaction never commits


def test_a_draft_pinned_to_nodes_and_a_pool_is_refused(project, alice):
    from scheduler.models import ResourcePool

    pool = ResourcePool.objects.create(name="p")
    with pytest.raises(ValidationError) as refused:
        services.create_job(alice, project, _draft(project, alice, node_names=["n1"], pool=pool))
    assert "node_names" in refused.value.error_dict


def test_a_member_may_not_use_a_data_set_she_cannot_see(project, alice, bob):
    hidden = support.good_dataset(project, bob, level=Access.NONE, name="bobs-data")
    with pytest.raises(ValidationError) as refused:
        services.create_job(alice, project, _draft(project, alice, train_dataset=hidden))
    assert "train_dataset" in refused.value.error_dict


def test_a_bad_data_set_is_refused_with_its_report(project, alice):
    broken = support.bad_dataset(project, alice)
    with pytest.raises(services.DataSetRejected) as refused:
        services.create_job(alice, project, _draft(project, alice, train_dataset=broken))
    ((dataset, report),) = refused.value.reports
    assert dataset == broken
    assert {"row": 2, "problem": "invalid JSON"} in [
        {"row": p["row"], "problem": p["problem"].split(":")[0]} for p in report["problems"]
    ]
    broken.refresh_from_db()
    assert broken.validation_status == "invalid"


def test_changing_the_duration_of_a_running_job_moves_only_its_deadline(
    project, alice, signals, django_capture_on_commit_callbacks
):
    job = factories.job(project, alice)
    transition(job, JobStatus.RUNNING)
    started = job.started_at
    with django_capture_on_commit_callbacks(execute=True):
        services.change_duration(alice, job, timedelta(hours=10))
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING and job.started_at == started
    assert job.deadline == started + timedelta(hours=10)
    assert job.events.filter(kind=JobEvent.Kind.DURATION).count() == 1
    assert signals == [(job.pk, "duration")]


def test_a_finished_job_keeps_its_duration(project, alice):
    job = factories.job(project, alice, status=JobStatus.SUCCEEDED)
    with pytest.raises(ValidationError):
        services.change_duration(alice, job, timedelta(hours=10))


def test_changing_the_priority_writes_an_event(
    project, alice, signals, django_capture_on_commit_callbacks
):
    job = factories.job(project, alice)
    with django_capture_on_commit_callbacks(execute=True):
        services.change_priority(alice, job, 40)
    assert Job.objects.get(pk=job.pk).priority == 40
    assert job.events.get(kind=JobEvent.Kind.PRIORITY).actor == alice
    assert signals == [(job.pk, "priority")]


def test_stop_goes_through_the_state_machine_with_the_actor(
    project, alice, bob, signals, django_capture_on_commit_callbacks
):
    job = factories.job(project, alice, level=Access.READ_WRITE)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.stop_job(bob, job) is True
    event = job.events.get(kind=JobEvent.Kind.STATUS)
    assert (event.to_status, event.actor) == (JobStatus.STOPPED, bob)
    assert signals == [(job.pk, "stopped")]
    assert services.stop_job(bob, job) is False


def test_a_read_only_member_may_not_stop(project, alice, bob):
    job = factories.job(project, alice, level=Access.READ_ONLY)
    with pytest.raises(PermissionDenied):
        services.stop_job(bob, job)


def test_deleting_a_running_job_stops_it_first(
    project, alice, signals, django_capture_on_commit_callbacks
):
    job = factories.job(project, alice)
    transition(job, JobStatus.RUNNING)
    stops = []
    job_id = job.pk
    with django_capture_on_commit_callbacks(execute=True):
        original = services.transition

        def spy(target_job, target, **kwargs):
            stops.append(target)
            return original(target_job, target, **kwargs)

        services.transition = spy
        try:
            services.delete_job(alice, job)
        finally:
            services.transition = original
    assert stops == [JobStatus.STOPPED]
    assert not Job.objects.filter(pk=job_id).exists()
    assert signals == [(job_id, "deleted")]


def test_the_prediction_counts_what_running_jobs_hold(project, alice):
    spec = factories.node_spec("mlu-4", devices=4)
    support.node("n1", devices=4)
    assert predict_draft(project=project, specs=[spec], node_count=1).verdict == "now"
    running = factories.job(project, alice)
    transition(
        running,
        JobStatus.RUNNING,
        changes={
            "placement": [{"rank": 0, "node": "n1", "devices": [0, 1, 2, 3]}],
            "spec_in_use": spec,
        },
    )
    queued = predict_draft(project=project, specs=[spec], node_count=1)
    assert queued.verdict == "queue"
    assert predict_draft(project=project, specs=[spec], node_count=2).verdict == "never"
    assert outlook_for(project, [], 1, None, "", "", None).verdict == "incomplete"


def test_a_bulk_delete_removes_only_what_the_user_may_delete_asking_once(
    project, alice, bob, monkeypatch
):
    hers = [factories.job(project, alice) for _ in range(3)]
    theirs = factories.job(project, bob, level=Access.READ_ONLY)

    def asked_again(*args, **kwargs):
        raise AssertionError("the permission was asked again for one job")

    monkeypatch.setattr(services, "_require", asked_again)
    assert services.delete_jobs(alice, Job.objects.all()) == 3
    assert list(Job.objects.all()) == [theirs]
    assert not Job.objects.filter(pk__in=[job.pk for job in hers]).exists()
