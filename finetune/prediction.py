"""Queue prediction of a draft job (排队预测, F1.17), shown right of the Create button.

The pages call `predict_for_draft`; the answer comes from the scheduler's
planner run with the draft inserted where it would stand in the queue
(scheduler/prediction.py), so it is the start the job gets once created if
nothing else changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.utils.translation import gettext as _

from accounts.models import Project
from finetune.models import Priority
from scheduler.models import DeviceType, NodeSpec, ResourcePool


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
    node_count: int = 0
    #: finetune.memory.SpecMemory per spec, where the draft's model can be estimated
    memory: list = field(default_factory=list)
    #: finetune.runtime.RunTime per spec, where its run time can be told
    runtime: list = field(default_factory=list)
    #: the duration the draft asks for, to say when the run would outlast it
    duration: timedelta | None = None


def placement_nodes(placement) -> list[str]:
    """Node names of a job's placement (a list by rank of {"rank", "node", "devices"})."""
    return [str(entry["node"]) for entry in placement or [] if entry.get("node")]


def predict_for_draft(
    *,
    project: Project | None,
    specs: Sequence[NodeSpec],
    node_count: int | None,
    pool: ResourcePool | None = None,
    node_names: Sequence[str] = (),
    driver_version: str = "",
    priority: int | None = None,
    duration: timedelta | None = None,
) -> Prediction:
    """Whether a job with these resources starts now, queues (until when), or never fits."""
    from scheduler import prediction as planner_prediction

    if not specs or not node_count or project is None:
        return Prediction("incomplete", _("Choose a node spec and a node count."))
    spec_totals = [(spec, totals(spec, node_count)) for spec in specs]
    answer = planner_prediction.predict_draft(
        project_id=project.pk,
        priority=priority if priority is not None else Priority.NORMAL,
        node_count=node_count,
        specs=specs,
        duration=duration or settings.JINGTIAO_DEFAULT_DURATION,
        node_names=node_names,
        pool=pool,
        driver_version=driver_version,
    )
    verdict = "now" if answer.starts_now else ("queue" if answer.can_run else "never")
    chosen = next((spec for spec in specs if spec.pk == answer.spec_id), None)
    return Prediction(
        verdict,
        answer.message(),
        spec=chosen,
        queued_ahead=max(answer.position - 1, 0),
        totals=spec_totals,
        node_count=node_count,
        duration=duration,
    )
