"""Builders and a brute-force referee shared by the planner tests (no tests of its own).

The referee re-derives from first principles what the planner must guarantee, node by node
and moment by moment, without any of the planner's indexes, so the two can disagree.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

from scheduler.planner import (
    Decision,
    NodeState,
    Plan,
    Pool,
    QueuedJob,
    RunningJob,
    SpecRequest,
    queue_key,
)

NOW = datetime(2025, 6, 1, 8, 0, tzinfo=UTC)
GIB = 1 << 30
# how long an overdue running job is taken to hold its node (see the planner's engine)
OVERDUE = timedelta(microseconds=1)


def minutes(m: float) -> timedelta:
    return timedelta(minutes=m)


def node(
    name: str,
    *,
    pool: str | None = None,
    driver: str | None = None,
    device_type: str = "mlu",
    devices: int = 8,
    cpus: int = 64,
    mem_gib: int = 512,
    schedulable: bool = True,
) -> NodeState:
    return NodeState(
        name, pool, driver, device_type, cpus * 1000, mem_gib * GIB, devices, schedulable
    )


def spec(
    spec_id: int, devices: int = 8, *, device_type: str = "mlu", cpus: int = 8, mem_gib: int = 64
) -> SpecRequest:
    return SpecRequest(spec_id, cpus * 1000, mem_gib * GIB, device_type, devices)


def job(
    job_id: int,
    *specs: SpecRequest,
    nodes: int = 1,
    hours: float = 1,
    priority: int = 0,
    queued: timedelta = timedelta(0),
    project: int = 1,
    pool: str | None = None,
    driver: str | None = None,
    names: tuple[str, ...] = (),
) -> QueuedJob:
    """A queued job; ``queued`` is how long before NOW it joined the queue."""
    return QueuedJob(
        job_id=job_id,
        project_id=project,
        priority=priority,
        queued_at=NOW - queued,
        node_count=nodes,
        specs=specs or (spec(1),),
        node_names=names,
        pool=pool,
        driver_version=driver,
        duration=timedelta(hours=hours),
    )


def running(job_id: int, used: SpecRequest, *names: str, ends_in: timedelta) -> RunningJob:
    return RunningJob(job_id, used, names, NOW + ends_in)


# --- the referee ------------------------------------------------------------------------

Interval = tuple[datetime, datetime, SpecRequest]


def node_may_run(n: NodeState, j: QueuedJob, pools: dict[str, Pool]) -> bool:
    """The constraint rules, written out plainly (spec-independent part)."""
    if not n.schedulable:
        return False
    if j.node_names and n.name not in j.node_names:
        return False
    if j.driver_version is not None and n.driver_version != j.driver_version:
        return False
    if j.pool is not None and n.pool != j.pool:
        return False
    if n.pool is None:
        return True
    p = pools.get(n.pool)
    if p is None or p.dedicated_project_ids is None:
        return True
    if j.pool is None and not j.node_names:
        return False  # no pool named: shared pools and pool-less nodes only
    return j.project_id in p.dedicated_project_ids


def holds(n: NodeState, s: SpecRequest) -> bool:
    return (
        n.device_type == s.device_type
        and n.devices >= s.devices
        and n.cpu_millis >= s.cpu_millis
        and n.memory_bytes >= s.memory_bytes
    )


def busy_intervals(
    nodes: Sequence[NodeState], run: Iterable[RunningJob], now: datetime
) -> dict[str, list[Interval]]:
    by_node: dict[str, list[Interval]] = {n.name: [] for n in nodes if n.schedulable}
    for r in run:
        end = max(r.deadline, now + OVERDUE)
        for name in r.nodes:
            if name in by_node:
                by_node[name].append((now, end, r.spec))
    return by_node


def fits_over(
    n: NodeState, taken: list[Interval], s: SpecRequest, a: datetime, b: datetime
) -> bool:
    """Does one more slot of ``s`` fit on ``n`` at every moment of ``[a, b)``?"""
    moments = {a} | {t for t, _, _ in taken if a <= t < b}
    for t in moments:
        cpu = mem = dev = 0
        for start, end, used in taken:
            if start <= t < end:
                cpu += used.cpu_millis
                mem += used.memory_bytes
                dev += used.devices
        if (
            cpu + s.cpu_millis > n.cpu_millis
            or mem + s.memory_bytes > n.memory_bytes
            or dev + s.devices > n.devices
        ):
            return False
    return True


def replay(
    nodes: Sequence[NodeState],
    pools: Sequence[Pool],
    run: Sequence[RunningJob],
    queue: Sequence[QueuedJob],
    result: Plan,
    now: datetime = NOW,
) -> None:
    """Check a plan job by job, in queue order, against everything placed before it.

    For each job: its gang is node_count distinct nodes that meet its constraints and hold
    its spec for its whole duration on top of what is already there; no spec starts it
    earlier (at any moment the planner could have chosen), and no earlier spec starts it as
    early. A job without a start must fit on no set of nodes even with the cluster empty.
    """
    by_name = {n.name: n for n in nodes}
    pool_map = {p.name: p for p in pools}
    taken = busy_intervals(nodes, run, now)
    order = sorted(queue, key=queue_key)
    for position, j in enumerate(order, 1):
        d: Decision = result[j.job_id]
        assert d.position == position
        allowed = [n for n in nodes if node_may_run(n, j, pool_map)]
        if d.start is None:
            assert d.reason, f"job {j.job_id} never runs but says not why"
            assert not any(
                sum(holds(n, s) for n in allowed) >= j.node_count >= 1 for s in j.specs
            ), f"job {j.job_id} could run on an empty cluster"
            continue
        assert d.reason is None
        assert d.start >= now
        assert len(d.nodes) == j.node_count == len(set(d.nodes)), d
        chosen = next(s for s in j.specs if s.spec_id == d.spec_id)
        end = d.start + j.duration
        for name in d.nodes:
            n = by_name[name]
            assert n in allowed, f"job {j.job_id} placed on {name} against its constraints"
            assert holds(n, chosen)
            assert fits_over(n, taken[name], chosen, d.start, end), f"{name} over-committed"
        # earliest: the planner may only start at now or when something ends
        moments = sorted({now} | {e for ivs in taken.values() for _, e, _ in ivs if e > now})
        chosen_at = j.specs.index(chosen)
        for i, s in enumerate(j.specs):
            for t in moments:
                if t > d.start or (t == d.start and i >= chosen_at):
                    break
                free = sum(
                    1
                    for n in allowed
                    if holds(n, s) and fits_over(n, taken[n.name], s, t, t + j.duration)
                )
                assert free < j.node_count, (
                    f"job {j.job_id} could start at {t} with spec {s.spec_id}, "
                    f"not {d.start} with spec {chosen.spec_id}"
                )
        for name in d.nodes:
            taken[name].append((d.start, end, chosen))
