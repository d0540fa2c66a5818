"""A model version's page, its download, and merging it into its base model.

A version is reached through its repo: whoever may view the repo sees its versions and
may download them; merging one (a new version of the repo) needs the right to change
the repo. Nothing here is reached any other way, so the repo's gate is the only one.
"""

from __future__ import annotations

from urllib.parse import quote

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    JsonResponse,
    StreamingHttpResponse,
)
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.http import content_disposition_header
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views import View

from finetune import access
from finetune.inputs import whole_number
from finetune.models import (
    Algorithm,
    Dataset,
    ModelEvaluation,
    ModelExport,
    ModelRepo,
    ModelVersion,
    PlaygroundRun,
)
from finetune.services import evaluations, exports, playground, versions
from finetune.services.data import MODEL_VERSION
from finetune.services.jobs import START_FROM
from finetune.storage import data_root
from finetune.views.base import ObjectMixin

#: what the page shows of a version's summary, in this order (trainer's metric names)
SUMMARY = (
    ("final_loss", gettext_lazy("Final training loss")),
    ("validation_loss", gettext_lazy("Validation loss")),
    ("test_loss", gettext_lazy("Test loss")),
    ("best_validation_metric", gettext_lazy("Best validation loss")),
    ("best_checkpoint_step", gettext_lazy("Best checkpoint's step")),
    ("steps", gettext_lazy("Steps")),
    ("epochs", gettext_lazy("Epochs")),
)


