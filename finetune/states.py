"""The job state machine (DESIGN.md "Job states", F5).

Every status change goes through `transition`. It is a compare-and-set on the
job's row (`UPDATE ... WHERE id = ? AND status = old`), so two workers racing to
move the same job cannot both win, and it writes a JobEvent in the same
transaction. Asking for the state a job is already in is a no-op that returns
False, so retried tasks are harmless. Terminal states never change.
"""

from __future__ import annotations

import functools
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from finetune import texts
from finetune.models import Job, JobEvent, JobStatus
from finetune.signals import job_status_changed

Q, R = JobStatus.QUEUED, JobStatus.RUNNING

#: (from, to) -> the name of the transition, for events and error messages.
TRANSITIONS: dict[tuple[str, str], str] = {
    (Q, R): "admit",
    (Q, JobStatus.STOPPED): "stop",
    (Q, JobStatus.FAILED): "fail",  # could not be launched at all
    (R, JobStatus.SUCCEEDED): "succeed",
    (R, JobStatus.FAILED): "fail",
    (R, JobStatus.STOPPED): "stop",
    (R, JobStatus.EXPIRED): "expire",
    # Pods the cluster cannot place for a while: back to the queue, keeping the
    # original queued_at and so the job's place (DESIGN.md "Job states").
    (R, Q): "requeue",
}


class TransitionError(Exception):
    """A change of status that the state machine does not allow."""

    def __init__(self, job_id: int, current: str, target: str) -> None:
        self.job_id, self.current, self.target = job_id, current, target
        super().__init__(
            _("Job %(id)s is %(current)s and cannot become %(target)s.")
            % {
                "id": job_id,
                "current": JobStatus(current).label,
                "target": JobStatus(target).label,
            }
        )


def transition(
    job: Job,
    target: str,
    *,
    actor=None,
    reason: str | texts.Said = "",
    source: str = JobEvent.Source.PLATFORM,
    changes: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
) -> bool:
    """Move `job` to `target`. Returns True if this call changed it, False if it
    already was there. Raises TransitionError when the move is not allowed.

    `changes` are extra fields set in the same UPDATE (placement, spec in use).
    The in-memory `job` is refreshed with the values written.
    """
    target = JobStatus(target)
    now = timezone.now()
    reason, said = texts.split(reason)
    fields = _fields_for(job, target, now, reason)
    fields["status_said"] = said
    fields.update(changes or {})

    with transaction.atomic():
        current = job.status
        for _attempt in range(2):
            if (current, target) not in TRANSITIONS:
                if current == target:
                    job.status = current
                    return False
                raise TransitionError(job.pk, current, target)
            updated = Job.objects.filter(pk=job.pk, status=current).update(status=target, **fields)
            if updated:
                break
            # Someone else moved the job since it was read: judge against the
            # row as it is now, once.
            current = Job.objects.filter(pk=job.pk).values_list("status", flat=True).get()
        else:
            raise TransitionError(job.pk, current, target)

        event = JobEvent.objects.create(
            job_id=job.pk,
            kind=JobEvent.Kind.STATUS,
            source=source,
            actor=actor,
            from_status=current,
            to_status=target,
            message=reason or TRANSITIONS[(current, target)],
            said=said,
            data=data or {},
        )
        # Registered inside the block: a caller's transaction that rolls back takes the
        # announcement with it, and a move nobody made is never announced.
        transaction.on_commit(
            functools.partial(
                job_status_changed.send,
                sender=Job,
                job_id=job.pk,
                from_status=str(current),
                to_status=str(target),
                event_id=event.pk,
            )
        )
    job.status = target
    for name, value in fields.items():
        setattr(job, name, value)
    return True


def _fields_for(job: Job, target: str, now, reason: str) -> dict[str, Any]:
    # A requeue asked for is carried out by this move, or made moot by it.
    fields: dict[str, Any] = {"status_reason": reason, "requeue_requested_at": None}
    if target == JobStatus.RUNNING:
        fields.update(started_at=now, progress=None, eta_at=None)
    elif target == JobStatus.QUEUED:
        fields.update(started_at=None, placement=[], spec_in_use=None, progress=None, eta_at=None)
    else:
        # an ended job waits for nothing, its data included
        fields.update(finished_at=now, eta_at=None, waiting_for_data=False)
        if target == JobStatus.SUCCEEDED:
            fields["progress"] = 1.0
    return fields
