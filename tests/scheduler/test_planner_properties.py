"""Property-based tests of the planner's invariants on random small clusters and queues.

Times are whole minutes and resources small integers, so ties, exact fits and touching
reservations -- where off-by-one mistakes hide -- come up often.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scheduler.planner import (
    Forecast,
    NodeState,
    Pool,
    QueuedJob,
    RunningJob,
    SpecRequest,
    plan,
    predict,
)

try:
    from .test_planner_support import NOW, replay
except ImportError:  # tests/ collected as plain directories
    from test_planner_support import NOW, replay

POOLS = [Pool("shared"), Pool("team", frozenset({1}))]
PROPERTIES = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def clusters(draw: st.DrawFn, mixed: bool) -> tuple[list[NodeState], list[SpecRequest]]:
    # Small specs on mostly alike nodes, so that most jobs fit, queue up and leave holes
    # behind them for others to backfill. ``mixed`` brings in pools, drivers, device types
    # and unschedulable nodes; without it every job can run and competes for every node.
    count = draw(st.integers(2, 5))
    pools = [None] * 4 + ["shared", "team", "unknown"] if mixed else [None]
    drivers = [None, "a", "a", "b"] if mixed else [None]
    types = ["mlu", "mlu", "mlu", "gpu"] if mixed else ["mlu"]
    nodes = [
        NodeState(
            name=f"n{i}",
            pool=draw(st.sampled_from(pools)),
            driver_version=draw(st.sampled_from(drivers)),
            device_type=draw(st.sampled_from(types)),
            cpu_millis=draw(st.integers(2, 4)) * 1000,
            memory_bytes=draw(st.integers(2, 4)),
            devices=draw(st.integers(1, 4)),
            schedulable=draw(st.sampled_from([True] * 5 + [False])) if mixed else True,
        )
        for i in range(count)
    ]
    specs = [
        SpecRequest(
            spec_id=i,
            cpu_millis=draw(st.integers(0, 2)) * 1000,
            memory_bytes=draw(st.integers(0, 2)),
            device_type=draw(st.sampled_from(types)),
            devices=draw(st.integers(0, 2)),
        )
        for i in range(1, draw(st.integers(1, 3)) + 1)
    ]
    return nodes, specs


@st.composite
def states(draw: st.DrawFn, max_jobs: int = 10):
    mixed = draw(st.booleans())
    nodes, specs = draw(clusters(mixed))
    names = [n.name for n in nodes]
    run = []
    for i in range(draw(st.integers(0, 4))):
        used = draw(st.sampled_from(specs))
        on = draw(st.lists(st.sampled_from(names), min_size=1, max_size=2, unique=True))
        # some already past their deadline: expiry has not caught up with them yet
        ends = NOW + timedelta(minutes=draw(st.integers(-5, 30)))
        run.append(RunningJob(1000 + i, used, tuple(on), ends))
    queue = [
        draw(queued_jobs(i, specs, names, mixed))
        for i in range(1, draw(st.integers(0, max_jobs)) + 1)
    ]
    return nodes, run, queue, (specs, mixed)


@st.composite
def queued_jobs(
    draw: st.DrawFn, job_id: int, specs: list[SpecRequest], names: list[str], mixed: bool
):
    kinds = ["none", "none", "none", "names"] + (["pool", "driver"] if mixed else [])
    constraint = draw(st.sampled_from(kinds))
    return QueuedJob(
        job_id=job_id,
        project_id=draw(st.sampled_from([1, 2])),
        priority=draw(st.integers(0, 2)),
        queued_at=NOW - timedelta(minutes=draw(st.integers(0, 3))),
        node_count=draw(st.sampled_from([1, 1, 2, 3])),
        specs=tuple(draw(st.lists(st.sampled_from(specs), min_size=1, max_size=2, unique=True))),
        node_names=tuple(draw(st.lists(st.sampled_from(names), min_size=1, unique=True)))
        if constraint == "names"
        else (),
        pool=draw(st.sampled_from(["shared", "team", "unknown"])) if constraint == "pool" else None,
        driver_version=draw(st.sampled_from(["a", "b"])) if constraint == "driver" else None,
        # a stray microsecond now and then catches off-by-one ends
        duration=timedelta(
            minutes=draw(st.integers(1, 20)), microseconds=draw(st.sampled_from([0, 0, 1]))
        ),
    )


@PROPERTIES
@given(states())
def test_every_placement_is_feasible_earliest_and_within_constraints(state) -> None:
    """No over-commitment at any moment, whole gangs on distinct allowed nodes, earliest."""
    nodes, run, queue, _ = state
    replay(nodes, POOLS, run, queue, plan(nodes, POOLS, run, queue, NOW))


@PROPERTIES
@given(states())
def test_a_job_is_placed_the_same_whatever_queues_behind_it(state) -> None:
    """So a lower job can never delay a higher one."""
    nodes, run, queue, _ = state
    full = plan(nodes, POOLS, run, queue, NOW)
    order = list(full)
    for k, job_id in enumerate(order, 1):
        ahead = [j for j in queue if j.job_id in set(order[:k])]
        assert plan(nodes, POOLS, run, ahead, NOW)[job_id] == full[job_id]


@PROPERTIES
@given(states(max_jobs=6), st.data())
def test_the_prediction_of_a_draft_is_its_plan_once_created(state, data) -> None:
    nodes, run, queue, (specs, mixed) = state
    names = [n.name for n in nodes]
    draft = replace(data.draw(queued_jobs(len(queue) + 1, specs, names, mixed)), queued_at=NOW)
    predicted = predict(nodes, POOLS, run, queue, draft, NOW)
    assert predicted == plan(nodes, POOLS, run, [*queue, draft], NOW)[draft.job_id]
    forecast = Forecast(nodes, POOLS, run, queue, NOW)
    assert forecast.predict(draft) == predicted
    assert forecast.plan == plan(nodes, POOLS, run, queue, NOW)


@PROPERTIES
@given(states(max_jobs=4))
def test_a_job_never_runs_only_if_an_empty_cluster_cannot_hold_it(state) -> None:
    nodes, run, queue, _ = state
    result = plan(nodes, POOLS, run, queue, NOW)
    for j in queue:
        alone = plan(nodes, POOLS, [], [j], NOW)[j.job_id]
        assert (result[j.job_id].start is None) == (alone.start is None)
        assert result[j.job_id].reason == alone.reason


@PROPERTIES
@given(states())
def test_starts_now_admits_exactly_the_jobs_planned_for_now(state) -> None:
    nodes, run, queue, _ = state
    result = plan(nodes, POOLS, run, queue, NOW)
    admitted = result.starts_now(NOW)
    assert [d.job_id for d in admitted] == [
        job_id for job_id, d in result.items() if d.start == NOW
    ]
