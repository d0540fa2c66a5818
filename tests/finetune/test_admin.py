"""Every admin page an operator uses renders, and job actions go through the state machine."""

import pytest
from django.contrib import admin as django_admin
from django.urls import reverse

from finetune.models import Job, JobEvent, JobStatus
from tests import factories

pytestmark = pytest.mark.django_db

REGISTERED = sorted(django_admin.site._registry, key=lambda model: model._meta.label)


@pytest.fixture
def populated(project, alice, bob):
    """At least one row in every registered table."""
    from scheduler.models import Node, ResourcePool

    job = factories.job(project, alice)
    JobEvent.objects.create(job=job, kind=JobEvent.Kind.NOTE, message="hello")
    pool = ResourcePool.objects.create(name="pool-a", dedicated=True, taint="pool=a:NoSchedule")
    pool.projects.add(project)
    Node.objects.create(name="node-1", pool=pool, device_type="mlu", device_count=8)
    from django.utils import timezone

    from scheduler.models import KueueQueue

    flavor = {"name": "mlu", "node_labels": {"Model": "X"}, "quotas": {"cambricon.com/mlu": "8"}}
    KueueQueue.objects.create(
        name="cq-a", local_queues=["jingtiao"], flavors=[flavor], synced_at=timezone.now()
    )
    from finetune.models import ModelVersion

    ModelVersion.objects.create(repo=job.model_repo, number=1, location="v1", job=job)
    from django.utils import timezone

    from finetune.models import MetricPoint, ReportBatch, ResourceSample

    ReportBatch.objects.create(job=job, worker="w0", seq=1)
    MetricPoint.objects.create(job=job, worker="w0", time=timezone.now(), step=1, loss=2.0)
    ResourceSample.objects.create(job=job, worker="w0", time=timezone.now(), cpu_percent=5)
    from axes.models import AccessAttempt, AccessFailureLog, AccessLog

    seen = {"username": "bob", "ip_address": "127.0.0.1", "user_agent": "t", "path_info": "/"}
    AccessAttempt.objects.create(**seen, failures_since_start=1, get_data="", post_data="")
    AccessLog.objects.create(**seen)
    AccessFailureLog.objects.create(**seen)
    from django.contrib.auth.models import Group

    Group.objects.create(name="operators")  # a group of staff an operator keeps
    from accounts import tokens
    from finetune.models import ProjectDefaults
    from webhooks.models import Webhook, WebhookDelivery

    tokens.issue(alice, name="ci", projects=[project])
    ProjectDefaults.objects.create(project=project).model_repos.add(job.model_repo)
    hook = Webhook.objects.create(
        project=project, url="https://hooks.example.com/in", events=["job.succeeded"]
    )
    WebhookDelivery.objects.create(
        webhook=hook, event_type="job.succeeded", event_key="job:1:move:1", payload={"type": "x"}
    )
    return job


@pytest.mark.parametrize("model", REGISTERED, ids=lambda model: model._meta.label)
def test_every_changelist_and_change_form_renders(client, admin, populated, model):
    client.force_login(admin)
    opts = model._meta
    changelist = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
    response = client.get(changelist)
    assert response.status_code == 200
    # list filters and search
    assert client.get(changelist, {"q": "a"}).status_code == 200
    obj = model.objects.first()
    assert obj is not None, f"the fixture made no {opts.label}"
    change = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
    assert client.get(change).status_code == 200
    model_admin = django_admin.site._registry[model]
    if model_admin.has_add_permission(_request(admin)):
        add = reverse(f"admin:{opts.app_label}_{opts.model_name}_add")
        assert client.get(add).status_code == 200


def _request(user):
    from django.test import RequestFactory

    request = RequestFactory().get("/")
    request.user = user
    return request


def test_job_status_is_read_only_in_the_change_form(client, admin, populated):
    client.force_login(admin)
    url = reverse("admin:finetune_job_change", args=[populated.pk])
    form = client.get(url).context["adminform"].form
    assert "status" not in form.fields


