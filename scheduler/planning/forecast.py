"""A plan that keeps what it needs to answer predictions in milliseconds.

``predict`` re-plans every job ahead of the draft: exact, but a bottom-priority draft
behind 10,000 jobs costs a whole plan. A draft is queued "now", so it always lands right
behind the last job of its own priority or higher -- at a priority boundary. A Forecast
plans the queue once and keeps a copy of the node timelines at each boundary; a draft is
then searched on the copy for its boundary, without reserving anything, by the same gang
search ``plan`` uses. Its answer equals ``predict``'s.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from scheduler.planning.engine import (
    Engine,
    admits,
    decision,
    micros,
    never,
    no_cyclic_gc,
    predict_in_order,
)
from scheduler.planning.gang import earliest_gang
from scheduler.planning.reasons import Holders, holders
from scheduler.planning.state import (
    Decision,
    NodeState,
    Plan,
    Pool,
    QueuedJob,
    RunningJob,
    SpecRequest,
    device_matches,
    queue_key,
)
from scheduler.planning.timeline import INF, NodeTimeline


class Forecast:
    """``plan`` once; then ``predict(draft)`` for any number of drafts on the same state."""

    def __init__(
        self,
        nodes: Iterable[NodeState],
        pools: Iterable[Pool],
        running: Iterable[RunningJob],
        queue: Iterable[QueuedJob],
        now: datetime,
    ) -> None:
        self._inputs = (list(nodes), list(pools), list(running), now)
        order = sorted(queue, key=queue_key)
        self._order = order
        self._ids = {job.job_id for job in order}
        # jobs ahead -> the node timelines once those jobs are placed
        boundaries: dict[int, list[NodeTimeline]] = {}
        decisions = {}
        with no_cyclic_gc():
            engine = Engine(self._inputs[0], self._inputs[1], self._inputs[2], order, now)
            bare = {id(g): g.bare() for g in engine.groups}

            def copies() -> list[NodeTimeline]:
                return [t.frozen_copy(bare[id(t.group)]) for t in engine.timelines]

            for ahead, job in enumerate(order):
                if ahead == 0 or job.priority != order[ahead - 1].priority:
                    boundaries[ahead] = copies()
                decisions[job.job_id] = engine.place(job, ahead + 1)
            boundaries[len(order)] = copies()
        keys = [queue_key(job) for job in order]
        self.drafts = Drafts(
            now,
            [
                (
                    ahead,
                    keys[ahead - 1] if ahead else None,
                    keys[ahead] if ahead < len(keys) else None,
                    timelines,
                )
                for ahead, timelines in boundaries.items()
            ],
            engine.pools,
            engine.states,
            holders(self._inputs[2]),
        )
        self.plan = Plan(decisions, now)

    def predict(self, draft: QueuedJob) -> Decision:
        """What ``predict`` answers for ``draft`` (same rules: ``queued_at=now``, new id)."""
        found = None if draft.job_id in self._ids else self.drafts.predict(draft)
        if found is None:
            # not at a boundary (a job queued later than the draft?) or replacing a
            # queued job: plan it the long way
            nodes, pools, running, now = self._inputs
            with no_cyclic_gc():
                found = predict_in_order(nodes, pools, running, self._order, draft, now)
        return found


class Drafts:
    """What a Forecast needs to answer drafts: the node timelines at each priority
    boundary, the pools and the nodes -- plain values, small enough to pickle and share
    between processes (a worker plans, the web processes answer)."""

    def __init__(
        self,
        now: datetime,
        boundaries: list[tuple[int, tuple | None, tuple | None, list[NodeTimeline]]],
        pools: dict[str, Pool],
        states: list[NodeState],
        on: Holders,
    ) -> None:
        self.now = now
        # (jobs ahead, queue key of the last of them, of the next job, node timelines)
        self.boundaries = boundaries
        self.pools = pools
        self.states = states
        self.holders = on  # the running jobs on each node (reasons.holders)
        self._reasons: dict = {}

    def predict(self, draft: QueuedJob) -> Decision | None:
        """The draft's decision, or None where it lands between two queued jobs of its
        own priority (one queued later than it), which only a whole plan answers. The
        draft's id must be new: no queued job is replaced."""
        key = queue_key(draft)
        for ahead, before, after, timelines in self.boundaries:
            if (before is None or before < key) and (after is None or key <= after):
                with no_cyclic_gc():
                    return self._search(draft, ahead + 1, timelines)
        return None

    def _search(self, job: QueuedJob, position: int, timelines: list[NodeTimeline]) -> Decision:
        allowed = [t for t in timelines if admits(self.pools, job, t)]
        k, d = job.node_count, max(1, micros(job.duration))
        best: tuple[int, list[int]] | None = None
        best_spec: SpecRequest | None = None
        for spec in job.specs if k >= 1 else ():
            found = _earliest(allowed, spec, k, d, INF if best is None else best[0])
            if found is not None:
                best, best_spec = found, spec
                if found[0] == 0:
                    break
        if best is None or best_spec is None:
            return never(job, position, self.states, self.pools, self._reasons)
        names = [timelines[n].name for n in best[1]]
        return decision(job, position, best[0], best_spec, names, self.now)


def _earliest(
    nodes: Sequence[NodeTimeline], spec: SpecRequest, k: int, d: int, before: int
) -> tuple[int, list[int]] | None:
    """The gang search on whole node timelines, without the planner's index."""
    demand = (spec.cpu_millis, spec.memory_bytes, spec.devices)
    tails: list[tuple[int, int]] = []
    holes: list[tuple[int, int, int]] = []
    for node in nodes:
        g = node.group
        if not device_matches(spec, g.device_type, g.device_model) or not g.holds(demand):
            continue
        for p, q in node.fit_runs(demand, 0, INF):
            if q == INF:
                tails.append((p, node.index))
            else:
                holes.append((p, q, node.index))
    if len(tails) < k:
        return None
    tails.sort()
    bound = tails[k - 1][0]
    return earliest_gang(tails, [h for h in holes if h[0] <= bound], k, d, before)
