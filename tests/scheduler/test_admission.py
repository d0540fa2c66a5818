"""Admission, expiry, node inventory and prediction against the database."""

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from finetune import states
from finetune.models import Job, JobEvent, JobStatus, Priority
from scheduler import admission, expiry, inventory, prediction
from scheduler.executors.base import NodeInfo
from scheduler.models import Node, ResourcePool
from tests import factories

pytestmark = pytest.mark.django_db


def _node(name: str, devices: int = 4, **fields) -> Node:
    return Node.objects.create(
        name=name,
        cpu_millis=64000,
        memory_mib=512 * 1024,
        device_type="mlu",
        device_count=devices,
        **fields,
    )


def _queued(project, creator, **fields) -> Job:
    job = factories.job(project, creator, **fields)
    Job.objects.filter(pk=job.pk).update(queued_at=job.created_at)
    job.refresh_from_db()
    return job


def test_a_job_that_fits_is_admitted_with_its_placement_and_devices(project, alice):
    _node("mlu-a", devices=2)
    first = _queued(project, alice)
    second = _queued(project, alice)
    admitted = admission.admit()
    assert [item.job_id for item in admitted] == [first.pk, second.pk]
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.status == second.status == JobStatus.RUNNING
    assert first.placement == [{"rank": 0, "node": "mlu-a", "devices": [0]}]
    assert second.placement == [{"rank": 0, "node": "mlu-a", "devices": [1]}]
    assert first.spec_in_use == factories.node_spec()
    assert admitted[1].placement.device_ids == {"mlu-a": (1,)}
    event = JobEvent.objects.get(job=first, to_status="running")
    assert "admitted on mlu-a" in event.message


def test_a_job_that_does_not_fit_stays_queued_in_its_place(project, alice):
    _node("mlu-a", devices=1)
    running = _queued(project, alice)
    waiting = _queued(project, alice)
    admission.admit()
    waiting.refresh_from_db()
    assert waiting.status == JobStatus.QUEUED
    forecast = prediction.predict_job(waiting)
    running.refresh_from_db()
    assert forecast.start == running.started_at + running.duration
    assert forecast.position == 1
    assert "expected to start by" in forecast.message()


def test_a_higher_priority_job_goes_first(project, alice):
    _node("mlu-a", devices=1)
    low = _queued(project, alice, priority=Priority.LOW)
    high = _queued(project, alice, priority=Priority.HIGH)
    assert [item.job_id for item in admission.admit()] == [high.pk]
    low.refresh_from_db()
    assert low.status == JobStatus.QUEUED


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_two_admission_passes_at_once_admit_each_job_exactly_once(project, alice):
    _node("mlu-a", devices=4)
    _node("mlu-b", devices=4)
    jobs = [_queued(project, alice) for _ in range(12)]
    barrier = threading.Barrier(2)
    results: list[list[int]] = []
    errors: list[BaseException] = []

    def one_pass():
        try:
            barrier.wait()
            results.append([item.job_id for item in admission.admit()])
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=one_pass) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    admitted = results[0] + results[1]
    assert len(admitted) == len(set(admitted)) == 8
    running = Job.objects.filter(status=JobStatus.RUNNING)
    assert running.count() == 8
    assert JobEvent.objects.filter(to_status="running").count() == 8
    devices = [
        (worker["node"], device)
        for placement in running.values_list("placement", flat=True)
        for worker in placement
        for device in worker["devices"]
    ]
    assert len(devices) == len(set(devices)) == 8  # no device given twice
    assert Job.objects.filter(pk__in=[j.pk for j in jobs], status=JobStatus.QUEUED).count() == 4


def test_a_job_past_its_deadline_expires_and_a_longer_duration_saves_it(project, alice):
    _node("mlu-a")
    late = _queued(project, alice, duration=timedelta(hours=1))
    saved = _queued(project, alice, duration=timedelta(hours=1))
    admission.admit()
    two_hours_ago = timezone.now() - timedelta(hours=2)
    Job.objects.filter(pk__in=[late.pk, saved.pk]).update(started_at=two_hours_ago)
    # F8.1: changing the duration of a running job only moves its deadline
    Job.objects.filter(pk=saved.pk).update(duration=timedelta(hours=3))
    assert expiry.expire_jobs() == [late.pk]
    late.refresh_from_db()
    saved.refresh_from_db()
    assert late.status == JobStatus.EXPIRED and late.finished_at is not None
    assert "ran past its duration" in late.status_reason
    assert saved.status == JobStatus.RUNNING
    assert expiry.expire_jobs() == []  # repeating is harmless


