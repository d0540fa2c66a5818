"""/api/v1/ for what jobs use: data sets (F1.8), save-model addresses and their
versions, node specs and pools, the catalog, and the projects a token may act in."""

from __future__ import annotations

from django.db.models import Count
from django.shortcuts import get_object_or_404
from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiParameter, OpenApiTypes, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.models import Access
from api import scope
from api.serializers import (
    AlgorithmSerializer,
    BaseModelSerializer,
    DatasetDetailSerializer,
    DatasetSerializer,
    ModelRepoSerializer,
    ModelVersionSerializer,
    NodeSpecSerializer,
    PoolSerializer,
    ProjectSerializer,
    ScenarioSerializer,
)
from finetune.forms.data import DatasetForm, ModelRepoForm
from finetune.models import Algorithm, ModelRepo, ModelVersion, PretrainedModel, Scenario
from finetune.services import data as services
from finetune.services.validation import request_validation
from finetune.views.versions import archive_response
from scheduler.models import NodeSpec, ResourcePool

ID = "[0-9]+"  # an object's id in a path: anything else is no object, a 404
PROJECT = OpenApiParameter("project", int, description="Only this project's.")


def _object(required: list[str], **extra: dict) -> dict:
    """A create body's schema: the fields every project object is made with, and its own."""
    properties = {
        "project": {"type": "integer"},
        "name": {"type": "string"},
        "scenario": {"type": "integer"},
        "access": {"type": "string", "enum": Access.values},
        **extra,
    }
    return {"type": "object", "properties": properties, "required": required}


def _in_project(request: Request, queryset):
    project = request.query_params.get("project")
    if project in (None, ""):
        return queryset
    if not project.isdigit():
        raise serializers.ValidationError({"project": [_("A project's id.")]})
    return queryset.filter(project_id=int(project))


def _form_errors(form) -> dict:
    errors = {name: list(found) for name, found in form.errors.items()}
    if "__all__" in errors:
        errors["non_field_errors"] = errors.pop("__all__")
    return errors


