"""The scheduling planner: a pure function from the cluster and its queue to a plan.

No I/O and no Django: admission and queue prediction build the frozen values below from the
ORM (under their lock) and act on the answer. docs/scheduling.md explains the algorithm.

``plan`` gives every queued job its earliest start by conservative backfill: jobs in queue
order (priority high first, then first queued, then lowest id), each a gang of
``node_count`` distinct nodes that start together and hold one slot of a spec for the job's
whole duration, placed at the earliest moment that leaves every reservation of the jobs
ahead of it intact. Running jobs hold their nodes until their deadline, an upper bound, so
every start is a "starts by".

``predict`` answers for a draft job by planning the same state with the draft inserted, so
its answer is the start ``plan`` gives the job once it is created, if nothing else changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from scheduler.planning.engine import no_cyclic_gc, plan_in_order, predict_in_order
from scheduler.planning.forecast import Forecast
from scheduler.planning.reasons import Reason, Words
from scheduler.planning.state import (
    Decision,
    NodeState,
    Plan,
    Pool,
    QueuedJob,
    RunningJob,
    SpecRequest,
    queue_key,
)

__all__ = [
    "Decision",
    "Forecast",
    "NodeState",
    "Plan",
    "Pool",
    "QueuedJob",
    "Reason",
    "RunningJob",
    "SpecRequest",
    "Words",
    "plan",
    "predict",
    "queue_key",
]


def plan(
    nodes: Iterable[NodeState],
    pools: Iterable[Pool],
    running: Iterable[RunningJob],
    queue: Iterable[QueuedJob],
    now: datetime,
) -> Plan:
    """Every queued job's earliest start, spec and nodes, or why it can never run."""
    order = sorted(queue, key=queue_key)
    with no_cyclic_gc():
        decisions = plan_in_order(nodes, pools, running, order, now)
    return Plan(decisions, now)


def predict(
    nodes: Iterable[NodeState],
    pools: Iterable[Pool],
    running: Iterable[RunningJob],
    queue: Sequence[QueuedJob],
    draft: QueuedJob,
    now: datetime,
) -> Decision:
    """What ``plan`` would decide for ``draft`` were it queued now.

    The draft should carry ``queued_at=now`` and an id above every queued job's, as it will
    once created. A queued job with the draft's id is replaced, so this also answers "what
    if this job's priority or duration changed". Jobs behind the draft cannot affect it
    (conservative backfill), so only the jobs ahead of it are planned: cheap for a
    high-priority draft, a whole plan for one at the back. To answer many drafts on one
    state in milliseconds each, plan it once with ``Forecast``.
    """
    with no_cyclic_gc():
        return predict_in_order(nodes, pools, running, queue, draft, now)
