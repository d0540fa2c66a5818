"""Job pages: the list (F4), the detail (F6), create and clone (F1, F3); what the create
page says about a draft (prediction, estimates, presets) is in `drafts.py`."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views import View

from accounts.models import Project
from finetune import access, monitoring
from finetune.filters import JobFilterForm
from finetune.forms.jobs import (
    CASCADE,
    PARAMETERS_OF,
    JobForm,
    initial_from_draft,
    refreshed_initial,
)
from finetune.forms.parameters import localized, value_label
from finetune.inputs import whole_number
from finetune.models import Job, JobStatus, ModelRepo, ModelVersion
from finetune.services import checkpoints
from finetune.services.data import referenced_versions, version_parameters, version_ref
from finetune.services.jobs import START_FROM, DataSetRejected, create_job, draft_from
from finetune.views import drafts
from finetune.views.base import (
    ObjectDetailView,
    ObjectListView,
    ObjectMixin,
    add_service_errors,
    project_or_404,
)
from finetune.views.logs import asks_the_cluster, event_rows, rank_param, read_logs
from finetune.views.versions import output_version_url
from scheduler.public import predict_job, queue_forecasts
from trainer.presets import Preset

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
        "output_version",
    )
    TABS = ("details", "monitoring", "logs", "events")

    def extra_context(self) -> dict:
        tab = self.request.GET.get("tab", "details")
        version_url = output_version_url(self.request.user, self.object)
        return {
            "output_version_visible": bool(version_url),
            "checkpoints": checkpoints.resumable_checkpoints(self.object),
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
            # the cluster's events come after the page (logs.JobEventsView)
            "event_rows": (
                event_rows(self.object, cluster=False, version_url=version_url)
                if tab == "events"
                else None
            ),
            "loading": tab == "events" and asks_the_cluster(self.object),
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

    def render(
        self, form: JobForm, reports=(), status: int = 200, applied: Preset | None = None
    ) -> HttpResponse:
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
            "outlook": drafts.outlook(form, self.project()),
            "cloned_from": self.cloned_from(),
            "resume_step": form["resume_from_step"].value(),
            "form_url": self.request.path,
            "presets": [drafts.shown(p) for p in drafts.presets_for(form)],
            "applied_preset": drafts.shown(applied) if applied else None,
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
            form = JobForm(user=request.user, project=project, initial=initial)
            preset = self.chosen_preset(form)
            if preset is not None:
                initial["parameters"] = {**(initial.get("parameters") or {}), **preset.values}
                initial[PARAMETERS_OF] = form.shown_algorithm.pk  # the preset's own
                form = JobForm(user=request.user, project=project, initial=initial)
            return self.render(form, applied=preset)
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

    def chosen_preset(self, form: JobForm) -> Preset | None:
        """The preset the user just chose (the preset select sent this refresh, or the
        no-JS button): applied once, never again by a later refresh that carries it."""
        wanted = self.request.POST.get("_preset")
        if not wanted or (self.request.htmx and self.request.htmx.trigger_name != "_preset"):
            return None
        return next((p for p in drafts.presets_for(form) if p.code == wanted), None)


class JobCreateView(JobFormView):
    def initial(self) -> dict:
        """``?from_version=<id>``: a new job that goes on from a model version the user
        may view -- the form filled from the job that trained it where the user may see
        that job, else with the version's scenario -- with the version as its start."""
        ref = whole_number(self.request.GET.get("from_version"))
        if ref is None:
            return {}
        version = (
            ModelVersion.objects.filter(
                pk=ref,
                repo__in=access.restrict(
                    ModelRepo.objects.filter(project=self.project()), self.request.user
                ),
            )
            .select_related("repo__scenario", "job")
            .first()
        )
        if version is None:
            return {}
        job = version.job
        if job is not None and access.can(self.request.user, "view", job):
            initial = initial_from_draft(draft_from(job))
            initial["name"] = f"{job.name}-v{version.number}-continued"[:128]
        else:
            scenario = version.repo.scenario
            initial = {"task_type": scenario.task_type, "scenario": scenario.pk, "parameters": {}}
            if job is not None:  # the base model's name tells nothing of the job
                initial["pretrained_model"] = job.pretrained_model_id
        initial["parameters"] = {
            **(initial.get("parameters") or {}),
            START_FROM: {"model_version": version.pk},
        }
        return initial


class JobCloneView(ObjectMixin, JobFormView):
    """克隆 (F3): the create form pre-filled from a job (through the one gate: a 404 for
    a job one may not see, a 403 for one one may not clone); access and data are
    checked again."""

    model = Job
    action = "clone"

    def project(self) -> Project:
        return self.object.project

    def initial(self) -> dict:
        initial = initial_from_draft(draft_from(self.object))
        # 从检查点恢复: "resume from step N" on the job's page
        initial["resume_from_step"] = whole_number(self.request.GET.get("resume"))
        return initial

    def cloned_from(self) -> Job:
        return self.object
