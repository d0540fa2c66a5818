"""Why a job can never run: a machine-readable code and words a user can act on.

Only reached for jobs that fit nowhere even on an empty cluster, so it favours clear words
over speed. The words are a message id with its parameters (``Words``), not a sentence:
the planner knows no language, and the pages say them in the reader's
(scheduler/prediction.py); ``str()`` gives the English, for logs and tests. The codes:

- ``no_spec``: the job lists no node spec.
- ``bad_node_count``: the node count is below one.
- ``pool_forbidden``: the named pool is dedicated to other projects.
- ``no_nodes``: no schedulable node meets the pool, node-name and driver constraints.
- ``no_device_type``: none of those nodes has the spec's device type.
- ``too_large``: no such node has room for one slot of the spec.
- ``too_few_nodes``: some nodes have room, fewer than the node count.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from scheduler.planning.state import (
    Decision,
    NodeState,
    Pool,
    QueuedJob,
    RunningJob,
    SpecRequest,
    device_matches,
)

GIB = 1 << 30


def gettext_noop(msgid: str) -> str:
    """Marks a message id for the translation catalogue (makemessages reads this name)."""
    return msgid


@dataclass(frozen=True, slots=True)
class Words:
    """A message id and its parameters; a parameter may itself be ``Words``."""

    msgid: str
    params: tuple[tuple[str, object], ...] = ()

    def __str__(self) -> str:
        if not self.params:
            return self.msgid
        return self.msgid % {name: str(value) for name, value in self.params}


def words(msgid: str, **params: object) -> Words:
    return Words(msgid, tuple(sorted(params.items())))


@dataclass(frozen=True, slots=True)
class Reason:
    code: str
    words: Words

    def __str__(self) -> str:
        return f"{self.code}: {self.words}"


def _where(job: QueuedJob) -> Words:
    if job.node_names:
        place = words(
            gettext_noop("among nodes %(nodes)s"), nodes=", ".join(sorted(set(job.node_names)))
        )
    elif job.pool is not None:
        place = words(gettext_noop("in pool %(pool)s"), pool=job.pool)
    else:
        place = words(gettext_noop("in the shared pools"))
    if job.driver_version is not None:
        place = words(
            gettext_noop("%(place)s with driver %(driver)s"), place=place, driver=job.driver_version
        )
    return place


def _device_kind(spec: SpecRequest) -> str:
    kind = spec.device_type.upper()
    return f"{kind} {spec.device_model}" if spec.device_model else kind


def _amounts(spec: SpecRequest, missing: set[str]) -> Words:
    """The one resource no node has enough of, or the whole slot when it is several."""
    cpus, memory = f"{spec.cpu_millis / 1000:g}", f"{spec.memory_bytes / GIB:g}"
    if missing == {"devices"}:
        return words(
            gettext_noop("%(count)s %(kind)s devices"), count=spec.devices, kind=_device_kind(spec)
        )
    if missing == {"cpu"}:
        return words(gettext_noop("%(cpus)s CPUs"), cpus=cpus)
    if missing == {"memory"}:
        return words(gettext_noop("%(memory)s GiB of memory"), memory=memory)
    if spec.devices:
        return words(
            gettext_noop("%(count)s %(kind)s devices, %(cpus)s CPUs and %(memory)s GiB of memory"),
            count=spec.devices,
            kind=_device_kind(spec),
            cpus=cpus,
            memory=memory,
        )
    return words(
        gettext_noop("%(cpus)s CPUs and %(memory)s GiB of memory"), cpus=cpus, memory=memory
    )


def _spec_reason(job: QueuedJob, spec: SpecRequest, nodes: list[NodeState]) -> Reason:
    where = _where(job)
    if not nodes:
        return Reason("no_nodes", words(gettext_noop("no schedulable node %(where)s"), where=where))
    typed = [n for n in nodes if device_matches(spec, n.device_type, n.device_model)]
    if not typed:
        return Reason(
            "no_device_type",
            words(gettext_noop("no %(kind)s node %(where)s"), kind=_device_kind(spec), where=where),
        )
    roomy = [
        n
        for n in typed
        if n.devices >= spec.devices
        and n.cpu_millis >= spec.cpu_millis
        and n.memory_bytes >= spec.memory_bytes
    ]
    if not roomy:
        # name the resource no node has enough of; if each exists somewhere, but never
        # together, name the whole slot
        missing = {
            name
            for name, have, want in (
                ("devices", max(n.devices for n in typed), spec.devices),
                ("cpu", max(n.cpu_millis for n in typed), spec.cpu_millis),
                ("memory", max(n.memory_bytes for n in typed), spec.memory_bytes),
            )
            if have < want
        } or {"devices", "cpu", "memory"}
        return Reason(
            "too_large",
            words(
                gettext_noop("no node %(where)s has %(amounts)s"),
                where=where,
                amounts=_amounts(spec, missing),
            ),
        )
    return Reason(
        "too_few_nodes",
        words(
            gettext_noop(
                "only %(found)s of the nodes %(where)s can hold %(amounts)s; "
                "the job needs %(count)s"
            ),
            found=len(roomy),
            where=where,
            amounts=_amounts(spec, {"devices", "cpu", "memory"}),
            count=job.node_count,
        ),
    )


def never_reason(
    job: QueuedJob,
    nodes: Sequence[NodeState],
    pools: dict[str, Pool],
    pool_admits: Callable[[dict[str, Pool], str | None, QueuedJob], bool],
) -> Reason:
    """Why ``job`` fits on no set of the schedulable ``nodes``."""
    if not job.specs:
        return Reason("no_spec", words(gettext_noop("the job lists no node spec")))
    if job.node_count < 1:
        return Reason(
            "bad_node_count",
            words(
                gettext_noop("the node count is %(count)s; it must be at least 1"),
                count=job.node_count,
            ),
        )
    pool = pools.get(job.pool) if job.pool is not None else None
    if (
        pool is not None
        and pool.dedicated_project_ids is not None
        and job.project_id not in pool.dedicated_project_ids
    ):
        return Reason(
            "pool_forbidden",
            words(gettext_noop("pool %(pool)s is dedicated to other projects"), pool=job.pool),
        )
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
        return found[0]
    # one clause per spec, by the spec's name where the caller gave one
    said: Words | None = None
    for spec, reason in zip(job.specs, found, strict=True):
        clause = words(
            gettext_noop("spec %(spec)s: %(why)s"), spec=spec.name or spec.spec_id, why=reason.words
        )
        said = (
            clause
            if said is None
            else words(gettext_noop("%(first)s; %(then)s"), first=said, then=clause)
        )
    assert said is not None
    return Reason(found[0].code, said)


Holders = Mapping[str, Sequence[tuple[datetime, int]]]
OVERDUE = timedelta(milliseconds=1)


def holders(running: Iterable[RunningJob]) -> dict[str, list[tuple[datetime, int]]]:
    """Node name -> (deadline, job id) of the running jobs on it, for ``waiting_for``."""
    found: dict[str, list[tuple[datetime, int]]] = defaultdict(list)
    for job in running:
        for name in job.nodes:
            found[name].append((job.deadline, job.job_id))
    return found


def waiting_for(decision: Decision, on: Holders, now: datetime) -> Words | None:
    """What a job that waits waits for: the running jobs on the nodes it is planned on
    that it starts right after, else the jobs queued ahead of it (counts, not names: they
    may be other projects' jobs)."""
    start = decision.start
    if start is None or not decision.nodes:
        return None
    # a start at a running job's deadline follows it; one just after now follows the
    # jobs past their deadline, which expiry is about to stop
    overdue = start - now <= OVERDUE
    jobs = {
        job_id
        for name in decision.nodes
        for deadline, job_id in on.get(name, ())
        if deadline == start or (overdue and deadline <= start)
    }
    if len(jobs) == 1:
        return words(gettext_noop("waiting for a running job on its nodes to end"))
    if jobs:
        return words(
            gettext_noop("waiting for %(count)s running jobs on its nodes to end"),
            count=len(jobs),
        )
    return words(gettext_noop("waiting for jobs queued ahead of it"))
