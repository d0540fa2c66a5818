"""Job pages: the list (F4), the detail (F6), create and clone (F1, F3), queue prediction."""

from __future__ import annotations

from datetime import timedelta

from django.contrib import messages
from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views import View

from accounts.models import Project
from finetune import access, monitoring
from finetune import memory as fit
from finetune.filters import JobFilterForm
from finetune.forms.jobs import (
    CASCADE,
    CUSTOM,
    MAX_DURATION_HOURS,
    MAX_NODE_COUNT,
    MAX_SPEC_CHOICES,
    MIN_DURATION_HOURS,
    JobForm,
    initial_from_draft,
    refreshed_initial,
)
from finetune.forms.parameters import ParametersForm, localized, value_label
from finetune.inputs import whole_number
from finetune.models import Algorithm, Job, JobStatus, PretrainedModel, Priority
from finetune.prediction import predict_for_draft
from finetune.services.data import referenced_versions, version_parameters, version_ref
from finetune.services.jobs import DataSetRejected, create_job, draft_from
from finetune.views.base import (
    ObjectDetailView,
    ObjectListView,
    add_service_errors,
    project_or_404,
)
from finetune.views.logs import event_rows, rank_param, read_logs
from scheduler.models import NodeSpec, ResourcePool
from scheduler.prediction import predict_job, queue_forecasts

JOB_LIST_RELATED = ("creator", "scenario", "algorithm", "model_repo", "spec_in_use")


class JobListView(ObjectListView):
    """大模型精调: the jobs of the current project that the user may see."""

    model = Job
    template_name = "finetune/job_list.html"
    partial_template_name = "finetune/_job_table.html"
    select_related = JOB_LIST_RELATED
    filter_form_class = JobFilterForm

    def get_queryset(self, project):
        # The first spec of each job's list, for the column, without a query per row.
        return super().get_queryset(project).prefetch_related("spec_choices__spec")

    def rows_context(self, rows: list) -> dict:
        # F1.17 on the list: each queued job's place, from the last admission pass.
        queued = [job.pk for job in rows if job.status == JobStatus.QUEUED]
        return {"forecasts": queue_forecasts(queued)}


class JobDetailView(ObjectDetailView):
    model = Job
    template_name = "finetune/job_detail.html"
    select_related = (
        *JOB_LIST_RELATED,
        "project",
        "pretrained_model",
        "train_dataset",
        "validation_dataset",
        "test_dataset",
        "pool",
        "cloned_from",
    )
    TABS = ("details", "monitoring", "logs", "events")

    def extra_context(self) -> dict:
        tab = self.request.GET.get("tab", "details")
        return {
            "tab": tab if tab in self.TABS else "details",
            "specs": self.object.ordered_node_specs(),
            "events": self.object.events.select_related("actor")[:100],
            "parameters": _parameter_rows(self.object),
            "forecast": (
                predict_job(self.object) if self.object.status == JobStatus.QUEUED else None
            ),
            "failure_log": _failure_log(self.object),
            "log": self._log() if tab == "logs" else None,
            "monitoring": self._monitoring() if tab == "monitoring" else None,
            "event_rows": event_rows(self.object) if tab == "events" else None,
        }

    def _log(self):
        query = self.request.GET
        return read_logs(
            self.object,
            None,
            worker=rank_param(query.get("worker")),
            tail=query.get("from") != "start",
        )

    def _monitoring(self) -> dict:
        key = self.request.GET.get("range") or monitoring.DEFAULT_RANGE
        if key not in monitoring.RANGES:
            key = monitoring.DEFAULT_RANGE
        return {
            "range": key,
            "ranges": [(name, label) for name, (label, _length) in monitoring.RANGES.items()],
            "config": {
                "url": reverse("finetune:job_metrics", args=[self.object.pk]),
                "poll_ms": monitoring.POLL_SECONDS * 1000,
                "labels": monitoring.chart_labels(),
            },
        }


def _failure_log(job: Job) -> str:
    """The last log lines of the worker that failed the job, kept with its FAILED event
    (scheduler/settling.py): shown folded, never in the status line."""
    if job.status != JobStatus.FAILED:
        return ""
    data = (
        job.events.filter(to_status=JobStatus.FAILED)
        .order_by("-time")
        .values_list("data", flat=True)
        .first()
    )
    return (data or {}).get("log_excerpt") or ""


