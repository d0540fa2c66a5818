"""Data sets and save-model addresses: list, create, detail (issue 6, part 6)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import ValidationError
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views import View

from finetune import preview
from finetune.forms.data import DatasetForm, ModelRepoForm
from finetune.models import Dataset, ModelRepo
from finetune.services import data as services
from finetune.services import validation
from finetune.views.base import (
    ObjectActionView,
    ObjectDetailView,
    ObjectListView,
    ObjectMixin,
    add_service_errors,
    project_or_404,
)


class DatasetListView(ObjectListView):
    model = Dataset
    template_name = "finetune/dataset_list.html"
    partial_template_name = "finetune/_dataset_table.html"
    select_related = ("creator", "scenario")


class DatasetDetailView(ObjectDetailView):
    model = Dataset
    template_name = "finetune/dataset_detail.html"
    select_related = ("creator", "scenario", "project")

    def extra_context(self) -> dict:
        return {"preview": preview.preview(self.object)}


class DatasetImageView(ObjectMixin, View):
    """One image of a text-to-image data set, for the preview's thumbnails: only a file
    in the data set's own folder, to whoever may view the data set."""

    model = Dataset

    def get(self, request: HttpRequest, pk: int, name: str) -> HttpResponse:
        file = preview.image_file(self.object, name)
        if file is None:
            raise Http404
        return FileResponse(file.open("rb"), headers={"Cache-Control": "private, max-age=300"})


class DatasetValidationView(ObjectMixin, View):
    """The validation's state, asked every 2 s by the data set's page while a worker
    validates it; once it is done the page reloads whole (the preview may change)."""

    model = Dataset

    def get(self, request: HttpRequest, pk: int) -> HttpResponse:
        dataset = self.object
        response = TemplateResponse(
            request, "finetune/_dataset_validation.html", {"object": dataset}
        )
        if not dataset.being_validated:
            response["HX-Refresh"] = "true"
        return response


class ValidateDatasetView(ObjectActionView):
    """Validate again, e.g. after the files under the data root changed: a worker
    reads what changed while the page shows its progress."""

    model = Dataset
    action = "change"
    template_name = "finetune/dataset_detail.html"
    detail_url_name = "finetune:dataset_detail"
    success_message = gettext_lazy("The data set “%(name)s” is being validated again.")

    def get(self, request: HttpRequest, pk: int) -> HttpResponse:
        return redirect(self.success_url())

    def perform(self, form) -> None:
        validation.request_validation(self.object.pk)


class ModelRepoListView(ObjectListView):
    model = ModelRepo
    template_name = "finetune/modelrepo_list.html"
    partial_template_name = "finetune/_modelrepo_table.html"
    select_related = ("creator", "scenario")


class ModelRepoDetailView(ObjectDetailView):
    model = ModelRepo
    template_name = "finetune/modelrepo_detail.html"
    select_related = ("creator", "scenario", "project")

    def extra_context(self) -> dict:
        return {"versions": self.object.versions.all()[:50]}


class ResourceCreateView(LoginRequiredMixin, View):
    """Create a data set or a model repo in the current project, then show it."""

    form_class: type
    template_name: str
    detail_url_name: str
    title: str

    def create(self, form, project):
        raise NotImplementedError

    def render(self, form, status: int = 200) -> HttpResponse:
        context = {"form": form, "title": self.title}
        return TemplateResponse(self.request, self.template_name, context, status=status)

    def get(self, request: HttpRequest) -> HttpResponse:
        return self.render(self.form_class(project=project_or_404(request)))

    def post(self, request: HttpRequest) -> HttpResponse:
        project = project_or_404(request)
        form = self.form_class(request.POST, request.FILES, project=project)
        if not form.is_valid():
            return self.render(form, status=400)
        try:
            created = self.create(form, project)
        except ValidationError as exc:
            add_service_errors(form, exc)
            return self.render(form, status=400)
        messages.success(request, _("“%(name)s” was created.") % {"name": created.name})
        return redirect(self.detail_url_name, pk=created.pk)


class DatasetCreateView(ResourceCreateView):
    form_class = DatasetForm
    template_name = "finetune/resource_form.html"
    detail_url_name = "finetune:dataset_detail"
    title = gettext_lazy("New data set")

    def create(self, form, project) -> Dataset:
        data = form.cleaned_data
        return services.create_dataset(
            self.request.user,
            project,
            name=data["name"],
            scenario=data["scenario"],
            level=data["access"],
            upload=data.get("upload"),
            path=data.get("path", ""),
        )


class ModelRepoCreateView(ResourceCreateView):
    form_class = ModelRepoForm
    template_name = "finetune/resource_form.html"
    detail_url_name = "finetune:modelrepo_detail"
    title = gettext_lazy("New save-model address")

    def create(self, form, project) -> ModelRepo:
        data = form.cleaned_data
        return services.create_model_repo(
            self.request.user,
            project,
            name=data["name"],
            scenario=data["scenario"],
            level=data["access"],
            path=data.get("path", ""),
            description=data.get("description", ""),
        )
