from django.urls import path

from finetune.views import data, drafts, job_actions, jobs, logs, monitoring, versions

app_name = "finetune"
urlpatterns = [
    path("jobs/", jobs.JobListView.as_view(), name="job_list"),
    path("jobs/new/", jobs.JobCreateView.as_view(), name="job_create"),
    path("jobs/prediction/", drafts.JobPredictionView.as_view(), name="job_prediction"),
    path("jobs/preview/", drafts.JobLaunchPreviewView.as_view(), name="job_launch_preview"),
    path("jobs/compare/", monitoring.JobCompareView.as_view(), name="job_compare"),
    path("jobs/delete/", job_actions.BulkDeleteJobsView.as_view(), name="job_bulk_delete"),
    path("jobs/<int:pk>/", jobs.JobDetailView.as_view(), name="job_detail"),
    path("jobs/<int:pk>/clone/", jobs.JobCloneView.as_view(), name="job_clone"),
    path("jobs/<int:pk>/logs/", logs.JobLogsView.as_view(), name="job_logs"),
    path("jobs/<int:pk>/events/", logs.JobEventsView.as_view(), name="job_events"),
    path(
        "jobs/<int:pk>/logs/<int:rank>/download/",
        logs.JobLogDownloadView.as_view(),
        name="job_log_download",
    ),
    path("jobs/<int:pk>/metrics/", monitoring.JobMetricsView.as_view(), name="job_metrics"),
    path("jobs/<int:pk>/samples/<str:name>", monitoring.JobSampleView.as_view(), name="job_sample"),
    path("jobs/<int:pk>/duration/", job_actions.ChangeDurationView.as_view(), name="job_duration"),
    path("jobs/<int:pk>/priority/", job_actions.ChangePriorityView.as_view(), name="job_priority"),
    path("jobs/<int:pk>/stop/", job_actions.StopJobView.as_view(), name="job_stop"),
    path("jobs/<int:pk>/delete/", job_actions.DeleteJobView.as_view(), name="job_delete"),
    path("datasets/", data.DatasetListView.as_view(), name="dataset_list"),
    path("datasets/new/", data.DatasetCreateView.as_view(), name="dataset_create"),
    path("datasets/<int:pk>/", data.DatasetDetailView.as_view(), name="dataset_detail"),
    path(
        "datasets/<int:pk>/images/<path:name>",
        data.DatasetImageView.as_view(),
        name="dataset_image",
    ),
    path(
        "datasets/<int:pk>/validation/",
        data.DatasetValidationView.as_view(),
        name="dataset_validation",
    ),
    path(
        "datasets/<int:pk>/validate/", data.ValidateDatasetView.as_view(), name="dataset_validate"
    ),
    path("repos/", data.ModelRepoListView.as_view(), name="modelrepo_list"),
    path("repos/new/", data.ModelRepoCreateView.as_view(), name="modelrepo_create"),
    path("repos/<int:pk>/", data.ModelRepoDetailView.as_view(), name="modelrepo_detail"),
    path(
        "repos/<int:pk>/versions/<int:number>/",
        versions.ModelVersionDetailView.as_view(),
        name="modelversion_detail",
    ),
    path(
        "repos/<int:pk>/versions/<int:number>/download/",
        versions.ModelVersionDownloadView.as_view(),
        name="modelversion_download",
    ),
    path(
        "repos/<int:pk>/versions/<int:number>/files/<path:name>",
        versions.ModelVersionFileView.as_view(),
        name="modelversion_file",
    ),
    path(
        "repos/<int:pk>/versions/<int:number>/export/",
        versions.ModelVersionExportView.as_view(),
        name="modelversion_export",
    ),
    path(
        "repos/<int:pk>/versions/<int:number>/playground/",
        versions.PlaygroundView.as_view(),
        name="playground",
    ),
    path(
        "repos/<int:pk>/versions/<int:number>/playground/ask/",
        versions.PlaygroundAskView.as_view(),
        name="playground_ask",
    ),
    path(
        "repos/<int:pk>/versions/<int:number>/playground/<int:run>/",
        versions.PlaygroundStateView.as_view(),
        name="playground_state",
    ),
    path(
        "repos/<int:pk>/versions/<int:number>/playground/<int:run>/<str:side>.png",
        versions.PlaygroundImageView.as_view(),
        name="playground_image",
    ),
    path(
        "repos/<int:pk>/versions/<int:number>/evaluate/",
        versions.ModelVersionEvaluateView.as_view(),
        name="modelversion_evaluate",
    ),
    path(
        "repos/<int:pk>/versions/<int:number>/evaluations/",
        versions.ModelVersionEvaluationsView.as_view(),
        name="modelversion_evaluations",
    ),
    path(
        "repos/<int:pk>/versions/<int:number>/evaluations/<int:evaluation>/<str:name>",
        versions.ModelVersionEvaluationImageView.as_view(),
        name="modelversion_evaluation_image",
    ),
    path(
        "repos/<int:pk>/versions/<int:number>/exports/",
        versions.ModelVersionExportsView.as_view(),
        name="modelversion_exports",
    ),
]
