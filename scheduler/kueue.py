"""Kueue admission (JINGTIAO_ADMISSION=kueue; docs/kubernetes.md "With Kueue").

Kueue, not the planner, decides when a job starts: on a cluster shared with other
teams its quotas, preemption and fair sharing are the cluster's one admission. Here:

- **Submission** (`run_pass`, the admission pass of this mode): every queued job gets
  its Indexed Job at once, suspended and labelled with its project's LocalQueue and its
  priority's WorkloadPriorityClass; a waiting Job whose priority changed is relabelled.
  Jingtiao never unsuspends a Job itself: Kueue does, when it admits the Workload.
- **Following** (`follow`, the observe cycle of this mode): one observe call (Jobs,
  pods, Workloads: three list calls whatever the number of jobs). A queued job whose
  Job Kueue unsuspended is RUNNING (its duration counts from then); a running one that
  Kueue took back (evicted, preempted) is back in the queue in its place, its Job left
  for Kueue to admit again; the rest settles as without Kueue.
- **Prediction**: the same planner as the default mode, run over the ClusterQueues'
  quotas (`quota_view`): each ClusterQueue is a pool of the nodes its flavors select,
  cut to its nominal quota, holding the jobs it admitted. Positions are Kueue's own,
  from its visibility API, and a waiting job's reason is Kueue's, in the reader's
  language where its form is known (observing.kueue_reason).
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext_noop

from accounts.models import Project
from finetune import states
from finetune.models import Job, JobEvent, JobStatus, Priority
from finetune.reports import hash_token
from finetune.texts import Said, from_data, say
from scheduler.executors import get_executor, observing
from scheduler.executors.base import (
    ExecutorError,
    LaunchRequest,
    Phase,
    Placement,
    WorkloadState,
)
from scheduler.models import KueueQueue, Node
from scheduler.planner import NodeState, Pool, QueuedJob, RunningJob

logger = logging.getLogger(__name__)
CLUSTER = JobEvent.Source.CLUSTER
# Serialises submission passes across workers: two passes never submit one job twice.
SUBMIT_LOCK_KEY = 0x6B756575  # "kueu"
POSITIONS_CACHE_KEY = "jingtiao:kueue:positions"
WAITING_CACHE_KEY = "jingtiao:kueue:waiting"
CACHE_SECONDS = 600


def enabled() -> bool:
    return settings.JINGTIAO_ADMISSION == "kueue"


def local_queue(project: Project) -> str:
    """The LocalQueue a project's jobs are submitted to."""
    return project.kueue_queue or settings.JINGTIAO_KUEUE_DEFAULT_QUEUE


def priority_class(priority: int) -> str:
    """The WorkloadPriorityClass of a priority: jingtiao-low ... jingtiao-urgent."""
    return f"{settings.JINGTIAO_KUEUE_PRIORITY_PREFIX}{Priority(priority).name.lower()}"


# --- submission ----------------------------------------------------------------------


def run_pass(now: datetime | None = None) -> list[int]:
    """Submit every queued job that has no Job yet, relabel waiting ones whose priority
    changed, then read Kueue's positions and plan the predictions. Returns the ids
    submitted."""
    from scheduler.launching import LAUNCH_RELATED

    executor = get_executor()
    with _submit_lock():
        existing = executor.submitted()
        queued = list(
            Job.objects.filter(status=JobStatus.QUEUED, waiting_for_data=False)
            .select_related(*LAUNCH_RELATED, "project")
            .order_by("-priority", "queued_at", "pk")
        )
        submitted = []
        for job in queued:
            found = existing.get(job.pk)
            try:
                if found is None:
                    if submit(job, executor):
                        submitted.append(job.pk)
                elif not found["metadata"].get("deletionTimestamp"):
                    _relabel(job, found, executor)
            except ExecutorError as exc:
                if exc.transient:
                    logger.warning("job %s: not submitted to Kueue yet: %s", job.pk, exc)
                    continue
                _fail(job, exc)
    try:
        remember_positions(executor, {local_queue(job.project) for job in queued})
    except ExecutorError as exc:
        logger.warning("Kueue's positions were not read: %s", exc)
    _plan_predictions(now or timezone.now())
    return submitted


class _submit_lock:
    """A session advisory lock on PostgreSQL, held across the API calls (no transaction
    is open meanwhile, so each job's record commits as soon as its Job is created)."""

    def __enter__(self) -> None:
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_lock(%s)", [SUBMIT_LOCK_KEY])

    def __exit__(self, *exc_info) -> None:
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [SUBMIT_LOCK_KEY])