def _run_action(client, action: str, jobs) -> None:
    response = client.post(
        reverse("admin:finetune_job_changelist"),
        {"action": action, "_selected_action": [job.pk for job in jobs]},
        follow=True,
    )
    assert response.status_code == 200
    return response


def test_operators_stop_jobs_through_the_state_machine(client, admin, project, alice):
    queued = factories.job(project, alice)
    running = factories.job(project, alice, status=JobStatus.RUNNING)
    done = factories.job(project, alice, status=JobStatus.SUCCEEDED)
    client.force_login(admin)
    response = _run_action(client, "stop_jobs", [queued, running, done])
    statuses = dict(Job.objects.values_list("pk", "status"))
    assert statuses == {queued.pk: "stopped", running.pk: "stopped", done.pk: "succeeded"}
    event = JobEvent.objects.get(job=running, kind=JobEvent.Kind.STATUS)
    assert event.actor == admin and event.message == "stopped by an operator"
    messages = [str(m) for m in response.context["messages"]]
    assert any("2 job(s) are now Stopped" in m for m in messages)
    assert any("cannot become Stopped" in m for m in messages)


def test_operators_requeue_running_jobs(
    client, admin, project, alice, django_capture_on_commit_callbacks, monkeypatch
):
    from scheduler import tasks

    sent = []
    monkeypatch.setattr(tasks.requeue_workload, "delay", lambda job_id: sent.append(job_id))
    running = factories.job(project, alice, status=JobStatus.RUNNING)
    client.force_login(admin)
    with django_capture_on_commit_callbacks(execute=True):
        response = _run_action(client, "requeue_jobs", [running])
    messages = [str(m) for m in response.context["messages"]]
    assert any(
        "go back to the queue as soon as their workloads are torn down" in m for m in messages
    )
    # the request only asks: the teardown is a task's, so the page answers at once
    running.refresh_from_db()
    assert running.status == JobStatus.RUNNING and running.requeue_requested_at is not None
    assert sent == [running.pk]
    note = JobEvent.objects.get(job=running, kind=JobEvent.Kind.NOTE)
    assert note.actor == admin

    tasks.requeue_workload(running.pk)

    running.refresh_from_db()
    assert running.status == JobStatus.QUEUED
    assert running.started_at is None and running.requeue_requested_at is None
    assert running.status_reason == "requeued by an operator"


def test_turning_sharing_off_in_the_admin_takes_back_the_grants(client, admin, project, alice, bob):
    from accounts.models import Access
    from finetune import access

    job = factories.job(project, alice, level=Access.READ_WRITE)
    client.force_login(admin)
    response = client.post(
        reverse("admin:accounts_project_changelist"),
        {"action": "turn_sharing_off", "_selected_action": [project.pk]},
        follow=True,
    )
    assert response.status_code == 200
    job.refresh_from_db()
    assert job.access == Access.NONE
    assert not access.can(bob, "view", job)


def test_sharing_turned_off_and_on_again_gives_back_the_levels_chosen(
    client, admin, project, alice, bob
):
    """Issue 19, item 6: F9.3 restricts while sharing is off; it does not erase."""
    from accounts.models import Access
    from finetune import access

    data = factories.dataset(project, alice, Access.READ_WRITE)
    repo = factories.model_repo(project, alice, Access.READ_ONLY)
    job = factories.job(project, alice, Access.READ_ONLY, train_dataset=data, model_repo=repo)
    private = factories.dataset(project, alice, Access.NONE)
    client.force_login(admin)
    changelist = reverse("admin:accounts_project_changelist")
    client.post(changelist, {"action": "turn_sharing_off", "_selected_action": [project.pk]})
    for obj in (data, repo, job):
        obj.refresh_from_db()
        assert obj.access == Access.NONE and not access.can(bob, "view", obj)

    response = client.post(
        changelist, {"action": "turn_sharing_on", "_selected_action": [project.pk]}, follow=True
    )

    messages = [str(m) for m in response.context["messages"]]
    assert "Sharing is on; 3 objects are shared again." in messages
    for obj in (data, repo, job, private):
        obj.refresh_from_db()
    assert (data.access, repo.access, job.access, private.access) == (
        Access.READ_WRITE,
        Access.READ_ONLY,
        Access.READ_ONLY,
        Access.NONE,
    )
    assert access.can(bob, "change", data) and access.can(bob, "view", job)
    assert not access.can(bob, "stop", job) and not access.can(bob, "view", private)


