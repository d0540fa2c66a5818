"""日志 (F7.2): the job's log, per worker, tailed live from the executor backend,
and its events: the platform's and the cluster's, newest first.

Each answer is one page per worker from a cursor the backend understands (a byte
offset locally, a time on Kubernetes), never the whole log; the page's tail asks
for the next one every few seconds while the job runs or a worker has more.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.translation import gettext as _
from django.views import View

from finetune.models import Job, JobStatus
from finetune.views.base import ObjectMixin
from scheduler.executors import get_executor
from scheduler.executors.base import ExecutorError, LogChunk


@dataclass
class LogPage:
    chunks: list[LogChunk]
    cursor: str | None
    more: bool  # ask again: the job runs, or a worker's log is not all read
    error: str = ""


def read_logs(job: Job, since: str | None) -> LogPage:
    try:
        chunks = list(get_executor().logs(job.pk, since))
    except ExecutorError as exc:
        message = _("The log is not available right now: %(error)s") % {"error": exc}
        return LogPage([], since, job.status == JobStatus.RUNNING, message)
    cursor = chunks[-1].next_since if chunks else since
    more = job.status == JobStatus.RUNNING or any(not chunk.complete for chunk in chunks)
    return LogPage([chunk for chunk in chunks if chunk.text], cursor, more)


class JobLogsView(ObjectMixin, View):
    """The next page of the log from `?since=`; the tab's tail swaps it in."""

    model = Job

    def get(self, request: HttpRequest, pk: int) -> HttpResponse:
        page = read_logs(self.object, request.GET.get("since") or None)
        return TemplateResponse(
            request, "finetune/_job_logs.html", {"job": self.object, "log": page}
        )


@dataclass(frozen=True)
class EventRow:
    time: datetime | None
    source: str
    kind: str
    who: str
    message: str


def event_rows(job: Job) -> tuple[list[EventRow], str]:
    """Platform and cluster events of a job, newest first, and an error if the
    backend could not be asked (the platform's events are shown all the same)."""
    rows = [
        EventRow(
            event.time,
            event.get_source_display(),
            event.get_kind_display(),
            event.actor.get_username() if event.actor else event.get_source_display(),
            event.message,
        )
        for event in job.events.select_related("actor")[:200]
    ]
    error = ""
    if job.status != JobStatus.QUEUED or job.started_at is not None:
        try:
            cluster = list(get_executor().events(job.pk))
        except ExecutorError as exc:
            cluster = []
            error = _("The cluster's events are not available right now: %(error)s") % {
                "error": exc
            }
        for event in cluster:
            worker = (
                _("worker %(rank)s") % {"rank": event.worker} if event.worker is not None else ""
            )
            rows.append(
                EventRow(
                    event.time, _("Cluster"), f"{event.kind} {event.reason}", worker, event.message
                )
            )
    oldest = datetime.min.replace(tzinfo=UTC)
    rows.sort(key=lambda row: row.time or oldest, reverse=True)
    return rows, error
