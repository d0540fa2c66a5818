"""Conservative backfill over the node timelines: the loop behind ``plan`` and ``predict``.

Jobs are taken in queue order. Each gets the earliest start at which a gang of its node
count fits into what the jobs before it left free, tried with each of its specs in the
user's order (the earliest start wins, ties go to the earlier spec), and then reserves that
gang for its whole duration. A job therefore only ever sees the reservations of jobs ahead
of it, which is exactly the guarantee that a lower job never delays a higher one.
"""

from __future__ import annotations

import gc
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta

from scheduler.planning.gang import earliest_gang
from scheduler.planning.reasons import Reason, never_reason
from scheduler.planning.state import (
    Decision,
    NodeState,
    Pool,
    QueuedJob,
    RunningJob,
    SpecRequest,
    queue_key,
)
from scheduler.planning.timeline import (
    INF,
    NODE_BITS,
    NODE_MASK,
    Demand,
    DemandIndex,
    Eligible,
    FitIndex,
    NodeGroup,
    NodeTimeline,
    earliest_tails,
)

# A running job past its deadline still holds its node until expiry stops it: it is
# released just after ``now``, so nothing is started on top of it in this cycle.
OVERDUE_RELEASE_US = 1


def micros(delta: timedelta) -> int:
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def pool_admits(pools: dict[str, Pool], node_pool: str | None, job: QueuedJob) -> bool:
    """The pool rule. A pool missing from ``pools`` counts as shared.

    A job that names a pool runs only there, and only if the pool is shared or dedicated to
    its project. A job without a pool stays on shared pools and pool-less nodes, except
    that nodes it names one by one may sit in a pool dedicated to its own project (the form
    forbids naming nodes and a pool together, so the names are the only way to say so).
    """
    if job.pool is not None and node_pool != job.pool:
        return False
    if node_pool is None:
        return True
    known = pools.get(node_pool)
    if known is None or known.dedicated_project_ids is None:
        return True
    if job.pool is None and not job.node_names:
        return False
    return job.project_id in known.dedicated_project_ids


def admission_key(pools: dict[str, Pool], job: QueuedJob) -> tuple:
    """What ``pool_admits`` reads of a job: its pool, whether it names nodes, and its
    project only where that can matter -- a dedicated pool named, or nodes named one by
    one (a job without either stays on shared nodes, whatever its project)."""
    known = None if job.pool is None else pools.get(job.pool)
    dedicated = known is not None and known.dedicated_project_ids is not None
    project = job.project_id if dedicated or job.node_names else None
    return (job.pool, bool(job.node_names), project)


def partition(pools: dict[str, Pool], node_pool: str | None) -> str | None:
    """Which nodes are indexed together: a dedicated pool's own, or all the others.

    ``pool_admits`` never lets a job that names no nodes use two of them: without a pool it
    stays on the shared ones, with a pool on that pool's nodes alone.
    """
    known = None if node_pool is None else pools.get(node_pool)
    return node_pool if known is not None and known.dedicated_project_ids is not None else None


def admits(pools: dict[str, Pool], job: QueuedJob, node: NodeTimeline) -> bool:
    """Whether the job's pool, driver and node-name constraints allow this node."""
    g = node.group
    return (
        (job.driver_version is None or g.driver_version == job.driver_version)
        and (not job.node_names or node.name in job.node_names)
        and pool_admits(pools, g.pool, job)
    )


def never(
    job: QueuedJob,
    position: int,
    states: Sequence[NodeState],
    pools: dict[str, Pool],
    reasons: dict[tuple, Reason],
) -> Decision:
    """The decision for a job that can never run, with why."""
    # jobs that can never run tend to come in alike batches (clones, retries): the
    # reason scans every node, so it is worked out once per kind of job
    key = (
        admission_key(pools, job),
        job.node_names,
        job.driver_version,
        job.specs,
        job.node_count,
    )
    reason = reasons.get(key)
    if reason is None:
        reason = reasons[key] = never_reason(job, states, pools, pool_admits)
    return Decision(job.job_id, None, None, (), position, reason)


ONE_MICROSECOND = timedelta(microseconds=1)


def decision(
    job: QueuedJob, position: int, start: int, spec: SpecRequest, names: Iterable[str], now
) -> Decision:
    # a product of a timedelta is exact, and cheaper to make than one from keywords
    when = now if start == 0 else now + ONE_MICROSECOND * start
    return Decision(job.job_id, when, spec.spec_id, tuple(sorted(names)), position)