def test_a_job_shared_again_is_no_more_open_than_its_data_is_now(project, alice, bob):
    """A data set made private while sharing was on caps its job when sharing returns."""
    from accounts.models import Access
    from finetune import access

    data = factories.dataset(project, alice, Access.READ_WRITE)
    job = factories.job(project, alice, Access.READ_WRITE, train_dataset=data)
    access.turn_sharing_off(project)
    access.turn_sharing_on(project)
    access.set_access(data, Access.READ_ONLY)  # chosen while sharing is on
    access.turn_sharing_off(project)
    access.turn_sharing_on(project)
    job.refresh_from_db()
    assert job.access == Access.READ_ONLY and job.chosen_access == Access.READ_WRITE


def test_members_who_are_not_staff_cannot_open_the_admin(client, alice):
    client.force_login(alice)
    response = client.get(reverse("admin:index"))
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def _edit(client, job, **changes):
    """The job's change form posted as the admin shows it, with `changes`."""
    url = reverse("admin:finetune_job_change", args=[job.pk])
    data = _form_data(client.get(url))
    data.update(changes)
    return client.post(url, data, follow=True)


def _form_data(page) -> dict:
    """What the browser would post back from an admin change page, untouched."""
    data = {}
    for name, field in page.context["adminform"].form.fields.items():
        value = page.context["adminform"].form[name].value()
        if value is not None:
            data[name] = field.prepare_value(value) if hasattr(field, "prepare_value") else value
    for formset in page.context["inline_admin_formsets"]:
        management = formset.formset.management_form
        for name in management.fields:
            data[f"{formset.formset.prefix}-{name}"] = management[name].value() or 0
        for number, form in enumerate(formset.formset.forms):
            for name in form.fields:
                value = form[name].value()
                if value is not None:
                    data[f"{formset.formset.prefix}-{number}-{name}"] = value
    return data


def test_operators_change_priority_and_duration_through_the_services(client, admin, project, alice):
    from datetime import timedelta

    job = factories.job(project, alice, duration=timedelta(hours=2))
    client.force_login(admin)
    response = _edit(client, job, priority="40", duration="06:00:00")
    assert response.status_code == 200
    job.refresh_from_db()
    assert job.priority == 40 and job.duration == timedelta(hours=6)
    kinds = set(job.events.values_list("kind", flat=True))
    assert {JobEvent.Kind.PRIORITY, JobEvent.Kind.DURATION} <= kinds
    event = job.events.get(kind=JobEvent.Kind.PRIORITY)
    assert event.actor == admin and event.data == {"from": 20, "to": 40}


def test_a_finished_jobs_priority_is_refused_in_the_admin_with_a_message(
    client, admin, project, alice
):
    job = factories.job(project, alice, status=JobStatus.SUCCEEDED)
    client.force_login(admin)
    response = _edit(client, job, priority="40")
    job.refresh_from_db()
    assert job.priority != 40
    messages = [str(m) for m in response.context["messages"]]
    assert any("priority can be changed" in m for m in messages)


def test_operator_actions_announce_the_change(
    client, admin, project, alice, django_capture_on_commit_callbacks
):
    from finetune.signals import job_changed

    seen = []

    def listen(sender, job_id, change, **kwargs):
        seen.append((job_id, change))

    job_changed.connect(listen)
    try:
        stopped = factories.job(project, alice, status=JobStatus.RUNNING)
        client.force_login(admin)
        with django_capture_on_commit_callbacks(execute=True):
            _run_action(client, "stop_jobs", [stopped])
    finally:
        job_changed.disconnect(listen)
    assert (stopped.pk, "stopped") in seen
