"""Kueue admission (JINGTIAO_ADMISSION=kueue; docs/kubernetes.md "With Kueue").

Kueue, not the planner, decides when a job starts: on a cluster shared with other
teams its quotas, preemption and fair sharing are the cluster's one admission. Here:

- **Submission** (`run_pass`, the admission pass of this mode): every queued job gets
  its Indexed Job at once, suspended, with its ConfigMap, Secret and Service, and is
  then labelled with its project's LocalQueue (Kueue sees only a Job so labelled, so it
  never admits one whose objects are not all there; a submission cut short is made
  again); a waiting Job whose priority changed is relabelled with its new
  WorkloadPriorityClass. Jingtiao never unsuspends a Job: Kueue does, when it admits.
- **Following** (`follow`, the observe cycle of this mode): one observe call (Jobs,
  pods, Workloads: three list calls whatever the number of jobs). A queued job whose
  Job Kueue unsuspended is RUNNING (its duration counts from then); a running one that
  Kueue took back (evicted, preempted) is back in the queue in its place, its Job left
  for Kueue to admit again; the rest settles as without Kueue.
- **Prediction**: the same planner as the default mode, run over the ClusterQueues'
  quotas (scheduler/kueue_quotas.py). Positions are Kueue's own, from its visibility
  API, and a waiting job's reason is Kueue's, in the reader's language where its form
  is known (observing.kueue_reason).
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext_noop

from accounts.models import Project
from finetune import states
from finetune.models import Job, JobEvent, JobStatus, Priority
from finetune.reports import hash_token
from finetune.texts import Said, from_data, say
from scheduler import kueue_quotas as quotas
from scheduler.executors import get_executor, manifests, observing
from scheduler.executors.base import (
    ExecutorError,
    LaunchRequest,
    Phase,
    Placement,
    WorkloadState,
)

logger = logging.getLogger(__name__)
CLUSTER = JobEvent.Source.CLUSTER
# Serialises submission passes across workers: two passes never submit one job twice.
SUBMIT_LOCK_KEY = 0x6B756575  # "kueu"
POSITIONS_CACHE_KEY = "jingtiao:kueue:positions"
WAITING_CACHE_KEY = "jingtiao:kueue:waiting"
CACHE_SECONDS = 600


def enabled() -> bool:
    return settings.JINGTIAO_ADMISSION == "kueue"


def local_queue(project: Project) -> str:
    """The LocalQueue a project's jobs are submitted to."""
    return project.kueue_queue or settings.JINGTIAO_KUEUE_DEFAULT_QUEUE


def priority_class(priority: int) -> str:
    """The WorkloadPriorityClass of a priority: jingtiao-low ... jingtiao-urgent."""
    return f"{settings.JINGTIAO_KUEUE_PRIORITY_PREFIX}{Priority(priority).name.lower()}"


# --- submission ----------------------------------------------------------------------


def run_pass(now: datetime | None = None) -> list[int]:
    """Submit every queued job that has no Job yet, relabel waiting ones whose priority
    changed, then read Kueue's positions and plan the predictions. Returns the ids
    submitted."""
    from scheduler.launching import LAUNCH_RELATED

    executor = get_executor()
    with _submit_lock() as held:
        if not held:
            return []  # another pass is at it; it reads the state this one would
        existing = executor.submitted()
        queued = list(
            Job.objects.filter(status=JobStatus.QUEUED, waiting_for_data=False)
            .select_related(*LAUNCH_RELATED, "project")
            .order_by("-priority", "queued_at", "pk")
        )
        submitted = []
        for job in queued:
            found = existing.get(job.pk)
            if found is not None and found["metadata"].get("deletionTimestamp"):
                continue  # an earlier Job of it is still going: the next pass submits
            if found is not None and _handed_over(job, found):
                _relabel(job, found, executor)
                continue
            try:
                # none yet, or one a submission cut short left (its objects not all made,
                # or its token not the job's): submitting clears it, then makes it anew
                if submit(job, executor):
                    submitted.append(job.pk)
            except ExecutorError as exc:
                if exc.transient:
                    logger.warning("job %s: not submitted to Kueue yet: %s", job.pk, exc)
                    continue
                _fail(job, exc)
    try:
        remember_positions(executor, {local_queue(job.project) for job in queued})
    except ExecutorError as exc:
        logger.warning("Kueue's positions were not read: %s", exc)
    _plan_predictions(now or timezone.now())
    return submitted


def _handed_over(job: Job, found: dict) -> bool:
    """Whether the job's Job is the whole of its last submission: in its LocalQueue (the
    label set last, once its ConfigMap and Secret were made), with the job's token."""
    meta = found["metadata"]
    return (meta.get("labels") or {}).get(manifests.KUEUE_QUEUE_LABEL) is not None and (
        meta.get("annotations") or {}
    ).get(manifests.LAUNCH_ANNOTATION) == job.report_token_hash