def test_a_shorter_duration_of_a_running_job_brings_the_queued_start_forward(project, alice):
    _node("mlu-a", devices=1)
    running = _queued(project, alice, duration=timedelta(hours=10))
    waiting = _queued(project, alice)
    admission.admit()
    before = prediction.predict_job(waiting).start
    Job.objects.filter(pk=running.pk).update(duration=timedelta(hours=2))
    after = prediction.predict_job(waiting).start
    assert before - after == timedelta(hours=8)


def test_raising_the_priority_moves_a_job_ahead_in_the_queue(project, alice):
    _node("mlu-a", devices=1)
    _queued(project, alice)  # takes the node
    admission.admit()
    first = _queued(project, alice)
    second = _queued(project, alice)
    positions = {job.pk: prediction.predict_job(job) for job in (first, second)}
    assert (positions[first.pk].position, positions[second.pk].position) == (1, 2)
    Job.objects.filter(pk=second.pk).update(priority=Priority.URGENT)
    positions = {job.pk: prediction.predict_job(job) for job in (first, second)}
    assert (positions[first.pk].position, positions[second.pk].position) == (2, 1)


def test_a_draft_too_large_for_any_node_cannot_run(project, alice):
    _node("mlu-a", devices=4)
    big = factories.node_spec("mlu-16", devices=16)
    forecast = prediction.predict_draft(
        project=project,
        priority=Priority.NORMAL,
        node_count=1,
        specs=[big],
        duration=timedelta(hours=1),
    )
    assert not forecast.can_run
    assert forecast.message().startswith("Cannot run:")
    assert "16" in forecast.message()


def test_a_draft_on_a_free_cluster_starts_now(project, alice):
    _node("mlu-a", devices=4)
    _node("mlu-b", devices=4)
    forecast = prediction.predict_draft(
        project=project,
        priority=Priority.NORMAL,
        node_count=2,
        specs=[factories.node_spec()],
        duration=timedelta(hours=1),
    )
    assert forecast.starts_now and forecast.message() == "Starts now."


def test_a_dedicated_pool_is_only_for_its_projects(project, other_project, alice, charlie):
    pool = ResourcePool.objects.create(name="team-a", dedicated=True)
    pool.projects.add(project)
    _node("mlu-a", pool=pool)
    mine = _queued(project, alice, pool=pool)
    theirs = _queued(other_project, charlie, pool=pool)
    assert [item.job_id for item in admission.admit()] == [mine.pk]
    forecast = prediction.predict_job(theirs)
    assert not forecast.can_run


def test_stopping_a_queued_job_takes_it_out_of_the_plan(project, alice):
    _node("mlu-a", devices=1)
    job = _queued(project, alice)
    states.transition(job, JobStatus.STOPPED)
    assert admission.admit() == []


def test_node_inventory_adds_updates_and_marks_vanished_nodes(db):
    _node("old-node")
    reported = [
        NodeInfo(
            name="mlu-1",
            cpu_millis=96000,
            memory_mib=768 * 1024,
            device_type="mlu",
            device_count=8,
            labels={"DriverVersion": "5.10.22", "jingtiao.io/pool": "team-a"},
            driver_version="5.10.22",
            pool="team-a",
        )
    ]
    result = inventory.sync_nodes(reported)
    assert (result.added, result.vanished) == (["mlu-1"], ["old-node"])
    node = Node.objects.get(name="mlu-1")
    assert (node.device_count, node.driver_version, node.pool.name) == (8, "5.10.22", "team-a")
    assert Node.objects.get(name="old-node").schedulable is False
    result = inventory.sync_nodes(reported)
    assert result.updated == ["mlu-1"] and result.vanished == []


def test_node_sync_costs_the_same_queries_for_three_nodes_as_for_six_hundred(
    db, django_assert_max_num_queries
):
    def report(count: int) -> list[NodeInfo]:
        return [
            NodeInfo(name=f"n-{i}", cpu_millis=8000, memory_mib=65536, device_type="gpu",
                     device_count=8, pool="team-a" if i % 2 else "")
            for i in range(count)
        ]  # fmt: skip

    inventory.sync_nodes(report(3))
    with django_assert_max_num_queries(12):
        inventory.sync_nodes(report(3))
    with django_assert_max_num_queries(12):
        result = inventory.sync_nodes(report(600))  # 597 new, 3 known
    assert len(result.added) == 597 and len(result.updated) == 3
    with django_assert_max_num_queries(12):
        result = inventory.sync_nodes(report(2))
    assert sorted(result.vanished)[:2] == ["n-10", "n-100"] and len(result.vanished) == 598
    assert Node.objects.filter(schedulable=True).count() == 2
    assert Node.objects.get(name="n-1").pool.name == "team-a"


