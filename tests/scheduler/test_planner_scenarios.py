"""The planner's rules, one small scene each (docs/scheduling.md lists them)."""

from __future__ import annotations

from datetime import timedelta

from scheduler.planner import Forecast, Pool, plan, predict

try:
    from .test_planner_support import NOW, job, minutes, node, running, spec
except ImportError:  # tests/ collected as plain directories
    from test_planner_support import NOW, job, minutes, node, running, spec

WHOLE = spec(1, 8)  # a whole 8-device node
HALF = spec(2, 4)


def hours(h: float) -> timedelta:
    return timedelta(hours=h)


# --- starting now and waiting ----------------------------------------------------------


def test_a_job_on_an_idle_cluster_starts_now() -> None:
    result = plan([node("a")], [], [], [job(1)], NOW)
    assert result[1].start == NOW
    assert result[1].nodes == ("a",)
    assert result[1].spec_id == 1
    assert result.starts_now(NOW) == [result[1]]


def test_a_job_waits_until_the_deadline_of_the_running_job_on_its_node() -> None:
    result = plan([node("a")], [], [running(9, WHOLE, "a", ends_in=hours(3))], [job(1, WHOLE)], NOW)
    assert result[1].start == NOW + hours(3)
    assert result.starts_now(NOW) == []


def test_a_running_job_past_its_deadline_still_blocks_its_node_this_cycle() -> None:
    # expiry has not stopped it yet: nothing may be launched on top of it now
    result = plan(
        [node("a")], [], [running(9, WHOLE, "a", ends_in=-minutes(5))], [job(1, WHOLE)], NOW
    )
    assert result[1].start is not None
    assert NOW < result[1].start < NOW + timedelta(seconds=1)
    assert result.starts_now(NOW) == []


def test_jobs_share_a_node_while_every_resource_has_room() -> None:
    result = plan([node("a")], [], [], [job(1, HALF), job(2, HALF), job(3, HALF)], NOW)
    assert result[1].start == result[2].start == NOW
    assert result[3].start == NOW + hours(1)


def test_memory_alone_can_make_a_job_wait() -> None:
    hungry = spec(3, 1, mem_gib=300)  # one device of eight, but most of the memory
    result = plan([node("a", mem_gib=512)], [], [], [job(1, hungry), job(2, hungry)], NOW)
    assert result[2].start == NOW + hours(1)


def test_cpu_alone_can_make_a_job_wait() -> None:
    busy = spec(3, 1, cpus=40)
    result = plan([node("a", cpus=64)], [], [], [job(1, busy), job(2, busy)], NOW)
    assert result[2].start == NOW + hours(1)


# --- queue order ------------------------------------------------------------------------


def test_a_higher_priority_job_goes_first_though_queued_later() -> None:
    early_low = job(1, WHOLE, priority=0, queued=hours(5))
    late_high = job(2, WHOLE, priority=3, queued=minutes(1))
    result = plan([node("a")], [], [], [early_low, late_high], NOW)
    assert result[2].start == NOW and result[2].position == 1
    assert result[1].start == NOW + hours(1) and result[1].position == 2


def test_among_equal_priorities_the_first_queued_goes_first() -> None:
    result = plan(
        [node("a")], [], [], [job(1, WHOLE, queued=hours(1)), job(2, WHOLE, queued=hours(2))], NOW
    )
    assert result[2].start == NOW
    assert result[1].start == NOW + hours(1)


def test_among_equal_priorities_and_times_the_lower_id_goes_first() -> None:
    result = plan([node("a")], [], [], [job(7, WHOLE), job(3, WHOLE)], NOW)
    assert [d.job_id for d in result.values()] == [3, 7]
    assert result[3].start == NOW


# --- gangs ------------------------------------------------------------------------------


def test_a_gang_starts_only_when_all_its_nodes_are_free_together() -> None:
    run = [running(8, WHOLE, "a", ends_in=hours(1)), running(9, WHOLE, "b", ends_in=hours(4))]
    result = plan([node("a"), node("b"), node("c")], [], run, [job(1, WHOLE, nodes=3)], NOW)
    assert result[1].start == NOW + hours(4)
    assert result[1].nodes == ("a", "b", "c")


