"""The webhooks' pages: for the project's administrators only; each change a POST."""

from __future__ import annotations

import base64

import pytest
from django.urls import reverse

from finetune.models import JobStatus
from finetune.states import transition
from tests import factories
from webhooks.models import Event, Webhook, WebhookDelivery

pytestmark = pytest.mark.django_db

# the pages a GET shows, by name, and whether they name a webhook
PAGES = {
    "webhook_list": False,
    "webhook_create": False,
    "webhook_detail": True,
    "webhook_edit": True,
    "webhook_rotate": True,
    "webhook_delete": True,
}


def _url(name: str, project, hook=None, *extra) -> str:
    args = [project.pk] + ([hook.pk] if hook is not None else []) + list(extra)
    return reverse(f"webhooks:{name}", args=args)


def _page(name: str, project, hook) -> str:
    return _url(name, project, hook if PAGES[name] else None)


@pytest.fixture
def hook(project, dora):
    return Webhook.objects.create(
        project=project,
        url="https://93.184.215.14/hook",
        events=[Event.JOB_SUCCEEDED],
        created_by=dora,
    )


@pytest.mark.parametrize(
    ("who", "expected"),
    [
        ("dora", 200),  # she administers the project
        ("admin", 200),  # the site's operator
        ("bob", 403),  # a member of it, not its administrator
        ("charlie", 404),  # someone outside it
    ],
)
@pytest.mark.parametrize("name", PAGES)
def test_the_pages_open_for_the_projects_administrators_only(
    client, request, project, hook, name, who, expected
):
    client.force_login(request.getfixturevalue(who))
    assert client.get(_page(name, project, hook)).status_code == expected


@pytest.mark.parametrize("name", PAGES)
def test_an_anonymous_visitor_is_sent_to_the_login(client, project, hook, name):
    response = client.get(_page(name, project, hook))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("accounts:login"))


def test_a_webhook_of_another_project_is_not_found_through_this_one(
    client, dora, project, other_project
):
    elsewhere = Webhook.objects.create(project=other_project, url="https://93.184.215.14/")
    client.force_login(dora)
    assert client.get(_url("webhook_detail", project, elsewhere)).status_code == 404
    assert client.post(_url("webhook_delete", project, elsewhere)).status_code == 404
    assert Webhook.objects.filter(pk=elsewhere.pk).exists()


def test_a_member_cannot_change_anything_by_posting(client, bob, project, hook):
    client.force_login(bob)
    for name in ("webhook_edit", "webhook_rotate", "webhook_delete", "webhook_test"):
        assert client.post(_url(name, project, hook)).status_code == 403
    assert Webhook.objects.get(pk=hook.pk).secret == hook.secret


def test_the_menu_links_to_the_webhooks_for_the_administrator_only(client, dora, bob, project):
    link = f'href="{_url("webhook_list", project)}"'
    client.force_login(dora)
    assert link in client.get(reverse("finetune:job_list")).content.decode()
    client.force_login(bob)
    assert link not in client.get(reverse("finetune:job_list")).content.decode()


def test_the_administrator_creates_a_webhook_and_sees_its_secret(client, dora, project):
    client.force_login(dora)
    response = client.post(
        _url("webhook_create", project),
        {
            "url": "https://93.184.215.14/hook",
            "description": "CI",
            "events": [Event.JOB_SUCCEEDED, Event.JOB_QUEUED],
            "enabled": "on",
        },
        follow=True,
    )
    hook = Webhook.objects.get()
    assert (hook.project, hook.created_by, hook.enabled) == (project, dora, True)
    assert hook.events == [Event.JOB_QUEUED, Event.JOB_SUCCEEDED]  # in the list's order
    assert hook.secret.startswith("whsec_")
    assert len(base64.b64decode(hook.secret.removeprefix("whsec_"))) >= 24
    page = response.content.decode()
    assert response.redirect_chain[-1][0] == _url("webhook_detail", project, hook)
    assert hook.secret in page and "Webhook created." in page


def test_a_webhook_needs_at_least_one_event(client, dora, project):
    client.force_login(dora)
    response = client.post(
        _url("webhook_create", project), {"url": "https://93.184.215.14/", "enabled": "on"}
    )
    assert response.status_code == 400 and "events" in response.context["form"].errors


def test_the_secret_is_not_on_the_list(client, dora, project, hook):
    client.force_login(dora)
    page = client.get(_url("webhook_list", project)).content.decode()
    assert hook.url in page and hook.secret not in page