def test_the_list_and_the_detail_page_show_where_a_queued_job_stands(client, project, alice):
    from django.urls import reverse

    _node("mlu-a", devices=1)
    running = _queued(project, alice, name="holder")
    waiting = _queued(project, alice, name="waiter")
    admission.admit()  # leaves its plan for the list
    running.refresh_from_db()
    client.force_login(alice)
    page = client.get(reverse("finetune:job_list")).content.decode()
    assert "#1 in queue · by" in page
    detail = client.get(reverse("finetune:job_detail", args=[waiting.pk])).content.decode()
    assert "Queued: position 1 in the queue, expected to start by" in detail


def test_the_list_plans_afresh_when_no_admission_pass_left_a_plan(client, project, alice):
    from django.core.cache import cache
    from django.urls import reverse

    _node("mlu-a", devices=1)
    _queued(project, alice, name="waiter")
    cache.clear()
    client.force_login(alice)
    page = client.get(reverse("finetune:job_list")).content.decode()
    assert "#1 in queue" in page and "· by" not in page  # it would start now


def test_a_drafts_predicted_start_is_the_start_it_gets_once_created(project, alice):
    _node("mlu-a", devices=1)
    _queued(project, alice, duration=timedelta(hours=5))
    admission.admit()
    _queued(project, alice, duration=timedelta(hours=2))  # waits for the first
    spec = factories.node_spec()
    forecast = prediction.predict_draft(
        project=project,
        priority=Priority.NORMAL,
        node_count=1,
        specs=[spec],
        duration=timedelta(hours=1),
    )
    created = _queued(project, alice, duration=timedelta(hours=1))
    planned = prediction.predict_job(created)
    assert (forecast.start, forecast.position) == (planned.start, planned.position)
    assert forecast.position == 2 and not forecast.starts_now


@pytest.mark.parametrize(
    ("transient", "status", "words"),
    [
        (True, JobStatus.QUEUED, "launch failed, will retry: API server unavailable"),
        (False, JobStatus.FAILED, "cannot launch: API server unavailable"),
    ],
)
def test_a_failed_launch_requeues_or_fails_the_job_as_the_error_deserves(
    project, alice, monkeypatch, transient, status, words
):
    from scheduler import launching
    from scheduler.executors.base import ExecutorError

    def refuse(job, placement):
        raise ExecutorError("API server unavailable", transient=transient)

    monkeypatch.setattr(launching, "launch_job", refuse)
    _node("mlu-a")
    job = _queued(project, alice)
    queued_at = job.queued_at
    assert admission.run_admission() == []
    job.refresh_from_db()
    assert job.status == status and job.status_reason == words
    if transient:
        assert job.queued_at == queued_at  # it keeps its place
        assert job.placement == [] and job.spec_in_use is None


@pytest.mark.parametrize("change", ["created", "priority", "duration", "stopped", "deleted"])
def test_every_change_that_can_move_the_queue_asks_for_an_admission_pass(
    project, alice, monkeypatch, change
):
    from finetune.signals import job_changed
    from scheduler import tasks

    asked = []
    monkeypatch.setattr(tasks.run_admission, "delay", lambda: asked.append(change))
    monkeypatch.setattr(tasks, "enqueue_stop", lambda job_id: None)
    job_changed.send(sender=Job, job_id=1, change=change)
    assert asked == [change]


def test_the_admission_task_launches_what_fits(project, alice, monkeypatch):
    from scheduler import launching, tasks

    launched = []
    monkeypatch.setattr(launching, "launch_job", lambda job, placement: launched.append(job.pk))
    _node("mlu-a")
    job = _queued(project, alice)
    tasks.run_admission()
    assert launched == [job.pk]


def test_a_job_admitted_while_its_page_is_drawn_has_no_forecast_rather_than_an_error(
    project, alice
):
    """Seen on the demo: the detail page read the job queued, admission started it before
    the planner's snapshot, and the page answered 500."""
    _node("mlu-a", devices=1)
    job = _queued(project, alice)
    stale = Job.objects.get(pk=job.pk)
    admission.admit()
    assert stale.status == JobStatus.QUEUED
    assert prediction.predict_job(stale) is None