def _parameter_rows(job: Job) -> list[tuple[str, str, object]]:
    """(name, title in the page's language, value) of the job's parameters, schema order."""
    schema = job.algorithm.parameters_schema or {}
    props = schema.get("properties") or {}
    values = dict(job.parameters)
    versions = {v.pk: v for v in referenced_versions(schema, values)}
    for name in version_parameters(schema):
        ref = version_ref(values.get(name))
        if ref is not None:
            version = versions.get(ref)
            values[name] = f"{version.repo.name} v{version.number}" if version else ref
    rows = [
        (name, localized(props[name], "title"), value_label(props[name], values.get(name)))
        for name in props
    ]
    rows += [(k, k, v) for k, v in values.items() if k not in props]
    return rows


class JobFormView(LoginRequiredMixin, View):
    """创建大模型精调 (F1). A POST with `_refresh` only re-renders the cascading choices."""

    template_name = "finetune/job_form.html"
    partial_template_name = "finetune/_job_form_fields.html"

    def project(self) -> Project:
        return project_or_404(self.request)

    def initial(self) -> dict:
        return {}

    def cloned_from(self) -> Job | None:
        return None

    def render(self, form: JobForm, reports=(), status: int = 200) -> HttpResponse:
        # The cascading selects ask this same view for the fields with their new choices.
        for name in CASCADE:
            form.fields[name].widget.attrs.update(
                {
                    "hx-post": self.request.path,
                    "hx-vals": '{"_refresh": "1"}',
                    # A quick second choice replaces the refresh still in flight, so
                    # its answer (with both choices) is the one that lands.
                    "hx-sync": "closest form:replace",
                }
            )
        partial = self.request.htmx and not self.request.htmx.boosted
        context = {
            "form": form,
            "reports": reports,
            "prediction": _predict(form, self.project()),
            "cloned_from": self.cloned_from(),
            "form_url": self.request.path,
        }
        template = self.partial_template_name if partial else self.template_name
        return TemplateResponse(self.request, template, context, status=status)

    def get(self, request: HttpRequest, **kwargs) -> HttpResponse:
        project = self.project()
        return self.render(JobForm(user=request.user, project=project, initial=self.initial()))

    def post(self, request: HttpRequest, **kwargs) -> HttpResponse:
        project = self.project()
        if request.POST.get("_refresh"):
            initial = refreshed_initial(request.POST)
            return self.render(JobForm(user=request.user, project=project, initial=initial))
        form = JobForm(request.POST, user=request.user, project=project)
        if not form.is_valid():
            return self.render(form, status=400)
        try:
            job = create_job(request.user, project, form.draft(self.cloned_from()))
        except DataSetRejected as exc:
            add_service_errors(form, exc, form.parameters)
            return self.render(form, reports=exc.reports, status=400)
        except ValidationError as exc:
            add_service_errors(form, exc, form.parameters)
            return self.render(form, status=400)
        messages.success(request, _("The job “%(name)s” is queued.") % {"name": job.name})
        return redirect("finetune:job_detail", pk=job.pk)


class JobCreateView(JobFormView):
    pass