def test_a_gang_never_takes_two_slots_on_one_node() -> None:
    # one node could hold two halves, but a gang needs distinct nodes
    result = plan([node("a")], [], [], [job(1, HALF, nodes=2)], NOW)
    assert result[1].start is None
    assert result[1].reason_code == "too_few_nodes"


def test_a_gang_takes_the_nodes_freed_last_and_leaves_the_idle_one_to_others() -> None:
    run = [running(8, WHOLE, "b", ends_in=hours(1)), running(9, WHOLE, "c", ends_in=hours(1))]
    queue = [job(1, WHOLE, nodes=2, priority=1), job(2, WHOLE, hours=5)]
    result = plan([node("a"), node("b"), node("c")], [], run, queue, NOW)
    assert result[1].start == NOW + hours(1) and result[1].nodes == ("b", "c")
    assert result[2].start == NOW and result[2].nodes == ("a",)


# --- specs ------------------------------------------------------------------------------


def test_the_spec_that_starts_earliest_wins() -> None:
    run = [running(9, HALF, "a", ends_in=hours(2))]
    result = plan([node("a")], [], run, [job(1, WHOLE, HALF)], NOW)
    assert result[1].spec_id == HALF.spec_id
    assert result[1].start == NOW


def test_specs_that_start_together_go_to_the_earlier_in_the_list() -> None:
    result = plan([node("a")], [], [], [job(1, HALF, WHOLE)], NOW)
    assert result[1].spec_id == HALF.spec_id
    result = plan([node("a")], [], [], [job(1, WHOLE, HALF)], NOW)
    assert result[1].spec_id == WHOLE.spec_id


def test_the_device_type_of_the_spec_must_match_the_node() -> None:
    gpu_spec = spec(5, 1, device_type="gpu")
    nodes = [node("m", device_type="mlu"), node("g", device_type="gpu")]
    result = plan(nodes, [], [], [job(1, gpu_spec)], NOW)
    assert result[1].nodes == ("g",)


# --- backfill ---------------------------------------------------------------------------


def _waiting_gang_scene(lower_hours: float):
    """Gang 1 needs a and b; b is busy for 2 h, so a idles until then."""
    run = [running(9, WHOLE, "b", ends_in=hours(2))]
    queue = [job(1, WHOLE, nodes=2, priority=1, hours=3), job(2, WHOLE, hours=lower_hours)]
    return plan([node("a"), node("b")], [], run, queue, NOW)


def test_a_lower_job_backfills_when_it_ends_before_the_higher_reservation() -> None:
    result = _waiting_gang_scene(lower_hours=2)
    assert result[1].start == NOW + hours(2)
    assert result[2].start == NOW and result[2].nodes == ("a",)


def test_a_lower_job_waits_when_it_would_delay_the_higher_reservation() -> None:
    result = _waiting_gang_scene(lower_hours=2.5)
    assert result[1].start == NOW + hours(2)
    assert result[2].start == NOW + hours(5)


def test_a_higher_job_starts_as_it_would_with_no_lower_job_queued() -> None:
    alone = _waiting_gang_scene(lower_hours=2.5)[1]
    run = [running(9, WHOLE, "b", ends_in=hours(2))]
    without_lower = plan(
        [node("a"), node("b")], [], run, [job(1, WHOLE, nodes=2, priority=1, hours=3)], NOW
    )[1]
    assert alone == without_lower


# --- constraints ------------------------------------------------------------------------

POOLS = [Pool("shared"), Pool("team", frozenset({7}))]
POOLED = [node("s", pool="shared"), node("t", pool="team"), node("x")]


def test_a_job_without_a_pool_uses_shared_pools_and_pool_less_nodes_only() -> None:
    queue = [job(i, WHOLE, project=7) for i in (1, 2, 3)]
    result = plan(POOLED, POOLS, [], queue, NOW)
    assert {result[1].nodes, result[2].nodes} == {("s",), ("x",)}
    assert result[3].start == NOW + hours(1)  # "t" stays out of reach without naming it


def test_a_job_that_names_a_pool_runs_only_there() -> None:
    result = plan(
        POOLED, POOLS, [], [job(1, WHOLE, pool="shared"), job(2, WHOLE, pool="shared")], NOW
    )
    assert result[1].nodes == ("s",)
    assert result[2].nodes == ("s",) and result[2].start == NOW + hours(1)


