"""/healthz (readiness: database, cache, broker, beat) and /livez (liveness)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from config import health
from scheduler.models import Heartbeat
from scheduler.tasks import heartbeat

pytestmark = pytest.mark.django_db


def test_the_health_probe_reaches_the_database_the_cache_the_broker_and_beat(client, settings):
    assert settings.CELERY_BROKER_URL.startswith("redis://"), "tests run against Redis"
    heartbeat()
    response = client.get(reverse("healthz"))
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "cache": "ok", "broker": "ok", "beat": "ok"},
    }


def test_the_health_probe_reports_a_broker_that_is_down(client, monkeypatch):
    def broken():
        raise ConnectionError("connection refused")

    heartbeat()
    monkeypatch.setitem(health.CHECKS, "broker", broken)
    response = client.get(reverse("healthz"))
    assert response.status_code == 503
    assert response.json()["checks"]["broker"] == "error: connection refused"


def test_a_beat_that_stopped_makes_the_platform_unready(client, settings):
    response = client.get(reverse("healthz"))
    assert response.status_code == 503
    assert "no heartbeat yet" in response.json()["checks"]["beat"]

    heartbeat()
    assert client.get(reverse("healthz")).status_code == 200

    stale = timezone.now() - timedelta(seconds=settings.JINGTIAO_BEAT_MAX_AGE_SECONDS + 5)
    Heartbeat.objects.filter(name="beat").update(at=stale)
    response = client.get(reverse("healthz"))
    assert response.status_code == 503
    assert "s old: is celery beat running?" in response.json()["checks"]["beat"]


def test_beat_stamps_the_heartbeat_as_it_starts(monkeypatch):
    from scheduler import tasks

    sent = []
    monkeypatch.setattr(tasks.heartbeat, "delay", lambda: sent.append("heartbeat"))
    tasks.beat_started()
    assert sent == ["heartbeat"]


def test_liveness_touches_nothing_it_depends_on(client, monkeypatch):
    def broken():
        raise ConnectionError("database down")

    monkeypatch.setitem(health.CHECKS, "database", broken)
    assert client.get(reverse("healthz")).status_code == 503
    response = client.get(reverse("livez"))
    assert response.status_code == 200 and response.content == b"ok"
