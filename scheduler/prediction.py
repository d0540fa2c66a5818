"""Queue prediction (F1.17): will a job start now, and if not, when?

The same planner as admission, with the draft inserted where it would stand in
the queue, so the answer is the start it gets once created if nothing else
changes. Each answer has two starts: the latest, an upper bound from every
running job using its whole duration, and the expected one, from the same plan
over when jobs will likely end (their trainers' ETAs, and the share of their
duration jobs typically run: planning/expected.py).
"""

from __future__ import annotations

import logging
import pickle
import threading
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db.models import Count, Max, Q, Sum
from django.utils import formats, timezone
from django.utils.translation import gettext as _

from accounts.models import Project
from finetune.models import Job, JobEvent, Priority
from finetune.texts import Said, cannot_run, from_data, said_of
from scheduler import capacity, kueue, kueue_quotas, planner, snapshot
from scheduler.models import KueueQueue, Node, NodeSpec, ResourcePool
from scheduler.planning.engine import no_cyclic_gc
from scheduler.planning.expected import expected_job
from scheduler.planning.forecast import Drafts
from scheduler.planning.reasons import Holders, holders, waiting_for

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prediction:
    starts_now: bool
    start: datetime | None  # the latest start; None: can never run
    position: int
    pool: str | None
    spec_id: int | None
    reason: Said | None  # why it can never run, in words to say in the reader's language
    expected_start: datetime | None = None  # the likely start, at or before ``start``
    waiting: Said | None = None  # what it waits for, when it waits

    @property
    def can_run(self) -> bool:
        return self.start is not None

    @property
    def verdict(self) -> str:
        """ "now": it starts at once; "queue": it waits; "never": no node set could ever
        hold it (the create page colours its answer by this)."""
        return "now" if self.starts_now else "queue" if self.can_run else "never"

    @property
    def expects_earlier(self) -> bool:
        """Whether the expected start says more than the latest one."""
        return (
            self.start is not None
            and self.expected_start is not None
            and self.expected_start < self.start
        )

    @property
    def reason_text(self) -> str:
        return self.reason.render() if self.reason is not None else ""

    def message(self) -> str:
        if not self.can_run:
            return cannot_run(self.reason) if self.reason is not None else ""
        if self.starts_now:
            return _("Starts now.")
        if self.pool and kueue.enabled():  # the pool is a Kueue queue
            where = _("position %(position)d in Kueue's queue %(queue)s") % {
                "position": self.position,
                "queue": self.pool,
            }
        elif self.pool:
            where = _("position %(position)d in pool %(pool)s") % {
                "position": self.position,
                "pool": self.pool,
            }
        else:
            where = _("position %(position)d in the queue") % {"position": self.position}
        latest = _moment(self.start)
        if self.expects_earlier:
            said = _(
                "Queued: %(where)s; expected to start %(expected)s, at the latest %(start)s"
            ) % {"where": where, "expected": _moment(self.expected_start), "start": latest}
        else:
            said = _("Queued: %(where)s, expected to start by %(start)s") % {
                "where": where,
                "start": latest,
            }
        if self.waiting is None:
            return said
        return _("%(said)s (%(waiting)s)") % {"said": said, "waiting": self.waiting.render()}


def _moment(when: datetime | None) -> str:
    return formats.date_format(timezone.localtime(when), "SHORT_DATETIME_FORMAT") if when else ""


def _prediction(
    decision: planner.Decision,
    now: datetime,
    pool: str | None,
    expected: planner.Decision | None = None,
    on: Holders | None = None,
) -> Prediction:
    start = decision.start
    likely = expected.start if expected is not None else None
    waiting = waiting_for(decision, on, now) if on is not None and start and start > now else None
    return Prediction(
        starts_now=start is not None and start <= now,
        start=start,
        position=decision.position,
        pool=pool,
        spec_id=decision.spec_id,
        reason=said_of(decision.reason.words) if decision.reason is not None else None,
        # planning shorter jobs can, rarely, place one later than the bound (backfill is
        # not monotone): the bound holds, so the expected start never passes it
        expected_start=min(likely, start) if likely is not None and start is not None else start,
        waiting=said_of(waiting) if waiting is not None else None,
    )


# Planning every job ahead of a draft costs about as much as a whole plan
# (half a second at 10,000 queued jobs), too slow to answer while a user edits
# the form. A Forecast plans once and then answers any draft in milliseconds.
# The worker keeps one warm: every admission pass that leaves the state as it
# found it shares its Forecasts' drafts part in the cache, labelled with the
# state it planned; each web process takes it from there (tens of milliseconds),
# keeps it while that state holds, and plans by itself only where the worker
# has not caught up with the latest change.
FORECAST_MAX_AGE_SECONDS = 30
FORECAST_CACHE_KEY = "jingtiao:forecast"
_forecast_lock = threading.Lock()