def test_a_dedicated_pool_serves_the_jobs_of_its_projects() -> None:
    result = plan(POOLED, POOLS, [], [job(1, WHOLE, pool="team", project=7)], NOW)
    assert result[1].nodes == ("t",) and result[1].start == NOW


def test_a_dedicated_pool_refuses_other_projects_for_good() -> None:
    result = plan(POOLED, POOLS, [], [job(1, WHOLE, pool="team", project=8)], NOW)
    assert result[1].start is None
    assert str(result[1].reason) == "pool_forbidden: pool team is dedicated to other projects"


def test_a_job_with_node_names_uses_only_those_nodes() -> None:
    nodes = [node("a"), node("b"), node("c")]
    result = plan(nodes, [], [], [job(1, WHOLE, names=("c",)), job(2, WHOLE, names=("c",))], NOW)
    assert result[1].nodes == ("c",)
    assert result[2].nodes == ("c",) and result[2].start == NOW + hours(1)


def test_node_names_reach_a_pool_dedicated_to_the_jobs_project_only() -> None:
    mine = plan(POOLED, POOLS, [], [job(1, WHOLE, names=("t",), project=7)], NOW)
    assert mine[1].nodes == ("t",)
    theirs = plan(POOLED, POOLS, [], [job(1, WHOLE, names=("t",), project=8)], NOW)
    assert theirs[1].start is None and theirs[1].reason_code == "no_nodes"


def test_a_job_with_a_driver_version_uses_only_matching_nodes() -> None:
    nodes = [node("old", driver="5.10"), node("new", driver="6.2")]
    result = plan(nodes, [], [], [job(1, WHOLE, driver="6.2"), job(2, WHOLE, driver="6.2")], NOW)
    assert result[1].nodes == ("new",)
    assert result[2].nodes == ("new",) and result[2].start == NOW + hours(1)


def test_a_spec_with_a_device_model_uses_only_nodes_of_that_model() -> None:
    """Issue 13, item 6: a spec names its device model (MLU370-X8); nodes carry it in
    the device plugin's Model label. Case aside; a spec without a model takes any."""
    from dataclasses import replace

    nodes = [
        replace(node("x8"), device_model="MLU370-X8"),
        replace(node("590"), device_model="MLU590"),
    ]
    x8 = replace(spec(1, 8), device_model="mlu370-x8")
    result = plan(nodes, [], [], [job(1, x8), job(2, x8), job(3, spec(2, 8))], NOW)
    assert result[1].nodes == ("x8",)
    assert result[2].nodes == ("x8",) and result[2].start == NOW + hours(1)
    assert result[3].nodes == ("590",) and result[3].start == NOW
    none = plan(nodes, [], [], [job(1, replace(spec(1, 8), device_model="MLU290"))], NOW)
    assert none[1].start is None
    assert str(none[1].reason) == "no_device_type: no MLU MLU290 node in the shared pools"
    forecast = predict(nodes, [], [], [], job(4, x8), NOW)
    assert forecast.nodes == ("x8",)


def test_unschedulable_nodes_are_never_used() -> None:
    nodes = [node("gone", schedulable=False), node("here")]
    result = plan(nodes, [], [], [job(1, WHOLE), job(2, WHOLE)], NOW)
    assert result[1].nodes == result[2].nodes == ("here",)
    alone = plan([node("gone", schedulable=False)], [], [], [job(1, WHOLE)], NOW)
    assert str(alone[1].reason) == "no_nodes: no schedulable node in the shared pools"


# --- never ------------------------------------------------------------------------------


def test_a_job_asking_more_devices_than_any_node_has_can_never_run() -> None:
    big = spec(9, 16)
    result = plan([node("a", pool="p")], [Pool("p")], [], [job(1, big, pool="p")], NOW)
    assert result[1].start is None and result[1].nodes == () and result[1].spec_id is None
    assert str(result[1].reason) == "too_large: no node in pool p has 16 MLU devices"


def test_a_gang_larger_than_its_pool_can_never_run() -> None:
    result = plan(
        [node("a", pool="p"), node("b", pool="p")],
        [Pool("p")],
        [],
        [job(1, WHOLE, nodes=3, pool="p")],
        NOW,
    )
    assert result[1].reason_code == "too_few_nodes"
    assert "only 2 of the nodes in pool p" in str(result[1].reason)
    assert "needs 3" in str(result[1].reason)


