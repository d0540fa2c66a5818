"""Queue prediction (F1.17): will a job start now, and if not, by when?

The same planner as admission, with the draft inserted where it would stand in
the queue, so the answer is the start it gets once created if nothing else
changes. Starts are upper bounds: running jobs may end before their deadline.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.core.cache import cache
from django.db.models import Count, Max, Q, Sum
from django.utils import formats, timezone
from django.utils.translation import gettext as _

from finetune.models import Job, JobEvent
from scheduler import planner, snapshot
from scheduler.models import Node, NodeSpec, ResourcePool

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prediction:
    starts_now: bool
    start: datetime | None  # None: can never run
    position: int
    pool: str | None
    spec_id: int | None
    reason: str | None  # "<code>: <text>" when it can never run

    @property
    def can_run(self) -> bool:
        return self.start is not None

    @property
    def reason_text(self) -> str:
        return (self.reason or "").split(": ", 1)[-1]

    def message(self) -> str:
        if not self.can_run:
            return _("Cannot run: %(reason)s") % {"reason": self.reason_text}
        if self.starts_now:
            return _("Starts now.")
        where = (
            _("position %(position)d in pool %(pool)s")
            % {"position": self.position, "pool": self.pool}
            if self.pool
            else _("position %(position)d in the queue") % {"position": self.position}
        )
        return _("Queued: %(where)s, expected to start by %(start)s") % {
            "where": where,
            "start": formats.date_format(timezone.localtime(self.start), "SHORT_DATETIME_FORMAT"),
        }


def _prediction(decision: planner.Decision, now: datetime, pool: str | None) -> Prediction:
    return Prediction(
        starts_now=decision.start is not None and decision.start <= now,
        start=decision.start,
        position=decision.position,
        pool=pool,
        spec_id=decision.spec_id,
        reason=decision.reason,
    )


# Planning every job ahead of a draft costs about as much as a whole plan
# (half a second at 10,000 queued jobs), too slow to answer while a user edits
# the form. A Forecast plans once and then answers any draft in milliseconds;
# each process keeps the last one while the state it was built from holds.
FORECAST_MAX_AGE_SECONDS = 30
_forecast_lock = threading.Lock()
_forecast: tuple[tuple, float, planner.Forecast, int] | None = None


def state_version() -> tuple:
    """Changes whenever anything the planner reads changes (or nearly: an edit in
    the admin that writes no event is caught by the forecast's maximum age)."""
    jobs = Job.objects.aggregate(latest=Max("pk"))
    events = JobEvent.objects.aggregate(latest=Max("pk"))
    nodes = Node.objects.aggregate(
        count=Count("pk"),
        latest=Max("pk"),
        seen=Max("last_seen"),
        devices=Sum("device_count"),
        cpu=Sum("cpu_millis"),
        memory=Sum("memory_mib"),
        schedulable=Count("pk", filter=Q(schedulable=True)),
    )
    pools = ResourcePool.objects.aggregate(
        count=Count("pk"), latest=Max("pk"), members=Count("projects")
    )
    return (jobs["latest"], events["latest"], *nodes.values(), *pools.values())


def _current_forecast() -> tuple[planner.Forecast, int]:
    """The Forecast of the state now, and the id the next job will get."""
    global _forecast
    version = state_version()
    with _forecast_lock:
        cached = _forecast
        if (
            cached is not None
            and cached[0] == version
            and time.monotonic() - cached[1] < FORECAST_MAX_AGE_SECONDS
        ):
            return cached[2], cached[3]
        state = snapshot.take(timezone.now())
        forecast = planner.Forecast(state.nodes, state.pools, state.running, state.queue, state.now)
        _forecast = (version, time.monotonic(), forecast, (version[0] or 0) + 1)
        return forecast, _forecast[3]


def predict_draft(
    *,
    project_id: int,
    priority: int,
    node_count: int,
    specs: Sequence[NodeSpec],
    duration: timedelta,
    node_names: Sequence[str] = (),
    pool: ResourcePool | None = None,
    driver_version: str = "",
) -> Prediction:
    """The prediction for a job not yet created."""
    forecast, next_id = _current_forecast()
    now = forecast.plan.now
    draft = planner.QueuedJob(
        job_id=next_id,
        project_id=project_id,
        priority=priority,
        queued_at=now,
        node_count=node_count,
        specs=tuple(snapshot.spec_request(spec) for spec in specs),
        node_names=tuple(node_names),
        pool=pool.name if pool else None,
        driver_version=driver_version or None,
        duration=duration,
    )
    return _prediction(forecast.predict(draft), now, draft.pool)


def predict_queued(jobs: Sequence[Job], now: datetime | None = None) -> dict[int, Prediction]:
    """Where each of these queued jobs stands in the current plan."""
    now = now or timezone.now()
    state = snapshot.take(now)
    wanted = {job.pk for job in jobs}
    plan = planner.plan(state.nodes, state.pools, state.running, state.queue, now)
    pools = {job.job_id: job.pool for job in state.queue}
    return {
        job_id: _prediction(plan[job_id], now, pools[job_id]) for job_id in wanted if job_id in plan
    }


def predict_job(job: Job, now: datetime | None = None) -> Prediction:
    """A queued job's place and expected start, planning only the jobs ahead of it."""
    now = now or timezone.now()
    state = snapshot.take(now)
    mine = next((queued for queued in state.queue if queued.job_id == job.pk), None)
    if mine is None:
        raise ValueError(f"job {job.pk} is not queued")
    decision = planner.predict(state.nodes, state.pools, state.running, state.queue, mine, now)
    return _prediction(decision, now, mine.pool)


# The list shows every queued job's place (F1.17). Planning the whole queue per
# page view would cost what admission already computes every pass, so each
# admission pass leaves its plan in the cache, in buckets of job ids: a page of
# twenty jobs reads a bucket or two, not the whole queue.
PLAN_CACHE_KEY = "jingtiao:queue-plan"
PLAN_CACHE_SECONDS = 600
PLAN_BUCKET = 1024


def _bucket_key(job_id: int) -> str:
    return f"{PLAN_CACHE_KEY}:{job_id // PLAN_BUCKET}"


def remember_plan(plan: planner.Plan, pools: dict[int, str | None]) -> dict[str, dict]:
    """Leave the plan in the cache for the list; the buckets are returned as well, so
    that a cache that is down costs the list its shortcut, never its answer."""
    buckets = _buckets(plan, pools)
    try:
        cache.set_many(buckets, PLAN_CACHE_SECONDS)
    except Exception as exc:  # any backend's connection error: the plan is only a shortcut
        logger.warning("the queue plan could not be cached: %s", exc)
    return buckets


def _buckets(plan: planner.Plan, pools: dict[int, str | None]) -> dict[str, dict]:
    # The jobs this pass starts leave the queue, so the others' places are
    # counted without them: the list shows the place a job has once they run.
    starting = {decision.job_id for decision in plan.starts_now()}
    buckets: dict[str, dict] = {}
    place = 0
    for job_id, decision in plan.items():
        if job_id not in starting:
            place += 1
        bucket = buckets.setdefault(_bucket_key(job_id), {"now": plan.now.timestamp()})
        bucket[job_id] = (
            decision.position if job_id in starting else place,
            decision.start.timestamp() if decision.start else None,
            decision.reason,
            pools.get(job_id),
            decision.spec_id,
        )
    return buckets


def queue_forecasts(job_ids: Sequence[int]) -> dict[int, Prediction]:
    """The last admission pass's word on these queued jobs (planned afresh if none)."""
    if not job_ids:
        return {}
    keys = {_bucket_key(job_id) for job_id in job_ids}
    try:
        stored = cache.get_many(keys)
    except Exception as exc:  # the cache is down: plan from the database instead
        logger.warning("the queue plan could not be read from the cache: %s", exc)
        stored = {}
    if len(stored) < len(keys):
        now = timezone.now()
        state = snapshot.take(now)
        plan = planner.plan(state.nodes, state.pools, state.running, state.queue, now)
        buckets = remember_plan(plan, {job.job_id: job.pool for job in state.queue})
        stored = {key: buckets[key] for key in keys if key in buckets}
    forecasts = {}
    for job_id in job_ids:
        bucket = stored.get(_bucket_key(job_id)) or {}
        entry = bucket.get(job_id)
        if entry is None:
            continue  # queued after the last pass: the next one places it
        planned_at = datetime.fromtimestamp(bucket["now"], tz=UTC)
        position, start, reason, pool, spec_id = entry
        start_at = datetime.fromtimestamp(start, tz=UTC) if start is not None else None
        forecasts[job_id] = Prediction(
            starts_now=start_at is not None and start_at <= planned_at,
            start=start_at,
            position=position,
            pool=pool,
            spec_id=spec_id,
            reason=reason,
        )
    return forecasts