class _ProjectObjects(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """The objects of the request's projects that the user may view."""

    related: tuple[str, ...] = ("creator", "scenario")
    lookup_value_regex = ID

    def get_queryset(self):
        model = self.serializer_class.Meta.model
        objects = model.objects.select_related(*self.related).order_by("-created_at", "-id")
        return scope.restrict(objects, self.request)

    def filter_queryset(self, queryset):
        return _in_project(self.request, queryset)

    def get_object(self):
        return scope.get(self.get_queryset(), self.request, pk=self.kwargs["pk"])

    def create_with(self, form_class, make):
        """A POST checked by the page's own form, then made by the page's service."""
        data = self.request.data
        if not hasattr(data, "get"):
            raise serializers.ValidationError({"non_field_errors": [_("A JSON object.")]})
        project = scope.project(self.request, data.get("project"))
        # a multipart form's single values, or the JSON object, as the form takes them
        data = dict(data.dict() if hasattr(data, "dict") else data)
        data.setdefault("access", Access.NONE)
        form = form_class(data, self.request.FILES, project=project)
        if not form.is_valid():
            raise serializers.ValidationError(_form_errors(form))
        made = make(project, form.cleaned_data)
        return Response(
            self.serializer_class(made, context={"request": self.request}).data,
            status=status.HTTP_201_CREATED,
        )

    @extend_schema(parameters=[PROJECT])
    def list(self, request: Request, *args, **kwargs) -> Response:
        return super().list(request, *args, **kwargs)


class DatasetViewSet(_ProjectObjects):
    """Data sets: uploaded as a file (multipart ``upload``) or registered from a path
    under the data root; a worker validates each (its report: ``/validation/``)."""

    serializer_class = DatasetSerializer
    parser_classes = [JSONParser, MultiPartParser, FormParser]

    def get_serializer_class(self):
        return DatasetDetailSerializer if self.action == "retrieve" else DatasetSerializer

    @extend_schema(
        request={
            "multipart/form-data": _object(
                ["name", "scenario"],
                upload={"type": "string", "format": "binary"},
                path={"type": "string"},
            ),
            "application/json": _object(["name", "scenario", "path"], path={"type": "string"}),
        },
        responses={201: DatasetSerializer},
    )
    def create(self, request: Request) -> Response:
        def make(project, data):
            return services.create_dataset(
                request.user,
                project,
                name=data["name"],
                scenario=data["scenario"],
                level=data["access"],
                upload=data.get("upload"),
                path=data.get("path", ""),
            )

        return self.create_with(DatasetForm, make)

    @extend_schema(responses=DatasetDetailSerializer)
    @action(detail=True, methods=["get"])
    def validation(self, request: Request, pk: int) -> Response:
        """The validation report: its state, progress and every problem found, by row."""
        return Response(DatasetDetailSerializer(self.get_object()).data)

    @extend_schema(request=None, responses={202: DatasetDetailSerializer})
    @action(detail=True, methods=["post"])
    def validate(self, request: Request, pk: int) -> Response:
        """Validate again (after its files changed)."""
        dataset = scope.get(self.get_queryset(), request, "change", pk=pk)
        request_validation(dataset.pk)
        dataset.refresh_from_db()
        return Response(DatasetDetailSerializer(dataset).data, status=status.HTTP_202_ACCEPTED)


class ModelRepoViewSet(_ProjectObjects):
    """Save-model addresses (保存模型地址) and the versions trained into them."""

    serializer_class = ModelRepoSerializer

    def get_queryset(self):
        return super().get_queryset().annotate(version_count=Count("versions"))

    @extend_schema(
        request={
            "application/json": _object(
                ["name", "scenario"], path={"type": "string"}, description={"type": "string"}
            )
        },
        responses={201: ModelRepoSerializer},
    )
    def create(self, request: Request) -> Response:
        def make(project, data):
            repo = services.create_model_repo(
                request.user,
                project,
                name=data["name"],
                scenario=data["scenario"],
                level=data["access"],
                path=data.get("path", ""),
                description=data.get("description", ""),
            )
            repo.version_count = 0
            return repo

        return self.create_with(ModelRepoForm, make)

    @extend_schema(responses=ModelVersionSerializer(many=True))
    @action(detail=True, methods=["get"])
    def versions(self, request: Request, pk: int) -> Response:
        repo = self.get_object()
        page = self.paginate_queryset(repo.versions.order_by("-number"))
        return self.get_paginated_response(ModelVersionSerializer(page, many=True).data)


class ModelVersionViewSet(viewsets.GenericViewSet):
    serializer_class = ModelVersionSerializer
    lookup_field = "number"

    def version(self) -> ModelVersion:
        repos = scope.restrict(ModelRepo.objects.all(), self.request)
        repo = scope.get(repos, self.request, pk=self.kwargs["repo"])
        return get_object_or_404(ModelVersion, repo=repo, number=self.kwargs["number"])

    def retrieve(self, request: Request, repo: int, number: int) -> Response:
        return Response(ModelVersionSerializer(self.version()).data)

    @extend_schema(responses={(200, "application/zip"): OpenApiTypes.BINARY})
    @action(detail=True, methods=["get"])
    def download(self, request: Request, repo: int, number: int):
        """The whole version as one zip (with SHA256SUMS), streamed."""
        return archive_response(self.version())


class _Listed(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    pagination_class = None
    lookup_value_regex = ID


class NodeSpecViewSet(_Listed):
    serializer_class = NodeSpecSerializer
    queryset = NodeSpec.objects.filter(enabled=True).order_by("sort_order", "name")


class PoolViewSet(_Listed):
    """Resource pools: the shared ones, and the dedicated ones of the request's projects."""

    serializer_class = PoolSerializer

    def get_queryset(self):
        projects = [p.pk for p in scope.projects(self.request)]
        shared = ResourcePool.objects.filter(dedicated=False)
        mine = ResourcePool.objects.filter(dedicated=True, projects__in=projects)
        return (shared | mine).distinct().order_by("name")


class ScenarioViewSet(_Listed):
    serializer_class = ScenarioSerializer
    queryset = Scenario.objects.order_by("sort_order", "pk")


class AlgorithmViewSet(_Listed):
    """The built-in algorithms, each with the JSON Schema of its parameters."""

    serializer_class = AlgorithmSerializer
    queryset = Algorithm.objects.filter(enabled=True).select_related("scenario").order_by("pk")


class BaseModelViewSet(_Listed):
    serializer_class = BaseModelSerializer
    queryset = PretrainedModel.objects.filter(enabled=True).order_by("name")


class ProjectViewSet(_Listed):
    """The projects this token (or session) may act in."""

    serializer_class = ProjectSerializer

    def get_queryset(self):
        from accounts.models import Project

        return Project.objects.filter(pk__in=[p.pk for p in scope.projects(self.request)])
