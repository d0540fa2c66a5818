"""From a Kubernetes Job and its pods (plain dicts) to a WorkloadState, with reasons in words.

Pure functions, kept apart from the API calls so each mapping (OOMKilled,
evicted, image pull error, unschedulable since when) is tested on its own.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.utils.translation import gettext_noop

from finetune.texts import said
from scheduler.executors import manifests
from scheduler.executors.base import Phase, WorkloadState, failure_detail

# The kubelet gives up retrying these; the pod will never start.
IMAGE_ERRORS = {"ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName"}
CONFIG_ERRORS = {"CreateContainerConfigError", "CreateContainerError"}
_FRACTION = re.compile(r"\.(\d{6})\d+")


def parse_time(value: str | None) -> datetime | None:
    """RFC 3339, with the nanoseconds Kubernetes may send cut to microseconds."""
    if not value:
        return None
    return datetime.fromisoformat(_FRACTION.sub(r".\1", value).replace("Z", "+00:00"))


def pod_rank(pod: dict) -> int:
    meta = pod.get("metadata") or {}
    index = (meta.get("annotations") or {}).get(manifests.COMPLETION_INDEX_ANNOTATION)
    if index is None:
        index = (meta.get("labels") or {}).get(manifests.COMPLETION_INDEX_ANNOTATION, "0")
    return int(index)


_SUFFIXES = {
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
}


def quantity(value: str) -> Decimal:
    """A Kubernetes quantity ("63500m", "257Gi", "8") as a number of its base unit."""
    value = str(value).strip()
    if value.endswith("m"):
        return Decimal(value[:-1]) / 1000
    for suffix, factor in _SUFFIXES.items():
        if value.endswith(suffix):
            return Decimal(value[: -len(suffix)]) * factor
    return Decimal(value or "0")


def cpu_millis(value: str) -> int:
    return int(quantity(value) * 1000)


def memory_mib(value: str) -> int:
    return int(quantity(value) / 2**20)


def pod_requests(pod: dict) -> dict[str, Decimal]:
    """What a pod holds on its node, as the scheduler counts it: the larger of its
    containers' requests summed and its largest init container's, plus its overhead.
    Init containers that keep running (sidecars, restartPolicy Always) count with the
    containers. A limit stands for a missing request, as the API server defaults it."""

    def requests_of(container: dict) -> dict[str, Decimal]:
        resources = container.get("resources") or {}
        merged = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
        return {name: quantity(value) for name, value in merged.items()}

    spec = pod.get("spec") or {}
    running: dict[str, Decimal] = {}
    init_peak: dict[str, Decimal] = {}
    sidecars: dict[str, Decimal] = {}
    for container in spec.get("initContainers") or []:
        amounts = requests_of(container)
        if container.get("restartPolicy") == "Always":
            for name, amount in amounts.items():
                sidecars[name] = sidecars.get(name, Decimal(0)) + amount
            continue
        for name, amount in amounts.items():
            # an init container runs beside the sidecars started before it
            init_peak[name] = max(init_peak.get(name, Decimal(0)), amount + sidecars.get(name, 0))
    for container in spec.get("containers") or []:
        for name, amount in requests_of(container).items():
            running[name] = running.get(name, Decimal(0)) + amount
    for name, amount in sidecars.items():
        running[name] = running.get(name, Decimal(0)) + amount
    total = {
        name: max(running.get(name, Decimal(0)), init_peak.get(name, Decimal(0)))
        for name in running.keys() | init_peak.keys()
    }
    for name, amount in (spec.get("overhead") or {}).items():
        total[name] = total.get(name, Decimal(0)) + quantity(amount)
    return total


def _container_status(pod: dict) -> dict[str, Any]:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    for status in statuses:
        if status.get("name") == manifests.CONTAINER:
            return status
    return statuses[0] if statuses else {}


def _worker(pod: dict) -> dict[str, Any]:
    status = pod.get("status") or {}
    return {
        "rank": pod_rank(pod),
        "pod": pod["metadata"]["name"],
        "node": (pod.get("spec") or {}).get("nodeName") or "",
        "phase": status.get("phase") or "Pending",
    }


def pod_lost(pod: dict) -> tuple[str, datetime | None] | None:
    """Why a pod's worker is gone through no fault of the job, and since when (None: it
    will not come back, so now): ended for a disruption (DisruptionTarget), evicted
    (node pressure), or in phase Unknown (its node stopped answering)."""
    status = pod.get("status") or {}
    rank = pod_rank(pod)
    for condition in status.get("conditions") or []:
        # Set by the control plane as it ends a pod for a disruption (preemption, a
        # taint, an API eviction, the kubelet's node shutdown): its exit is no failure.
        if condition.get("type") == "DisruptionTarget" and condition.get("status") == "True":
            return said(
                gettext_noop("worker %(rank)d was ended by the cluster (%(reason)s): %(message)s"),
                {
                    "rank": rank,
                    "reason": condition.get("reason") or "",
                    "message": condition.get("message") or "",
                },
            ), None
    if status.get("reason") == "Evicted":
        return said(
            gettext_noop("worker %(rank)d was evicted: %(message)s"),
            {
                "rank": rank,
                "message": status.get("message") or "",
            },
        ), None
    if status.get("phase") == "Unknown":
        moments = [
            parse_time(condition.get("lastTransitionTime"))
            for condition in status.get("conditions") or []
        ]
        moments = [moment for moment in moments if moment is not None]
        since = max(moments) if moments else parse_time(pod["metadata"].get("creationTimestamp"))
        node = (pod.get("spec") or {}).get("nodeName") or "?"
        return said(
            gettext_noop("worker %(rank)d is lost: its node %(node)s stopped answering"),
            {
                "rank": rank,
                "node": node,
            },
        ), since
    return None


def pod_failure(pod: dict) -> tuple[str, int | None, str] | None:
    """Why a pod failed or never will start, in one line of words, with the exit code if
    any and the last lines of its log (its termination message falls back to them)."""
    status = pod.get("status") or {}
    rank = pod_rank(pod)
    if pod_lost(pod):
        return None
    container = _container_status(pod)
    state = container.get("state") or {}
    waiting = state.get("waiting") or {}
    waiting_reason = waiting.get("reason")
    if waiting_reason in IMAGE_ERRORS or waiting_reason in CONFIG_ERRORS:
        template = (
            gettext_noop("worker %(rank)d: image pull error (%(reason)s): %(message)s")
            if waiting_reason in IMAGE_ERRORS
            else gettext_noop("worker %(rank)d cannot start (%(reason)s): %(message)s")
        )
        values = {"rank": rank, "reason": waiting_reason, "message": waiting.get("message") or ""}
        return said(template, values), None, ""
    terminated = state.get("terminated") or {}
    if status.get("phase") != "Failed" and not (terminated and terminated.get("exitCode")):
        return None
    code = terminated.get("exitCode")
    message = (terminated.get("message") or "").strip()
    if terminated.get("reason") == "OOMKilled":
        text = said(
            gettext_noop("worker %(rank)d was OOMKilled (out of memory, exit code %(code)s)"),
            {
                "rank": rank,
                "code": code,
            },
        )
    elif code is not None:
        text = said(
            gettext_noop("worker %(rank)d exited with code %(code)s"), {"rank": rank, "code": code}
        )
    else:
        text = said(
            gettext_noop("worker %(rank)d failed: %(reason)s %(message)s"),
            {
                "rank": rank,
                "reason": status.get("reason") or "",
                "message": status.get("message") or "",
            },
        )
    line, excerpt = failure_detail(text, message)
    return line, code, excerpt


def _unschedulable_since(pod: dict) -> datetime | None:
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if (
            condition.get("type") == "PodScheduled"
            and condition.get("status") == "False"
            and condition.get("reason") == "Unschedulable"
        ):
            return parse_time(condition.get("lastTransitionTime")) or parse_time(
                pod["metadata"].get("creationTimestamp")
            )
    return None


def _condition(job: dict, kind: str) -> dict | None:
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind and condition.get("status") == "True":
            return condition
    return None


def job_state(
    job_id: int, job: dict | None, pods: list[dict], started: datetime | None = None
) -> WorkloadState:
    """The state of one platform job from its Job object and its pods. `started`: when
    its pods were let start, where that is not when the Job was made (Kueue's
    admission of a Job made suspended long before)."""
    if job is None or job["metadata"].get("deletionTimestamp"):
        return WorkloadState(job_id, Phase.MISSING)
    uid = job["metadata"].get("uid")
    if uid:
        # Pods of an earlier launch of the same job may linger while being deleted.
        pods = [pod for pod in pods if _owned_by(pod, uid)]
    pods = sorted(pods, key=pod_rank)
    workers = tuple(_worker(pod) for pod in pods)
    completions = (job.get("spec") or {}).get("completions") or 1
    since = started or parse_time(job["metadata"].get("creationTimestamp"))

    if _condition(job, "Complete") or (
        len(pods) == completions and all(w["phase"] == "Succeeded" for w in workers)
    ):
        return WorkloadState(job_id, Phase.SUCCEEDED, exit_code=0, workers=workers)
    for pod in pods:
        failure = pod_failure(pod)
        if failure:
            reason, code, excerpt = failure
            return WorkloadState(
                job_id, Phase.FAILED, reason, code, log_excerpt=excerpt, workers=workers
            )
    for pod in pods:
        lost = pod_lost(pod)
        if lost:
            reason, moment = lost
            return WorkloadState(job_id, Phase.LOST, reason, since=moment, workers=workers)
    if not pods and since is not None:
        # Pods come a moment after their Job; a Job without any for long never gets one.
        reason = said(gettext_noop("the Kubernetes Job has no pods"), {})
        return WorkloadState(job_id, Phase.LOST, reason, since=since, workers=workers)
    failed = _condition(job, "Failed")
    if failed:
        reason = said(
            gettext_noop("the Kubernetes Job failed (%(reason)s): %(message)s"),
            {
                "reason": failed.get("reason") or "",
                "message": failed.get("message") or "",
            },
        )
        return WorkloadState(job_id, Phase.FAILED, reason, workers=workers)
    blocked = [moment for moment in map(_unschedulable_since, pods) if moment is not None]
    if blocked:
        messages = {
            condition.get("message") or ""
            for pod in pods
            for condition in (pod.get("status") or {}).get("conditions") or []
            if condition.get("reason") == "Unschedulable"
        }
        reason = said(
            gettext_noop("the cluster cannot place the workers: %(message)s"),
            {"message": "; ".join(sorted(messages))},
        )
        return WorkloadState(
            job_id, Phase.UNSCHEDULABLE, reason, since=min(blocked), workers=workers
        )
    if len(pods) == completions and all(w["phase"] in ("Running", "Succeeded") for w in workers):
        return WorkloadState(job_id, Phase.RUNNING, workers=workers)
    return WorkloadState(job_id, Phase.PENDING, since=since, workers=workers)


def _owned_by(pod: dict, uid: str) -> bool:
    owners = pod["metadata"].get("ownerReferences")
    if not owners:
        return True  # created without an owner (as tests and some controllers do): keep it
    return any(owner.get("uid") == uid for owner in owners)


# --- Kueue admission (JINGTIAO_ADMISSION=kueue) --------------------------------------


def workload_owner(workload: dict) -> tuple[str | None, str | None]:
    """The name and uid of the Job a Kueue Workload stands for (its owner of kind Job);
    the visibility API's pending workloads carry the same owner references."""
    for owner in (workload.get("metadata") or {}).get("ownerReferences") or []:
        if owner.get("kind") == "Job" and (owner.get("apiVersion") or "").startswith("batch/"):
            return owner.get("name"), owner.get("uid")
    return None, None


