"""The executor interface (DESIGN.md "Executor backends").

One backend is active, chosen by JINGTIAO_EXECUTOR: `local` (child processes on
this machine) or `kubernetes` (an Indexed Job per platform job). The scheduler
calls `launch` once the planner placed a job; a periodic task calls `observe`
for every RUNNING job at once and settles them through the state machine.

Every method is idempotent and keyed by the job id, so a task retried after a
crash, or a worker restarted mid-way, neither duplicates nor loses a workload.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from django.utils.translation import gettext_noop

from finetune.texts import said


class Phase(StrEnum):
    PENDING = "pending"  # accepted, not yet running (pulling images, waiting for a slot)
    RUNNING = "running"
    SUCCEEDED = "succeeded"  # every worker exited 0
    FAILED = "failed"  # a worker failed: `reason` says how, in words
    UNSCHEDULABLE = "unschedulable"  # the cluster cannot place its pods (since `since`)
    # Its workers are gone through no fault of the job (evicted, their node lost, a Job
    # whose pods never came): back to the queue, once `since` is a grace old (None: now).
    LOST = "lost"
    MISSING = "missing"  # no workload at all for this job
    # With Kueue admission: the Job waits, suspended, for Kueue to admit it (`reason`:
    # Kueue's word on why it waits, if any).
    WAITING = "waiting"
    # With Kueue admission: Kueue took back a workload it had admitted (preempted, its
    # pods not ready in time...): back in the queue in its place, Kueue readmits it.
    EVICTED = "evicted"


@dataclass(frozen=True)
class Placement:
    """Where the planner put a job: one node per worker, by rank."""

    spec_id: int
    cpu_millis: int
    memory_mib: int
    device_type: str  # "mlu", "gpu" or "none"
    devices_per_node: int
    nodes: tuple[str, ...]
    # node -> device indices on that node, when the backend hands out devices
    # itself (local: CUDA_VISIBLE_DEVICES / CAMBRICON_VISIBLE_DEVICES); empty otherwise.
    device_ids: dict[str, tuple[int, ...]] = field(default_factory=dict)
    # Training processes on each node (torchrun's --nproc-per-node): one per device, or a
    # CPU-only spec's own count.
    processes_per_node: int = 1
    # The Kubernetes resource the devices are requested as; empty: the type's default.
    device_resource: str = ""
    # The spec's device model (MLU370-X8): where Kueue admits, the pods select nodes of
    # that model themselves, not being pinned to nodes.
    device_model: str = ""

    @classmethod
    def on(cls, spec, nodes, device_ids: dict[str, tuple[int, ...]] | None = None) -> Placement:
        """One worker of node spec `spec` (a NodeSpec) on each of `nodes`, by rank."""
        return cls(
            spec_id=spec.pk,
            cpu_millis=spec.cpu_millis,
            memory_mib=spec.memory_mib,
            device_type=spec.device_type,
            devices_per_node=spec.device_count,
            nodes=tuple(nodes),
            device_ids=device_ids or {},
            processes_per_node=spec.processes_per_node,
            device_resource=spec.device_resource,
            device_model=spec.device_model,
        )

    @property
    def node_count(self) -> int:
        return len(self.nodes)

    @property
    def world_size(self) -> int:
        return self.node_count * self.processes_per_node


@dataclass(frozen=True)
class LaunchRequest:
    """Everything a backend needs to start a job; built by the platform."""

    job_id: int
    placement: Placement
    trainer_spec: dict[str, Any]  # the JSON `python -m trainer run --spec` reads
    report_token: str  # secret: passed to workers, never logged
    pool_taint: str = ""  # "key=value:Effect" of the job's pool, if any
    # With Kueue admission: the LocalQueue the Job is submitted to, and the
    # WorkloadPriorityClass of its priority; the nodes are Kueue's (and the cluster's)
    # to choose, so `placement.nodes` holds one empty name per node. Empty otherwise.
    kueue_queue: str = ""
    kueue_priority_class: str = ""
    kueue_node_names: tuple[str, ...] = ()  # the nodes the job is limited to, if any


@dataclass(frozen=True)
class WorkloadState:
    job_id: int
    phase: Phase
    reason: str = ""  # one line, in words: "exit code 1: CUDA out of memory", "OOMKilled"
    exit_code: int | None = None
    since: datetime | None = None  # when the workload entered this phase, if known
    workers: tuple[dict[str, Any], ...] = ()  # per-rank detail (pod/pid, node, phase)
    log_excerpt: str = ""  # a failed worker's last log lines, shown apart from the reason


# What a log's last lines may say of why it ended: the trainer's own outcome line
# (trainer/runner.py ends every run on one; "[rank 3] " in front in a run of several
# processes), or the line a Python exception ends on.
RANK_TAG = r"(?:\[rank (?P<rank>\d+)\] )?"
OUTCOME = re.compile(rf"^{RANK_TAG}jingtiao: failed: (?P<why>.+)$")
EXCEPTION = re.compile(r"^(?P<why>[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b.*)$")
# What a rank says when its launcher ended it because another rank failed first.
ENDED_BY_OTHERS = ("terminated by SIGTERM", "interrupted")
EXCERPT_LINES = 20
MAX_REASON = 300  # characters of a failure's reason, in English


def failure_detail(reason: str, log: str) -> tuple[str, str]:  # (Said or str, excerpt)
    """A failure's reason in one line of at most 300 characters, and the log lines that
    show it (at most EXCERPT_LINES). What torchrun adds once its ranks failed (its own
    traceback and its report of them) is not read: the ranks' lines are.

    The reason gains what the log says of the failure: the trainer's "jingtiao: failed:
    <why>" (with several ranks, the first that failed by itself: the ones their launcher
    ended after it say so, and come later), else the last exception line of the log's
    end. The excerpt ends on that line, so a launcher's report after it (torchrun's
    summary of the failed ranks) does not push it out. A log that ends on anything else
    (a worker killed mid-step ends on whatever it logged last) adds nothing."""
    lines = _before_launcher_report(log.splitlines())
    outcomes = [
        (index, found) for index, line in enumerate(lines) if (found := OUTCOME.match(line.strip()))
    ]
    chosen = next(
        ((i, m) for i, m in outcomes if not m.group("why").startswith(ENDED_BY_OTHERS)),
        outcomes[-1] if outcomes else None,
    )
    why, end = "", len(lines)
    if chosen:
        end, found = chosen[0] + 1, chosen[1]
        rank = found.group("rank")
        why = f"rank {rank}: {found.group('why')}" if rank else found.group("why")
    else:
        tail = [(i, line.strip()) for i, line in enumerate(lines) if line.strip()][-5:]
        for index, line in reversed(tail):
            if found := EXCEPTION.match(line):
                end, why = index + 1, found.group("why")
                break
    excerpt = "\n".join(lines[max(0, end - EXCERPT_LINES) : end])
    if len(reason) > MAX_REASON:  # a cluster's message of its own length
        return " ".join(reason.split())[: MAX_REASON - 1] + "…", excerpt
    why = " ".join(why.split())
    if not why:
        return reason, excerpt
    room = MAX_REASON - len(reason) - 2
    if len(why) > room:
        why = why[: max(0, room - 1)] + "…"
    # said in each reader's language, the log's own words as they are
    return said(gettext_noop("%(reason)s: %(why)s"), {"reason": reason, "why": why}), excerpt


# torchrun's lines: its warnings and errors ("W1201 12:00:01.000000 55 torch/...") and,
# once a rank failed, its own traceback ending on ChildFailedError.
LAUNCHER_LINE = re.compile(r"^[WEI]\d{4} [\d:.]+ \d+ \S*torch/distributed/")
LAUNCHER_FAILED = "torch.distributed.elastic.multiprocessing.errors.ChildFailedError"


def _before_launcher_report(lines: list[str]) -> list[str]:
    """The lines before torchrun's report of its failed ranks, without its own lines."""
    report = next((i for i in range(len(lines) - 1, -1, -1) if LAUNCHER_FAILED in lines[i]), None)
    if report is not None:
        start = next(
            (i for i in range(report, -1, -1) if lines[i].startswith("Traceback (most recent")),
            report,
        )
        lines = lines[:start]
    return [line for line in lines if not LAUNCHER_LINE.match(line)]