@dataclass(frozen=True)
class _Forecasts:
    """One state planned twice: over deadlines (latest starts) and over expected ends."""

    version: tuple
    built: float  # time.time(), shared between processes
    latest: Drafts
    expected: Drafts
    share: float
    next_id: int
    # the newest queued job in the state planned (None: not known, as an older release
    # shared it), so that a job is never placed over a state that already holds it
    last_queued: int | None = None
    # how many jobs it planned, queued and running: a job deleted since (its events go
    # with it) is seen by the count, not by the newest ids
    planned: int | None = None

    @property
    def fresh(self) -> bool:
        return time.time() - self.built < FORECAST_MAX_AGE_SECONDS


_forecast: _Forecasts | None = None


def state_version() -> tuple:
    """Changes whenever anything the planner reads changes (or nearly: an edit in
    the admin that writes no event, or a trainer's new ETA, is caught by the
    forecast's maximum age). Read it before the state it labels."""
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
    queues = KueueQueue.objects.aggregate(count=Count("pk"), read=Max("synced_at"))
    return (jobs["latest"], events["latest"], *nodes.values(), *pools.values(), *queues.values())


def _forecasts_of(
    version: tuple,
    state: snapshot.Snapshot,
    latest: planner.Forecast | None = None,
    expected: planner.Forecast | None = None,
) -> _Forecasts:
    if latest is None:
        latest = planner.Forecast(state.nodes, state.pools, state.running, state.queue, state.now)
    if expected is None:
        running, queue = state.expected()
        expected = planner.Forecast(state.nodes, state.pools, running, queue, state.now)
    return _Forecasts(
        version,
        time.time(),
        latest.drafts,
        expected.drafts,
        state.share,
        (version[0] or 0) + 1,
        max((job.job_id for job in state.queue), default=0),
        len(state.queue) + len(state.running),
    )


def share_forecasts(forecasts: _Forecasts) -> None:
    """Leave the forecasts where every process finds them (a shortcut, never needed)."""
    try:
        blob = zlib.compress(pickle.dumps(forecasts, protocol=pickle.HIGHEST_PROTOCOL), 1)
        cache.set(FORECAST_CACHE_KEY, (forecasts.version, blob), FORECAST_MAX_AGE_SECONDS)
    except Exception as exc:  # any backend's connection error
        logger.warning("the forecast could not be shared: %s", exc)


def keep_warm(version: tuple, state: snapshot.Snapshot, latest, expected) -> None:
    """Share the Forecasts an admission pass built of ``state``, read at ``version``."""
    share_forecasts(_forecasts_of(version, state, latest, expected))


def remember_state(
    version: tuple, state: snapshot.Snapshot, latest: planner.Forecast, *, warm: bool
) -> None:
    """What an admission pass leaves of the state it planned (``latest``, over deadlines):
    the list's plans, with the expected starts planned here, and, with ``warm``, the
    create page's forecasts (a pass that started jobs leaves that to the next one)."""
    running, queue = state.expected()
    expected = planner.Forecast(state.nodes, state.pools, running, queue, state.now)
    pools = {job.job_id: job.pool for job in state.queue}
    remember_plan(latest.plan, pools, expected.plan, latest.drafts.holders)
    if warm:
        keep_warm(version, state, latest, expected)


def _shared(version: tuple | None) -> _Forecasts | None:
    """The forecasts a worker shared, of the state at ``version`` (of any, if None)."""
    try:
        found = cache.get(FORECAST_CACHE_KEY)
        if not found or (version is not None and found[0] != version):
            return None
        with no_cyclic_gc():  # tens of thousands of small objects: see no_cyclic_gc
            forecasts = pickle.loads(zlib.decompress(found[1]))  # written by our workers
    except Exception as exc:  # the cache is down, or holds what an older release wrote
        logger.warning("the shared forecast could not be read: %s", exc)
        return None
    return forecasts if isinstance(forecasts, _Forecasts) and forecasts.fresh else None


def _current_forecasts() -> _Forecasts:
    """The Forecasts of the state now: this process's, the worker's, or planned here."""
    global _forecast
    version = state_version()
    with _forecast_lock:
        if _forecast is not None and _forecast.version == version and _forecast.fresh:
            return _forecast
        found = _shared(version)
        if found is None:
            found = _forecasts_of(version, snapshot.take(timezone.now()))
            share_forecasts(found)
        _forecast = found
        return found


