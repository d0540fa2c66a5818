"""What the pages, the admin and the management commands use of the scheduler.

The scheduler's one face upwards (docs/development.md "Layers"; tests/test_layers.py
keeps the pages from reaching past it): the queue prediction of a draft, of one
queued job and of a page of them, all as one `Prediction`; a job's worker logs and
its cluster events as the executor reports them; the run configuration a draft
would launch with. Everything else of the scheduler reacts to jobs by itself
(`finetune.signals.job_changed`, its Celery tasks).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from finetune.models import Job
from scheduler import launching
from scheduler.executors import get_executor
from scheduler.executors.base import ClusterEvent, ExecutorError, LogChunk
from scheduler.models import NodeSpec
from scheduler.prediction import Prediction, predict_draft, predict_job, queue_forecasts

__all__ = [
    "ClusterEvent",
    "ExecutorError",
    "LogChunk",
    "Prediction",
    "cluster_events",
    "job_logs",
    "launch_preview",
    "log_blocks",
    "managed_job_ids",
    "predict_draft",
    "predict_job",
    "queue_forecasts",
]


def job_logs(job_id: int, since: str | None = None, *, tail: bool = False) -> Sequence[LogChunk]:
    """A page of each worker's log from the cursor ``since`` (or its last page with
    ``tail``). Raises ExecutorError where the backend does not answer."""
    return get_executor().logs(job_id, since, tail=tail)


def log_blocks(job_id: int, rank: int) -> Iterator[bytes]:
    """One worker's whole log in blocks, for a download. LookupError: no such log."""
    return get_executor().log_blocks(job_id, rank)


def cluster_events(job_id: int) -> Sequence[ClusterEvent]:
    """What the backend recorded about the job's workloads, oldest first."""
    return get_executor().events(job_id)


def managed_job_ids() -> set[int]:
    """Ids of every job that has a workload (for removing what deleted jobs left)."""
    return get_executor().managed_job_ids()


def launch_preview(job: Job, spec: NodeSpec, node_count: int) -> tuple[dict[str, Any], str]:
    """The trainer's configuration and each node's command for an unsaved job."""
    return launching.preview(job, spec, node_count)