def submit(job: Job, executor) -> bool:
    """Create the job's suspended, labelled Job (with its ConfigMap, Secret and
    Service); True if it stands. A job stopped or deleted meanwhile has what was just
    created torn down again."""
    from scheduler.launching import _clear_abandoned_output, trainer_spec

    spec = job.ordered_node_specs()[0]  # Kueue chooses flavors, not specs: the first
    token = secrets.token_urlsafe(32)
    queue = local_queue(job.project)
    request = LaunchRequest(
        job_id=job.pk,
        placement=Placement.on(spec, [""] * job.node_count),
        trainer_spec=trainer_spec(job, token),
        report_token=token,
        pool_taint=job.pool.taint if job.pool else "",
        kueue_queue=queue,
        kueue_priority_class=priority_class(job.priority),
        kueue_node_names=tuple(job.node_names or ()),
    )
    command = executor.run_command(request)
    recorded = Job.objects.filter(pk=job.pk, status=JobStatus.QUEUED).update(
        report_token_hash=hash_token(token), run_command=command
    )
    if not recorded:
        return False
    _clear_abandoned_output(job)
    executor.launch(request)
    with transaction.atomic():
        still = Job.objects.select_for_update().filter(pk=job.pk, status=JobStatus.QUEUED)
        if still.exists():
            JobEvent.objects.create(
                job_id=job.pk,
                kind=JobEvent.Kind.LAUNCH,
                message=command,
                data={
                    "executor": executor.name,
                    "kueue_queue": queue,
                    "priority_class": request.kueue_priority_class,
                    "spec_id": spec.pk,
                },
            )
            return True
    logger.info("job %s ended while it was submitted: tearing its Job down", job.pk)
    executor.stop(job.pk, keep_logs=False)
    return False


def _relabel(job: Job, found: dict, executor) -> None:
    """A waiting job's priority changed (F2): Kueue reorders it by its new label."""
    wanted = priority_class(job.priority)
    labels = found["metadata"].get("labels") or {}
    from scheduler.executors.manifests import KUEUE_PRIORITY_LABEL

    if labels.get(KUEUE_PRIORITY_LABEL) != wanted:
        executor.set_priority_class(job.pk, wanted)


def _fail(job: Job, exc: ExecutorError) -> None:
    logger.error("job %s cannot be submitted to Kueue: %s", job.pk, exc)
    with contextlib.suppress(states.TransitionError):  # stopped meanwhile
        states.transition(
            job,
            JobStatus.FAILED,
            reason=say(gettext_noop("cannot launch: %(error)s"), error=str(exc)),
        )


# --- following -----------------------------------------------------------------------


def follow(
    executor, on_ended: Callable[[int], None], now: datetime | None = None
) -> dict[int, str]:
    """The observe cycle with Kueue: one observe call for every running and submitted
    queued job, then each moves as Kueue and its pods say. Returns job id -> status."""
    from scheduler.settling import settle_running_jobs

    now = now or timezone.now()
    running = list(Job.objects.filter(status=JobStatus.RUNNING).select_related("model_repo"))
    queued = list(
        Job.objects.filter(status=JobStatus.QUEUED, waiting_for_data=False).select_related(
            "model_repo"
        )
    )
    if not running and not queued:
        _remember_waiting({})
        return {}
    observed = executor.observe([job.pk for job in running + queued])
    moved: dict[int, str] = {}
    for job in running:
        state = observed[job.pk]
        if state.phase in (Phase.WAITING, Phase.EVICTED) and job.requeue_requested_at is None:
            if _taken_back(job, state):
                moved[job.pk] = JobStatus.QUEUED
        elif state.workers:
            _record_nodes(job, state)
    settling = [job for job in running if job.pk not in moved]
    moved.update(settle_running_jobs(executor, on_ended, now, jobs=settling, observed=observed))
    waiting: dict[int, dict] = {}
    for job in queued:
        state = observed[job.pk]
        if state.phase in (Phase.WAITING, Phase.EVICTED, Phase.MISSING):
            if state.reason:
                waiting[job.pk] = _said_data(state.reason)
            continue
        if _admitted(job, state, now):
            moved[job.pk] = JobStatus.RUNNING
            if state.phase not in (Phase.PENDING, Phase.RUNNING):
                # it ran (or failed) between two cycles: settled now, as any running job
                moved.update(
                    settle_running_jobs(executor, on_ended, now, jobs=[job], observed=observed)
                )
    _remember_waiting(waiting)
    return moved


