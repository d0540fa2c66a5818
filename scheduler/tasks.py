"""Celery tasks that drive the executor backend.

Tasks take ids, are idempotent and ignore results (the job's row is the
truth); they are acknowledged late, so a worker that dies mid-task leaves it
to another. Only transient executor errors are retried, with jittered
exponential backoff.
"""

from __future__ import annotations

import logging
import random

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import beat_init
from django.conf import settings
from django.dispatch import receiver
from django.utils import timezone

from config.celery import enqueue
from finetune import states
from finetune.models import Job, JobStatus
from finetune.signals import ENDS_THE_WORKLOAD, MOVES_THE_QUEUE, Change, job_changed
from finetune.storage import remove_job_dir
from scheduler.executors import get_executor
from scheduler.executors.base import ExecutorError
from scheduler.models import Heartbeat
from scheduler.settling import requeue_as_asked, settle_running_jobs

logger = logging.getLogger(__name__)
MAX_RETRIES = 8


def backoff(retries: int) -> float:
    """Seconds before retry number `retries` + 1: doubling, capped, with jitter so that
    many tasks failing together (an API server restart) do not come back together."""
    return min(300.0, 2.0**retries) * random.uniform(0.5, 1.5)


@shared_task(ignore_result=True, acks_late=True, soft_time_limit=90, time_limit=120)
def observe_running_jobs() -> None:
    """Settle every RUNNING job from one observe call; the next beat retries on error."""
    from scheduler import kueue

    try:
        if kueue.enabled():
            moved = kueue.follow(get_executor(), on_ended=enqueue_stop)
        else:
            moved = settle_running_jobs(get_executor(), on_ended=enqueue_stop)
    except ExecutorError as exc:
        logger.warning("observe skipped this cycle: %s", exc)
    except SoftTimeLimitExceeded:
        logger.warning("observe ran out of time; the next cycle goes on")
    else:
        if moved:  # capacity freed, or a job back in the queue: let the queue move now
            enqueue(run_admission)


# The tasks that tear a workload down: retried with backoff, with time for the grace
# between SIGTERM and SIGKILL and for the logs to be kept.
TEARDOWN = {
    "bind": True,
    "ignore_result": True,
    "acks_late": True,
    "max_retries": MAX_RETRIES,
    "soft_time_limit": settings.JINGTIAO_STOP_GRACE_SECONDS + 60,
    "time_limit": settings.JINGTIAO_STOP_GRACE_SECONDS + 90,
}


@shared_task(**TEARDOWN)
def stop_workload(self, job_id: int) -> None:
    """Tear down a job's workload, unless the job runs (again) by the time this runs.

    The workers' logs are kept in the job's folder first (F7.2), but not at any
    price: the last try tears down without them, so no pod outlives its job
    because its log could not be read; a deleted job's logs are not kept at all,
    and once its workers are gone its folder (spec with its token, logs) goes too.
    """
    status = Job.objects.filter(pk=job_id).values_list("status", flat=True).first()
    if status == JobStatus.RUNNING:
        return
    keep_logs = status is not None and self.request.retries < MAX_RETRIES
    try:
        get_executor().stop(job_id, keep_logs=keep_logs)
    except ExecutorError as exc:
        if not exc.transient:
            logger.error("job %s: cannot stop its workload: %s", job_id, exc)
            return
        raise self.retry(exc=exc, countdown=backoff(self.request.retries)) from exc
    if status is None:
        try:
            remove_job_dir(job_id)
        except OSError as exc:  # a process still dying writes into it: cleanup_jobs finishes
            logger.warning("job %s: its folder stays for now: %s", job_id, exc)


@shared_task(ignore_result=True, soft_time_limit=20, time_limit=30)
def heartbeat() -> None:
    """Beat sends this every few seconds; its stamp tells /healthz that beat, the broker
    and a worker all run (a dead beat would leave ended jobs RUNNING, unseen)."""
    Heartbeat.objects.update_or_create(name="beat", defaults={"at": timezone.now()})


@beat_init.connect(dispatch_uid="scheduler.tasks.beat_started")
def beat_started(sender=None, **kwargs) -> None:
    """Beat has just started: stamp at once rather than one period later."""
    enqueue(heartbeat)


