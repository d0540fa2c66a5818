"""The cluster's resources in the planner's terms, and whether a job could ever run.

This is the resources layer (docs/development.md "Layers"): it reads node specs, nodes
and pools, never jobs, so the jobs core may ask it whether a job fits the cluster at
all (F1.17: a job no node set could ever hold is refused when it is created) without
depending on the scheduler that queues and runs jobs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta

from django.utils import timezone

from scheduler.models import MIB, Node, NodeSpec, ResourcePool
from scheduler.planner import NodeState, Pool, QueuedJob, Reason, SpecRequest, predict


def spec_request(spec: NodeSpec) -> SpecRequest:
    return SpecRequest(
        spec_id=spec.pk,
        cpu_millis=spec.cpu_millis,
        memory_bytes=spec.memory_mib * MIB,
        device_type=spec.device_type,
        devices=spec.device_count,
        device_model=spec.device_model or None,
        name=spec.name,
    )


def node_state(node: Node, pool_names: dict[int, str]) -> NodeState:
    return NodeState(
        name=node.name,
        pool=pool_names.get(node.pool_id) if node.pool_id else None,
        driver_version=node.driver_version or None,
        device_type=node.device_type,
        cpu_millis=node.cpu_millis,
        memory_bytes=node.memory_mib * MIB,
        devices=node.device_count,
        schedulable=node.schedulable,
        device_model=node.device_model or None,
    )


def pools() -> tuple[list[Pool], dict[int, str]]:
    """Every pool (with the projects of a dedicated one) and the pools' names by id."""
    members: dict[int, set[int]] = defaultdict(set)
    through = ResourcePool.projects.through.objects.values_list("resourcepool_id", "project_id")
    for pool_id, project_id in through:
        members[pool_id].add(project_id)
    found = list(ResourcePool.objects.values_list("pk", "name", "dedicated"))
    result = [
        Pool(name, frozenset(members[pk]) if dedicated else None) for pk, name, dedicated in found
    ]
    return result, {pk: name for pk, name, _dedicated in found}


def nodes(pool_names: dict[int, str]) -> list[NodeState]:
    return [node_state(node, pool_names) for node in Node.objects.all()]


def draft_job(
    *,
    job_id: int,
    project_id: int,
    specs: Sequence[NodeSpec],
    node_count: int,
    now: datetime,
    pool: ResourcePool | None = None,
    node_names: Sequence[str] = (),
    driver_version: str = "",
    priority: int = 0,
    duration: timedelta = timedelta(hours=1),
) -> QueuedJob:
    """A job not yet created, as the planner reads a queued one (queued ``now``)."""
    return QueuedJob(
        job_id=job_id,
        project_id=project_id,
        priority=priority,
        queued_at=now,
        node_count=node_count,
        specs=tuple(spec_request(spec) for spec in specs),
        node_names=tuple(node_names),
        pool=pool.name if pool else None,
        driver_version=driver_version or None,
        duration=duration,
    )


def why_never(
    *,
    project_id: int,
    specs: Sequence[NodeSpec],
    node_count: int,
    pool: ResourcePool | None = None,
    node_names: Sequence[str] = (),
    driver_version: str = "",
) -> Reason | None:
    """Why no set of the cluster's nodes could ever hold such a job, even with nothing
    else running; None where one could. The planner's own rule, on an empty cluster:
    every running job ends by its deadline, so nothing but the nodes decides this."""
    pool_list, pool_names = pools()
    now = timezone.now()
    draft = draft_job(
        job_id=0,
        project_id=project_id,
        specs=specs,
        node_count=node_count,
        now=now,
        pool=pool,
        node_names=node_names,
        driver_version=driver_version,
    )
    decision = predict(nodes(pool_names), pool_list, (), (), draft, now)
    return decision.reason if decision.start is None else None