def _said_data(reason: str) -> dict:
    return reason.data() if isinstance(reason, Said) else {"msgid": "%(why)s", "params": {}}


def _admitted(job: Job, state: WorkloadState, now: datetime) -> bool:
    """Kueue admitted the job (unsuspended its Job): RUNNING, where its pods are."""
    moved = states.transition(
        job,
        JobStatus.RUNNING,
        reason=say(gettext_noop("admitted by Kueue")),
        source=CLUSTER,
        changes={
            "placement": _placement(state),
            "launch_beat_at": now,
            # the spec it was submitted with (Kueue chooses flavors, not specs)
            "spec_in_use": job.ordered_node_specs()[0],
        },
    )
    return moved


def _placement(state: WorkloadState) -> list[dict]:
    return [
        {"rank": worker["rank"], "node": worker.get("node") or "", "devices": []}
        for worker in state.workers
    ]


def _record_nodes(job: Job, state: WorkloadState) -> None:
    """The nodes the cluster placed a running job's pods on, once it has."""
    placement = _placement(state)
    if placement != job.placement and all(worker["node"] for worker in placement):
        Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(placement=placement)


def _taken_back(job: Job, state: WorkloadState) -> bool:
    """Kueue evicted the job (preempted by a higher priority, its pods not ready in
    time...): back in the queue at its place, with Kueue's reason. Its Job stays, for
    Kueue to admit again; this is no failure of the job's, so it does not count
    towards JINGTIAO_MAX_REQUEUES."""
    reason = state.reason or say(gettext_noop("Kueue suspended its workload"))
    moved = states.transition(
        job,
        JobStatus.QUEUED,
        reason=say(gettext_noop("%(cause)s; back in the queue at its place."), cause=reason),
        source=CLUSTER,
        data={"kueue": True, "workers": list(state.workers)},
    )
    return moved


# --- positions and reasons -----------------------------------------------------------


@dataclass(frozen=True)
class Standing:
    """Where Kueue has a waiting job: its place in its ClusterQueue (1-based)."""

    position: int
    local_queue: str


def remember_positions(executor, local_queues: Iterable[str]) -> dict[int, Standing]:
    """Read each LocalQueue's pending workloads (one call per LocalQueue in use) and
    keep every job's place for the pages."""
    found: dict[int, Standing] = {}
    for queue in sorted(set(local_queues)):
        for item in executor.pending_workloads(queue):
            name, _uid = observing.workload_owner(item)
            job_id = _job_of(name)
            position = item.get("positionInClusterQueue")
            if job_id is not None and isinstance(position, int):
                found[job_id] = Standing(position + 1, item.get("localQueueName") or queue)
    try:
        cache.set(
            POSITIONS_CACHE_KEY,
            {job_id: (s.position, s.local_queue) for job_id, s in found.items()},
            CACHE_SECONDS,
        )
    except Exception as exc:  # any backend's connection error: positions are a shortcut
        logger.warning("Kueue's positions could not be kept: %s", exc)
    return found


def _job_of(name: str | None) -> int | None:
    prefix = "jingtiao-job-"
    if name and name.startswith(prefix) and name[len(prefix) :].isdigit():
        return int(name[len(prefix) :])
    return None


def positions() -> dict[int, Standing]:
    try:
        kept = cache.get(POSITIONS_CACHE_KEY) or {}
    except Exception as exc:
        logger.warning("Kueue's positions could not be read: %s", exc)
        kept = {}
    return {job_id: Standing(*value) for job_id, value in kept.items()}


def _remember_waiting(waiting: dict[int, dict]) -> None:
    try:
        cache.set(WAITING_CACHE_KEY, waiting, CACHE_SECONDS)
    except Exception as exc:
        logger.warning("Kueue's reasons could not be kept: %s", exc)


def waiting_reasons() -> dict[int, Said]:
    """What Kueue said, at the last observe cycle, of each job it keeps waiting."""
    try:
        kept = cache.get(WAITING_CACHE_KEY) or {}
    except Exception as exc:
        logger.warning("Kueue's reasons could not be read: %s", exc)
        kept = {}
    found = {job_id: from_data(data) for job_id, data in kept.items()}
    return {job_id: said for job_id, said in found.items() if said is not None}


