"""日志 (F7.2): the job's log, per worker, tailed live from the executor backend.

Each answer is one page per worker from a cursor the backend understands (a byte
offset locally, a time on Kubernetes), never the whole log; the page's tail asks
for the next one every few seconds while the job runs or a worker has more.
"""

from __future__ import annotations

from dataclasses import dataclass

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