class VersionMixin(ObjectMixin):
    """The repo through the gate, then its version by number."""

    model = ModelRepo
    select_related = ("creator", "scenario", "project")

    def dispatch(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        self.number = kwargs["number"]
        return super().dispatch(request, *args, **kwargs)

    def version(self) -> ModelVersion:
        return get_object_or_404(
            ModelVersion.objects.select_related(
                "job__pretrained_model",
                "job__algorithm",
                "job__scenario",
                "job__creator",
                "job__train_dataset",
                "job__validation_dataset",
                "job__test_dataset",
                "derived_from",
            ),
            repo=self.object,
            number=self.number,
        )


def output_version_url(user, job) -> str:
    """The page of the version a job's success made, if ``user`` may see its repo."""
    if job.output_version_id is None or not access.can(user, "view", job.model_repo):
        return ""
    return reverse(
        "finetune:modelversion_detail", args=[job.model_repo_id, job.output_version.number]
    )


def continued_scenarios() -> set[str]:
    """The scenarios whose versions an enabled algorithm can go on training from."""
    return {
        prop[MODEL_VERSION]["scenario"]
        for schema in Algorithm.objects.filter(enabled=True).values_list(
            "parameters_schema", flat=True
        )
        for name, prop in (schema.get("properties") or {}).items()
        if name == START_FROM and MODEL_VERSION in prop
    }


def summary_of(version: ModelVersion) -> list[tuple[str, object]]:
    metrics = version.metrics or {}
    return [(label, metrics[key]) for key, label in SUMMARY if metrics.get(key) is not None]


class ModelVersionDetailView(VersionMixin, View):
    def get(self, request: HttpRequest, pk: int, number: int) -> HttpResponse:
        version = self.version()
        actions = access.allowed_actions(request.user, self.object)
        job = version.job
        job_visible = job is not None and access.can(request.user, "view", job)
        spec = (version.manifest or {}).get("spec")
        parameters = spec.get("parameters") if isinstance(spec, dict) else None
        if not isinstance(parameters, dict):
            parameters = job.parameters if job_visible else {}
        base = exports.base_model_of(version)
        context = {
            "object": self.object,
            "version": version,
            "actions": actions,
            "job": job if job_visible else None,
            "job_hidden": job is not None and not job_visible,
            "base_name": base[0] if base else "",
            "parameters": sorted(parameters.items()),
            "summary": summary_of(version),
            "files": versions.version_files(version),
            "can_try": playground.kind_of(version) is not None,
            "can_continue": version.repo.scenario.code in continued_scenarios(),
            **exports_context(version, actions),
            **evaluations_context(request.user, version, actions),
        }
        return TemplateResponse(request, "finetune/modelversion_detail.html", context)


def exports_context(version: ModelVersion, actions: set[str]) -> dict:
    found = list(
        ModelExport.objects.filter(source=version).select_related("result", "requested_by")[:10]
    )
    return {
        "exports": found,
        "export_active": any(e.active for e in found),
        "export_refusal": (
            refusal.render() if (refusal := exports.export_refusal(version)) else ""
        ),
        "can_export": "change" in actions,
    }


#: what an evaluation's figures are called on the page, in this order
FIGURES = (
    ("loss", gettext_lazy("Loss")),
    ("perplexity", gettext_lazy("Perplexity")),
    ("preference_accuracy", gettext_lazy("Chosen answer preferred")),
    ("reward_accuracy", gettext_lazy("Reward accuracy")),
    ("mean_margin", gettext_lazy("Mean reward margin")),
)


def evaluations_context(user, version: ModelVersion, actions: set[str]) -> dict:
    found = list(
        ModelEvaluation.objects.filter(version=version).select_related("requested_by")[:10]
    )
    rows = []
    for evaluation in found:
        sides = (evaluation.results or {}).get("sides") or {}
        figures = [
            (label, sides.get("version", {}).get(key), sides.get("base", {}).get(key))
            for key, label in FIGURES
            if key in sides.get("version", {})
        ]
        rows.append((evaluation, figures))
    why = evaluations.refusal(version)
    return {
        "evaluations": rows,
        "evaluation_active": any(e.active for e in found),
        "evaluation_refusal": why.render() if why else "",
        "evaluation_datasets": (
            list(evaluations.usable_datasets(user, version)) if "change" in actions else []
        ),
    }


class ModelVersionEvaluationsView(VersionMixin, View):
    """The evaluations panel alone, polled while one is under way."""

    def get(self, request: HttpRequest, pk: int, number: int) -> HttpResponse:
        version = self.version()
        actions = access.allowed_actions(request.user, self.object)
        context = {
            "object": self.object,
            "version": version,
            "can_export": "change" in actions,
            **evaluations_context(request.user, version, actions),
        }
        return TemplateResponse(request, "finetune/_version_evaluations.html", context)


class ModelVersionEvaluateView(VersionMixin, View):
    """POST: evaluate this version on a data set of its scenario."""

    action = "change"

    def post(self, request: HttpRequest, pk: int, number: int) -> HttpResponse:
        version = self.version()
        chosen = whole_number(request.POST.get("dataset"))
        dataset = Dataset.objects.filter(pk=chosen).first() if chosen is not None else None
        try:
            evaluations.request_evaluation(request.user, version, dataset)
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
        else:
            messages.success(request, _("The evaluation has been asked for."))
        return redirect("finetune:modelversion_detail", pk=self.object.pk, number=version.number)


class ModelVersionEvaluationImageView(VersionMixin, View):
    def get(self, request: HttpRequest, pk: int, number: int, evaluation: int, name: str):
        found = get_object_or_404(ModelEvaluation, pk=evaluation, version=self.version())
        path = evaluations.image_of(found, name)
        if path is None:
            raise Http404
        return FileResponse(path.open("rb"), content_type="image/png")


class ModelVersionExportsView(VersionMixin, View):
    """The exports panel alone, polled while one is under way."""

    def get(self, request: HttpRequest, pk: int, number: int) -> HttpResponse:
        version = self.version()
        actions = access.allowed_actions(request.user, self.object)
        context = {"object": self.object, "version": version, **exports_context(version, actions)}
        return TemplateResponse(request, "finetune/_version_exports.html", context)


class ModelVersionExportView(VersionMixin, View):
    """POST: merge this LoRA version into its base as a new version of the repo."""

    action = "change"

    def post(self, request: HttpRequest, pk: int, number: int) -> HttpResponse:
        version = self.version()
        try:
            exports.request_export(request.user, version)
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
        else:
            messages.success(
                request,
                _("The merge of v%(number)d has been asked for; it becomes a new version.")
                % {"number": version.number},
            )
        return redirect("finetune:modelversion_detail", pk=self.object.pk, number=version.number)


class ModelVersionDownloadView(VersionMixin, View):
    """The whole version as one zip, streamed from disk (finetune/services/versions.py)."""

    def get(self, request: HttpRequest, pk: int, number: int) -> HttpResponse:
        return archive_response(self.version())


def archive_response(version: ModelVersion) -> StreamingHttpResponse:
    """The version as one zip, streamed as it is written (the page's and the API's)."""
    if not versions.version_files(version):
        raise Http404
    response = StreamingHttpResponse(
        versions.stream_archive(version), content_type="application/zip"
    )
    response["Content-Disposition"] = content_disposition_header(
        True, f"{versions.archive_name(version)}.zip"
    )
    response["X-Accel-Buffering"] = "no"  # a proxy passes it on as it comes
    return response


class ModelVersionFileView(VersionMixin, View):
    """One file of a version. Behind a proxy that serves the data volume itself
    (JINGTIAO_X_ACCEL_PREFIX), the proxy sends it; else Django streams it."""

    def get(self, request: HttpRequest, pk: int, number: int, name: str) -> HttpResponse:
        version = self.version()
        path = versions.file_of(version, name)
        if path is None:
            raise Http404
        prefix = settings.JINGTIAO_X_ACCEL_PREFIX
        try:
            inside = path.resolve().relative_to(data_root().resolve()).as_posix()
        except ValueError:
            inside = None  # a repo outside the data volume: the proxy does not serve it
        if prefix and inside is not None:
            response = HttpResponse(content_type="application/octet-stream")
            # a URI: nginx decodes it (names may be Chinese; headers are ASCII)
            response["X-Accel-Redirect"] = quote(prefix.rstrip("/") + "/" + inside)
            response["Content-Disposition"] = content_disposition_header(True, path.name)
            return response
        return FileResponse(path.open("rb"), as_attachment=True, filename=path.name)


class PlaygroundView(VersionMixin, View):
    """The playground page: a chat (or a prompt to images) with this version and its base."""

    def get(self, request: HttpRequest, pk: int, number: int) -> HttpResponse:
        version = self.version()
        why = playground.refusal(version)
        context = {
            "object": self.object,
            "version": version,
            "kind": playground.kind_of(version),
            "refusal": why.render() if why else "",
            "form": playground.QuestionForm(),
            "base_name": (exports.base_model_of(version) or ("",))[0],
            "words": {
                "sending": _("Sending…"),
                "lost": _("The answer could not be fetched: try again."),
                "seed": _("Seed"),
            },
        }
        return TemplateResponse(request, "finetune/playground.html", context)


class PlaygroundAskView(VersionMixin, View):
    """POST a question: 202 with where to follow its answer, or 400 with why not."""

    def post(self, request: HttpRequest, pk: int, number: int) -> HttpResponse:
        version = self.version()
        form = playground.QuestionForm(request.POST)
        if not form.is_valid():
            errors = {name: [str(e) for e in found] for name, found in form.errors.items()}
            return JsonResponse({"errors": errors}, status=400)
        try:
            run = playground.ask(request.user, version, form.cleaned_data)
        except ValidationError as exc:
            return JsonResponse({"errors": {"__all__": exc.messages}}, status=400)
        follow = reverse("finetune:playground_state", args=[pk, number, run.pk])
        return JsonResponse({"run": run.pk, "state": follow}, status=202)


class PlaygroundRunMixin(VersionMixin):
    def run(self, run_id: int) -> PlaygroundRun:
        # only the one who asked reads the answer
        return get_object_or_404(
            PlaygroundRun, pk=run_id, version=self.version(), user=self.request.user
        )


class PlaygroundStateView(PlaygroundRunMixin, View):
    def get(self, request: HttpRequest, pk: int, number: int, run: int) -> HttpResponse:
        found = self.run(run)
        answer = playground.state(found)
        if found.kind == PlaygroundRun.Kind.IMAGE:
            answer["image_urls"] = {
                side: reverse("finetune:playground_image", args=[pk, number, found.pk, side])
                for side, ready in answer.pop("images").items()
                if ready
            }
        return JsonResponse(answer)


class PlaygroundImageView(PlaygroundRunMixin, View):
    def get(self, request: HttpRequest, pk: int, number: int, run: int, side: str) -> HttpResponse:
        png = playground.image_of(self.run(run), side)
        if png is None:
            raise Http404
        return HttpResponse(png, content_type="image/png")
