"""The ClusterQueues' quotas as the planner's state, with Kueue admission (scheduler/kueue.py).

The node sync reads Kueue's ClusterQueues, ResourceFlavors and LocalQueues into
KueueQueue rows (`sync_queues`); every snapshot then plans over them (`quota_view`):
each ClusterQueue a pool of the nodes its flavors select, cut to its nominal quota,
holding the jobs Kueue admitted. Borrowing in a cohort, fair sharing and other
namespaces' workloads in a shared ClusterQueue are not modelled: the starts are this
platform's jobs over its quota.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from decimal import Decimal

from django.conf import settings
from django.utils import timezone

from accounts.models import Project
from finetune.models import Job
from scheduler.executors import observing
from scheduler.models import KueueQueue, Node
from scheduler.planner import NodeState, Pool, QueuedJob, RunningJob


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
            # a device quota of 0 (a CPU flavor in a group that covers devices) is none
            "devices": _sum(quotas, device_resources) or None,
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


def cluster_queues_of(rows: Iterable[KueueQueue] | None = None) -> dict[str, str]:
    """LocalQueue -> the ClusterQueue it feeds, as last read (from ``rows`` if read)."""
    if rows is None:
        rows = KueueQueue.objects.only("name", "local_queues")
    return {local: queue.name for queue in rows for local in queue.local_queues}


def _queue_of_projects(project_ids: Iterable[int], feeds: dict[str, str]) -> dict[int, str]:
    """project -> the ClusterQueue its LocalQueue feeds (its LocalQueue's name, marked,
    where no ClusterQueue is known to take it: such jobs are told they cannot run)."""
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
    """A draft (the create page's) as the quota view plans it (as it is, where that view
    is the nodes' own: see quota_view)."""
    rows = list(KueueQueue.objects.only("name", "local_queues"))
    if not rows:
        return job
    return in_queue(job, _queue_of_projects([job.project_id], cluster_queues_of(rows)))


def quota_view(
    nodes: list[NodeState],
    pools: list[Pool],
    running: list[RunningJob],
    queue: list[QueuedJob],
) -> tuple[list[NodeState], list[Pool], list[RunningJob], list[QueuedJob]]:
    """The planner's state with Kueue: the ClusterQueues' quotas as pools of nodes, the
    jobs Kueue admitted holding them, and each queued job in its ClusterQueue. Before
    the first read of the queues (or where they cannot be read) the state is the
    nodes' own, as without Kueue: an estimate, rather than every job told it cannot run."""
    rows = list(KueueQueue.objects.all())
    if not rows:
        return nodes, pools, running, queue
    running_projects = dict(
        Job.objects.filter(pk__in=[job.job_id for job in running]).values_list("pk", "project_id")
    )
    projects = [*running_projects.values(), *(job.project_id for job in queue)]
    queues = _queue_of_projects(projects, cluster_queues_of(rows))
    labels = dict(Node.objects.values_list("name", "labels"))
    holding: dict[str, set[str]] = defaultdict(set)
    for job in running:
        for node in job.nodes:
            holding[queues.get(running_projects.get(job.job_id), "")].add(node)
    found: list[NodeState] = []
    resources = _device_resources()
    for queue_row in rows:
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
