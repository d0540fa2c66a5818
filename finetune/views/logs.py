"""日志 (F7.2): the job's log, per worker, tailed live from the executor backend,
and its events: the platform's and the cluster's, newest first.

Each answer is one page of one worker's log from a cursor the backend understands
(a byte offset locally, a time on Kubernetes), never the whole log. The tab opens
on the last page; its tail asks for the next one every few seconds while the job
runs, and on a click while an ended job's log has more. The whole log is a
download, streamed in blocks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    StreamingHttpResponse,
)
from django.template.response import TemplateResponse
from django.utils.translation import gettext as _
from django.utils.translation import pgettext
from django.views import View

from finetune import texts
from finetune.inputs import whole_number
from finetune.models import Job, JobEvent, JobStatus
from finetune.views.base import ObjectMixin
from finetune.views.versions import output_version_url
from scheduler.public import ExecutorError, LogChunk, cluster_events, job_logs, log_blocks


@dataclass
class LogPage:
    worker: int | None  # the rank shown
    workers: list[int]  # every rank with a log
    chunks: list[LogChunk]
    cursor: str | None
    more: bool  # there is more to ask for: the job runs, or the log is not all read
    live: bool  # ask by itself every few seconds (the job runs), not on a click
    skipped: bool = False  # a tail of a longer log: the start is in the download
    error: str = ""


def read_logs(
    job: Job, since: str | None, *, worker: int | None = None, tail: bool = False
) -> LogPage:
    """A page of one worker's log (the lowest rank unless `worker` says); with `tail`,
    its last page, which is where a user looks first, however long the log."""
    running = job.status == JobStatus.RUNNING
    try:
        chunks = list(job_logs(job.pk, since, tail=tail))
    except ExecutorError as exc:
        message = _("The log is not available right now: %(error)s") % {"error": exc}
        return LogPage(worker, [], [], since, running, running, error=message)
    workers = sorted(chunk.worker for chunk in chunks)
    if worker not in workers:
        worker = workers[0] if workers else None
    mine = [chunk for chunk in chunks if chunk.worker == worker]
    cursor = chunks[-1].next_since if chunks else since
    more = running or any(not chunk.complete for chunk in mine)
    return LogPage(
        worker,
        workers,
        [chunk for chunk in mine if chunk.text],
        cursor,
        more,
        running,
        skipped=any(chunk.skipped for chunk in mine),
    )


def _is_cursor(value: str) -> bool:
    """A cursor is what the backends hand out: {"<rank>": offset or timestamp}."""
    try:
        parsed = json.loads(value)
    except ValueError:
        return False
    return isinstance(parsed, dict) and all(
        whole_number(key) is not None and isinstance(held, int | str) and not isinstance(held, bool)
        for key, held in parsed.items()
    )


def rank_param(value: str | None) -> int | None:
    """The `worker` query parameter: a rank, or None for the first worker."""
    return whole_number(value)


class JobLogsView(ObjectMixin, View):
    """The next page of a worker's log from `?since=`; the tab's tail swaps it in."""

    model = Job

    def get(self, request: HttpRequest, pk: int) -> HttpResponse:
        since = request.GET.get("since") or None
        if since is not None and not _is_cursor(since):
            return HttpResponseBadRequest(
                _("`since` must be the cursor an earlier page of this log gave."),
                content_type="text/plain; charset=utf-8",
            )
        page = read_logs(self.object, since, worker=rank_param(request.GET.get("worker")))
        return TemplateResponse(
            request, "finetune/_job_logs.html", {"job": self.object, "log": page}
        )


class JobLogDownloadView(ObjectMixin, View):
    """One worker's whole log as a file, streamed in blocks from the backend."""

    model = Job

    def get(self, request: HttpRequest, pk: int, rank: int) -> HttpResponse:
        try:
            blocks = log_blocks(self.object.pk, rank)
        except LookupError:
            raise Http404(_("This worker has no log.")) from None
        except ExecutorError as exc:
            return HttpResponse(
                _("The log is not available right now: %(error)s") % {"error": exc},
                status=503,
                content_type="text/plain; charset=utf-8",
            )
        response = StreamingHttpResponse(blocks, content_type="text/plain; charset=utf-8")
        filename = f"job-{self.object.pk}-worker-{rank}.log"
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response


@dataclass(frozen=True)
class EventRow:
    time: datetime | None
    source: str
    kind: str
    who: str
    message: str
    link: str = ""  # the model version a success made, for who may see it


def _event_kind(event: JobEvent) -> str:
    """A status change says from what to what: "Status changed: Running → Succeeded"."""
    if event.kind != JobEvent.Kind.STATUS or not event.to_status:
        return event.get_kind_display()
    return _("%(kind)s: %(before)s → %(after)s") % {
        "kind": event.get_kind_display(),
        "before": JobStatus(event.from_status).label if event.from_status else "—",
        "after": JobStatus(event.to_status).label,
    }


def _event_word(word: str) -> str:
    """An event's type, or a reason the platform's own executor gives, in the page's
    language; a cluster's own reasons (FailedScheduling, Pulled) are names, kept."""
    words = {
        "Normal": pgettext("cluster event", "Normal"),
        "Warning": pgettext("cluster event", "Warning"),
        "Started": pgettext("cluster event", "Started"),
        "Exited": pgettext("cluster event", "Exited"),
    }
    return words.get(word, word)


def asks_the_cluster(job: Job) -> bool:
    """Whether the backend may hold events of the job (it has been launched)."""
    return job.status != JobStatus.QUEUED or job.started_at is not None


def event_rows(
    job: Job, *, cluster: bool = True, version_url: str = ""
) -> tuple[list[EventRow], str]:
    """Platform and, with ``cluster``, cluster events of a job, newest first, and an
    error if the backend could not be asked (the platform's events are shown all the
    same). ``version_url``: the page of the version its success made, linked from it."""
    rows = [
        EventRow(
            event.time,
            event.get_source_display(),
            _event_kind(event),
            event.actor.get_username() if event.actor else event.get_source_display(),
            event.text,
            version_url if event.to_status == JobStatus.SUCCEEDED else "",
        )
        for event in job.events.select_related("actor")[:200]
    ]
    error = ""
    if cluster and asks_the_cluster(job):
        try:
            found = list(cluster_events(job.pk))
        except ExecutorError as exc:
            found = []
            error = _("The cluster's events are not available right now: %(error)s") % {
                "error": exc
            }
        for event in found:
            worker = (
                _("worker %(rank)s") % {"rank": event.worker} if event.worker is not None else ""
            )
            rows.append(
                EventRow(
                    event.time,
                    _("Cluster"),
                    f"{_event_word(event.kind)} {_event_word(event.reason)}",
                    worker,
                    texts.shown(event.message),
                )
            )
    oldest = datetime.min.replace(tzinfo=UTC)
    rows.sort(key=lambda row: row.time or oldest, reverse=True)
    return rows, error


class JobEventsView(ObjectMixin, View):
    """The events tab's table with the cluster's events, asked by the tab once it is
    shown: the cluster's API answers (one call per pod, EVENT_CALLS at once) after
    the page, never while it renders."""

    model = Job

    def get(self, request: HttpRequest, pk: int) -> HttpResponse:
        rows = event_rows(self.object, version_url=output_version_url(request.user, self.object))
        context = {"job": self.object, "event_rows": rows, "loading": False}
        return TemplateResponse(request, "finetune/_job_events.html", context)
