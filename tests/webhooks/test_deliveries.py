"""What a receiver gets: each event once, signed, retried until it takes it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from finetune.models import Job, JobStatus
from finetune.services.versions import add_version
from finetune.signals import Change, job_changed, job_status_changed
from finetune.states import transition
from finetune.storage import job_output, resolve
from scheduler.settling import succeed
from tests import factories
from webhooks import services
from webhooks.models import Event, Webhook, WebhookDelivery

pytestmark = pytest.mark.django_db
Status = WebhookDelivery.Status


def _publish_model(job: Job) -> None:
    """The trained model where the workers leave it, as the trainer writes it."""
    folder = resolve(job_output(job.model_repo.location, job.pk))
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text('{"metrics": {"final_loss": 0.5}}')


def test_a_job_that_runs_and_succeeds_tells_each_event_once_signed(hook, receiver, worker, new_job):
    with worker():
        job = new_job()
    with worker():
        transition(job, JobStatus.RUNNING)
    _publish_model(job)
    with worker():
        assert succeed(job, {}) == JobStatus.SUCCEEDED

    assert receiver.types() == [
        "job.queued",
        "job.started",
        "model_version.created",
        "job.succeeded",
    ]
    messages = [request.verified(hook.secret) for request in receiver.received]
    assert len({request.headers["webhook-id"] for request in receiver.received}) == 4
    assert all(r.headers["user-agent"] == "Jingtiao-Webhooks/1" for r in receiver.received)
    done = messages[3]["data"]["job"]
    assert done["id"] == job.pk and done["status"] == "succeeded"
    assert done["creator"] == "alice" and done["project"]["name"] == "demo"
    assert done["url"].endswith(f"/jobs/{job.pk}/")
    assert done["model_version"]["number"] == 1
    version = messages[2]["data"]["model_version"]
    assert version["job"]["id"] == job.pk and version["repo"]["id"] == job.model_repo_id
    assert "location" not in version and "report_token_hash" not in done
    assert set(WebhookDelivery.objects.values_list("status", "attempts")) == {(Status.SUCCEEDED, 1)}


def test_a_receiver_that_fails_first_gets_the_message_again_with_the_same_id(
    hook, receiver, worker, project, alice
):
    receiver.answers = [500]
    job = factories.job(project, alice)
    with worker():
        transition(job, JobStatus.RUNNING)

    first, second = receiver.received
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert first.body == second.body
    assert second.verified(hook.secret)["type"] == "job.started"
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.response_status) == (
        Status.SUCCEEDED,
        2,
        200,
    )
    assert delivery.response_excerpt == "thanks, got!" and delivery.error == ""


def test_a_retry_waits_its_turn_and_comes_when_it_is_due(
    hook, receiver, worker, project, alice, settings, monkeypatch
):
    settings.JINGTIAO_WEBHOOK_RETRY_BASE_SECONDS = 5
    receiver.answers = [503]
    job = factories.job(project, alice)
    with worker(carry_out=False):
        transition(job, JobStatus.RUNNING)
    delivery = WebhookDelivery.objects.get()
    services.attempt(delivery.pk)  # the first attempt, by its message
    delivery.refresh_from_db()
    assert delivery.status == Status.PENDING and delivery.attempts == 1
    assert "503" in delivery.error
    wait = (delivery.next_attempt_at - delivery.last_attempt_at).total_seconds()
    assert 4 <= wait <= 6  # five seconds, give or take a fifth

    services.attempt(delivery.pk)  # a message that came early does nothing
    assert len(receiver.received) == 1

    later = delivery.next_attempt_at + timedelta(seconds=1)
    monkeypatch.setattr(timezone, "now", lambda: later)
    services.attempt(delivery.pk)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (Status.SUCCEEDED, 2)
    assert len(receiver.received) == 2


def test_the_last_attempt_that_fails_gives_the_message_up(
    hook, receiver, worker, project, alice, settings
):
    settings.JINGTIAO_WEBHOOK_MAX_ATTEMPTS = 3
    receiver.answers = [500, 500, 500, 500]
    job = factories.job(project, alice)
    with worker():
        transition(job, JobStatus.RUNNING)
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.next_attempt_at) == (
        Status.FAILED,
        3,
        None,
    )
    assert len(receiver.received) == 3


def test_the_same_event_announced_twice_is_delivered_once(hook, receiver, worker, project, alice):
    job = factories.job(project, alice)
    with worker():
        transition(job, JobStatus.RUNNING)
        event = job.events.get(to_status=JobStatus.RUNNING)
        for _twice in range(2):
            job_status_changed.send(
                sender=Job, job_id=job.pk, from_status="queued", to_status="running",
                event_id=event.pk,
            )  # fmt: skip
            job_changed.send(sender=Job, job_id=job.pk, change=Change.CREATED)
    assert sorted(receiver.types()) == ["job.queued", "job.started"]
    assert WebhookDelivery.objects.count() == 2


def test_a_job_given_back_and_started_again_announces_both_starts(
    hook, receiver, worker, project, alice
):
    job = factories.job(project, alice)
    with worker():
        transition(job, JobStatus.RUNNING)
        transition(job, JobStatus.QUEUED)  # the cluster gave it back
        transition(job, JobStatus.RUNNING)
    assert receiver.types() == ["job.started", "job.queued", "job.started"]
    first, _queued, second = receiver.received
    assert first.headers["webhook-id"] != second.headers["webhook-id"]


@pytest.mark.parametrize(
    ("status", "event"),
    [
        (JobStatus.FAILED, "job.failed"),
        (JobStatus.STOPPED, "job.stopped"),
        (JobStatus.EXPIRED, "job.expired"),
    ],
)
def test_each_way_a_running_job_ends_is_its_own_event(
    hook, receiver, worker, project, alice, status, event
):
    job = factories.job(project, alice)
    with worker():
        transition(job, JobStatus.RUNNING)
        transition(job, status, reason="because")
    assert receiver.types() == ["job.started", event]
    ended = receiver.received[1].verified(hook.secret)["data"]["job"]
    assert ended["status"] == status and ended["status_reason"] == "because"
    assert ended["finished_at"] is not None


def test_a_move_rolled_back_announces_nothing(hook, receiver, worker, project, alice):
    job = factories.job(project, alice)
    with worker(), pytest.raises(RuntimeError), transaction.atomic():
        transition(job, JobStatus.RUNNING)
        raise RuntimeError("the caller's transaction fails")
    assert receiver.received == [] and not WebhookDelivery.objects.exists()


def test_a_webhook_turned_off_or_not_subscribed_is_told_nothing(
    hook, receiver, worker, project, alice, dora
):
    Webhook.objects.create(
        project=project, url=receiver.url, events=[Event.JOB_SUCCEEDED], created_by=dora
    )
    Webhook.objects.create(
        project=project,
        url=receiver.url,
        events=[Event.JOB_STARTED],
        enabled=False,
        created_by=dora,
    )
    job = factories.job(project, alice)
    with worker():
        transition(job, JobStatus.RUNNING)
    assert [delivery.webhook for delivery in WebhookDelivery.objects.all()] == [hook]


def test_a_job_of_another_project_is_not_told_to_this_one(
    hook, receiver, worker, other_project, charlie
):
    job = factories.job(other_project, charlie)
    with worker():
        transition(job, JobStatus.RUNNING)
    assert receiver.received == []


def test_a_model_version_added_is_delivered(hook, receiver, worker, project, alice):
    repo = factories.model_repo(project, alice, name="客服助手")
    with worker(), transaction.atomic():
        version = add_version(repo.pk, f"{repo.location}/merged", {})
    (request,) = receiver.received
    message = request.verified(hook.secret)
    assert message["type"] == "model_version.created"
    data = message["data"]["model_version"]
    assert (data["id"], data["number"], data["job"]) == (version.pk, 1, None)
    assert data["repo"] == {"id": repo.pk, "name": "客服助手"}
    assert data["url"].endswith(f"/repos/{repo.pk}/versions/1/")


def test_a_webhook_turned_off_after_the_event_sends_nothing(hook, receiver, worker, project, alice):
    job = factories.job(project, alice)
    with worker(carry_out=False):
        transition(job, JobStatus.RUNNING)
    Webhook.objects.filter(pk=hook.pk).update(enabled=False)
    services.attempt(WebhookDelivery.objects.get().pk)
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == Status.FAILED and "turned off" in delivery.error
    assert receiver.received == []


def test_a_redirect_is_not_followed(hook, receiver, worker, project, alice, settings):
    settings.JINGTIAO_WEBHOOK_MAX_ATTEMPTS = 1
    receiver.answers = [302]
    job = factories.job(project, alice)
    with worker():
        transition(job, JobStatus.RUNNING)
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == Status.FAILED and delivery.response_status == 302
    assert "not followed" in delivery.error
    assert len(receiver.received) == 1


def test_a_receiver_that_is_down_is_retried(hook, receiver, worker, project, alice, settings):
    settings.JINGTIAO_WEBHOOK_RETRY_BASE_SECONDS = 5
    receiver.server.shutdown()
    receiver.server.server_close()  # nothing listens there now
    job = factories.job(project, alice)
    with worker():
        transition(job, JobStatus.RUNNING)
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == Status.PENDING and delivery.attempts == 1
    assert "refused the connection" in delivery.error
    assert worker.queued[-1].countdown == pytest.approx(5, rel=0.21)


def test_a_rotated_secret_still_signs_beside_the_new_one_for_a_day(
    hook, receiver, worker, project, alice
):
    old = hook.secret
    services.rotate_secret(hook)
    job = factories.job(project, alice)
    with worker():
        transition(job, JobStatus.RUNNING)
    (request,) = receiver.received
    assert request.verified(hook.secret) and request.verified(old)
    assert len(request.headers["webhook-signature"].split(" ")) == 2

    Webhook.objects.filter(pk=hook.pk).update(
        previous_secret_until=timezone.now() - timedelta(seconds=1)
    )
    with worker():
        transition(job, JobStatus.SUCCEEDED)
    assert len(receiver.received[1].headers["webhook-signature"].split(" ")) == 1


def test_the_sweep_takes_up_lost_messages_and_attempts_a_dead_worker_left(
    hook, receiver, worker, project, alice
):
    job = factories.job(project, alice)
    with worker(carry_out=False):
        transition(job, JobStatus.RUNNING)  # its message is lost: nobody carries it out
        transition(job, JobStatus.SUCCEEDED)
    lost, stuck = WebhookDelivery.objects.order_by("pk")
    long_ago = timezone.now() - timedelta(hours=1)
    WebhookDelivery.objects.filter(pk=lost.pk).update(next_attempt_at=long_ago)
    WebhookDelivery.objects.filter(pk=stuck.pk).update(
        status=Status.DELIVERING, attempts=1, next_attempt_at=long_ago
    )
    worker.pending.clear()

    with worker():
        assert sorted(services.sweep()) == [lost.pk, stuck.pk]
    assert receiver.types() == ["job.started", "job.succeeded"]
    assert set(WebhookDelivery.objects.values_list("status", "attempts")) == {
        (Status.SUCCEEDED, 1),
        (Status.SUCCEEDED, 2),
    }


def test_the_sweep_leaves_alone_what_is_not_due(hook, receiver, worker, project, alice):
    job = factories.job(project, alice)
    with worker(carry_out=False):
        transition(job, JobStatus.RUNNING)  # due now: its message is on its way
    assert services.sweep() == []


def test_two_workers_with_the_same_message_send_it_once(
    hook, receiver, worker, project, alice, monkeypatch
):
    job = factories.job(project, alice)
    with worker(carry_out=False):
        transition(job, JobStatus.RUNNING)
    delivery = WebhookDelivery.objects.get()
    real_send = services._send

    def send_while_another_worker_tries(found, now):
        services.attempt(delivery.pk)  # the other worker, given the same message
        return real_send(found, now)

    monkeypatch.setattr(services, "_send", send_while_another_worker_tries)
    services.attempt(delivery.pk)
    assert len(receiver.received) == 1
    assert WebhookDelivery.objects.get().attempts == 1


def test_the_retry_schedule_follows_standard_webhooks_scaled_to_its_first_wait(settings):
    settings.JINGTIAO_WEBHOOK_RETRY_BASE_SECONDS = 5
    waits = [services.retry_delay(attempt) for attempt in range(1, 10)]
    expected = [5, 300, 1800, 7200, 18000, 36000, 36000, 36000, 36000]
    for wait, nominal in zip(waits, expected, strict=True):
        assert nominal * 0.8 <= wait <= nominal * 1.2
    settings.JINGTIAO_WEBHOOK_RETRY_BASE_SECONDS = 10
    assert 8 <= services.retry_delay(1) <= 12 and 480 <= services.retry_delay(2) <= 720