def test_the_administrator_changes_and_turns_off_a_webhook(client, dora, project, hook):
    client.force_login(dora)
    response = client.post(
        _url("webhook_edit", project, hook),
        {"url": "https://93.184.215.15/other", "events": [Event.JOB_FAILED]},
    )
    assert response.status_code == 302
    hook.refresh_from_db()
    assert (hook.url, hook.events, hook.enabled) == (
        "https://93.184.215.15/other",
        [Event.JOB_FAILED],
        False,
    )


def test_rotating_the_secret_keeps_the_old_one_signing_for_a_while(client, dora, project, hook):
    client.force_login(dora)
    client.post(_url("webhook_rotate", project, hook))
    rotated = Webhook.objects.get(pk=hook.pk)
    assert rotated.secret != hook.secret and rotated.previous_secret == hook.secret
    assert rotated.previous_secret_until is not None


def test_deleting_asks_first_then_deletes(client, dora, project, hook):
    client.force_login(dora)
    asked = client.get(_url("webhook_delete", project, hook)).content.decode()
    assert "Confirm the deletion" in asked and Webhook.objects.exists()
    response = client.post(_url("webhook_delete", project, hook))
    assert response["Location"] == _url("webhook_list", project)
    assert not Webhook.objects.exists()


def test_the_test_button_sends_a_signed_test_event(client, dora, project, receiver, worker):
    hook = Webhook.objects.create(
        project=project, url=receiver.url, events=[Event.JOB_FAILED], created_by=dora
    )
    client.force_login(dora)
    assert client.get(_url("webhook_test", project, hook)).status_code == 405
    with worker():
        client.post(_url("webhook_test", project, hook))
    (request,) = receiver.received
    message = request.verified(hook.secret)
    assert message["type"] == "webhook.test"
    assert message["data"]["webhook"] == {
        "id": hook.pk,
        "project": {"id": project.pk, "name": "demo"},
    }


def test_resend_from_the_page_sends_the_same_message_again(
    client, dora, project, alice, hook, receiver, worker
):
    Webhook.objects.filter(pk=hook.pk).update(url=receiver.url, events=[Event.JOB_STARTED])
    job = factories.job(project, alice)
    with worker():
        transition(job, JobStatus.RUNNING)
    delivery = WebhookDelivery.objects.get()
    client.force_login(dora)
    detail = _url("webhook_detail", project, hook)
    with worker():
        response = client.post(
            _url("delivery_resend", project, hook, delivery.pk), {"next": detail}
        )
    assert response["Location"] == detail
    first, again = receiver.received
    assert first.headers["webhook-id"] == again.headers["webhook-id"] == delivery.message_id
    assert first.body == again.body and again.verified(hook.secret)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (WebhookDelivery.Status.SUCCEEDED, 2)


def test_resend_goes_back_only_to_a_page_of_ours(client, dora, project, hook):
    delivery = WebhookDelivery.objects.create(
        webhook=hook, event_type=Event.JOB_SUCCEEDED, event_key="k", payload={}
    )
    client.force_login(dora)
    response = client.post(
        _url("delivery_resend", project, hook, delivery.pk), {"next": "https://evil.example/"}
    )
    assert response["Location"] == _url("webhook_detail", project, hook)


def test_the_deliveries_are_listed_newest_first_a_page_at_a_time(client, dora, project, hook):
    for number in range(30):
        WebhookDelivery.objects.create(
            webhook=hook,
            event_type=Event.JOB_SUCCEEDED,
            event_key=f"job:{number}",
            payload={},
            status=WebhookDelivery.Status.FAILED,
            attempts=8,
            response_status=500,
            error=f"failure {number}",
        )
    client.force_login(dora)
    response = client.get(_url("webhook_detail", project, hook))
    shown = response.context["deliveries"]
    assert len(shown) == 25 and shown[0].event_key == "job:29"
    page = response.content.decode()
    assert "failure 29" in page and "Page 1 of 2" in page
    second = client.get(_url("webhook_detail", project, hook), {"page": 2}, HTTP_HX_REQUEST="true")
    oldest = [f"job:{number}" for number in (4, 3, 2, 1, 0)]
    assert [d.event_key for d in second.context["deliveries"]] == oldest
    assert "<html" not in second.content.decode()  # htmx gets the table alone


def test_the_list_shows_each_webhooks_last_delivery(client, dora, project, hook):
    WebhookDelivery.objects.create(
        webhook=hook, event_type=Event.JOB_QUEUED, event_key="a", payload={}
    )
    WebhookDelivery.objects.create(
        webhook=hook,
        event_type=Event.JOB_SUCCEEDED,
        event_key="b",
        payload={},
        status=WebhookDelivery.Status.FAILED,
    )
    client.force_login(dora)
    page = client.get(_url("webhook_list", project)).content.decode()
    assert 'data-testid="last-status">Failed<' in page and "A job succeeds" in page
