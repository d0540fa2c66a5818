"""Expiry (F5): a running job past started_at + duration becomes EXPIRED.

Changing the duration only moves that deadline (F8.1); nothing else reads it
but this pass and the planner, so the workload is never restarted for it.
"""

from __future__ import annotations

from django.db import models, transaction
from django.db.models import ExpressionWrapper, F
from django.utils import timezone
from django.utils.translation import gettext_noop

from finetune import states
from finetune.models import Job, JobStatus
from finetune.signals import Change, job_changed
from finetune.texts import duration, say


def expired_jobs(now):
    deadline = ExpressionWrapper(
        F("started_at") + F("duration"), output_field=models.DateTimeField()
    )
    return (
        Job.objects.filter(status=JobStatus.RUNNING, started_at__isnull=False)
        .annotate(deadline_at=deadline)
        .filter(deadline_at__lte=now)
    )


def expire_jobs(now=None) -> list[int]:
    """Mark every job past its deadline EXPIRED and have its workload stopped."""
    now = now or timezone.now()
    expired = []
    for job in expired_jobs(now):
        try:
            moved = states.transition(
                job,
                JobStatus.EXPIRED,
                reason=say(
                    gettext_noop("ran past its duration of %(duration)s"),
                    duration=duration(job.duration),
                ),
            )
        except states.TransitionError:
            continue  # it ended on its own meanwhile
        if moved:
            expired.append(job.pk)
            transaction.on_commit(
                lambda job_id=job.pk: job_changed.send(
                    sender=Job, job_id=job_id, change=Change.STOPPED
                )
            )
    return expired
