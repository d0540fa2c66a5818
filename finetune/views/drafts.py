"""What the create page says about a draft before it is created (F1.17 and beyond):
where and when it would start, whether it fits its devices, how long it would train,
the configuration and command it would run with, and the parameter presets that fit
its algorithm and base model. The create form's own views are in `jobs.py`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import timedelta

from django.contrib.auth.mixins import LoginRequiredMixin
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.translation import gettext as _
from django.views import View

from accounts.models import Project
from finetune import access, runtime
from finetune import memory as fit
from finetune.forms.jobs import (
    CUSTOM,
    MAX_DURATION_HOURS,
    MAX_NODE_COUNT,
    MAX_SPEC_CHOICES,
    MIN_DURATION_HOURS,
    JobForm,
)
from finetune.forms.parameters import ParametersForm
from finetune.inputs import whole_number
from finetune.models import Algorithm, Dataset, Job, PretrainedModel, Priority
from finetune.texts import in_page_language
from finetune.views.base import project_or_404
from scheduler.models import DeviceType, NodeSpec, ResourcePool
from scheduler.public import ExecutorError, Prediction, launch_preview, predict_draft
from trainer.presets import Preset, presets


@dataclass(frozen=True)
class Totals:
    """Resources of the whole job: one node spec times the node count (F1.15)."""

    cpu_millis: int
    memory_mib: int
    device_type: str
    devices: int

    @property
    def summary(self) -> str:
        parts = [f"{self.cpu_millis / 1000:g} CPU", f"{self.memory_mib / 1024:g} GiB"]
        if self.device_type != DeviceType.NONE:
            parts.append(f"{self.devices} {self.device_type.upper()}")
        return " · ".join(parts)


def totals(spec: NodeSpec, node_count: int) -> Totals:
    return Totals(
        spec.cpu_millis * node_count,
        spec.memory_mib * node_count,
        spec.device_type,
        spec.device_count * node_count,
    )


@dataclass
class Outlook:
    """What the area right of the Create button says of a draft: the scheduler's
    prediction (None until the form names a node spec and a node count), the whole
    job's resources on each spec it lists, and the memory and run-time estimates."""

    prediction: Prediction | None
    totals: list[tuple[NodeSpec, Totals]] = field(default_factory=list)
    node_count: int = 0
    #: the duration the draft asks for, to say when the run would outlast it
    duration: timedelta | None = None
    #: finetune.memory.SpecMemory per spec, where the draft's model can be estimated
    memory: list = field(default_factory=list)
    #: finetune.runtime.RunTime per spec, where its run time can be told
    runtime: list = field(default_factory=list)

    @property
    def verdict(self) -> str:
        """The prediction's verdict, or "incomplete" while the form says too little."""
        return self.prediction.verdict if self.prediction is not None else "incomplete"

    @property
    def message(self) -> str:
        if self.prediction is None:
            return _("Choose a node spec and a node count.")
        return self.prediction.message()


def run_preview(form: JobForm) -> dict | None:
    """运行配置预览: what the trainer would read and each node run, once the form is
    complete (None before); `error` where the launch would refuse it."""
    if not form.is_bound or not form.is_valid():
        return None
    draft = form.draft()
    job = Job(project=form.project, **draft.job_fields())  # never saved
    spec = draft.node_specs[0]
    try:
        config, command = launch_preview(job, spec, draft.node_count)
    except ExecutorError:
        return {"spec": spec, "error": True}
    config_text = json.dumps(config, indent=2, ensure_ascii=False)
    return {"spec": spec, "config": config_text, "command": command}


def presets_for(form: JobForm) -> list[Preset]:
    """The presets of the algorithm shown, fitted to the base model shown (its size,
    for a language model whose folder says it)."""
    algorithm, model = form.shown_algorithm, form.shown_model
    if algorithm is None:
        return []
    shape = None
    if model is not None and algorithm.scenario.task_type == "llm":
        shape = fit.model_shape(model.location)
    return presets(algorithm.code, algorithm.parameters_schema, shape.parameters if shape else None)


def shown(preset: Preset) -> dict:
    """A preset as the form shows it: its name and description in the page's language."""
    return {
        "code": preset.code,
        "name": in_page_language(preset.name, preset.name_zh),
        "description": in_page_language(preset.description, preset.description_zh),
    }


def outlook(form: JobForm, project: Project) -> Outlook:
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
    found = outlook_for(
        project, spec_ids, count, pool_id, names or "", driver, priority, draft_duration(data)
    )
    drafted = (form.shown_algorithm, form.shown_model, form.parameters)
    return _with_estimates(found, drafted, form.shown_datasets[0])


