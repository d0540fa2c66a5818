"""The planner's inputs and outputs: plain frozen values, built from the ORM by the caller.

Nothing here imports Django, so the planner can be tested, benchmarked and reasoned
about without a database, and admission can hand it a snapshot taken under its lock.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scheduler.planning.reasons import Reason


@dataclass(frozen=True, slots=True)
class NodeState:
    """One node's allocatable capacity and the labels the constraints look at."""

    name: str
    pool: str | None
    driver_version: str | None
    device_type: str  # "mlu" | "gpu" | "none"
    cpu_millis: int
    memory_bytes: int
    devices: int
    schedulable: bool = True
    device_model: str | None = None  # the device plugin's Model label, e.g. "MLU370-X8"


@dataclass(frozen=True, slots=True)
class Pool:
    """A resource pool; ``dedicated_project_ids`` None means every project may use it."""

    name: str
    dedicated_project_ids: frozenset[int] | None = None


@dataclass(frozen=True, slots=True)
class SpecRequest:
    """One node's worth of resources (a NodeSpec): a gang takes one such slot per node."""

    spec_id: int
    cpu_millis: int
    memory_bytes: int
    device_type: str
    devices: int
    device_model: str | None = None  # only nodes of this model (case aside) when set
    name: str = ""  # what the reasons call it; the id where empty


def device_matches(spec: SpecRequest, device_type: str, device_model: str | None) -> bool:
    """Whether a node of this device type and model can hold the spec's devices."""
    if spec.device_type != device_type:
        return False
    return not spec.device_model or (device_model or "").casefold() == spec.device_model.casefold()


@dataclass(frozen=True, slots=True)
class QueuedJob:
    job_id: int
    project_id: int
    priority: int  # higher runs first
    queued_at: datetime
    node_count: int
    specs: tuple[SpecRequest, ...]  # in the order the user prefers them
    node_names: tuple[str, ...] = ()
    pool: str | None = None
    driver_version: str | None = None
    duration: timedelta = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class RunningJob:
    """A job on the cluster; each listed node holds one slot of ``spec`` until ``deadline``."""

    job_id: int
    spec: SpecRequest
    nodes: tuple[str, ...]
    deadline: datetime


@dataclass(frozen=True, slots=True)
class Decision:
    """Where one queued job stands in the plan.

    ``start`` is an upper bound ("starts by"): running jobs may end before their deadline.
    ``start`` None means the job can never run, even on an empty cluster; ``reason`` then
    says why (planning/reasons.py): a code and words, e.g. "too_large: no node in pool a
    has 16 MLU devices".
    """

    job_id: int
    start: datetime | None
    spec_id: int | None
    nodes: tuple[str, ...]
    position: int  # 1-based place in queue order
    reason: Reason | None = None

    @property
    def reason_code(self) -> str | None:
        return None if self.reason is None else self.reason.code


def queue_key(job: QueuedJob) -> tuple[int, datetime, int]:
    """Queue order: priority high first, then first queued, then lowest id."""
    return (-job.priority, job.queued_at, job.job_id)


class Plan(Mapping[int, Decision]):
    """The planner's answer: job id -> Decision, iterated in queue order."""

    __slots__ = ("_decisions", "now")

    def __init__(self, decisions: dict[int, Decision], now: datetime) -> None:
        self._decisions = decisions
        self.now = now

    def __getitem__(self, job_id: int) -> Decision:
        return self._decisions[job_id]

    def __iter__(self) -> Iterator[int]:
        return iter(self._decisions)

    def __len__(self) -> int:
        return len(self._decisions)

    def __repr__(self) -> str:
        return f"Plan({len(self)} jobs, now={self.now.isoformat()})"

    def starts_now(self, now: datetime | None = None) -> list[Decision]:
        """The decisions admission should carry out at ``now``, in queue order.

        Everything they need is free at the plan's ``now`` and no higher job's reservation
        depends on them waiting, so admitting all of them together is safe.
        """
        when = self.now if now is None else now
        return [d for d in self._decisions.values() if d.start is not None and d.start <= when]