class JobCloneView(JobFormView):
    """克隆 (F3): the create form pre-filled from a job; access and data are checked again."""

    def dispatch(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not request.user.is_authenticated:
            return self.handle_no_permission()
        self.source = access.get_for(Job.objects.all(), request.user, "view", pk=kwargs["pk"])
        if not access.can(request.user, "clone", self.source):
            raise PermissionDenied
        return super().dispatch(request, *args, **kwargs)

    def project(self) -> Project:
        return self.source.project

    def initial(self) -> dict:
        return initial_from_draft(draft_from(self.source))

    def cloned_from(self) -> Job:
        return self.source


def _predict(form: JobForm, project: Project):
    """The prediction for what the form shows now; lenient, as the draft may be half-filled."""
    data = form.data if form.is_bound else None
    if data is None:
        data = form.initial
        spec_ids = data.get("node_specs") or []
        count = data.get("node_count") or 1
        pool_id, names, driver = data.get("pool"), data.get("node_names", ""), ""
        priority = data.get("priority")
    else:
        spec_ids, count = data.getlist("node_specs"), data.get("node_count")
        pool_id, names = data.get("pool"), data.get("node_names", "")
        driver, priority = data.get("driver_version", ""), data.get("priority")
    if not spec_ids:
        first = next(iter(form.fields["node_specs"].specs), None)
        spec_ids = [first.pk] if first else []
    prediction = prediction_for(
        project, spec_ids, count, pool_id, names or "", driver, priority, _draft_duration(data)
    )
    return _with_memory(prediction, form.shown_algorithm, form.shown_model, form.parameters)


def _with_memory(prediction, algorithm, model, parameters: ParametersForm):
    """The memory estimate of the draft's model and parameters on each spec of the
    prediction; the parameters read so far count (the rest keep their defaults)."""
    if prediction.verdict == "incomplete":
        return prediction
    read: dict = {}
    if parameters.is_bound:
        parameters.is_valid()  # cleans what it can: the valid fields are in cleaned_data
        read = parameters.cleaned_data
    prediction.memory = fit.for_specs(
        algorithm,
        model,
        read,
        [spec for spec, _total in prediction.totals],
        prediction.node_count,
    )
    return prediction


def _posted_model(data) -> tuple[Algorithm | None, PretrainedModel | None, ParametersForm]:
    """The algorithm, base model and parameters a posted draft names, for its memory
    estimate: two lookups, where the whole create form would run its every cascade."""
    algorithm = (
        Algorithm.objects.select_related("scenario")
        .filter(enabled=True, pk=whole_number(data.get("algorithm")))
        .first()
    )
    model = PretrainedModel.objects.filter(
        enabled=True, pk=whole_number(data.get("pretrained_model"))
    ).first()
    if algorithm is None or model is None or model.task_type != algorithm.scenario.task_type:
        return None, None, ParametersForm({}, data)
    return algorithm, model, ParametersForm(algorithm.parameters_schema, data)


def _draft_duration(data) -> timedelta | None:
    """The duration a half-filled form asks for, or None while it says none (or one
    the form would refuse: not a number, out of range)."""
    preset = data.get("duration_preset")
    hours = data.get("duration_custom_hours") if preset == CUSTOM else preset
    try:
        value = float(hours)
    except (TypeError, ValueError):
        return None
    if not MIN_DURATION_HOURS <= value <= MAX_DURATION_HOURS:  # also refuses nan and inf
        return None
    return timedelta(hours=value)


def prediction_for(
    project, spec_ids, count, pool_id, names: str, driver: str, priority, duration=None
):
    wanted = [i for i in map(whole_number, spec_ids[:MAX_SPEC_CHOICES]) if i is not None]
    by_pk = NodeSpec.objects.filter(enabled=True).in_bulk(wanted)
    specs = [by_pk[i] for i in wanted if i in by_pk]
    # Only the dedicated pools the form offers this project: another's is not named.
    pools = ResourcePool.objects.filter(dedicated=True, projects=project)
    pool_pk = whole_number(pool_id)
    pool = pools.filter(pk=pool_pk).first() if pool_pk is not None else None
    node_count = whole_number(count) or 0
    priority = whole_number(priority)
    return predict_for_draft(
        project=project,
        specs=specs,
        node_count=node_count if 1 <= node_count <= MAX_NODE_COUNT else 0,
        pool=pool,
        node_names=[n.strip() for n in names.split(",") if n.strip()][:MAX_NODE_COUNT],
        driver_version=(driver or "").strip()[:64],
        priority=priority if priority in Priority.values else None,
        duration=duration,
    )


class JobPredictionView(LoginRequiredMixin, View):
    """排队预测 (F1.17): the area right of the Create button, refreshed as the form changes."""

    def post(self, request: HttpRequest) -> HttpResponse:
        data = request.POST
        project = project_or_404(request)
        prediction = prediction_for(
            project,
            data.getlist("node_specs"),
            data.get("node_count"),
            data.get("pool"),
            data.get("node_names", ""),
            data.get("driver_version", ""),
            data.get("priority"),
            _draft_duration(data),
        )
        prediction = _with_memory(prediction, *_posted_model(data))
        return TemplateResponse(request, "finetune/_prediction.html", {"prediction": prediction})
