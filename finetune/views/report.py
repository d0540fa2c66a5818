"""POST /api/jobs/<id>/report/: where a running job's workers send metrics (F7.1).

Authenticated by the job's own token (only its hash is stored), refused once the
job has ended, idempotent per (worker, seq), bounded in size and in rate. Every
refusal is a 4xx whose body says why, so the trainer can log it; the refusals of
a run that is over (job ended or deleted, token superseded by a relaunch) add
"stop": true, and the worker stops training (trainer/reporting.py).
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from finetune import reports
from finetune.inputs import whole_number
from finetune.models import Job, JobStatus

logger = logging.getLogger(__name__)


def _refuse(status: int, error: str, *, stop: bool = False, **headers) -> JsonResponse:
    """`stop`: tell the worker its run is over, so it stops training (trainer/reporting.py)."""
    response = JsonResponse(
        {"error": error, "stop": True} if stop else {"error": error}, status=status
    )
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


def _over_rate(job: Job) -> bool:
    """A fixed one-minute window per job, counted in the shared cache; the allowance
    is per worker, so a job on many nodes may send as often per worker as one on one."""
    key = f"jingtiao:report-rate:{job.pk}"
    try:
        cache.add(key, 0, timeout=60)
        try:
            count = cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.set(key, 1, timeout=60)
            count = 1
    except Exception as exc:  # the cache is down: metrics are worth more than the limit
        logger.warning("report rate of job %s not counted: %s", job.pk, exc)
        return False
    return count > settings.JINGTIAO_REPORT_RATE_PER_MINUTE * max(1, job.node_count)


@csrf_exempt
@require_POST
def report(request: HttpRequest, job_id: int) -> JsonResponse:
    scheme, _space, token = request.headers.get("Authorization", "").partition(" ")
    job = (
        Job.objects.filter(pk=job_id)
        .only("pk", "status", "report_token_hash", "node_count", "started_at")
        .first()
    )
    if job is None or scheme.lower() != "bearer" or not reports.token_matches(job, token):
        # The same answer for an unknown job and a wrong token: nothing to probe.
        # A token that was right once is superseded by a relaunch: that run must stop.
        return _refuse(401, "unknown job or wrong token", stop=True, WWW_Authenticate="Bearer")
    if job.status != JobStatus.RUNNING:
        return _refuse(410, f"the job is {job.status}; it takes no more reports", stop=True)
    if request.content_type != "application/json":
        return _refuse(415, "the body must be sent as Content-Type: application/json")
    declared = request.headers.get("Content-Length") or "0"
    limit = settings.JINGTIAO_REPORT_MAX_BYTES
    length = whole_number(declared)
    if length is None or length > limit:
        return _refuse(413, f"a report body may hold at most {limit} bytes")
    if _over_rate(job):
        return _refuse(429, "too many reports for this job; slow down", Retry_After="10")
    if len(request.body) > limit:  # sent without a length, or a wrong one
        return _refuse(413, f"a report body may hold at most {limit} bytes")
    try:
        batch = reports.parse(job, request.body)
    except reports.ReportRefused as exc:
        return _refuse(400, str(exc))
    stored = reports.store(job, batch)
    return JsonResponse(
        {
            "stored": stored,
            "duplicate": not stored,
            "metrics": len(batch.metrics) if stored else 0,
            "resources": len(batch.resources) if stored else 0,
        }
    )