def _workload_condition(workload: dict | None, kind: str, status: str = "True") -> dict | None:
    for condition in ((workload or {}).get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind and condition.get("status") == status:
            return condition
    return None


def _admitted_at(workload: dict | None) -> datetime:
    """When Kueue admitted the workload (reserved its quota): its pods come after that,
    not after the Job was made. Now, where Kueue has not said (the Job was unsuspended
    by someone else), so that pods are given their grace from when this is first seen."""
    for kind in ("Admitted", "QuotaReserved"):
        found = _workload_condition(workload, kind)
        moment = parse_time((found or {}).get("lastTransitionTime"))
        if moment is not None:
            return moment
    return datetime.now(UTC)


def kueue_job_state(
    job_id: int, job: dict | None, pods: list[dict], workload: dict | None
) -> WorkloadState:
    """The state of one job under Kueue: its Job and pods as without Kueue once Kueue
    admitted it (unsuspended the Job), else WAITING with Kueue's word on why, EVICTED
    where Kueue took back what it had admitted, FAILED where it gave the workload up."""
    if job is None or job["metadata"].get("deletionTimestamp"):
        return WorkloadState(job_id, Phase.MISSING)
    since = parse_time(job["metadata"].get("creationTimestamp"))
    spec = (workload or {}).get("spec") or {}
    evicted = _workload_condition(workload, "Evicted")
    if spec.get("active") is False:
        # Kueue deactivates a workload it gave up on (its pods never got ready after its
        # retries, say): it will not admit it again.
        why = evicted or _workload_condition(workload, "QuotaReserved", "False") or {}
        reason = said(
            gettext_noop("Kueue deactivated its workload (%(reason)s): %(message)s"),
            {"reason": why.get("reason") or "", "message": why.get("message") or ""},
        )
        return WorkloadState(job_id, Phase.FAILED, reason)
    finished = _workload_condition(workload, "Finished")
    if evicted and not finished:
        reason = said(
            gettext_noop("Kueue took back its admission (%(reason)s): %(message)s"),
            {"reason": evicted.get("reason") or "", "message": evicted.get("message") or ""},
        )
        moment = parse_time(evicted.get("lastTransitionTime"))
        return WorkloadState(job_id, Phase.EVICTED, reason, since=moment)
    if (job.get("spec") or {}).get("suspend"):
        pending = _workload_condition(workload, "QuotaReserved", "False")
        reason = kueue_reason((pending or {}).get("message") or "")
        return WorkloadState(job_id, Phase.WAITING, reason, since=since)
    return job_state(job_id, job, pods, started=_admitted_at(workload))


# What Kueue says of a workload it does not admit yet, in words each reader's language
# has (kueue: pkg/scheduler, "couldn't assign flavors to pod set main: insufficient
# quota for cambricon.com/mlu in flavor mlu370, ...").
_KUEUE_SAYS = (
    (
        re.compile(
            r"insufficient (?:unused )?quota for (?P<resource>\S+) in flavor (?P<flavor>[^,;]+)"
        ),
        gettext_noop("not enough %(resource)s quota in flavor %(flavor)s"),
    ),
    (
        re.compile(r"ClusterQueue (?P<queue>\S+) is inactive"),
        gettext_noop("its ClusterQueue %(queue)s is inactive"),
    ),
    (
        re.compile(r"LocalQueue (?P<queue>\S+) doesn't exist"),
        gettext_noop("its LocalQueue %(queue)s does not exist"),
    ),
    (
        re.compile(r"[Ww]orkload no longer fits after processing another workload"),
        gettext_noop("the quota went to a workload ahead of it"),
    ),
)


def kueue_reason(message: str) -> str:
    """Kueue's reason for keeping a workload waiting: said in the reader's language
    where its form is known, else Kueue's own words quoted; "" when it says nothing."""
    message = " ".join(message.split())
    if not message:
        return ""
    for pattern, words in _KUEUE_SAYS:
        found = pattern.search(message)
        if found:
            values = {name: value.strip() for name, value in found.groupdict().items()}
            return said(gettext_noop("Kueue: %(why)s"), {"why": said(words, values)})
    return said(gettext_noop("Kueue: %(why)s"), {"why": message[:MAX_KUEUE_MESSAGE]})


MAX_KUEUE_MESSAGE = 300