def test_a_spec_of_a_device_type_the_cluster_lacks_can_never_run() -> None:
    result = plan([node("a")], [], [], [job(1, spec(5, 1, device_type="gpu"))], NOW)
    assert str(result[1].reason) == "no_device_type: no GPU node in the shared pools"


def test_a_job_never_runs_only_when_none_of_its_specs_ever_fits() -> None:
    result = plan([node("a")], [], [], [job(1, spec(9, 16), HALF)], NOW)
    assert result[1].spec_id == HALF.spec_id and result[1].start == NOW
    result = plan([node("a")], [], [], [job(1, spec(9, 16), spec(10, 1, device_type="gpu"))], NOW)
    assert str(result[1].reason) == (
        "too_large: spec 9: no node in the shared pools has 16 MLU devices; "
        "spec 10: no GPU node in the shared pools"
    )


def test_a_job_that_can_never_run_holds_nothing_back() -> None:
    result = plan([node("a")], [], [], [job(1, spec(9, 16), priority=5), job(2, WHOLE)], NOW)
    assert result[1].start is None and result[1].position == 1
    assert result[2].start == NOW and result[2].position == 2


# --- prediction -------------------------------------------------------------------------


def test_a_prediction_is_the_start_the_job_gets_once_queued() -> None:
    run = [running(9, WHOLE, "a", ends_in=hours(2))]
    queue = [job(1, WHOLE, hours=3), job(2, HALF, priority=2)]
    draft = job(3, WHOLE, priority=1, queued=timedelta(0))
    predicted = predict([node("a"), node("b")], [], run, queue, draft, NOW)
    assert predicted == plan([node("a"), node("b")], [], run, [*queue, draft], NOW)[3]
    # behind job 2, which takes half of b for an hour; ahead of job 1
    assert predicted.position == 2
    assert predicted.start == NOW + hours(1) and predicted.nodes == ("b",)


def test_a_prediction_is_not_delayed_by_the_jobs_behind_the_draft() -> None:
    queue = [job(i, WHOLE, priority=0) for i in range(1, 6)]
    draft = job(9, WHOLE, priority=1)
    predicted = predict([node("a")], [], [], queue, draft, NOW)
    assert predicted.start == NOW and predicted.position == 1


def test_a_prediction_for_a_queued_job_id_answers_for_the_changed_job() -> None:
    # e.g. "what if I raise this job's priority": the old entry makes way for the draft
    queue = [job(1, WHOLE), job(2, WHOLE, queued=minutes(1))]
    raised = job(1, WHOLE, priority=3)
    predicted = predict([node("a")], [], [], queue, raised, NOW)
    assert predicted.start == NOW and predicted.position == 1


def test_a_prediction_says_why_a_draft_can_never_run() -> None:
    draft = job(1, WHOLE, nodes=4)
    predicted = predict([node("a")], [], [], [], draft, NOW)
    assert predicted.start is None
    assert str(predicted.reason) == (
        "too_few_nodes: only 1 of the nodes in the shared pools can hold 8 MLU devices, "
        "8 CPUs and 64 GiB of memory; the job needs 4"
    )


def test_a_forecast_answers_drafts_of_every_priority_as_predict_does() -> None:
    nodes = [node("a"), node("b")]
    run = [running(9, WHOLE, "a", ends_in=hours(2))]
    queue = [
        job(1, WHOLE, hours=3, priority=2),
        job(2, HALF, priority=1, hours=4),
        job(3, WHOLE, nodes=2, priority=0),
    ]
    forecast = Forecast(nodes, [], run, queue, NOW)
    assert forecast.plan == plan(nodes, [], run, queue, NOW)
    for priority in range(4):
        for draft in (
            job(4, HALF, priority=priority),
            job(4, WHOLE, nodes=2, priority=priority),
            job(4, spec(9, 16), priority=priority),
        ):
            assert forecast.predict(draft) == predict(nodes, [], run, queue, draft, NOW)


def test_a_forecast_for_a_queued_job_id_answers_for_the_changed_job() -> None:
    queue = [job(1, WHOLE), job(2, WHOLE, queued=minutes(1))]
    raised = job(1, WHOLE, priority=3)
    forecast = Forecast([node("a")], [], [], queue, NOW)
    assert forecast.predict(raised) == predict([node("a")], [], [], queue, raised, NOW)
    assert forecast.predict(raised).position == 1
