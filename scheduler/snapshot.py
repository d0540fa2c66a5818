"""The planner's view of the database: nodes, pools, running and queued jobs.

Built in a handful of queries whatever the number of jobs, so admission and
queue prediction stay cheap; the planner itself does no I/O.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from finetune.models import Job, JobNodeSpec, JobStatus
from finetune.models.jobs import TERMINAL_STATUSES
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


def queued_job(job: Job, specs: list[NodeSpec], pool_names: dict[int, str]) -> QueuedJob:
    return QueuedJob(
        job_id=job.pk,
        project_id=job.project_id,
        priority=job.priority,
        queued_at=job.queued_at or job.created_at,
        node_count=job.node_count,
        specs=tuple(spec_request(spec) for spec in specs),
        node_names=tuple(job.node_names or ()),
        pool=pool_names.get(job.pool_id) if job.pool_id else None,
        driver_version=job.driver_version or None,
        duration=job.duration,
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
    for job in Job.objects.filter(status=JobStatus.RUNNING, spec_in_use__isnull=False).only(
        "pk", "spec_in_use", "placement", "started_at", "duration", "progress", "eta_at"
    ):
        running.append(running_job(job, specs[job.spec_in_use_id]))
        progress[job.pk] = Progress(job.started_at, job.eta_at, job.progress)
    # a job whose data is still being validated is passed by until its data is found good
    waiting = {"status": JobStatus.QUEUED, "waiting_for_data": False}
    queued = list(Job.objects.filter(**waiting).only(*QUEUED_FIELDS))
    choices: dict[int, list[NodeSpec]] = defaultdict(list)
    for job_id, spec_id in (
        JobNodeSpec.objects.filter(**{f"job__{name}": value for name, value in waiting.items()})
        .order_by("job_id", "rank")
        .values_list("job_id", "spec_id")
    ):
        choices[job_id].append(specs[spec_id])
    queue = [queued_job(job, choices[job.pk], pool_names) for job in queued]
    return Snapshot(node_list, pool_list, running, queue, now, progress, share())


QUEUED_FIELDS = (
    "pk",
    "project",
    "priority",
    "queued_at",
    "created_at",
    "node_count",
    "node_names",
    "pool",
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