class Engine:
    """One planning run: the cluster's timelines, filled job by job."""

    def __init__(
        self,
        nodes: Iterable[NodeState],
        pools: Iterable[Pool],
        running: Iterable[RunningJob],
        queue: Sequence[QueuedJob],
        now: datetime,
    ) -> None:
        self.now = now
        self.pools = {p.name: p for p in pools}
        self.states = sorted((n for n in nodes if n.schedulable), key=lambda n: n.name)
        # (device type, model or None) and the amounts -> demand id
        self.demand_ids: dict[tuple[tuple[str, str | None], Demand], int] = {}
        demands: list[Demand] = []
        min_hole: list[int] = []
        # per job: its duration in microseconds and its specs with their demand ids
        self.needs: dict[int, tuple[int, list[tuple[SpecRequest, int]]]] = {}
        for job in queue:
            d = max(1, micros(job.duration))
            specs = []
            for spec in job.specs:
                key = (
                    (spec.device_type, (spec.device_model or "").casefold() or None),
                    (spec.cpu_millis, spec.memory_bytes, spec.devices),
                )
                d_id = self.demand_ids.get(key)
                if d_id is None:
                    d_id = self.demand_ids[key] = len(demands)
                    demands.append(key[1])
                    min_hole.append(d)
                elif d < min_hole[d_id]:
                    min_hole[d_id] = d
                specs.append((spec, d_id))
            self.needs[job.job_id] = (d, specs)

        groups: dict[tuple, NodeGroup] = {}
        indexes: dict[tuple[str | None, int], DemandIndex] = {}
        self.timelines: list[NodeTimeline] = []
        self.by_name: dict[str, NodeTimeline] = {}
        for state in self.states:
            gkey = (
                state.pool,
                state.driver_version,
                state.device_type,
                state.cpu_millis,
                state.memory_bytes,
                state.devices,
                (state.device_model or "").casefold() or None,
            )
            group = groups.get(gkey)
            if group is None:
                group = groups[gkey] = NodeGroup(*gkey)
                part = partition(self.pools, group.pool)
                for ((dtype, model), demand), d_id in self.demand_ids.items():
                    if (
                        dtype == group.device_type
                        and (model is None or model == group.device_model)
                        and group.holds(demand)
                    ):
                        index = indexes.get((part, d_id))
                        if index is None:
                            index = indexes[part, d_id] = DemandIndex(min_hole[d_id])
                        group.indexes[d_id] = index
            node = NodeTimeline(len(self.timelines), state.name, group)
            group.nodes.append(node.index)
            self.timelines.append(node)
            self.by_name[state.name] = node
        self.names = [node.name for node in self.timelines]
        if len(self.timelines) > NODE_MASK + 1:
            raise ValueError(f"the planner indexes at most {NODE_MASK + 1} nodes")
        self.groups = list(groups.values())
        self.fits = FitIndex(self.timelines, demands)
        self._hold_running(running)
        self.fits.build()
        # demand id -> the groups whose nodes can hold it
        self._holding: dict[int, list[NodeGroup]] = {}
        for group in self.groups:
            for d_id in group.indexes:
                self._holding.setdefault(d_id, []).append(group)
        self._where_for: dict[tuple, tuple] = {}
        self._usable: dict[tuple, tuple] = {}
        self._reasons: dict[tuple, Reason] = {}

    def _hold_running(self, running: Iterable[RunningJob]) -> None:
        for job in running:
            end = max(micros(job.deadline - self.now), OVERDUE_RELEASE_US)
            spec = job.spec
            for name in job.nodes:
                node = self.by_name.get(name)
                if node is not None:  # gone or unschedulable: nothing will be placed there
                    node.take(0, end, spec.cpu_millis, spec.memory_bytes, spec.devices)

    def _where(self, job: QueuedJob, d_id: int) -> tuple[DemandIndex | None, Eligible, int]:
        """The index to search for this job with this demand, which of its nodes the job
        may use, and how many. Decided once per constraint set."""
        key = (job.pool, job.project_id if job.pool is not None else None, job.driver_version, d_id)
        hit = self._where_for.get(key)
        if hit is None:
            # constraint sets that the pool rule cannot tell apart share the answer
            usable_key = (admission_key(self.pools, job), job.driver_version, d_id)
            hit = self._usable.get(usable_key)
            if hit is None:
                hit = self._usable[usable_key] = self._eligible(job, d_id)
            self._where_for[key] = hit
        return hit

    def _eligible(self, job: QueuedJob, d_id: int) -> tuple[DemandIndex | None, Eligible, int]:
        """What ``_where`` answers, worked out from the groups that hold the demand."""
        usable = [
            g
            for g in self._holding.get(d_id, ())
            if (job.driver_version is None or g.driver_version == job.driver_version)
            and pool_admits(self.pools, g.pool, job)
        ]
        if not usable:
            return None, None, 0
        # all in one partition (see partition), so sharing one index
        index = usable[0].indexes[d_id]
        total = sum(len(g.nodes) for g in usable)
        eligible = None
        if total < index.node_count:
            mask = bytearray(len(self.timelines))
            for g in usable:
                for n in g.nodes:
                    mask[n] = 1
            eligible = bytes(mask)
        return index, eligible, total

    def admits(self, job: QueuedJob, node: NodeTimeline) -> bool:
        return admits(self.pools, job, node)

    def _named(self, job: QueuedJob, d_id: int) -> list[NodeTimeline]:
        """The nodes a job that lists node names may use with this demand."""
        named = (self.by_name.get(name) for name in sorted(set(job.node_names)))
        return [n for n in named if n is not None and d_id in n.fits and self.admits(job, n)]

    def _search(self, job: QueuedJob, d_id: int, k: int, d: int, before: int):
        if job.node_names:
            nodes = self._named(job, d_id)
            if len(nodes) < k:
                return None
            tails: list[tuple[int, int]] = []
            holes: list[tuple[int, int, int]] = []
            for node in nodes:
                for p, q in node.fits[d_id]:
                    if q == INF:
                        tails.append((p, node.index))
                    else:
                        holes.append((p, q, node.index))
            tails.sort()
            bound = tails[k - 1][0]
            holes = [h for h in holes if h[0] <= bound]
            return earliest_gang(tails, holes, k, d, before)
        index, eligible, total = self._where(job, d_id)
        if index is None or total < k:
            return None
        tails, hole_index = index.tails, index.holes
        if k == 1:
            # a gang of one: the least (start, end, node) of the earliest eligible tail and
            # the first hole long enough in each length class, as earliest_gang would choose
            first = (
                tails[0] if eligible is None else next(t for t in tails if eligible[t & NODE_MASK])
            )
            found = (first >> NODE_BITS, INF, first & NODE_MASK)
            if hole_index.size:
                found = hole_index.first_fit(d, found, eligible)
            return (found[0], [found[2]]) if found[0] < before else None
        # The k earliest tails bound the start (every node has a tail), so only holes that
        # start by then can matter.
        tails = earliest_tails(tails, k, eligible)
        bound = min(tails[k - 1][0], before - 1)
        holes: list[tuple[int, int, int]] = []
        if hole_index.size:
            hole_index.collect(d, bound, eligible, holes)
        return earliest_gang(tails, holes, k, d, before)

    def never(self, job: QueuedJob, position: int) -> Decision:
        return never(job, position, self.states, self.pools, self._reasons)

    def decision(
        self, job: QueuedJob, position: int, start: int, spec: SpecRequest, chosen: list[int]
    ) -> Decision:
        return decision(job, position, start, spec, map(self.names.__getitem__, chosen), self.now)

    def place(self, job: QueuedJob, position: int) -> Decision:
        """Find the job's earliest start, reserve its gang, and say so."""
        k = job.node_count
        d, specs = self.needs[job.job_id]
        best: tuple[int, list[int]] | None = None
        best_spec = None
        best_demand = -1
        if k >= 1:
            for spec, d_id in specs:
                found = self._search(job, d_id, k, d, INF if best is None else best[0])
                if found is not None:
                    best, best_spec, best_demand = found, spec, d_id
                    if found[0] == 0:
                        break  # nothing starts earlier than now
        if best is None or best_spec is None:
            return self.never(job, position)
        start, chosen = best
        need = self.fits.demands[best_demand]  # the spec's amounts
        timelines = self.timelines
        self.fits.reserve_gang([timelines[n] for n in chosen], start, start + d, need)
        return self.decision(job, position, start, best_spec, chosen)