def _plan_predictions(now: datetime) -> None:
    """Plan the queue over the quotas, as admission does in the default mode, and leave
    it for the list, with Kueue's positions and reasons in place of the planner's."""
    from scheduler import planner, prediction, snapshot

    version = prediction.state_version()
    state = snapshot.take(now)
    latest = planner.Forecast(state.nodes, state.pools, state.running, state.queue, now)
    running, queue = state.expected()
    expected = planner.Forecast(state.nodes, state.pools, running, queue, now)
    pools = {job.job_id: job.pool for job in state.queue}
    prediction.remember_plan(latest.plan, pools, expected.plan, latest.drafts.holders)
    prediction.keep_warm(version, state, latest, expected)


# --- the quotas ------------------------------------------------------------------------


def sync_queues(executor) -> int:
    """Read the ClusterQueues, their flavors and this namespace's LocalQueues (three
    list calls) into KueueQueue rows; returns how many ClusterQueues there are."""
    cluster_queues, flavors, local_queues = executor.kueue_queues()
    labels = {
        item["metadata"]["name"]: dict((item.get("spec") or {}).get("nodeLabels") or {})
        for item in flavors
    }
    feeding: dict[str, list[str]] = defaultdict(list)
    for item in local_queues:
        target = (item.get("spec") or {}).get("clusterQueue")
        if target:
            feeding[target].append(item["metadata"]["name"])
    now = timezone.now()
    names = []
    for item in cluster_queues:
        name = item["metadata"]["name"]
        names.append(name)
        found = []
        for group in (item.get("spec") or {}).get("resourceGroups") or []:
            for flavor in group.get("flavors") or []:
                quotas = {
                    resource["name"]: str(resource.get("nominalQuota", "0"))
                    for resource in flavor.get("resources") or []
                }
                found.append(
                    {
                        "name": flavor["name"],
                        "node_labels": labels.get(flavor["name"], {}),
                        "quotas": quotas,
                    }
                )
        KueueQueue.objects.update_or_create(
            name=name,
            defaults={
                "local_queues": sorted(feeding.get(name, [])),
                "flavors": found,
                "synced_at": now,
            },
        )
    KueueQueue.objects.exclude(name__in=names).delete()
    return len(names)


@dataclass(frozen=True)
class QuotaNode:
    """A real node as a flavor sees it: its capacity, labels and what the planner reads."""

    state: NodeState
    labels: dict[str, str]


def quota_nodes(
    queue: str, flavors: list[dict], nodes: list[QuotaNode], device_resources: set[str]
) -> list[NodeState]:
    """A ClusterQueue as the planner's pool `queue`: for each flavor, the nodes its node
    labels select (each node once), taken in order until the flavor's nominal quota of
    devices (of CPU and memory, for a flavor without devices) is used up, the last one
    cut to what is left. A resource the flavor sets no quota for is the nodes' own."""
    taken: set[str] = set()
    found: list[NodeState] = []
    for flavor in flavors:
        quotas = {name: observing.quantity(value) for name, value in flavor["quotas"].items()}
        # what is left of each quota; None: no quota, the nodes' own
        left = {
            "devices": _sum(quotas, device_resources),
            "cpu": quotas["cpu"] * 1000 if "cpu" in quotas else None,
            "memory": quotas.get("memory"),
        }
        binding = ["devices"] if left["devices"] is not None else ["cpu", "memory"]
        wanted = flavor.get("node_labels") or {}
        for node in nodes:
            if any(left[name] is not None and left[name] <= 0 for name in binding):
                break
            state = node.state
            if state.name in taken or any(node.labels.get(k) != v for k, v in wanted.items()):
                continue
            have = {"devices": state.devices, "cpu": state.cpu_millis, "memory": state.memory_bytes}
            if left["devices"] is None:
                have["devices"] = 0  # a flavor without a device quota admits no device request
            cut = {
                name: amount if left[name] is None else min(amount, int(left[name]))
                for name, amount in have.items()
            }
            for name, amount in cut.items():
                if left[name] is not None:
                    left[name] -= amount
            taken.add(state.name)
            found.append(
                replace(
                    state,
                    name=f"{queue}/{state.name}",
                    pool=queue,
                    devices=cut["devices"],
                    cpu_millis=cut["cpu"],
                    memory_bytes=cut["memory"],
                )
            )
    return found


def _sum(quotas: dict[str, Decimal], names: set[str]) -> Decimal | None:
    found = [amount for name, amount in quotas.items() if name in names]
    return sum(found, Decimal(0)) if found else None


def _device_resources() -> set[str]:
    from scheduler.models import NodeSpec

    names = {settings.JINGTIAO_MLU_RESOURCE, settings.JINGTIAO_GPU_RESOURCE}
    named = NodeSpec.objects.exclude(device_resource="").values_list("device_resource", flat=True)
    return names | set(named)