class _submit_lock:
    """A session advisory lock on PostgreSQL, tried, not waited for: a pass that finds
    another under way leaves the work to it. Held across the API calls (no transaction
    is open meanwhile, so each job's record commits as soon as its Job is made)."""

    def __enter__(self) -> bool:
        if connection.vendor != "postgresql":
            self.held = True  # SQLite: one worker (the embedded run)
            return True
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [SUBMIT_LOCK_KEY])
            self.held = bool(cursor.fetchone()[0])
        return self.held

    def __exit__(self, *exc_info) -> None:
        if self.held and connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [SUBMIT_LOCK_KEY])


def submit(job: Job, executor) -> bool:
    """Create the job's suspended, labelled Job (with its ConfigMap, Secret and
    Service); True if it stands. A job stopped or deleted meanwhile has what was just
    created torn down again."""
    from scheduler.launching import clear_abandoned_output, trainer_spec

    spec = job.ordered_node_specs()[0]  # Kueue chooses flavors, not specs: the first
    token = secrets.token_urlsafe(32)
    queue = local_queue(job.project)
    request = LaunchRequest(
        job_id=job.pk,
        placement=Placement.on(spec, [""] * job.node_count),
        trainer_spec=trainer_spec(job, token),
        report_token=token,
        pool_taint=job.pool.taint if job.pool else "",
        kueue_queue=queue,
        kueue_priority_class=priority_class(job.priority),
        kueue_node_names=tuple(job.node_names or ()),
    )
    command = executor.run_command(request)
    recorded = Job.objects.filter(pk=job.pk, status=JobStatus.QUEUED).update(
        report_token_hash=hash_token(token), run_command=command
    )
    if not recorded:
        return False
    clear_abandoned_output(job)
    executor.launch(request)
    with transaction.atomic():
        still = Job.objects.select_for_update().filter(pk=job.pk, status=JobStatus.QUEUED)
        if still.exists():
            JobEvent.objects.create(
                job_id=job.pk,
                kind=JobEvent.Kind.LAUNCH,
                message=command,
                data={
                    "executor": executor.name,
                    "kueue_queue": queue,
                    "priority_class": request.kueue_priority_class,
                    "spec_id": spec.pk,
                },
            )
            return True
    logger.info("job %s ended while it was submitted: tearing its Job down", job.pk)
    executor.stop(job.pk, keep_logs=False)
    return False


def _relabel(job: Job, found: dict, executor) -> None:
    """A waiting job's priority changed (F2): Kueue reorders it by its new label. A
    Kueue that refuses the change (older releases hold the label fixed) leaves the job
    waiting at its old priority, never fails it."""
    wanted = priority_class(job.priority)
    if (found["metadata"].get("labels") or {}).get(manifests.KUEUE_PRIORITY_LABEL) == wanted:
        return
    try:
        executor.set_priority_class(job.pk, wanted)
    except ExecutorError as exc:
        logger.warning("job %s: its new priority was not given to Kueue: %s", job.pk, exc)


def _fail(job: Job, exc: ExecutorError) -> None:
    logger.error("job %s cannot be submitted to Kueue: %s", job.pk, exc)
    with contextlib.suppress(states.TransitionError):  # stopped meanwhile
        states.transition(
            job,
            JobStatus.FAILED,
            reason=say(gettext_noop("cannot launch: %(error)s"), error=str(exc)),
        )


# --- following -----------------------------------------------------------------------


def follow(
    executor, on_ended: Callable[[int], None], now: datetime | None = None
) -> dict[int, str]:
    """The observe cycle with Kueue: one observe call for every running and submitted
    queued job, then each moves as Kueue and its pods say. Returns job id -> status."""
    from scheduler.settling import settle_running_jobs

    now = now or timezone.now()
    running = list(Job.objects.filter(status=JobStatus.RUNNING).select_related("model_repo"))
    queued = list(
        Job.objects.filter(status=JobStatus.QUEUED, waiting_for_data=False).select_related(
            "model_repo"
        )
    )
    if not running and not queued:
        _remember_waiting({})
        return {}
    observed = executor.observe([job.pk for job in running + queued])
    moved: dict[int, str] = {}
    for job in running:
        state = observed[job.pk]
        if state.phase in (Phase.WAITING, Phase.EVICTED) and job.requeue_requested_at is None:
            with _unless_ended_meanwhile():
                if _taken_back(job, state):
                    moved[job.pk] = JobStatus.QUEUED
        elif state.workers:
            _record_nodes(job, state)
    settling = [job for job in running if job.pk not in moved]
    moved.update(settle_running_jobs(executor, on_ended, now, jobs=settling, observed=observed))
    waiting: dict[int, dict] = {}
    for job in queued:
        state = observed[job.pk]
        if state.phase in (Phase.WAITING, Phase.EVICTED, Phase.MISSING):
            if state.reason:
                waiting[job.pk] = _said_data(state.reason)
            continue
        admitted = False
        with _unless_ended_meanwhile():
            admitted = _admitted(job, state, now)
        if admitted:
            moved[job.pk] = JobStatus.RUNNING
            if state.phase not in (Phase.PENDING, Phase.RUNNING):
                # it ran (or failed) between two cycles: settled now, as any running job
                moved.update(
                    settle_running_jobs(executor, on_ended, now, jobs=[job], observed=observed)
                )
    _remember_waiting(waiting)
    return moved


