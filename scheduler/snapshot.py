"""The planner's view of the database: nodes, pools, running and queued jobs.

Built in a handful of queries whatever the number of jobs, so admission and
queue prediction stay cheap; the planner itself does no I/O.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import Q

from finetune.models import Job, JobNodeSpec, JobStatus
from finetune.models.jobs import TERMINAL_STATUSES
from scheduler import kueue, kueue_quotas
from scheduler.capacity import nodes, pools, spec_request
from scheduler.models import NodeSpec
from scheduler.planner import NodeState, Pool, QueuedJob, RunningJob
from scheduler.planning.expected import Progress, expected_inputs, typical_share

# How many of the latest settled jobs tell how much of its duration a job runs.
SHARE_SAMPLES = 200


@dataclass(frozen=True)
class Snapshot:
    nodes: list[NodeState]
    pools: list[Pool]
    running: list[RunningJob]
    queue: list[QueuedJob]
    now: datetime
    # what each running job reported of its end, and the share of its duration a job
    # typically runs: the inputs of the expected plan (planning/expected.py)
    progress: dict[int, Progress] = field(default_factory=dict)
    share: float = 1.0

    def expected(self) -> tuple[list[RunningJob], list[QueuedJob]]:
        """The running and queued jobs as they will likely run, to plan expected starts."""
        return expected_inputs(self.running, self.queue, self.progress, self.now, self.share)


def queued_job(row: tuple, specs: list[NodeSpec], pool_names: dict[int, str]) -> QueuedJob:
    """The planner's view of a queued job, from its QUEUED_FIELDS (a row, not a model:
    a queue of tens of thousands is read without building as many Job objects)."""
    (
        pk,
        project_id,
        priority,
        queued_at,
        created_at,
        node_count,
        names,
        pool_id,
        driver,
        duration,
    ) = row
    return QueuedJob(
        job_id=pk,
        project_id=project_id,
        priority=priority,
        queued_at=queued_at or created_at,
        node_count=node_count,
        specs=tuple(spec_request(spec) for spec in specs),
        node_names=tuple(names or ()),
        pool=pool_names.get(pool_id) if pool_id else None,
        driver_version=driver or None,
        duration=duration,
    )


def running_job(job: Job, spec: NodeSpec) -> RunningJob:
    return RunningJob(
        job_id=job.pk,
        spec=spec_request(spec),
        nodes=tuple(worker["node"] for worker in job.placement),
        deadline=job.started_at + job.duration,
    )


def take(now: datetime) -> Snapshot:
    pool_list, pool_names = pools()
    node_list = nodes(pool_names)
    specs = {spec.pk: spec for spec in NodeSpec.objects.all()}

    running, progress = [], {}
    for job in Job.objects.filter(RUNNING_PLANNED).only(
        "pk", "spec_in_use", "placement", "started_at", "duration", "progress", "eta_at"
    ):
        running.append(running_job(job, specs[job.spec_in_use_id]))
        progress[job.pk] = Progress(job.started_at, job.eta_at, job.progress)
    queued = Job.objects.filter(QUEUED_PLANNED).values_list(*QUEUED_FIELDS)
    choices: dict[int, list[NodeSpec]] = defaultdict(list)
    for job_id, spec_id in (
        JobNodeSpec.objects.filter(**{f"job__{name}": value for name, value in QUEUED.items()})
        .order_by("job_id", "rank")
        .values_list("job_id", "spec_id")
    ):
        choices[job_id].append(specs[spec_id])
    queue = [queued_job(row, choices[row[0]], pool_names) for row in queued]
    if kueue.enabled():  # Kueue admits: the plan is over its ClusterQueues' quotas
        node_list, pool_list, running, queue = kueue_quotas.quota_view(
            node_list, pool_list, running, queue
        )
    return Snapshot(node_list, pool_list, running, queue, now, progress, share())


RUNNING_PLANNED = Q(status=JobStatus.RUNNING, spec_in_use__isnull=False)
# a job whose data is still being validated is passed by until its data is found good
QUEUED = {"status": JobStatus.QUEUED, "waiting_for_data": False}
QUEUED_PLANNED = Q(**QUEUED)


def planned_jobs():
    """The jobs a snapshot holds, running and queued."""
    return Job.objects.filter(RUNNING_PLANNED | QUEUED_PLANNED)


QUEUED_FIELDS = (  # in queued_job's order
    "pk",
    "project_id",
    "priority",
    "queued_at",
    "created_at",
    "node_count",
    "node_names",
    "pool_id",
    "driver_version",
    "duration",
)


def share() -> float:
    """The share of its duration that a job typically runs, from the latest settled jobs."""
    settled = (
        Job.objects.filter(
            status__in=TERMINAL_STATUSES, started_at__isnull=False, finished_at__isnull=False
        )
        .order_by("-finished_at")
        .values_list("started_at", "finished_at", "duration")[:SHARE_SAMPLES]
    )
    return typical_share((finished - started, duration) for started, finished, duration in settled)
