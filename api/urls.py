"""/api/v1/: the REST API (docs/api.md), its OpenAPI 3 schema and its documentation."""

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.routers import DefaultRouter

from api import jobs, resources

app_name = "api"

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False
router.register("jobs", jobs.JobViewSet, basename="job")
router.register("prediction", jobs.PredictionView, basename="prediction")
router.register("datasets", resources.DatasetViewSet, basename="dataset")
router.register("repos", resources.ModelRepoViewSet, basename="repo")
router.register("node-specs", resources.NodeSpecViewSet, basename="node-spec")
router.register("pools", resources.PoolViewSet, basename="pool")
router.register("scenarios", resources.ScenarioViewSet, basename="scenario")
router.register("algorithms", resources.AlgorithmViewSet, basename="algorithm")
router.register("base-models", resources.BaseModelViewSet, basename="base-model")
router.register("projects", resources.ProjectViewSet, basename="project")

version = resources.ModelVersionViewSet
urlpatterns = [
    path("", include(router.urls)),
    path(
        "repos/<int:repo>/versions/<int:number>/",
        version.as_view({"get": "retrieve"}),
        name="version-detail",
    ),
    path(
        "repos/<int:repo>/versions/<int:number>/download/",
        version.as_view({"get": "download"}),
        name="version-download",
    ),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api:schema"), name="docs"),
]
