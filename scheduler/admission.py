"""Admission: carry out the planner's "starts now" decisions.

One pass takes a snapshot, plans, and moves every job whose start is now from
QUEUED to RUNNING with its placement, all under a database lock so two
workers never admit the same job or the same capacity twice (DESIGN.md
"Scheduling"). Launching happens after the commit, outside the lock: a
transient launch failure puts the job back in the queue, in its place; a
permanent one fails it with the reason.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass

from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext_noop

from finetune import states
from finetune.models import Job, JobStatus
from finetune.texts import say
from scheduler import planner, prediction, snapshot
from scheduler.executors.base import ExecutorError, Placement
from scheduler.models import Node, NodeSpec

logger = logging.getLogger(__name__)

# An arbitrary constant shared by every worker: the key of the admission lock.
ADMISSION_LOCK_KEY = 0x6A696E67  # "jing"


@dataclass(frozen=True)
class Admitted:
    job_id: int
    placement: Placement


def _lock() -> None:
    """Serialise admission passes across workers and replicas.

    PostgreSQL: a transaction-scoped advisory lock; a second pass waits, then
    plans from the state the first one left. SQLite (the embedded run) already
    serialises writing transactions (transaction_mode IMMEDIATE).
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [ADMISSION_LOCK_KEY])


def _devices_in_use() -> dict[str, set[int]]:
    used: dict[str, set[int]] = defaultdict(set)
    for placement in Job.objects.filter(status=JobStatus.RUNNING).values_list(
        "placement", flat=True
    ):
        for worker in placement:
            used[worker["node"]].update(worker.get("devices", ()))
    return used


def _placement(
    decision: planner.Decision, spec: NodeSpec, used: dict[str, set[int]]
) -> tuple[Placement, list[dict]]:
    """Name the device indices each worker gets, lowest free first; `used` (what running
    jobs hold, read once per pass) gains what this placement takes."""
    capacity = dict(
        Node.objects.filter(name__in=decision.nodes).values_list("name", "device_count")
    )
    device_ids: dict[str, tuple[int, ...]] = {}
    workers = []
    for rank, node in enumerate(decision.nodes):
        free = [i for i in range(capacity.get(node, 0)) if i not in used[node]]
        devices = tuple(free[: spec.device_count])
        used[node].update(devices)
        device_ids[node] = devices
        workers.append({"rank": rank, "node": node, "devices": list(devices)})
    return Placement.on(spec, decision.nodes, device_ids), workers


def admit(now=None) -> list[Admitted]:
    """Move every job the plan starts now to RUNNING; returns what to launch."""
    now = now or timezone.now()
    admitted: list[Admitted] = []
    version = prediction.state_version()  # before the state it labels
    with transaction.atomic():
        _lock()
        state = snapshot.take(now)
        if not state.queue:
            return []
        forecast = planner.Forecast(state.nodes, state.pools, state.running, state.queue, now)
        plan = forecast.plan
        starting = plan.starts_now()
        jobs = Job.objects.in_bulk([decision.job_id for decision in starting])
        specs = NodeSpec.objects.in_bulk([decision.spec_id for decision in starting])
        used = _devices_in_use() if starting else {}
        for decision in starting:
            job = jobs[decision.job_id]
            placement, workers = _placement(decision, specs[decision.spec_id], used)
            moved = states.transition(
                job,
                JobStatus.RUNNING,
                reason=say(gettext_noop("admitted on %(nodes)s"), nodes=", ".join(decision.nodes)),
                changes={
                    "placement": workers,
                    "spec_in_use_id": decision.spec_id,
                    "launch_beat_at": now,
                },
            )
            if moved:
                admitted.append(Admitted(job.pk, placement))
    # the list's view of the queue and the create page's forecasts, the expected starts
    # planned outside the lock; a pass that started jobs changed the state it planned,
    # and the pass their start sets off shares the forecasts of the state it leaves
    prediction.remember_state(version, state, forecast, warm=not starting)
    return admitted


def launch(admitted: Admitted) -> bool:
    """Start one admitted job's workload; True if it was launched."""
    from scheduler.launching import LAUNCH_RELATED, launch_job

    job = Job.objects.select_related(*LAUNCH_RELATED).get(pk=admitted.job_id)
    if job.status != JobStatus.RUNNING:
        return False  # stopped between admission and launch
    try:
        return launch_job(job, admitted.placement)
    except ExecutorError as exc:
        try:
            if exc.transient:
                logger.warning("launch of job %s failed, requeued: %s", job.pk, exc)
                _end_attempt(job.pk)
                states.transition(
                    job,
                    JobStatus.QUEUED,
                    reason=say(
                        gettext_noop("launch failed, will retry: %(error)s"), error=str(exc)
                    ),
                )
            else:
                logger.error("launch of job %s failed: %s", job.pk, exc)
                states.transition(
                    job,
                    JobStatus.FAILED,
                    reason=say(gettext_noop("cannot launch: %(error)s"), error=str(exc)),
                )
        except states.TransitionError:
            pass  # stopped or deleted meanwhile: the other jobs of the pass still launch
        return False


def _end_attempt(job_id: int) -> None:
    """What a failed launch may have started goes before the job is requeued: a create
    or a resume whose answer was lost did happen, and its pods would train on while
    the job waits. If this teardown fails too, the next launch finds the leftovers
    (their launch key is not its own) and clears them first."""
    from scheduler.executors import get_executor

    try:
        get_executor().stop(job_id, keep_logs=False)
    except ExecutorError as exc:
        logger.warning("job %s: what its failed launch left stays for now: %s", job_id, exc)


def run_admission(now=None) -> list[int]:
    """One admission pass: admit, then launch each admitted job, beating for those still
    waiting their turn (launching.LaunchBeat). Returns the launched ids."""
    from scheduler.launching import LaunchBeat

    admitted = admit(now)
    launched = []
    with LaunchBeat(item.job_id for item in admitted) as beat:
        for item in admitted:
            if launch(item):
                launched.append(item.job_id)
            beat.launched(item.job_id)
    return launched
