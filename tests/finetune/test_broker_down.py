"""A broker that is down never turns a committed action into an error page (issue 12,
item 3): the change stays, the user is answered, and the periodic passes catch up."""

from __future__ import annotations

import socket

import pytest
from django.urls import reverse

from accounts.models import Access
from config.celery import app
from finetune.models import Job, JobStatus
from tests import factories
from tests.finetune import pages_support as support

pytestmark = pytest.mark.django_db


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def broker_down():
    """The Celery app pointed at a port where nothing listens."""
    saved = app.conf.broker_url, app.conf.broker_transport_options

    def reconnect(url, options):
        app.conf.broker_url = url
        app.conf.broker_transport_options = options
        app._pool = None
        app.amqp._producer_pool = None

    reconnect(f"redis://127.0.0.1:{_closed_port()}/0", {"max_retries": 0})
    yield
    reconnect(*saved)


def test_creating_a_job_with_the_broker_down_still_queues_it(
    client, alice, ready, broker_down, django_capture_on_commit_callbacks
):
    client.force_login(alice)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("finetune:job_create"), support.job_post(*ready))
    assert response.status_code == 302
    assert Job.objects.get().status == JobStatus.QUEUED


def test_stopping_a_job_with_the_broker_down_answers_and_stops_it(
    client, project, alice, broker_down, django_capture_on_commit_callbacks
):
    job = factories.job(project, alice, level=Access.NONE)
    client.force_login(alice)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("finetune:job_stop", args=[job.pk]))
    assert response.status_code == 302
    job.refresh_from_db()
    assert job.status == JobStatus.STOPPED


@pytest.fixture
def cache_down(settings):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{_closed_port()}/0",
        }
    }


def test_the_list_answers_with_the_cache_down(client, project, alice, cache_down):
    factories.job(project, alice, name="waiting")
    client.force_login(alice)
    response = client.get(reverse("finetune:job_list"))
    assert response.status_code == 200
    assert "waiting" in response.content.decode()


def test_reports_are_stored_with_the_cache_down(client, running, cache_down):
    import json
    import time

    from tests.finetune.conftest import REPORT_TOKEN

    body = {"job_id": running.pk, "worker": "node-0", "seq": 1}
    body["metrics"] = [{"step": 1, "loss": 2.0, "time": time.time()}]
    response = client.post(
        reverse("job_report", args=[running.pk]),
        json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {REPORT_TOKEN}",
    )
    assert response.status_code == 200
    assert running.metric_points.count() == 1
