"""No webhook reaches into the platform's own network, on save or at delivery (SSRF)."""

from __future__ import annotations

import socket

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from finetune.models import JobStatus
from finetune.states import transition
from tests import factories
from webhooks import addresses, services
from webhooks.addresses import check_url
from webhooks.models import Event, Webhook, WebhookDelivery

pytestmark = pytest.mark.django_db

INSIDE = [
    "http://127.0.0.1/hook",
    "http://10.0.0.1/hook",
    "http://169.254.169.254/latest/meta-data/",  # a cloud's metadata service
    "http://[::1]:8000/hook",
    "http://localhost:8000/hook",  # a name that resolves to 127.0.0.1
    "https://[::ffff:192.168.1.1]/hook",
    "http://100.64.0.1/hook",
    "http://[2002:7f00:1::]/hook",  # 6to4 around 127.0.0.1
    "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/hook",  # Teredo
    "http://[fec0::1]/hook",  # site-local
]


@pytest.fixture
def private_refused(settings):
    settings.JINGTIAO_WEBHOOK_ALLOW_PRIVATE = False
    return settings


@pytest.mark.parametrize("url", INSIDE)
def test_an_address_inside_is_refused_on_save(client, dora, project, private_refused, url):
    client.force_login(dora)
    response = client.post(
        reverse("webhooks:webhook_create", args=[project.pk]),
        {"url": url, "events": [Event.JOB_SUCCEEDED], "enabled": "on"},
    )
    assert response.status_code == 400
    errors = response.context["form"].errors["url"]
    assert any("private network" in error for error in errors), errors
    assert not Webhook.objects.exists()


@pytest.mark.parametrize("url", INSIDE)
def test_an_address_inside_is_refused_at_delivery(
    project, alice, dora, private_refused, worker, url
):
    private_refused.JINGTIAO_WEBHOOK_MAX_ATTEMPTS = 1
    # saved while the operator allowed private addresses, say, and refused since
    Webhook.objects.create(project=project, url=url, events=[Event.JOB_STARTED], created_by=dora)
    job = factories.job(project, alice)
    with worker():
        transition(job, JobStatus.RUNNING)
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == WebhookDelivery.Status.FAILED
    assert "private network" in delivery.error and delivery.response_status is None


def test_a_receiver_on_this_machine_is_sent_nothing_when_private_addresses_are_refused(
    hook, receiver, worker, project, alice, settings
):
    settings.JINGTIAO_WEBHOOK_ALLOW_PRIVATE = False
    settings.JINGTIAO_WEBHOOK_RETRY_BASE_SECONDS = 5
    job = factories.job(project, alice)
    with worker():
        transition(job, JobStatus.RUNNING)
    assert receiver.received == []
    assert WebhookDelivery.objects.get().status == WebhookDelivery.Status.PENDING  # retried


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("ftp://93.184.215.14/hook", "Only http:// and https://"),
        ("file:///etc/passwd", "Only http:// and https://"),
        ("https://user:secret@93.184.215.14/hook", "no user name or password"),
        ("https://no-such-host.invalid/hook", "could not be found"),
    ],
)
def test_other_addresses_are_refused_with_the_reason(private_refused, url, says):
    with pytest.raises(ValidationError) as refused:
        check_url(url)
    assert says in " ".join(refused.value.messages)


def test_a_public_address_is_accepted_and_connected_to_as_checked(private_refused):
    target = check_url("https://93.184.215.14:8443/hook?project=demo")
    assert (target.scheme, target.host, target.port) == ("https", "93.184.215.14", 8443)
    assert target.path == "/hook?project=demo" and target.addresses == ("93.184.215.14",)


def test_a_name_is_refused_if_any_of_its_addresses_is_inside(private_refused, monkeypatch):
    def resolver(host, port, *args, **kwargs):
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.1.2.3", port)),
        ]

    monkeypatch.setattr(addresses.socket, "getaddrinfo", resolver)
    with pytest.raises(ValidationError) as refused:
        check_url("https://hooks.example.com/hook")
    assert "10.1.2.3" in " ".join(refused.value.messages)


def test_the_attempt_connects_to_the_address_checked_and_names_the_host(
    hook, receiver, worker, project, alice, monkeypatch
):
    """The name is resolved once per attempt, checked, and the connection goes to that
    address: the Host header still names the host (a rebinding resolver gets no second
    look)."""
    looked_up = []

    def resolver(host, port, *args, **kwargs):
        looked_up.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    monkeypatch.setattr(addresses.socket, "getaddrinfo", resolver)
    Webhook.objects.filter(pk=hook.pk).update(url=f"http://hooks.example.com:{receiver.port}/in")
    job = factories.job(project, alice)
    with worker():
        transition(job, JobStatus.RUNNING)
    (request,) = receiver.received
    assert request.headers["host"] == f"hooks.example.com:{receiver.port}"
    assert request.path == "/in" and looked_up.count("hooks.example.com") == 1
    assert services.WebhookDelivery.objects.get().status == WebhookDelivery.Status.SUCCEEDED
