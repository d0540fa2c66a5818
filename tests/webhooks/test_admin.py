"""The operators' admin: webhooks and deliveries listed, deliveries resent."""

from __future__ import annotations

import pytest
from django.urls import reverse

from webhooks.models import Event, Webhook, WebhookDelivery

pytestmark = pytest.mark.django_db


@pytest.fixture
def delivery(project, dora):
    hook = Webhook.objects.create(
        project=project, url="https://93.184.215.14/hook", events=[Event.JOB_FAILED]
    )
    return WebhookDelivery.objects.create(
        webhook=hook,
        event_type=Event.JOB_FAILED,
        event_key="job:1:move:1",
        payload={"type": "job.failed"},
        status=WebhookDelivery.Status.FAILED,
        attempts=8,
    )


def test_the_admin_lists_webhooks_without_their_secrets(client, admin, delivery):
    client.force_login(admin)
    hook = delivery.webhook
    listed = client.get(reverse("admin:webhooks_webhook_changelist")).content.decode()
    assert hook.url in listed
    changed = client.get(reverse("admin:webhooks_webhook_change", args=[hook.pk]))
    assert changed.status_code == 200 and hook.secret not in changed.content.decode()
    deliveries = client.get(reverse("admin:webhooks_webhookdelivery_changelist"))
    assert deliveries.status_code == 200 and "job.failed" in deliveries.content.decode()
    shown = client.get(reverse("admin:webhooks_webhookdelivery_change", args=[delivery.pk]))
    assert shown.status_code == 200 and delivery.message_id in shown.content.decode()


def test_the_admin_refuses_an_address_inside(client, admin, project, settings):
    settings.JINGTIAO_WEBHOOK_ALLOW_PRIVATE = False
    client.force_login(admin)
    response = client.post(
        reverse("admin:webhooks_webhook_add"),
        {"project": project.pk, "url": "http://169.254.169.254/", "events": [Event.JOB_FAILED]},
    )
    assert response.status_code == 200 and "private network" in response.content.decode()
    assert not Webhook.objects.exists()


def test_the_admin_resends_the_selected_deliveries(
    client, admin, delivery, django_capture_on_commit_callbacks, monkeypatch
):
    from webhooks import services

    queued = []
    monkeypatch.setattr(services, "enqueue", lambda task, delivery_id: queued.append(delivery_id))
    client.force_login(admin)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("admin:webhooks_webhookdelivery_changelist"),
            {"action": "resend_deliveries", "_selected_action": [delivery.pk]},
            follow=True,
        )
    assert "sent again" in response.content.decode()
    delivery.refresh_from_db()
    assert delivery.status == WebhookDelivery.Status.PENDING and queued == [delivery.pk]
