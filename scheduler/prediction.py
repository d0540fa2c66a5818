"""Queue prediction (F1.17): will a job start now, and if not, by when?

The same planner as admission, with the draft inserted where it would stand in
the queue, so the answer is the start it gets once created if nothing else
changes. Starts are upper bounds: running jobs may end before their deadline.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import formats, timezone
from django.utils.translation import gettext as _

from finetune.models import Job
from scheduler import planner, snapshot
from scheduler.models import NodeSpec, ResourcePool


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
        return _("Queued: %(where)s, expected to start by %(start)s.") % {
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
    job_id: int | None = None,
    now: datetime | None = None,
) -> Prediction:
    """The prediction for a job not yet created (or a queued job, changed)."""
    now = now or timezone.now()
    state = snapshot.take(now)
    if job_id is None:
        latest = Job.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
        job_id = latest + 1
    draft = planner.QueuedJob(
        job_id=job_id,
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
    decision = planner.predict(state.nodes, state.pools, state.running, state.queue, draft, now)
    return _prediction(decision, now, draft.pool)


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
