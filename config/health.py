"""/healthz (readiness) and /livez (liveness).

/healthz answers 200 only when the database, the cache and the Celery broker
all answer and beat's heartbeat is fresh: the platform can take and carry out
work. /livez answers 200 whenever this process serves requests, touching
nothing else, so a database outage does not get every web server restarted.
"""

from __future__ import annotations

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache

from config.celery import app as celery_app


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _cache() -> None:
    cache.set("jingtiao:healthz", "ok", timeout=10)
    if cache.get("jingtiao:healthz") != "ok":
        raise RuntimeError("the cache did not return what was stored")


def _broker() -> None:
    with celery_app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)


def _beat() -> None:
    from scheduler.models import Heartbeat

    last = Heartbeat.objects.filter(name="beat").values_list("at", flat=True).first()
    if last is None:
        raise RuntimeError("no heartbeat yet: is celery beat running?")
    age = (timezone.now() - last).total_seconds()
    if age > settings.JINGTIAO_BEAT_MAX_AGE_SECONDS:
        raise RuntimeError(f"the last heartbeat is {age:.0f} s old: is celery beat running?")


CHECKS = {"database": _database, "cache": _cache, "broker": _broker, "beat": _beat}


@never_cache
def livez(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok", content_type="text/plain")


@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    results: dict[str, str] = {}
    for name, check in CHECKS.items():
        try:
            check()
        except Exception as exc:  # a probe reports every failure, whatever its kind
            results[name] = f"error: {exc}"
        else:
            results[name] = "ok"
    healthy = all(value == "ok" for value in results.values())
    return JsonResponse(
        {"status": "ok" if healthy else "error", "checks": results},
        status=200 if healthy else 503,
    )