def _with_estimates(found: Outlook, drafted, dataset) -> Outlook:
    """The memory estimate and the run time of the draft's model and parameters on
    each spec of the prediction; the parameters read so far count (the rest keep
    their defaults). `drafted`: the algorithm, base model and parameters form."""
    if found.prediction is None:
        return found
    algorithm, model, parameters = drafted
    read: dict = {}
    if parameters.is_bound:
        parameters.is_valid()  # cleans what it can: the valid fields are in cleaned_data
        read = parameters.cleaned_data
    specs = [spec for spec, _total in found.totals]
    found.memory = fit.for_specs(algorithm, model, read, specs, found.node_count)
    found.runtime = runtime.for_specs(
        algorithm, model, read, dataset, specs, found.node_count, found.duration
    )
    return found


def draft_duration(data) -> timedelta | None:
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


def outlook_for(
    project, spec_ids, count, pool_id, names: str, driver: str, priority, duration=None
) -> Outlook:
    wanted = [i for i in map(whole_number, spec_ids[:MAX_SPEC_CHOICES]) if i is not None]
    by_pk = NodeSpec.objects.filter(enabled=True).in_bulk(wanted)
    specs = [by_pk[i] for i in wanted if i in by_pk]
    # Only the dedicated pools the form offers this project: another's is not named.
    pools = ResourcePool.objects.filter(dedicated=True, projects=project)
    pool_pk = whole_number(pool_id)
    pool = pools.filter(pk=pool_pk).first() if pool_pk is not None else None
    node_count = whole_number(count) or 0
    if not specs or not 1 <= node_count <= MAX_NODE_COUNT or project is None:
        return Outlook(None)
    priority = whole_number(priority)
    prediction = predict_draft(
        project=project,
        specs=specs,
        node_count=node_count,
        pool=pool,
        node_names=[n.strip() for n in names.split(",") if n.strip()][:MAX_NODE_COUNT],
        driver_version=(driver or "").strip()[:64],
        priority=priority if priority in Priority.values else None,
        duration=duration,
    )
    found = [(spec, totals(spec, node_count)) for spec in specs]
    return Outlook(prediction, found, node_count, duration)


def _posted_draft(request: HttpRequest, project: Project):
    """The algorithm, base model, parameters and training data a posted draft names, for
    its estimates: a few lookups, where the whole create form would run its every
    cascade and check (the prediction is asked on every change; benchmarks/prediction.py)."""
    data = request.POST
    algorithm = (
        Algorithm.objects.select_related("scenario")
        .filter(enabled=True, pk=whole_number(data.get("algorithm")))
        .first()
    )
    model = PretrainedModel.objects.filter(
        enabled=True, pk=whole_number(data.get("pretrained_model"))
    ).first()
    if algorithm is None or model is None or model.task_type != algorithm.scenario.task_type:
        return (None, None, ParametersForm({}, data)), None
    dataset = (
        access.restrict(
            Dataset.objects.filter(project=project, scenario=algorithm.scenario), request.user
        )
        .filter(pk=whole_number(data.get("train_dataset")))
        .first()
    )
    return (algorithm, model, ParametersForm(algorithm.parameters_schema, data)), dataset


class JobPredictionView(LoginRequiredMixin, View):
    """排队预测 (F1.17): the area right of the Create button, refreshed as the form changes:
    the queue prediction, the memory estimate and the run time."""

    def post(self, request: HttpRequest) -> HttpResponse:
        data = request.POST
        project = project_or_404(request)
        found = outlook_for(
            project,
            data.getlist("node_specs"),
            data.get("node_count"),
            data.get("pool"),
            data.get("node_names", ""),
            data.get("driver_version", ""),
            data.get("priority"),
            draft_duration(data),
        )
        drafted, dataset = _posted_draft(request, project)
        found = _with_estimates(found, drafted, dataset)
        return TemplateResponse(request, "finetune/_prediction.html", {"outlook": found})


class JobLaunchPreviewView(LoginRequiredMixin, View):
    """运行配置预览: asked when the user unfolds it, and on changes while it is unfolded."""

    def post(self, request: HttpRequest) -> HttpResponse:
        project = project_or_404(request)
        form = JobForm(request.POST, user=request.user, project=project)
        context = {"launch": run_preview(form)}
        return TemplateResponse(request, "finetune/_launch_preview.html", context)
