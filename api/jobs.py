"""/api/v1/jobs/: everything the job pages do (F1-F8), through the same gate
(api/scope.py → finetune/access.py) and the same services as the pages."""

from __future__ import annotations

from datetime import timedelta

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from api import drafts, scope
from api.errors import as_drf
from api.serializers import (
    CloneSerializer,
    DraftSerializer,
    DurationSerializer,
    EventListSerializer,
    JobSerializer,
    LogPageSerializer,
    PredictionSerializer,
    PrioritySerializer,
)
from finetune import access, monitoring
from finetune.filters import JobFilterForm
from finetune.forms.jobs import MAX_DURATION_HOURS, MIN_DURATION_HOURS
from finetune.models import Job, JobStatus, Priority
from finetune.services import jobs as services
from finetune.views.jobs import JOB_LIST_RELATED
from finetune.views.logs import _is_cursor, event_rows, rank_param, read_logs
from finetune.views.versions import output_version_url
from scheduler.public import predict_job, queue_forecasts

FILTERS = [
    OpenApiParameter("project", int, description="Only this project's jobs."),
    OpenApiParameter("q", str, description="Name contains."),
    OpenApiParameter("status", str, enum=JobStatus.values),
    OpenApiParameter("creator", str, description="Creator's user name contains."),
    OpenApiParameter("spec", int, description="Offered or running on this node spec."),
    OpenApiParameter("model_repo", str, description="Save-model address name or path contains."),
    OpenApiParameter(
        "sort",
        str,
        description="name, status, priority, scenario, creator, "
        "node_count or created; '-' before it sorts descending.",
    ),
]


def _context(request: Request, jobs: list[Job]) -> dict:
    """What a page of jobs needs beside their rows, in a constant number of queries:
    the actions the user may take on each (two) and the queued ones' forecasts."""
    queued = [job.pk for job in jobs if job.status == JobStatus.QUEUED]
    return {
        "request": request,
        "actions": access.allowed_actions_for_many(request.user, jobs),
        "predictions": queue_forecasts(queued),
    }


class JobViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    serializer_class = JobSerializer
    queryset = Job.objects.all()
    lookup_value_regex = "[0-9]+"

    def get_queryset(self):
        jobs = Job.objects.select_related(*JOB_LIST_RELATED, "pretrained_model")
        jobs = jobs.prefetch_related("spec_choices")
        return scope.restrict(jobs, self.request)

    def filter_queryset(self, queryset):
        query = self.request.query_params
        project = query.get("project")
        if project not in (None, ""):
            if not project.isdigit():
                raise serializers.ValidationError({"project": [_("A project's id.")]})
            queryset = queryset.filter(project_id=int(project))
        return JobFilterForm(query).filter(queryset)

    def job(self, action_name: str = "view") -> Job:
        return scope.get(self.get_queryset(), self.request, action_name, pk=self.kwargs["pk"])

    def answer(self, job: Job, code: int = status.HTTP_200_OK) -> Response:
        job = self.get_queryset().get(pk=job.pk)  # as the list shows it, with its relations
        context = _context(self.request, [job])
        if job.status == JobStatus.QUEUED and job.pk not in context["predictions"]:
            found = predict_job(job)  # queued since the last pass: planned for this job
            if found is not None:
                context["predictions"][job.pk] = found
        return Response(JobSerializer(job, context=context).data, status=code)

    @extend_schema(parameters=FILTERS)
    def list(self, request: Request, *args, **kwargs) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        context = _context(request, page)
        return self.get_paginated_response(JobSerializer(page, many=True, context=context).data)

    @extend_schema(request=DraftSerializer, responses={201: JobSerializer})
    def create(self, request: Request) -> Response:
        """创建大模型精调: the create form's fields, checked as the page checks them."""
        body = _body(request, DraftSerializer)
        project = scope.project(request, body.get("project"))
        job = drafts.create(request.user, project, body)
        return self.answer(job, status.HTTP_201_CREATED)

    def retrieve(self, request: Request, pk: int) -> Response:
        return self.answer(self.job())

    @extend_schema(responses={204: None})
    def destroy(self, request: Request, pk: int) -> Response:
        services.delete_job(request.user, self.job("delete"))
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=CloneSerializer, responses={201: JobSerializer})
    @action(detail=True, methods=["post"])
    def clone(self, request: Request, pk: int) -> Response:
        """克隆 (F3): a new job from this one's fields, any of them replaced by the body's;
        ``resume_from_step`` goes on from one of its checkpoints."""
        original = self.job("clone")
        body = {**drafts.body_of(services.draft_from(original)), **_body(request, CloneSerializer)}
        body.pop("project", None)  # a clone stays in its job's project
        job = drafts.create(request.user, original.project, body, cloned_from=original)
        return self.answer(job, status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={200: JobSerializer})
    @action(detail=True, methods=["post"])
    def stop(self, request: Request, pk: int) -> Response:
        job = self.job("stop")
        services.stop_job(request.user, job)
        return self.answer(job)

    @extend_schema(request=PrioritySerializer, responses={200: JobSerializer})
    @action(detail=True, methods=["post"])
    def priority(self, request: Request, pk: int) -> Response:
        job = self.job("change_priority")
        value = _checked(request, PrioritySerializer)["priority"]
        if value not in Priority.values:
            raise serializers.ValidationError(
                {"priority": [_("One of %(values)s.") % {"values": Priority.values}]}
            )
        services.change_priority(request.user, job, value)
        return self.answer(job)

    @extend_schema(request=DurationSerializer, responses={200: JobSerializer})
    @action(detail=True, methods=["post"])
    def duration(self, request: Request, pk: int) -> Response:
        job = self.job("change_duration")
        duration = _hours(_checked(request, DurationSerializer)["duration_hours"])
        try:
            services.change_duration(request.user, job, duration)
        except ValidationError as exc:
            raise serializers.ValidationError(as_drf(exc)) from exc
        return self.answer(job)

    @extend_schema(
        responses=EventListSerializer,
        parameters=[OpenApiParameter("cluster", bool, description="Also the cluster's events.")],
    )
    @action(detail=True, methods=["get"])
    def events(self, request: Request, pk: int) -> Response:
        job = self.job()
        cluster = request.query_params.get("cluster", "true").lower() not in ("0", "false")
        rows, error = event_rows(
            job, cluster=cluster, version_url=output_version_url(request.user, job)
        )
        data = {"events": [row.__dict__ for row in rows], "error": error}
        return Response(EventListSerializer(data).data)

    @extend_schema(
        responses=inline_serializer("Metrics", {"range": serializers.CharField()}),
        parameters=[OpenApiParameter("range", str, enum=[*monitoring.RANGES])],
    )
    @action(detail=True, methods=["get"])
    def metrics(self, request: Request, pk: int) -> Response:
        """The monitoring tab's series: loss and the other training curves, and each
        worker's CPU, memory, device and network use over ``range``."""
        job = self.job()
        key = request.query_params.get("range") or monitoring.DEFAULT_RANGE
        try:
            return Response(monitoring.snapshot(job, key))
        except monitoring.BadRange as exc:
            raise serializers.ValidationError({"range": [str(exc)]}) from exc

    @extend_schema(
        responses=LogPageSerializer,
        parameters=[
            OpenApiParameter("since", str, description="The cursor the last page gave."),
            OpenApiParameter("worker", int, description="A worker's rank; the first by default."),
            OpenApiParameter("tail", bool, description="The log's last page."),
        ],
    )
    @action(detail=True, methods=["get"])
    def logs(self, request: Request, pk: int) -> Response:
        """One page of a worker's log from ``since``; ask again with the ``cursor`` it
        gives while ``more`` is true."""
        job = self.job()
        query = request.query_params
        since = query.get("since") or None
        if since is not None and not _is_cursor(since):
            raise serializers.ValidationError(
                {"since": [_("`since` must be the cursor an earlier page of this log gave.")]}
            )
        tail = query.get("tail", "").lower() in ("1", "true")
        page = read_logs(job, since, worker=rank_param(query.get("worker")), tail=tail)
        data = {
            "workers": page.workers,
            "worker": page.worker,
            "chunks": [
                {"worker": c.worker, "text": c.text, "complete": c.complete} for c in page.chunks
            ],
            "cursor": page.cursor,
            "more": page.more,
            "error": page.error,
        }
        return Response(LogPageSerializer(data).data)