def _unless_ended_meanwhile():
    """A user or the expiry pass stopped or deleted the job since it was read: it is
    theirs now, and the other jobs of the cycle go on."""
    return contextlib.suppress(states.TransitionError, Job.DoesNotExist)


def _said_data(reason: str) -> dict:
    return reason.data() if isinstance(reason, Said) else {"msgid": "%(why)s", "params": {}}


def _admitted(job: Job, state: WorkloadState, now: datetime) -> bool:
    """Kueue admitted the job (unsuspended its Job): RUNNING, where its pods are."""
    moved = states.transition(
        job,
        JobStatus.RUNNING,
        reason=say(gettext_noop("admitted by Kueue")),
        source=CLUSTER,
        changes={
            "placement": _placement(state),
            "launch_beat_at": now,
            # the spec it was submitted with (Kueue chooses flavors, not specs)
            "spec_in_use": job.ordered_node_specs()[0],
        },
    )
    return moved


def _placement(state: WorkloadState) -> list[dict]:
    return [
        {"rank": worker["rank"], "node": worker.get("node") or "", "devices": []}
        for worker in state.workers
    ]


def _record_nodes(job: Job, state: WorkloadState) -> None:
    """The nodes the cluster placed a running job's pods on, once it has."""
    placement = _placement(state)
    if placement != job.placement and all(worker["node"] for worker in placement):
        Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(placement=placement)


def _taken_back(job: Job, state: WorkloadState) -> bool:
    """Kueue evicted the job (preempted by a higher priority, its pods not ready in
    time...): back in the queue at its place, with Kueue's reason. Its Job stays, for
    Kueue to admit again; this is no failure of the job's, so it does not count
    towards JINGTIAO_MAX_REQUEUES."""
    reason = state.reason or say(gettext_noop("Kueue suspended its workload"))
    moved = states.transition(
        job,
        JobStatus.QUEUED,
        reason=say(gettext_noop("%(cause)s; back in the queue at its place."), cause=reason),
        source=CLUSTER,
        data={"kueue": True, "workers": list(state.workers)},
    )
    return moved


# --- positions and reasons -----------------------------------------------------------


@dataclass(frozen=True)
class Standing:
    """Where Kueue has a waiting job: its place in its ClusterQueue (1-based), named."""

    position: int
    queue: str  # the ClusterQueue (its LocalQueue's name where that is not known)


def remember_positions(executor, local_queues: Iterable[str]) -> dict[int, Standing]:
    """Read each LocalQueue's pending workloads (one call per LocalQueue in use) and
    keep every job's place for the pages."""
    feeds = quotas.cluster_queues_of()
    found: dict[int, Standing] = {}
    for queue in sorted(set(local_queues)):
        for item in executor.pending_workloads(queue):
            name, _uid = observing.workload_owner(item)
            job_id = manifests.job_id_of(name)
            position = item.get("positionInClusterQueue")  # 0: the next one Kueue admits
            if job_id is not None and isinstance(position, int):
                found[job_id] = Standing(position + 1, feeds.get(queue, queue))
    kept = {job_id: (standing.position, standing.queue) for job_id, standing in found.items()}
    _keep(POSITIONS_CACHE_KEY, kept, "positions")
    return found


def positions() -> dict[int, Standing]:
    kept = _kept(POSITIONS_CACHE_KEY, "positions")
    return {job_id: Standing(*value) for job_id, value in kept.items()}


def _remember_waiting(waiting: dict[int, dict]) -> None:
    _keep(WAITING_CACHE_KEY, waiting, "reasons")


def waiting_reasons() -> dict[int, Said]:
    """What Kueue said, at the last observe cycle, of each job it keeps waiting."""
    kept = _kept(WAITING_CACHE_KEY, "reasons")
    found = {job_id: from_data(data) for job_id, data in kept.items()}
    return {job_id: said for job_id, said in found.items() if said is not None}


# Kueue's positions and reasons are kept in the cache for the pages: a shortcut, so a
# cache that is down costs the pages Kueue's words (the planner's stand), never an answer.
def _keep(key: str, value: dict, what: str) -> None:
    try:
        cache.set(key, value, CACHE_SECONDS)
    except Exception as exc:  # any backend's connection error
        logger.warning("Kueue's %s could not be kept: %s", what, exc)


def _kept(key: str, what: str) -> dict:
    try:
        return cache.get(key) or {}
    except Exception as exc:
        logger.warning("Kueue's %s could not be read: %s", what, exc)
        return {}


def _plan_predictions(now: datetime) -> None:
    """Plan the queue over the quotas, as admission does in the default mode, and leave
    it for the list, with Kueue's positions and reasons in place of the planner's."""
    from scheduler import planner, prediction, snapshot

    version = prediction.state_version()
    state = snapshot.take(now)
    latest = planner.Forecast(state.nodes, state.pools, state.running, state.queue, now)
    prediction.remember_state(version, state, latest, warm=True)