@dataclass(frozen=True)
class LogChunk:
    worker: int  # rank
    text: str
    next_since: str  # an opaque cursor for the next call (byte offset, timestamp)
    complete: bool = False  # the worker ended and this is the end of its log
    skipped: bool = False  # a tail: earlier lines were left out (they are in the download)


@dataclass(frozen=True)
class ClusterEvent:
    time: datetime | None
    kind: str  # "Normal" / "Warning", or the backend's own word
    reason: str  # e.g. FailedScheduling, Pulled, Started, Killing
    message: str
    worker: int | None = None


@dataclass(frozen=True)
class NodeInfo:
    name: str
    cpu_millis: int
    memory_mib: int
    device_type: str
    device_count: int
    labels: dict[str, str] = field(default_factory=dict)
    driver_version: str = ""
    device_model: str = ""  # from the device plugin's Model label, e.g. MLU370-X8
    pool: str = ""  # from the pool label, empty when none
    schedulable: bool = True


class ExecutorError(Exception):
    """A backend call failed. `transient` errors are retried; others fail the job."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


class Executor(abc.ABC):
    name: str

    @abc.abstractmethod
    def launch(self, request: LaunchRequest) -> None:
        """Start the job's workers. Launching a job that already runs does nothing."""

    @abc.abstractmethod
    def observe(self, job_ids: Iterable[int]) -> dict[int, WorkloadState]:
        """The state of many jobs in one call; a job with no workload is MISSING."""

    @abc.abstractmethod
    def stop(self, job_id: int, *, keep_logs: bool = True) -> None:
        """Stop the job's workers and remove what the backend made. Safe to repeat.

        With `keep_logs`, each worker's log is in the job's folder afterwards, so it
        outlives the workload (F7.2); a deleted job's logs are not worth keeping.
        """

    @abc.abstractmethod
    def logs(
        self, job_id: int, since: str | None = None, *, tail: bool = False
    ) -> Sequence[LogChunk]:
        """A page of each worker's log from the cursor `since` (None: from the start),
        or, with `tail`, its last page; never a whole log."""

    @abc.abstractmethod
    def log_blocks(self, job_id: int, rank: int) -> Iterator[bytes]:
        """One worker's whole log in blocks, for a download. LookupError: no such log."""

    @abc.abstractmethod
    def events(self, job_id: int) -> Sequence[ClusterEvent]:
        """What the backend recorded about the job's workloads, oldest first."""

    @abc.abstractmethod
    def nodes(self) -> Sequence[NodeInfo]:
        """The nodes jobs can run on, with their allocatable resources."""

    @abc.abstractmethod
    def run_command(self, request: LaunchRequest) -> str:
        """The command each node of the job runs, as shown on the job's page (F6); what
        differs between nodes is written as the environment variable that holds it."""

    @abc.abstractmethod
    def managed_job_ids(self) -> set[int]:
        """Ids of every job that has a workload here (for reconciling orphans)."""