def predict_draft(
    *,
    project: Project,
    specs: Sequence[NodeSpec],
    node_count: int,
    pool: ResourcePool | None = None,
    node_names: Sequence[str] = (),
    driver_version: str = "",
    priority: int | None = None,
    duration: timedelta | None = None,
) -> Prediction:
    """Whether a job not yet created would start now, queue (until when), or never fit:
    the start it gets once created, if nothing else changes."""
    forecasts = _current_forecasts()
    now = forecasts.latest.now
    draft = capacity.draft_job(
        job_id=forecasts.next_id,
        project_id=project.pk,
        specs=specs,
        node_count=node_count,
        now=now,
        pool=pool,
        node_names=node_names,
        driver_version=driver_version,
        priority=priority if priority is not None else Priority.NORMAL,
        duration=duration or settings.JINGTIAO_DEFAULT_DURATION,
    )
    if kueue.enabled():
        draft = kueue_quotas.draft_in_queue(draft)
    # None: it lands between queued jobs of its priority (one queued after the state
    # was read): only a whole plan answers
    return _over(forecasts, draft) or _predicted_afresh(draft)


def _over(forecasts: _Forecasts, job: planner.QueuedJob) -> Prediction | None:
    """``job``'s prediction over the forecasts' state, as the last of its priority;
    None where it would stand between queued jobs."""
    now = forecasts.latest.now
    decision = forecasts.latest.predict(job)
    waits = decision is not None and decision.start is not None and decision.start > now
    expected = forecasts.expected.predict(expected_job(job, forecasts.share)) if waits else None
    if decision is None or (waits and expected is None):
        return None
    return _prediction(decision, now, job.pool, expected, forecasts.latest.holders)


def _predicted_afresh(draft: planner.QueuedJob) -> Prediction:
    state = snapshot.take(timezone.now())
    return _predict_in(state, replace(draft, queued_at=state.now))


def _predict_in(state: snapshot.Snapshot, job: planner.QueuedJob) -> Prediction:
    """Plan the jobs ahead of ``job`` (replacing a queued one of its id), twice."""
    nodes, pools, now = state.nodes, state.pools, state.now
    decision = planner.predict(nodes, pools, state.running, state.queue, job, now)
    expected = None
    if decision.start is not None and decision.start > now:
        running, queue = state.expected()
        expected = planner.predict(
            nodes, pools, running, queue, expected_job(job, state.share), now
        )
    return _prediction(decision, now, job.pool, expected, holders(state.running))


def _plans(state: snapshot.Snapshot) -> tuple[planner.Plan, planner.Plan]:
    """The state's plan over deadlines and its plan over expected ends."""
    running, queue = state.expected()
    return (
        planner.plan(state.nodes, state.pools, state.running, state.queue, state.now),
        planner.plan(state.nodes, state.pools, running, queue, state.now),
    )


def predict_job(job: Job, now: datetime | None = None) -> Prediction | None:
    """A queued job's place and starts, planning only the jobs ahead of it; None where it
    left the queue (admitted, stopped) between the page reading it and the planner."""
    if now is None and (found := _just_queued(job)) is not None:
        return _as_kueue_says({job.pk: found})[job.pk]
    state = snapshot.take(now or timezone.now())
    mine = next((queued for queued in state.queue if queued.job_id == job.pk), None)
    if mine is None:
        return None
    return _as_kueue_says({job.pk: _predict_in(state, mine)})[job.pk]


def _as_kueue_says(predictions: dict[int, Prediction]) -> dict[int, Prediction]:
    """With Kueue admission: each job's place is Kueue's (its place in its ClusterQueue,
    from the visibility API) and what it waits for is what Kueue says, where it said
    so; the starts stay the planner's, over the quotas."""
    if not kueue.enabled() or not predictions:
        return predictions
    places, reasons = kueue.positions(), kueue.waiting_reasons()
    found = {}
    for job_id, said in predictions.items():
        standing = places.get(job_id)
        found[job_id] = replace(
            said,
            position=standing.position if standing else said.position,
            pool=standing.queue if standing else said.pool,
            waiting=reasons.get(job_id, said.waiting),
        )
    return found


def _just_queued(job: Job) -> Prediction | None:
    """The prediction of a job created just after the state of the kept forecasts,
    where nothing else changed since: the state now is theirs with this job last in its
    priority, so it is placed over them (what the create page showed for it) instead
    of the whole queue read and planned again, the answer the same. None otherwise."""
    if job.waiting_for_data:
        return None
    forecasts = _kept_forecasts()
    if (
        forecasts is None
        or forecasts.last_queued is None
        or forecasts.planned is None
        or job.pk < forecasts.next_id
        or job.pk <= forecasts.last_queued  # committed while the state was read: in it
    ):
        return None
    version = state_version()
    since_jobs, since_events = forecasts.version[0] or 0, forecasts.version[1] or 0
    if (
        version[0] != job.pk
        or version[2:] != forecasts.version[2:]
        or Job.objects.filter(pk__gt=since_jobs, pk__lt=job.pk).exists()
        or JobEvent.objects.filter(pk__gt=since_events).exclude(job_id=job.pk).exists()
        or snapshot.planned_jobs().count() != forecasts.planned + 1
    ):
        return None
    queued = capacity.draft_job(
        job_id=job.pk,
        project_id=job.project_id,
        specs=job.ordered_node_specs(),
        node_count=job.node_count,
        now=job.queued_at or job.created_at,
        pool=job.pool,
        node_names=job.node_names or (),
        driver_version=job.driver_version,
        priority=job.priority,
        duration=job.duration,
    )
    if kueue.enabled():
        queued = kueue_quotas.draft_in_queue(queued)
    return _over(forecasts, queued)


