"""The expected start: the same plan over when jobs will likely end, not when they must.

The plan over deadlines gives every queued job a start it is guaranteed by ("at the latest
10:15", as long as no job of a higher priority is queued meanwhile), but jobs seldom use
their whole duration. A running job's trainer reports its progress and an ETA; a job not
yet started will likely run the share of its duration that recent jobs ran. Planning the
same queue over those ends gives the start a user should expect ("expected 09:42"). It is
an estimate: it is shown beside the bound, never instead, and never after it.

Jobs of a higher priority queued later are not foreseen by either start: low-priority jobs
on a busy cluster start later than both (benchmarks/expected_start.py measures it).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from scheduler.planning.state import QueuedJob, RunningJob

# Fewer settled jobs than this say too little: jobs are then expected to run their whole
# duration, and the expected start is the latest one.
MIN_SAMPLES = 5
# A queued job is expected to hold its nodes at least this long, whatever its history says.
SHORTEST_RUN = timedelta(minutes=1)
# Progress below this says little about the end (the first steps include loading).
MIN_PROGRESS = 0.02


def typical_share(runs: Iterable[tuple[timedelta, timedelta]]) -> float:
    """The median share of its duration that a settled job ran, from (ran, duration) pairs."""
    shares = [
        min(1.0, ran / duration)
        for ran, duration in runs
        if duration > timedelta(0) and ran >= timedelta(0)
    ]
    if len(shares) < MIN_SAMPLES:
        return 1.0
    return max(statistics.median(shares), 0.01)


@dataclass(frozen=True, slots=True)
class Progress:
    """What a running job has told about its end."""

    started_at: datetime
    eta_at: datetime | None = None
    progress: float | None = None  # 0..1


def reported_end(progress: Progress, now: datetime) -> datetime | None:
    """When a running job says it will end: its trainer's ETA, else the pace of its
    progress so far; None while it has told nothing worth reading."""
    if progress.eta_at is not None:
        return progress.eta_at
    if progress.progress is not None and progress.progress >= MIN_PROGRESS:
        return progress.started_at + (now - progress.started_at) / min(progress.progress, 1.0)
    return None


def expected_end(
    progress: Progress | None, deadline: datetime, now: datetime, share: float
) -> datetime:
    """When a running job will likely end: when it says (``reported_end``), else after the
    typical share of its duration -- never past its deadline (expiry stops it there) and
    never before now (it still holds its nodes)."""
    if progress is None:
        return deadline
    end = reported_end(progress, now)
    if end is None:
        end = progress.started_at + (deadline - progress.started_at) * share
    return min(max(end, now), deadline)


def expected_inputs(
    running: Sequence[RunningJob],
    queue: Sequence[QueuedJob],
    progress: Mapping[int, Progress],
    now: datetime,
    share: float,
) -> tuple[list[RunningJob], list[QueuedJob]]:
    """The running jobs ending when expected and the queued ones running their typical
    share: plan these to get expected starts."""
    ended = [
        replace(job, deadline=expected_end(progress.get(job.job_id), job.deadline, now, share))
        for job in running
    ]
    return ended, [expected_job(job, share) for job in queue]


def expected_job(job: QueuedJob, share: float) -> QueuedJob:
    if share >= 1.0:
        return job
    return replace(job, duration=max(job.duration * share, min(SHORTEST_RUN, job.duration)))