@contextmanager
def no_cyclic_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while planning.

    Planning allocates hundreds of thousands of small tuples and no reference cycles, so
    every collection it would trigger is wasted work -- and in a web or Celery worker with a
    large heap, the older-generation passes it provokes cost more than the planning itself.
    Let the engine go inside the block (keep it local to a function called there): its
    objects are then freed as their last reference goes, instead of being walked by the
    first collection after the collector is back on.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def plan_in_order(
    nodes: Iterable[NodeState],
    pools: Iterable[Pool],
    running: Iterable[RunningJob],
    order: Sequence[QueuedJob],
    now: datetime,
) -> dict[int, Decision]:
    """Every job's decision, by id, with ``order`` the queue in queue order."""
    engine = Engine(nodes, pools, running, order, now)
    return {job.job_id: engine.place(job, position) for position, job in enumerate(order, 1)}


def predict_in_order(
    nodes: Iterable[NodeState],
    pools: Iterable[Pool],
    running: Iterable[RunningJob],
    queue: Sequence[QueuedJob],
    draft: QueuedJob,
    now: datetime,
) -> Decision:
    """Plan the jobs ahead of ``draft`` (replacing any queued job with its id), then it."""
    order = sorted((j for j in queue if j.job_id != draft.job_id), key=queue_key)
    draft_key = queue_key(draft)
    ahead = bisect_left([queue_key(j) for j in order], draft_key)
    order = [*order[:ahead], draft]
    engine = Engine(nodes, pools, running, order, now)
    for position, job in enumerate(order[:-1], 1):
        engine.place(job, position)
    return engine.place(draft, ahead + 1)