@shared_task(ignore_result=True, acks_late=True, soft_time_limit=120, time_limit=150)
def reconcile_workloads() -> None:
    """Tear down workloads whose job has ended or no longer exists.

    Workloads of QUEUED jobs are left alone: admission may be launching that
    very job, and a relaunch replaces whatever an earlier launch left.
    """
    executor = get_executor()
    try:
        managed = executor.managed_job_ids()
    except ExecutorError as exc:
        logger.warning("reconcile skipped: %s", exc)
        return
    active = set(
        Job.objects.filter(
            pk__in=managed, status__in=(JobStatus.QUEUED, JobStatus.RUNNING)
        ).values_list("pk", flat=True)
    )
    for job_id in sorted(managed - active):
        logger.info("job %s: tearing down its orphaned workload", job_id)
        enqueue_stop(job_id)


def enqueue_stop(job_id: int) -> None:
    enqueue(stop_workload, job_id)


@shared_task(**TEARDOWN)
def requeue_workload(self, job_id: int) -> None:
    """Carry out an operator's requeue: tear the workload down, then queue the job."""
    job = Job.objects.filter(
        pk=job_id, status=JobStatus.RUNNING, requeue_requested_at__isnull=False
    ).first()
    if job is None:
        return  # done already (by the observe pass), or the job ended meanwhile
    try:
        requeue_as_asked(job, get_executor())
    except states.TransitionError:
        pass  # stopped or expired while its workload went down: nothing to requeue
    except ExecutorError as exc:
        if not exc.transient:
            logger.error("job %s: cannot tear down its workload to requeue it: %s", job_id, exc)
            return
        raise self.retry(exc=exc, countdown=backoff(self.request.retries)) from exc


@receiver(job_changed, dispatch_uid="scheduler.tasks.requeue_on_request")
def requeue_on_request(sender, job_id: int, change: str, **kwargs) -> None:
    if change == Change.REQUEUE:
        enqueue(requeue_workload, job_id)


@receiver(job_changed, dispatch_uid="scheduler.tasks.stop_on_change")
def stop_on_change(sender, job_id: int, change: str, **kwargs) -> None:
    """A user stopped or deleted the job (sent after commit by the job module)."""
    if change in ENDS_THE_WORKLOAD:
        enqueue_stop(job_id)


# --- scheduling (DESIGN.md "Scheduling") ---------------------------------------------


@shared_task(ignore_result=True, acks_late=True, soft_time_limit=90, time_limit=120)
def run_admission() -> None:
    """Admit and launch what the plan starts now; runs periodically and after changes.
    With Kueue admission: submit what has no Job yet (Kueue admits), scheduler/kueue.py."""
    from scheduler import admission, kueue

    if kueue.enabled():
        try:
            submitted = kueue.run_pass()
        except ExecutorError as exc:
            logger.warning("the submission to Kueue skipped this cycle: %s", exc)
            return
        except SoftTimeLimitExceeded:
            logger.warning("the submission to Kueue ran out of time; the next cycle goes on")
            return
        if submitted:
            logger.info("submitted jobs %s to Kueue", submitted)
        return
    try:
        launched = admission.run_admission()
    except SoftTimeLimitExceeded:
        logger.warning("admission ran out of time; the next cycle goes on")
        return
    if launched:
        logger.info("launched jobs %s", launched)
        # the state this pass planned is gone: the next pass plans the one it left, and
        # keeps the create page's forecast warm (scheduler/prediction.py)
        enqueue(run_admission)


@shared_task(ignore_result=True, acks_late=True, soft_time_limit=60, time_limit=90)
def expire_jobs() -> None:
    """F5: running jobs past their duration become EXPIRED; their workloads are stopped."""
    from scheduler import expiry

    expired = expiry.expire_jobs()
    if expired:
        logger.info("expired jobs %s", expired)
        # Their capacity is free now: let the queue move at once.
        enqueue(run_admission)


@shared_task(ignore_result=True, acks_late=True, soft_time_limit=60, time_limit=90)
def sync_nodes() -> None:
    """Keep the Node table equal to what the backend reports."""
    from scheduler import inventory

    try:
        reported = get_executor().nodes()
    except ExecutorError as exc:
        logger.warning("node sync skipped: %s", exc)
        return
    result = inventory.sync_nodes(list(reported))
    from scheduler import kueue, kueue_quotas

    if kueue.enabled():
        try:
            kueue_quotas.sync_queues(get_executor())
        except ExecutorError as exc:
            logger.warning("Kueue's queues not read: %s", exc)
    if result.added or result.vanished:
        logger.info("nodes added %s, vanished %s", result.added, result.vanished)
        enqueue(run_admission)


@receiver(job_changed, dispatch_uid="scheduler.tasks.admit_on_change")
def admit_on_change(sender, job_id: int, change: str, **kwargs) -> None:
    """A new job, a new priority or duration, or freed capacity: plan again now,
    rather than at the next periodic pass."""
    if change in MOVES_THE_QUEUE:
        enqueue(run_admission)
