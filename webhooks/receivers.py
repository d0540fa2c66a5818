"""What turns the platform's signals into webhook messages.

Each signal is sent after its transaction committed (finetune/signals.py), so a
message never announces a change that was rolled back. Each event has a key, and a
webhook gets one delivery per key (a unique constraint), so an event announced
twice is sent once:

- ``job:<id>:created``: the job was created (``job.queued``); a job is created once.
- ``job:<id>:move:<JobEvent id>``: one move of the state machine, recorded by its
  JobEvent. A job the cluster gave back and that starts again starts twice, and its
  two ``job.started`` are two moves, two events, two messages.
- ``model_version:<id>``: the version was added.

A receiver that fails logs it and gives up on the message: the change it announces
has committed, and the user who made it must not see an error for a webhook.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from datetime import datetime

from django.dispatch import receiver
from django.utils import timezone

from finetune.models import Job, JobEvent, ModelVersion
from finetune.signals import Change, job_changed, job_status_changed, model_version_created
from webhooks import payloads, services
from webhooks.models import Event, Webhook

logger = logging.getLogger(__name__)

JOB_RELATED = ("project", "creator", "scenario", "algorithm", "pretrained_model")


def _logged(handler: Callable) -> Callable:
    @functools.wraps(handler)
    def wrapper(*args, **kwargs) -> None:
        try:
            handler(*args, **kwargs)
        except Exception:
            logger.exception("webhooks: %s could not record its event", handler.__name__)

    return wrapper


@receiver(job_changed, dispatch_uid="webhooks.receivers.job_created")
@_logged
def job_created(sender, job_id: int, change: str, **kwargs) -> None:
    if change == Change.CREATED:
        _record_job(job_id, Event.JOB_QUEUED, f"job:{job_id}:created", timezone.now())


@receiver(job_status_changed, dispatch_uid="webhooks.receivers.job_moved")
@_logged
def job_moved(sender, job_id: int, from_status: str, to_status: str, **kwargs) -> None:
    event = payloads.EVENT_OF_STATUS[to_status]
    # A sender that does not name the move's JobEvent: it is the job's latest move there.
    event_id = kwargs.get("event_id") or _latest_move(job_id, to_status)
    _record_job(job_id, event, f"job:{job_id}:move:{event_id}", timezone.now())


@receiver(model_version_created, dispatch_uid="webhooks.receivers.version_created")
@_logged
def version_created(sender, version_id: int, **kwargs) -> None:
    hooks = services.subscribed(
        Webhook.objects.filter(project__modelrepos__versions=version_id),
        Event.MODEL_VERSION_CREATED,
    )
    if not hooks:
        return
    version = (
        ModelVersion.objects.select_related("repo__project", "job", "derived_from")
        .filter(pk=version_id)
        .first()
    )
    if version is None:
        return
    payload = payloads.message(
        Event.MODEL_VERSION_CREATED, timezone.now(), payloads.version_data(version)
    )
    services.record(hooks, Event.MODEL_VERSION_CREATED, f"model_version:{version_id}", payload)


def _record_job(job_id: int, event: str, key: str, at: datetime) -> None:
    # one query, and none more, for the many jobs of projects without webhooks
    hooks = services.subscribed(Webhook.objects.filter(project__jobs=job_id), event)
    if not hooks:
        return
    job = Job.objects.select_related(*JOB_RELATED, "output_version__repo").filter(pk=job_id).first()
    if job is None:
        return  # deleted since
    services.record(hooks, event, key, payloads.message(event, at, payloads.job_data(job)))


def _latest_move(job_id: int, to_status: str) -> int | None:
    moves = JobEvent.objects.filter(job_id=job_id, kind=JobEvent.Kind.STATUS, to_status=to_status)
    return moves.order_by("-pk").values_list("pk", flat=True).first()