def _body(request: Request, serializer_class) -> dict:
    """The request's JSON object, its types checked by ``serializer_class``; the values
    themselves are judged by the form and the services, as posted."""
    found = _checked(request, serializer_class)
    return {key: request.data[key] for key in found}


def _checked(request: Request, serializer_class) -> dict:
    """The request's JSON object as ``serializer_class`` reads it ("40" is 40)."""
    if not isinstance(request.data, dict):
        raise serializers.ValidationError({"non_field_errors": [_("A JSON object.")]})
    found = serializer_class(data=request.data)
    found.is_valid(raise_exception=True)
    return found.validated_data


def _hours(hours: float) -> timedelta:
    """A duration in hours as a job may have it (F8.1), or the field's error."""
    if not MIN_DURATION_HOURS <= hours <= MAX_DURATION_HOURS:
        raise serializers.ValidationError(
            {
                "duration_hours": [
                    _("Between %(low)s and %(high)s hours.")
                    % {"low": MIN_DURATION_HOURS, "high": MAX_DURATION_HOURS}
                ]
            }
        )
    return timedelta(hours=hours)


class PredictionView(viewsets.ViewSet):
    """排队预测 (F1.17) of a draft: the create page's prediction, from the same fields."""

    @extend_schema(request=DraftSerializer, responses=PredictionSerializer)
    def create(self, request: Request) -> Response:
        from finetune.views.drafts import outlook_for

        body = _checked(request, DraftSerializer)
        project = scope.project(request, body.get("project"))
        hours = body.get("duration_hours")
        duration = _hours(hours) if hours is not None else None
        found = outlook_for(
            project,
            [str(v) for v in body.get("node_specs") or []],
            str(body.get("node_count", 1)),
            str(body.get("pool") or ""),
            ", ".join(body.get("node_names") or []),
            body.get("driver_version") or "",
            str(body.get("priority", Priority.NORMAL)),
            duration,
        )
        if found.prediction is None:
            raise serializers.ValidationError(
                {"node_specs": [_("Choose at least one node spec and a node count.")]}
            )
        return Response(PredictionSerializer(found.prediction).data)
