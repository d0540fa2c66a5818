"""Why a job can never run: a machine-readable code and a sentence a user can act on.

Only reached for jobs that fit nowhere even on an empty cluster, so it favours clear words
over speed. The codes:

- ``no_spec``: the job lists no node spec.
- ``bad_node_count``: the node count is below one.
- ``pool_forbidden``: the named pool is dedicated to other projects.
- ``no_nodes``: no schedulable node meets the pool, node-name and driver constraints.
- ``no_device_type``: none of those nodes has the spec's device type.
- ``too_large``: no such node has room for one slot of the spec.
- ``too_few_nodes``: some nodes have room, fewer than the node count.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from scheduler.planning.state import NodeState, Pool, QueuedJob, SpecRequest, device_matches

GIB = 1 << 30


def _where(job: QueuedJob) -> str:
    if job.node_names:
        place = "among nodes " + ", ".join(sorted(set(job.node_names)))
    elif job.pool is not None:
        place = f"in pool {job.pool}"
    else:
        place = "in the shared pools"
    if job.driver_version is not None:
        place += f" with driver {job.driver_version}"
    return place


def _amounts(spec: SpecRequest, missing: set[str]) -> str:
    parts = []
    if "devices" in missing:
        parts.append(f"{spec.devices} {spec.device_type} devices")
    if "cpu" in missing:
        parts.append(f"{spec.cpu_millis / 1000:g} CPUs")
    if "memory" in missing:
        parts.append(f"{spec.memory_bytes / GIB:g} GiB of memory")
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def _spec_reason(job: QueuedJob, spec: SpecRequest, nodes: list[NodeState]) -> tuple[str, str]:
    where = _where(job)
    if not nodes:
        return "no_nodes", f"no schedulable node {where}"
    typed = [n for n in nodes if device_matches(spec, n.device_type, n.device_model)]
    if not typed:
        kind = f"{spec.device_type} {spec.device_model}" if spec.device_model else spec.device_type
        return "no_device_type", f"no {kind} node {where}"
    roomy = [
        n
        for n in typed
        if n.devices >= spec.devices
        and n.cpu_millis >= spec.cpu_millis
        and n.memory_bytes >= spec.memory_bytes
    ]
    if not roomy:
        # name the resources no node has enough of; if each exists somewhere, but never
        # together, name them all
        missing = {
            name
            for name, have, want in (
                ("devices", max(n.devices for n in typed), spec.devices),
                ("cpu", max(n.cpu_millis for n in typed), spec.cpu_millis),
                ("memory", max(n.memory_bytes for n in typed), spec.memory_bytes),
            )
            if have < want
        } or {"devices", "cpu", "memory"}
        return "too_large", f"no node {where} has {_amounts(spec, missing)}"
    return (
        "too_few_nodes",
        f"only {len(roomy)} node{'s' if len(roomy) != 1 else ''} {where} can hold "
        f"{_amounts(spec, {'devices', 'cpu', 'memory'})}; the job needs {job.node_count}",
    )


def never_reason(
    job: QueuedJob,
    nodes: Sequence[NodeState],
    pools: dict[str, Pool],
    pool_admits: Callable[[dict[str, Pool], str | None, QueuedJob], bool],
) -> str:
    """Why ``job`` fits on no set of the schedulable ``nodes``, as "code: text"."""
    if not job.specs:
        return "no_spec: the job lists no node spec"
    if job.node_count < 1:
        return f"bad_node_count: the node count is {job.node_count}; it must be at least 1"
    pool = pools.get(job.pool) if job.pool is not None else None
    if (
        pool is not None
        and pool.dedicated_project_ids is not None
        and job.project_id not in pool.dedicated_project_ids
    ):
        return f"pool_forbidden: pool {job.pool} is dedicated to other projects"
    names = set(job.node_names)
    usable = [
        n
        for n in nodes
        if n.schedulable
        and (not names or n.name in names)
        and (job.driver_version is None or n.driver_version == job.driver_version)
        and pool_admits(pools, n.pool, job)
    ]
    found = [_spec_reason(job, spec, usable) for spec in job.specs]
    if len(found) == 1:
        code, text = found[0]
        return f"{code}: {text}"
    text = "; ".join(
        f"spec {spec.spec_id}: {t}" for spec, (_, t) in zip(job.specs, found, strict=True)
    )
    return f"{found[0][0]}: {text}"
