"""Queue prediction of a draft job (排队预测, F1.17), shown right of the Create button.

Until the scheduler's planner answers this question (DESIGN.md "Scheduling": the
planner run with the draft inserted), the page says whether enough capacity is
free right now: schedulable nodes of the spec's device type, minus what RUNNING
jobs hold. `predict_for_draft` is the one function the pages call, so the
scheduler can replace its body without touching a view or a template.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from django.utils.translation import gettext as _

from accounts.models import Project
from finetune.models import Job, JobStatus
from scheduler.models import DeviceType, Node, NodeSpec, ResourcePool


@dataclass(frozen=True)
class Totals:
    """Resources of the whole job: one node spec times the node count (F1.15)."""

    cpu_millis: int
    memory_mib: int
    device_type: str
    devices: int

    @property
    def summary(self) -> str:
        parts = [f"{self.cpu_millis / 1000:g} CPU", f"{self.memory_mib / 1024:g} GiB"]
        if self.device_type != DeviceType.NONE:
            parts.append(f"{self.devices} {self.device_type.upper()}")
        return " · ".join(parts)


def totals(spec: NodeSpec, node_count: int) -> Totals:
    return Totals(
        spec.cpu_millis * node_count,
        spec.memory_mib * node_count,
        spec.device_type,
        spec.device_count * node_count,
    )


@dataclass
class Prediction:
    #: "now": it would start at once; "queue": it waits; "never": no node could
    #: ever hold it; "incomplete": the form does not yet say enough.
    verdict: str
    message: str
    spec: NodeSpec | None = None
    queued_ahead: int = 0
    totals: list[tuple[NodeSpec, Totals]] = field(default_factory=list)


@dataclass
class _Free:
    cpu_millis: int
    memory_mib: int
    devices: int

    def holds(self, spec: NodeSpec) -> bool:
        return (
            self.cpu_millis >= spec.cpu_millis
            and self.memory_mib >= spec.memory_mib
            and self.devices >= spec.device_count
        )


def placement_nodes(placement) -> list[str]:
    """Node names of a job's placement: a list by rank of names or of {"node": name}."""
    names = []
    for entry in placement or []:
        if isinstance(entry, dict):
            entry = entry.get("node") or entry.get("name")
        if entry:
            names.append(str(entry))
    return names


def _free_capacity(nodes: list[Node]) -> dict[str, _Free]:
    free = {n.name: _Free(n.cpu_millis, n.memory_mib, n.device_count) for n in nodes}
    used: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    running = Job.objects.filter(status=JobStatus.RUNNING, spec_in_use__isnull=False)
    for placement, cpu, memory, devices in running.values_list(
        "placement",
        "spec_in_use__cpu_millis",
        "spec_in_use__memory_mib",
        "spec_in_use__device_count",
    ):
        for name in placement_nodes(placement):
            used[name][0] += cpu
            used[name][1] += memory
            used[name][2] += devices
    for name, (cpu, memory, devices) in used.items():
        if name in free:
            free[name].cpu_millis -= cpu
            free[name].memory_mib -= memory
            free[name].devices -= devices
    return free


def _matches(node: Node, spec: NodeSpec) -> bool:
    # A CPU-only spec runs on any node; an accelerator spec needs that device type.
    return spec.device_type == DeviceType.NONE or node.device_type == spec.device_type


def predict_for_draft(
    *,
    project: Project | None,
    specs: Sequence[NodeSpec],
    node_count: int | None,
    pool: ResourcePool | None = None,
    node_names: Sequence[str] = (),
    driver_version: str = "",
    priority: int | None = None,
) -> Prediction:
    """Whether a job with these resources would start now, wait, or never fit.

    `project` and `priority` are what the planner needs to place the draft in the
    queue; this capacity check uses only the priority, to count who is ahead.
    """
    if not specs or not node_count:
        return Prediction("incomplete", _("Choose a node spec and a node count."))
    spec_totals = [(spec, totals(spec, node_count)) for spec in specs]
    nodes = Node.objects.filter(schedulable=True)
    if pool is not None:
        nodes = nodes.filter(pool=pool)
    if node_names:
        nodes = nodes.filter(name__in=list(node_names))
    if driver_version:
        nodes = nodes.filter(driver_version=driver_version)
    nodes = list(nodes)
    free = _free_capacity(nodes)
    ahead = Job.objects.filter(status=JobStatus.QUEUED)
    if priority is not None:
        ahead = ahead.filter(priority__gte=priority)
    queued_ahead = ahead.count()
    could_ever = None
    for spec in specs:
        matching = [n for n in nodes if _matches(n, spec)]
        if sum(free[n.name].holds(spec) for n in matching) >= node_count:
            return Prediction(
                "now",
                _("Enough capacity is free now: the job should start at once on %(spec)s.")
                % {"spec": spec.name},
                spec=spec,
                totals=spec_totals,
            )
        empty = [_Free(n.cpu_millis, n.memory_mib, n.device_count) for n in matching]
        if could_ever is None and sum(f.holds(spec) for f in empty) >= node_count:
            could_ever = spec
    if could_ever is None:
        return Prediction(
            "never",
            _(
                "No %(count)s schedulable node(s) matching these constraints can hold any of "
                "the chosen node specs: the job would wait until the cluster grows."
            )
            % {"count": node_count},
            totals=spec_totals,
        )
    return Prediction(
        "queue",
        _(
            "Not enough capacity is free now: the job will queue behind %(ahead)s job(s) "
            "and start on %(spec)s when nodes free up."
        )
        % {"ahead": queued_ahead, "spec": could_ever.name},
        spec=could_ever,
        queued_ahead=queued_ahead,
        totals=spec_totals,
    )