def _kept_forecasts() -> _Forecasts | None:
    """This process's forecasts, or the worker's, of whatever state, while fresh."""
    with _forecast_lock:
        kept = _forecast
    if kept is not None and kept.fresh:
        return kept
    return _shared(None)


# The list shows every queued job's place (F1.17). Planning the whole queue per
# page view would cost what admission already computes every pass, so each
# admission pass leaves its plans in the cache, in buckets of job ids: a page of
# twenty jobs reads a bucket or two, not the whole queue.
PLAN_CACHE_KEY = "jingtiao:queue-plan"
PLAN_CACHE_SECONDS = 600
PLAN_BUCKET = 1024


def _bucket_key(job_id: int) -> str:
    return f"{PLAN_CACHE_KEY}:{job_id // PLAN_BUCKET}"


def remember_plan(
    plan: planner.Plan,
    pools: dict[int, str | None],
    expected: planner.Plan | None = None,
    on: Holders | None = None,
) -> dict[str, dict]:
    """Leave the plans in the cache for the list; the buckets are returned as well, so
    that a cache that is down costs the list its shortcut, never its answer. ``on``:
    the running jobs on each node (reasons.holders), to say what waiting jobs wait for."""
    buckets = _buckets(plan, pools, expected, on or {})
    try:
        cache.set_many(buckets, PLAN_CACHE_SECONDS)
    except Exception as exc:  # any backend's connection error: the plan is only a shortcut
        logger.warning("the queue plan could not be cached: %s", exc)
    return buckets


def _stamp(when: datetime | None) -> float | None:
    return when.timestamp() if when is not None else None


def _data(words: planner.Words | None) -> dict | None:
    """``said_of(words).data()`` without wording the English (thousands per pass)."""
    if words is None:
        return None
    return {
        "msgid": words.msgid,
        "params": {
            name: {"said": _data(value)} if isinstance(value, planner.Words) else value
            for name, value in words.params
        },
    }


def _buckets(
    plan: planner.Plan,
    pools: dict[int, str | None],
    expected: planner.Plan | None,
    on: Holders,
) -> dict[str, dict]:
    # The jobs this pass starts leave the queue, so the others' places are
    # counted without them: the list shows the place a job has once they run.
    starting = {decision.job_id for decision in plan.starts_now()}
    buckets: dict[str, dict] = {}
    place = 0
    for job_id, decision in plan.items():
        if job_id not in starting:
            place += 1
        bucket = buckets.setdefault(_bucket_key(job_id), {"now": plan.now.timestamp()})
        likely = expected.get(job_id) if expected is not None else None
        waits = job_id not in starting and decision.start is not None
        bucket[job_id] = (
            decision.position if job_id in starting else place,
            _stamp(decision.start),
            _data(decision.reason.words if decision.reason is not None else None),
            pools.get(job_id),
            decision.spec_id,
            _stamp(likely.start) if likely is not None else None,
            _data(waiting_for(decision, on, plan.now) if waits and on else None),
        )
    return buckets


def _moment_of(stamp: float | None) -> datetime | None:
    return datetime.fromtimestamp(stamp, tz=UTC) if stamp is not None else None


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
        state = snapshot.take(timezone.now())
        latest, expected = _plans(state)
        pools = {job.job_id: job.pool for job in state.queue}
        buckets = remember_plan(latest, pools, expected, holders(state.running))
        stored = {key: buckets[key] for key in keys if key in buckets}
    forecasts = {}
    for job_id in job_ids:
        bucket = stored.get(_bucket_key(job_id)) or {}
        entry = bucket.get(job_id)
        if entry is None or len(entry) != 7:
            continue  # queued after the last pass (or kept by an older release): the next one
        planned_at = datetime.fromtimestamp(bucket["now"], tz=UTC)
        position, start, reason, pool, spec_id, likely, waiting = entry
        start_at = _moment_of(start)
        expected_at = _moment_of(likely)
        forecasts[job_id] = Prediction(
            starts_now=start_at is not None and start_at <= planned_at,
            start=start_at,
            position=position,
            pool=pool,
            spec_id=spec_id,
            reason=from_data(reason),
            expected_start=min(expected_at, start_at) if expected_at and start_at else start_at,
            waiting=from_data(waiting),
        )
    return _as_kueue_says(forecasts)