def _queue_of_projects(project_ids: Iterable[int]) -> dict[int, str]:
    """project -> the ClusterQueue its LocalQueue feeds (its LocalQueue's name, marked,
    where no ClusterQueue is known to take it: such jobs are told they cannot run)."""
    feeds = {
        local: queue.name for queue in KueueQueue.objects.all() for local in queue.local_queues
    }
    found = {}
    for pk, own in Project.objects.filter(pk__in=set(project_ids)).values_list("pk", "kueue_queue"):
        local = own or settings.JINGTIAO_KUEUE_DEFAULT_QUEUE
        found[pk] = feeds.get(local, f"localqueue:{local}")
    return found


def in_queue(job: QueuedJob, queues: dict[int, str]) -> QueuedJob:
    """A queued job as the quota view plans it: in its ClusterQueue's pool."""
    queue = queues.get(job.project_id, "")
    return replace(
        job,
        pool=queue,
        node_names=tuple(f"{queue}/{name}" for name in job.node_names),
    )


def draft_in_queue(job: QueuedJob) -> QueuedJob:
    """A draft (the create page's) as the quota view plans it."""
    return in_queue(job, _queue_of_projects([job.project_id]))


def quota_view(
    nodes: list[NodeState], running: list[RunningJob], queue: list[QueuedJob]
) -> tuple[list[NodeState], list[Pool], list[RunningJob], list[QueuedJob]]:
    """The planner's state with Kueue: the ClusterQueues' quotas as pools of nodes, the
    jobs Kueue admitted holding them, and each queued job in its ClusterQueue."""
    running_projects = dict(
        Job.objects.filter(pk__in=[job.job_id for job in running]).values_list("pk", "project_id")
    )
    queues = _queue_of_projects([*running_projects.values(), *(job.project_id for job in queue)])
    labels = dict(Node.objects.values_list("name", "labels"))
    holding: dict[str, set[str]] = defaultdict(set)
    for job in running:
        for node in job.nodes:
            holding[queues.get(running_projects.get(job.job_id), "")].add(node)
    found: list[NodeState] = []
    resources = _device_resources()
    for queue_row in KueueQueue.objects.all():
        held = holding.get(queue_row.name, set())
        # the nodes its admitted jobs hold first, so that the cut keeps them
        ordered = sorted(nodes, key=lambda node: (node.name not in held, node.name))
        candidates = [
            QuotaNode(node, labels.get(node.name) or {}) for node in ordered if node.schedulable
        ]
        found += quota_nodes(queue_row.name, queue_row.flavors, candidates, resources)
    pools = [Pool(name) for name in sorted({node.pool for node in found if node.pool})]
    placed = _running_in(found, running, running_projects, queues)
    return found, pools, placed, [in_queue(job, queues) for job in queue]


def _running_in(
    nodes: list[NodeState],
    running: list[RunningJob],
    projects: dict[int, int],
    queues: dict[int, str],
) -> list[RunningJob]:
    """The admitted jobs on the quota's nodes: where their pods run where that node is
    in the quota, else (not placed yet, or on a node the cut left out) on the nodes of
    their ClusterQueue with room left, first fit; a job over its quota (borrowed from
    a cohort) holds nothing of it."""
    by_name = {node.name: node for node in nodes}
    room = {node.name: [node.devices, node.cpu_millis, node.memory_bytes] for node in nodes}
    placed = []
    for job in running:
        queue = queues.get(projects.get(job.job_id), "")
        names = [f"{queue}/{node}" for node in job.nodes]
        if not all(name in by_name for name in names) or len(set(names)) != len(names):
            names = _first_fit(job, queue, nodes, room)
            if names is None:
                continue
        for name in names:
            left = room[name]
            left[0] -= job.spec.devices
            left[1] -= job.spec.cpu_millis
            left[2] -= job.spec.memory_bytes
        placed.append(replace(job, nodes=tuple(names)))
    return placed


def _first_fit(job: RunningJob, queue: str, nodes: list[NodeState], room: dict) -> list[str] | None:
    spec = job.spec
    fits = [
        node.name
        for node in nodes
        if node.pool == queue
        and node.device_type == spec.device_type
        and room[node.name][0] >= spec.devices
        and room[node.name][1] >= spec.cpu_millis
        and room[node.name][2] >= spec.memory_bytes
    ]
    return fits[: len(job.nodes)] if len(fits) >= len(job.nodes) else None
