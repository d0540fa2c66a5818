"""Settle RUNNING jobs from what the executor observed, through the state machine.

One `observe` call per cycle for every RUNNING job; then, per job:
SUCCEEDED adds a model version and succeeds the job; FAILED fails it with the
backend's reason in words; UNSCHEDULABLE past the timeout, and LOST (evicted,
a node lost, a Job without pods) past its grace, tear the workload down and put
the job back in the queue at its place; MISSING for longer than a grace after
the launcher's last beat requeues the job if it never launched, else fails it.
PENDING and RUNNING change nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_noop

from finetune import states
from finetune.models import Job, JobEvent, JobStatus
from finetune.services.versions import add_version, read_manifest
from finetune.signals import Change, job_changed
from finetune.storage import job_output, resolve
from finetune.texts import Said, say
from scheduler.executors.base import Executor, ExecutorError, Phase, WorkloadState

logger = logging.getLogger(__name__)
CLUSTER = JobEvent.Source.CLUSTER


def settle_running_jobs(
    executor: Executor,
    on_ended: Callable[[int], None],
    now: datetime | None = None,
    *,
    jobs: list[Job] | None = None,
    observed: dict[int, WorkloadState] | None = None,
) -> dict[int, str]:
    """Observe every RUNNING job once and settle those that changed.

    `on_ended(job_id)` is called after commit for each job that ended, so its
    remaining workers and objects are torn down. Returns job id -> new status.
    `jobs` and `observed`: running jobs already read and observed (scheduler/kueue.py).
    """
    now = now or timezone.now()
    if jobs is None:
        jobs = list(Job.objects.filter(status=JobStatus.RUNNING).select_related("model_repo"))
    if not jobs:
        return {}
    if observed is None:
        observed = executor.observe([job.pk for job in jobs])
    moved: dict[int, str] = {}
    overdue = timedelta(seconds=settings.JINGTIAO_STOP_GRACE_SECONDS + 120)
    for job in jobs:
        state = observed.get(job.pk, WorkloadState(job.pk, Phase.MISSING))
        try:
            if job.requeue_requested_at is not None:
                # An operator's requeue is under way (scheduler.tasks.requeue_workload):
                # its dying workers are no failure. Carried out here only if the task
                # never came (the broker was down when it was asked for).
                if now - job.requeue_requested_at < overdue:
                    continue
                target = requeue_as_asked(job, executor)
            else:
                target = settle(job, state, executor, now)
        except states.TransitionError:
            continue  # a user or the expiry pass ended it meanwhile
        except ExecutorError as exc:
            logger.warning("job %s: cannot settle %s: %s", job.pk, state.phase, exc)
            continue
        if target:
            moved[job.pk] = target
            if target != JobStatus.QUEUED:
                transaction.on_commit(lambda job_id=job.pk: on_ended(job_id))
    return moved


def settle(job: Job, state: WorkloadState, executor: Executor, now: datetime) -> str | None:
    data = {"workers": list(state.workers), "exit_code": state.exit_code}
    if state.phase == Phase.SUCCEEDED:
        return succeed(job, data)
    if state.phase == Phase.FAILED:
        data["log_excerpt"] = state.log_excerpt  # shown apart, folded (job_detail.html)
        moved = states.transition(
            job, JobStatus.FAILED, reason=state.reason, source=CLUSTER, data=data
        )
        return JobStatus.FAILED if moved else None
    if state.phase == Phase.UNSCHEDULABLE:
        timeout = timedelta(seconds=settings.JINGTIAO_UNSCHEDULABLE_TIMEOUT_SECONDS)
        if state.since is None or now - state.since < timeout:
            return None
        cause = say(
            gettext_noop(
                "The cluster could not place its workers for %(minutes)d minutes: %(reason)s"
            ),
            minutes=int(timeout.total_seconds() // 60),
            reason=state.reason,
        )
        return requeue(job, cause, executor, data)
    if state.phase == Phase.LOST:
        grace = timedelta(seconds=settings.JINGTIAO_LOST_GRACE_SECONDS)
        if state.since is not None and now - state.since < grace:
            return None
        cause = say(gettext_noop("Its workers were lost (%(reason)s)"), reason=state.reason)
        return requeue(job, cause, executor, data)
    if state.phase == Phase.MISSING:
        # Measured from the launcher's last beat: while it launches, it beats; once it
        # has launched, the workload is there to observe (scheduler/launching.py).
        grace = timedelta(seconds=settings.JINGTIAO_MISSING_GRACE_SECONDS)
        beat = job.launch_beat_at or job.started_at
        if beat is None or now - beat < grace:
            return None  # the launch may still be on its way
        if not job.events.filter(kind=JobEvent.Kind.LAUNCH).exists():
            # Admitted, but the worker that was to launch it died first: nothing was
            # recorded, so the job goes back to its place in the queue, after whatever
            # that launch may have started unrecorded is ended.
            executor.stop(job.pk)
            reason = say(
                gettext_noop("It was admitted but never launched; back in the queue at its place.")
            )
            moved = states.transition(
                job, JobStatus.QUEUED, reason=reason, source=CLUSTER, data=data
            )
            return JobStatus.QUEUED if moved else None
        reason = say(
            gettext_noop("Its workload disappeared from the %(executor)s backend."),
            executor=executor.name,
        )
        moved = states.transition(job, JobStatus.FAILED, reason=reason, source=CLUSTER, data=data)
        return JobStatus.FAILED if moved else None
    return None


def requeue_as_asked(job: Job, executor: Executor) -> str | None:
    """An operator asked to put the job back in the queue (finetune.services.requeue_job):
    its workload torn down first, then back at its place; an admission pass follows."""
    executor.stop(job.pk)
    moved = states.transition(
        job, JobStatus.QUEUED, reason=say(gettext_noop("requeued by an operator"))
    )
    if moved:
        transaction.on_commit(
            lambda: job_changed.send(sender=Job, job_id=job.pk, change=Change.REQUEUED)
        )
    return JobStatus.QUEUED if moved else None


def requeue(job: Job, cause: Said, executor: Executor, data: dict) -> str | None:
    """Back in the queue at its place, its workload torn down first, never after (a
    later teardown could hit the workload of its next launch). A lost node cannot hand
    over its logs: then the teardown goes on without them. A job the cluster already
    gave back JINGTIAO_MAX_REQUEUES times fails instead: what keeps happening to it
    (a node that keeps evicting it, pods the cluster keeps rejecting) will not stop."""
    try:
        executor.stop(job.pk)
    except ExecutorError:
        executor.stop(job.pk, keep_logs=False)
    # Kueue taking back what it admitted (preemption) is the queue at work, not a fault
    # (counted apart: an exclude would also drop the events without the key, SQL's NULL)
    given_back = job.events.filter(source=CLUSTER, to_status=JobStatus.QUEUED)
    earlier = given_back.count() - given_back.filter(data__kueue=True).count()
    if earlier >= settings.JINGTIAO_MAX_REQUEUES:
        reason = say(
            gettext_noop(
                "%(cause)s. The cluster gave it back %(count)d times already, so it fails "
                "rather than go round again."
            ),
            cause=cause,
            count=earlier,
        )
        moved = states.transition(job, JobStatus.FAILED, reason=reason, source=CLUSTER, data=data)
        return JobStatus.FAILED if moved else None
    reason = say(gettext_noop("%(cause)s; back in the queue at its place."), cause=cause)
    moved = states.transition(job, JobStatus.QUEUED, reason=reason, source=CLUSTER, data=data)
    return JobStatus.QUEUED if moved else None


def succeed(job: Job, data: dict) -> str | None:
    """Add the trained model as the repo's next version and succeed the job, atomically;
    the status it moved to, or None. Workers that exited 0 without leaving a model (a
    data volume mounted elsewhere in them, say) fail the job: it has nothing to show."""
    location = job_output(job.model_repo.location, job.pk)
    folder = resolve(location)
    with transaction.atomic():
        if not Job.objects.select_for_update().filter(pk=job.pk, status=JobStatus.RUNNING):
            return None
        if not (folder / "manifest.json").is_file():
            reason = say(
                gettext_noop(
                    "All workers exited with code 0, but no model was found at %(path)s: is "
                    "the data volume mounted where the workers write?"
                ),
                path=location,
            )
            moved = states.transition(
                job, JobStatus.FAILED, reason=reason, source=CLUSTER, data=data
            )
            return JobStatus.FAILED if moved else None
        manifest = read_manifest(folder)
        version = add_version(
            job.model_repo_id,
            location,
            manifest,
            job=job,
            metrics=manifest.get("metrics") if isinstance(manifest.get("metrics"), dict) else {},
        )
        number = version.number
        reason = say(
            gettext_noop("All workers exited with code 0; the model is version %(number)d."),
            number=number,
        )
        moved = states.transition(
            job,
            JobStatus.SUCCEEDED,
            reason=reason,
            source=CLUSTER,
            changes={"output_version": version},
            data=data,
        )
        return JobStatus.SUCCEEDED if moved else None
